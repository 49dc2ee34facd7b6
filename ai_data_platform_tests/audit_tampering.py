"""What an attacker who can rewrite every file beside the audit log, but holds neither the audit key
nor the anchor's storage, can do to it: each tampering, and the problem ``verify`` must name."""

import json

from ai_data_platform.governance import audit

ATTACKER_KEY = b"a guess at the audit key, 32 bytes or more"
FORGED = {"action": "erasure", "actor": "dpo", "ts": "2026-11-21T00:00:00+00:00", "status": "erased"}


def lines_of(directory):
    return (directory / audit.AUDIT_FILE).read_text().splitlines()


def rewrite(directory, lines):
    (directory / audit.AUDIT_FILE).write_text("".join(line + "\n" for line in lines))


def dump(record):
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def rechain(records, start=0, key=ATTACKER_KEY):
    """Recompute seq, prev_hash, hash and (under a guessed key) mac from ``start`` on: a consistent chain."""
    prev = audit.GENESIS_HASH if start == 0 else records[start - 1]["hash"]
    for seq in range(start, len(records)):
        record = records[seq]
        record["seq"], record["prev_hash"] = seq, prev
        record["hash"] = prev = audit.record_hash(record)
        record["mac"] = audit.record_mac(record, key)
    return records


def cover_tracks(directory):
    """Rewrite audit.head to match whatever the log now ends with (or remove it for an empty log)."""
    head = directory / audit.HEAD_FILE
    lines = lines_of(directory) if (directory / audit.AUDIT_FILE).exists() else []
    try:
        last = json.loads(lines[-1])
    except (IndexError, ValueError):
        head.unlink(missing_ok=True)
        return
    head.write_text(json.dumps({"seq": last.get("seq"), "hash": last.get("hash")}) + "\n")


def write_records(directory, records):
    rewrite(directory, [dump(r) for r in records])
    cover_tracks(directory)


def delete_newest(directory, n=1):
    rewrite(directory, lines_of(directory)[:-n])
    cover_tracks(directory)


def truncate_mid_record(directory):
    data = (directory / audit.AUDIT_FILE).read_bytes()
    (directory / audit.AUDIT_FILE).write_bytes(data[: len(data) - 40])


def reorder(directory):
    records = [json.loads(line) for line in lines_of(directory)]
    records[1], records[2] = records[2], records[1]
    write_records(directory, rechain(records, 1))


def edit_old(directory):
    records = [json.loads(line) for line in lines_of(directory)]
    records[1]["row_counts"] = {"deleted": 999}
    write_records(directory, rechain(records, 1))


def edit_newest(directory):
    records = [json.loads(line) for line in lines_of(directory)]
    records[-1]["actor"] = "someone-else"
    write_records(directory, rechain(records, len(records) - 1))


def replace_with_shorter(directory):
    records = [{"action": "retention", "actor": "ci", "ts": "2026-11-20T00:00:00+00:00"} for _ in range(2)]
    write_records(directory, rechain(records))


def delete_log(directory):
    (directory / audit.AUDIT_FILE).unlink()
    (directory / audit.HEAD_FILE).unlink()


def forge_new(directory):
    records = [json.loads(line) for line in lines_of(directory)]
    records.append(dict(FORGED))
    write_records(directory, rechain(records, len(records) - 1))


def forge_new_without_mac(directory):
    records = [json.loads(line) for line in lines_of(directory)]
    forged = {**FORGED, "seq": len(records), "prev_hash": records[-1]["hash"]}
    forged["hash"] = audit.record_hash(forged)
    write_records(directory, [*records, forged])


def forge_with_a_borrowed_mac(directory):
    records = [json.loads(line) for line in lines_of(directory)]
    forged = {**FORGED, "seq": len(records), "prev_hash": records[-1]["hash"]}
    forged["hash"] = audit.record_hash(forged)
    forged["mac"] = records[-1]["mac"]
    write_records(directory, [*records, forged])


def repeat_a_key(directory):
    """The newest record's line with a second ``actor`` before the real one (which the parser keeps):
    a reader of the text sees someone else."""
    lines = lines_of(directory)
    lines[-1] = '{"actor":"mallory",' + lines[-1][1:]
    rewrite(directory, lines)


def duplicate_newest(directory):
    lines = lines_of(directory)
    rewrite(directory, [*lines, lines[-1]])


def rewrite_head_older(directory):
    older = json.loads(lines_of(directory)[1])
    (directory / audit.HEAD_FILE).write_text(json.dumps({"seq": older["seq"], "hash": older["hash"]}) + "\n")


def rewrite_head_garbage(directory):
    (directory / audit.HEAD_FILE).write_text("not a head\n")


def remove_head(directory):
    (directory / audit.HEAD_FILE).unlink()


RECORDS = 5
"""The length of the anchored log the tamperings below expect (seq 0..4)."""

TAMPERS = {
    "delete_newest": (delete_newest, "the newest 1 record(s) are missing"),
    "delete_newest_3": (lambda d: delete_newest(d, 3), "the newest 3 record(s) are missing"),
    "delete_newest_leaving_the_head": (lambda d: rewrite(d, lines_of(d)[:-1]), "the newest 1 record(s) are missing"),
    "delete_every_record": (lambda d: delete_newest(d, RECORDS), "the newest 5 record(s) are missing"),
    "truncate_mid_record": (truncate_mid_record, "the last line is incomplete"),
    "reorder": (reorder, "MAC of record 1 does not verify"),
    "edit_old_rechained": (edit_old, "MAC of record 1 does not verify"),
    "edit_newest_rechained": (edit_newest, "MAC of record 4 does not verify"),
    "replace_with_shorter_consistent_log": (replace_with_shorter, "MAC of record 0 does not verify"),
    "delete_log": (delete_log, "the newest 5 record(s) are missing"),
    "forge_new": (forge_new, "MAC of record 5 does not verify"),
    "forge_new_without_mac": (forge_new_without_mac, "record 5 carries no MAC"),
    "forge_with_a_borrowed_mac": (forge_with_a_borrowed_mac, "MAC of record 5 does not verify"),
    "duplicate_newest": (duplicate_newest, "seq 4 where 5 was expected"),
    "repeat_a_key": (repeat_a_key, "record 4 is not written as the audit writer writes it"),
    "rewrite_head_older": (rewrite_head_older, "audit.head says seq 1"),
    "rewrite_head_garbage": (rewrite_head_garbage, "audit.head is not a head record"),
    "remove_head": (remove_head, "audit.head is missing"),
}
LOSES_NOTHING = {"rewrite_head_older", "rewrite_head_garbage", "remove_head"}  # the next append rewrites audit.head


class MemoryAnchor:
    """Heads kept in this process: what Dagster's storage is to the platform. ``down`` makes it unreachable."""

    where = "the test anchor"

    def __init__(self):
        self.heads = {}
        self.down = False

    def newest(self, log):
        self._reach()
        return self.heads.get(log)

    def record(self, log, head):
        self._reach()
        self.heads[log] = head

    def _reach(self):
        if self.down:
            raise audit.AnchorUnavailable("connection refused")


ROLLBACK_PLACES = ("replaced", "linked_directory", "linked_file", "in_place")
"""Where a rolled-back log is put: a new directory under the old name, a new directory the old name
links to, a link to a file elsewhere, or the log cut where it lies (each with audit.head to match)."""


def roll_back_elsewhere(directory, keep, place):
    """Keep the first ``keep`` records of the log in ``directory`` and put them where the log was, as
    ``place`` says (:data:`ROLLBACK_PLACES`); the original moves aside to ``<directory>.orig``."""
    kept = lines_of(directory)[:keep]
    if place == "in_place":
        rewrite(directory, kept)
        cover_tracks(directory)
        return
    aside = directory.with_name(directory.name + ".orig")
    directory.rename(aside)
    if place == "replaced":
        directory.mkdir()
    elif place == "linked_directory":
        target = directory.with_name(directory.name + ".new")
        target.mkdir()
        directory.symlink_to(target, target_is_directory=True)
    else:
        directory.mkdir()
        elsewhere = directory.with_name(directory.name + ".elsewhere")
        elsewhere.mkdir()
        (elsewhere / audit.AUDIT_FILE).touch()
        (directory / audit.AUDIT_FILE).symlink_to(elsewhere / audit.AUDIT_FILE)
    rewrite(directory, kept)
    cover_tracks(directory)
