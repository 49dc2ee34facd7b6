"""The audit log: append-only, hash-chained, MACed, anchored at every append, serialized across
processes; every way of losing, forging or rewriting records is caught (the pure layer, with an
anchor held in the test; the Dagster anchor and `adp audit verify`: test_audit_anchor.py)."""

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_data_platform import settings as adp_settings
from ai_data_platform.errors import InputError
from ai_data_platform.governance import audit
from ai_data_platform_tests.waiting import bound

from .audit_tampering import (
    ATTACKER_KEY, LOSES_NOTHING, RECORDS, ROLLBACK_PLACES, TAMPERS, MemoryAnchor,
    cover_tracks, dump, forge_new, lines_of, rechain, rewrite, roll_back_elsewhere, truncate_mid_record, write_records,
)


class FileAnchor:
    """Heads appended to a file outside the log's directory, readable by every process."""

    where = "the test anchor file"

    def __init__(self, path):
        self.path = Path(path)

    def newest(self, log):
        found = None
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                entry = json.loads(line)
                if entry["log"] == log:
                    found = audit.Head(entry["seq"], entry["hash"], entry["mac"], entry["trail_id"])
        return found

    def record(self, log, head):
        with self.path.open("a") as fh:
            fh.write(json.dumps({"log": log, "trail_id": head.trail_id, "seq": head.seq, "hash": head.hash,
                                 "mac": head.mac}) + "\n")


@pytest.fixture()
def anchor():
    return MemoryAnchor()


def _append_many(directory: str, anchor_file: str, worker: int, n: int) -> None:
    for i in range(n):
        audit.append("materialization", directory=Path(directory), anchor=FileAnchor(anchor_file),
                     asset=f"raw/w{worker}", partition=str(i), row_counts={"rows": i})


def _log(directory, anchor, n=RECORDS):
    for i in range(n):
        audit.append("retention", directory=directory, anchor=anchor, row_counts={"deleted": i}, actor="ci")
    return lines_of(directory)


def test_records_chain_mac_and_verify(tmp_path, anchor):
    first = audit.append("materialization", directory=tmp_path, anchor=anchor, asset="staging/payments",
                         partition="2026-11-20", row_counts={"rows": 10}, actor="ci")
    second = audit.append("erasure", directory=tmp_path, anchor=anchor, details={"subject": audit.subject_ref("C1", key="k")},
                          actor="dpo")
    assert (first["seq"], second["seq"]) == (0, 1)
    assert first["prev_hash"] == audit.GENESIS_HASH and second["prev_hash"] == first["hash"]
    assert second["mac"] == audit.record_mac(second, adp_settings.audit_key()) != audit.record_mac(second, ATTACKER_KEY)
    assert [r["action"] for r in audit.records(tmp_path)] == ["materialization", "erasure"]
    assert audit.head(tmp_path) == {"seq": 1, "hash": second["hash"]}
    assert first["trail_id"] == second["trail_id"] and len(first["trail_id"]) == 32
    assert anchor.newest(audit.trail_name()) == audit.Head(1, second["hash"], second["mac"], first["trail_id"])
    result = audit.verify(tmp_path, anchor=anchor)
    assert result.ok and result.records == 2 and result.anchored_seq == 1


def test_an_edited_record_is_detected_at_its_line(tmp_path, anchor):
    for i in range(5):
        audit.append("check", directory=tmp_path, anchor=anchor, asset="features/customer_daily", row_counts={"rows": i})
    lines = lines_of(tmp_path)
    edited = json.loads(lines[2])
    edited["row_counts"]["rows"] = 999  # the content changed, the stored hash did not
    lines[2] = dump(edited)
    rewrite(tmp_path, lines)
    result = audit.verify(tmp_path)
    assert not result.ok and result.line == 3 and "edited" in result.problem


def test_a_rehashed_edit_is_caught_by_its_mac(tmp_path, anchor):
    for i in range(4):
        audit.append("check", directory=tmp_path, anchor=anchor, row_counts={"rows": i})
    lines = lines_of(tmp_path)
    edited = json.loads(lines[1])
    edited["row_counts"]["rows"] = 7
    edited["hash"] = audit.record_hash(edited)  # a careful forger recomputes this record's hash
    lines[1] = dump(edited)
    rewrite(tmp_path, lines)
    result = audit.verify(tmp_path)
    assert not result.ok and result.line == 2 and "MAC of record 1 does not verify" in result.problem


@pytest.mark.parametrize("tamper", ["delete_middle", "swap", "truncate_tail"])
def test_removed_reordered_or_truncated_records_are_detected(tmp_path, anchor, tamper):
    lines = _log(tmp_path, anchor)
    if tamper == "delete_middle":
        del lines[2]
    elif tamper == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    else:
        lines = lines[:3]
    rewrite(tmp_path, lines)
    result = audit.verify(tmp_path)
    assert not result.ok
    if tamper == "truncate_tail":
        assert "cut off the end" in result.problem


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_every_tampering_is_caught_and_an_append_never_makes_it_clean(tmp_path, anchor, name):
    tamper, message = TAMPERS[name]
    _log(tmp_path, anchor)
    tamper(tmp_path)
    result = audit.verify(tmp_path, anchor=anchor)
    assert not result.ok and message in result.problem, result
    if name in LOSES_NOTHING:
        return
    try:
        audit.append("erasure", directory=tmp_path, anchor=anchor, status="erased")
    except audit.AuditError as refused:
        assert "nothing appended" in str(refused)
    assert not audit.verify(tmp_path, anchor=anchor).ok


def test_a_log_rolled_back_with_its_head_to_an_older_copy_is_caught_by_the_anchor(tmp_path, anchor):
    log, saved = tmp_path / "log", tmp_path / "saved"
    _log(log, anchor, 3)
    shutil.copytree(log, saved)
    _log(log, anchor, 2)
    shutil.rmtree(log)
    shutil.copytree(saved, log)  # the log and audit.head as they were, consistent with each other
    assert audit.verify(log).ok  # the files alone look fine
    result = audit.verify(log, anchor=anchor)
    assert not result.ok and "recorded head seq 4 but the log has no such record: the newest 2 record(s) are missing" in result.problem
    with pytest.raises(audit.AuditError, match="recorded head seq 4 but the log ends at seq 2: records were removed"):
        audit.append("erasure", directory=log, anchor=anchor)


def test_a_record_written_by_a_key_holder_behind_the_writer_is_not_anchored(tmp_path, anchor):
    _log(tmp_path, anchor, 3)
    audit.append("erasure", directory=tmp_path, anchor=MemoryAnchor())  # anchored elsewhere (after a gap record there)
    result = audit.verify(tmp_path, anchor=anchor)
    assert not result.ok and "record(s) seq 3..4 are not anchored in the test anchor" in result.problem


# -- a hostile rewrite of the log, drawn at random: every one that changes a record is caught ----------

OPERATIONS = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 5), st.integers(1, 6)),
    st.tuples(st.just("swap"), st.integers(0, 5), st.integers(0, 5)),
    st.tuples(st.just("edit"), st.integers(0, 5), st.sampled_from(["actor", "action", "status", "ts", "seq"])),
    st.tuples(st.just("truncate_bytes"), st.integers(1, 2000), st.just(None)),
    st.tuples(st.just("forge"), st.integers(1, 3), st.just(None)),
)


@settings(max_examples=30)  # each example writes a log of six fsynced appends
@given(operation=OPERATIONS, rechained=st.booleans())
def test_a_hostile_rewrite_of_any_kind_is_caught(tmp_path_factory, operation, rechained):
    directory = tmp_path_factory.mktemp("log")
    anchor = MemoryAnchor()
    _log(directory, anchor, 6)
    records = [json.loads(line) for line in lines_of(directory)]
    kind, a, b = operation
    if kind == "truncate_bytes":
        data = (directory / audit.AUDIT_FILE).read_bytes()
        (directory / audit.AUDIT_FILE).write_bytes(data[: max(0, len(data) - a)])
        cover_tracks(directory)
    else:
        if kind == "delete":
            del records[a:a + b]
        elif kind == "swap":
            if a == b:
                return  # nothing changed
            records[a], records[b] = records[b], records[a]
        elif kind == "edit":
            records[a][b] = 7 if b == "seq" else "tampered"
        else:
            records += [{"action": "erasure", "actor": "x", "ts": "2026-11-21T00:00:00+00:00"} for _ in range(a)]
        if rechained and records:
            rechain(records)
        write_records(directory, records)
    assert not audit.verify(directory, anchor=anchor).ok


# -- the anchor out of reach ------------------------------------------------------------------------


def test_an_append_while_the_anchor_is_out_of_reach_is_kept_reported_then_recorded_as_late(tmp_path, anchor):
    _log(tmp_path, anchor, 2)
    anchor.down = True
    written_not_anchored = r"record\(s\) seq 2..2 written but not anchored in the test anchor \(connection refused\)"
    with pytest.raises(audit.AuditAnchorError, match=written_not_anchored) as err:
        audit.append("erasure", directory=tmp_path, anchor=anchor, status="erased")
    assert err.value.records[0]["action"] == "erasure" and err.value.records[0]["seq"] == 2
    assert [r["action"] for r in audit.records(tmp_path)][-1] == "erasure"  # kept: nothing is lost
    down = audit.verify(tmp_path, anchor=anchor)
    assert not down.ok and not down.checked and "cannot read the head recorded in the test anchor" in down.problem
    anchor.down = False
    result = audit.verify(tmp_path, anchor=anchor)
    assert not result.ok and "record(s) seq 2..2 are not anchored" in result.problem

    audit.append("retention", directory=tmp_path, anchor=anchor)
    gap, later = list(audit.records(tmp_path))[-2:]
    assert gap["action"] == audit.GAP_ACTION and gap["details"] == {"first_seq": 2, "last_seq": 2, "anchored_seq": 1}
    assert later["action"] == "retention" and later["seq"] == 4
    result = audit.verify(tmp_path, anchor=anchor)
    assert result.ok and result.anchored_seq == 4
    assert result.notes == (f"record(s) seq 2..2 were not anchored when written (the anchor was out of reach, or the writer "
                            f"died first); noted at seq 3 ({gap['ts']})",)


def test_anchor_pending_anchors_late_records_without_new_ones_and_refuses_forged_ones(tmp_path, anchor):
    anchor.down = True
    with pytest.raises(audit.AuditAnchorError):
        audit.append("erasure", directory=tmp_path, anchor=anchor)
    with pytest.raises(audit.AuditAnchorError, match="cannot read the head recorded in the test anchor"):
        audit.anchor_pending(directory=tmp_path, anchor=anchor)
    anchor.down = False
    assert audit.anchor_pending(directory=tmp_path, anchor=anchor) == audit.Head.of(list(audit.records(tmp_path))[-1])
    assert [r["action"] for r in audit.records(tmp_path)] == ["erasure", audit.GAP_ACTION]
    assert audit.verify(tmp_path, anchor=anchor).ok
    forge_new(tmp_path)
    with pytest.raises(audit.AuditError, match="record seq 2, after the head recorded in the test anchor: the MAC of record 2"):
        audit.anchor_pending(directory=tmp_path, anchor=anchor)


def test_a_log_written_before_records_were_maced_is_refused_and_reported(tmp_path, anchor):
    legacy = [{"action": "retention", "actor": "ci", "ts": "2026-01-01T00:00:00+00:00"} for _ in range(2)]
    for record in rechain(legacy):
        del record["mac"]
    write_records(tmp_path, legacy)
    problem = audit.verify(tmp_path, anchor=anchor).problem
    assert "record 0 carries no MAC (forged, or written before records were MACed)" in problem
    refused = "record seq 0, of a log nothing of which is recorded in the test anchor: record 0 carries no MAC"
    with pytest.raises(audit.AuditError, match=refused):
        audit.append("erasure", directory=tmp_path, anchor=anchor)
    assert len(lines_of(tmp_path)) == 2


def test_a_log_holding_half_a_line_takes_no_appends(tmp_path, anchor):
    _log(tmp_path, anchor, 2)
    truncate_mid_record(tmp_path)
    before = (tmp_path / audit.AUDIT_FILE).read_bytes()
    with pytest.raises(audit.AuditError, match="the last line is incomplete"):
        audit.append("erasure", directory=tmp_path, anchor=anchor)
    assert (tmp_path / audit.AUDIT_FILE).read_bytes() == before


def _replace_with_a_directory(path):
    path.unlink()
    path.mkdir()


HOSTILE_FILES = {
    "the log is a directory": lambda d: _replace_with_a_directory(d / audit.AUDIT_FILE),
    "the lock is a directory": lambda d: _replace_with_a_directory(d / audit.LOCK_FILE),
    "audit.head is a directory": lambda d: _replace_with_a_directory(d / audit.HEAD_FILE),
    "a record nested past the parser's depth": lambda d: (d / audit.AUDIT_FILE).open("a").write("[" * 100_000 + "]" * 100_000 + "\n"),
    "bytes that are not UTF-8": lambda d: (d / audit.AUDIT_FILE).open("ab").write(b"\xff\xfe{\"seq\": 5}\n"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_hostile_files_beside_the_log_are_reported_never_raised_past_audit_error(tmp_path, anchor, name):
    _log(tmp_path, anchor, 2)
    HOSTILE_FILES[name](tmp_path)
    try:
        result = audit.verify(tmp_path, anchor=anchor)
    except audit.AuditError as exc:
        assert str(tmp_path) in str(exc)
    else:
        assert not result.ok and result.problem
    with pytest.raises(audit.AuditError):
        audit.append("erasure", directory=tmp_path, anchor=anchor)


# -- the trail: one per deployment, anchored under its name wherever its file lies ---------------------


def test_the_first_record_starts_a_trail_every_later_record_names_under_its_mac(tmp_path, anchor):
    first, *later = [json.loads(line) for line in _log(tmp_path / "a", anchor, 3)]
    assert len(first["trail_id"]) == 32 and all(r["trail_id"] == first["trail_id"] for r in later)
    assert anchor.newest(audit.trail_name()).trail_id == first["trail_id"]
    other = json.loads(_log(tmp_path / "b", MemoryAnchor(), 1)[0])
    assert other["trail_id"] != first["trail_id"]  # drawn at random by each log's first record
    renamed = {**first, "trail_id": other["trail_id"]}
    assert audit.record_problem(renamed, 0, audit.GENESIS_HASH, adp_settings.audit_key()).startswith("hash does not")


def test_a_log_moved_linked_or_copied_with_its_anchor_is_the_same_trail(tmp_path, anchor):
    first, moved, linked = tmp_path / "first", tmp_path / "moved", tmp_path / "linked"
    _log(first, anchor, 3)
    first.rename(moved)
    assert audit.verify(moved, anchor=anchor).ok
    audit.append("erasure", directory=moved, anchor=anchor, status="erased")
    linked.symlink_to(moved, target_is_directory=True)
    audit.append("erasure", directory=linked, anchor=anchor, status="erased")
    result = audit.verify(linked, anchor=anchor)
    assert result.ok and result.records == 5 and result.anchored_seq == 4 and result.notes == ()
    copy, copied_anchor = tmp_path / "copy", MemoryAnchor()
    shutil.copytree(moved, copy)
    copied_anchor.heads = dict(anchor.heads)  # a data directory copied with its own (SQLite) storage
    assert audit.verify(copy, anchor=copied_anchor).ok


@pytest.mark.parametrize("place", ROLLBACK_PLACES)
def test_a_log_rolled_back_wherever_it_is_put_is_caught_and_takes_no_append(tmp_path, anchor, place):
    log = tmp_path / "audit"
    _log(log, anchor, 4)
    roll_back_elsewhere(log, 2, place)
    assert audit.verify(log).ok  # the files alone look fine
    missing = "recorded head seq 3 but the log has no such record: the newest 2 record(s) are missing"
    assert missing in audit.verify(log, anchor=anchor).problem
    kept = (log / audit.AUDIT_FILE).read_bytes()
    for attempt in (lambda: audit.append("erasure", directory=log, anchor=anchor), lambda: audit.anchor_pending(directory=log, anchor=anchor)):
        with pytest.raises(audit.AuditError, match="recorded head seq 3 but the log ends at seq 1: records were removed"):
            attempt()
    assert (log / audit.AUDIT_FILE).read_bytes() == kept  # no gap record stands in for the removed ones
    assert missing in audit.verify(log, anchor=anchor).problem


@settings(max_examples=25)  # each example writes up to six fsynced appends
@given(records=st.integers(1, 6), data=st.data())
def test_no_rollback_is_ever_accepted_nor_covered_by_a_gap(tmp_path_factory, records, data):
    keep = data.draw(st.integers(0, records - 1), label="keep")
    place = data.draw(st.sampled_from(ROLLBACK_PLACES), label="place")
    log = tmp_path_factory.mktemp("rollback") / "audit"
    anchor = MemoryAnchor()
    _log(log, anchor, records)
    roll_back_elsewhere(log, keep, place)
    with pytest.raises(audit.AuditError, match="records were removed or the log was replaced; nothing appended"):
        audit.append("erasure", directory=log, anchor=anchor)
    result = audit.verify(log, anchor=anchor)
    assert not result.ok and f"the newest {records - keep} record(s) are missing" in result.problem
    assert anchor.newest(audit.trail_name()).seq == records - 1
    assert audit.GAP_ACTION not in (log / audit.AUDIT_FILE).read_text()


def test_a_log_of_another_trail_put_in_place_is_caught_and_takes_no_append(tmp_path, anchor):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    _log(ours, anchor, 3)
    _log(theirs, MemoryAnchor(), 5)  # same key, another trail (another deployment, a test copy)
    ours_trail = json.loads(lines_of(ours)[0])["trail_id"]
    theirs_trail = json.loads(lines_of(theirs)[0])["trail_id"]
    shutil.rmtree(ours)
    shutil.copytree(theirs, ours)
    assert audit.verify(ours).ok  # a valid log on its own
    problem = audit.verify(ours, anchor=anchor).problem
    assert problem.startswith(f"the log is trail {theirs_trail} but the test anchor anchors trail {ours_trail} "
                              "(head seq 2) under the name 'adp': the trail was replaced by another log")
    with pytest.raises(audit.AuditError, match=f"the log's newest record names trail {theirs_trail} but"):
        audit.append("erasure", directory=ours, anchor=anchor)
    assert len(lines_of(ours)) == 5


def test_records_of_another_trail_or_of_none_do_not_verify(tmp_path, anchor):
    key = adp_settings.audit_key()
    records = [json.loads(line) for line in _log(tmp_path, anchor, 3)]
    spliced = dict(records[2], trail_id="f" * 32)
    spliced["hash"] = audit.record_hash(spliced)
    spliced["mac"] = audit.record_mac(spliced, key)  # a holder of the key, splicing
    problem = audit.record_problem(spliced, 2, records[1]["hash"], key, records[0]["trail_id"])
    assert problem == (f"record 2 names trail {'f' * 32} but the log's first record names trail "
                       f"{records[0]['trail_id']} (records of another trail were put into this one)")
    legacy = [{"action": "retention", "actor": "ci", "ts": "2026-01-01T00:00:00+00:00"} for _ in range(2)]
    (tmp_path / "legacy").mkdir()
    write_records(tmp_path / "legacy", rechain(legacy, key=key))  # MACed, written before records named a trail
    assert "record 0 names no trail (written before records named their trail_id" in audit.verify(tmp_path / "legacy").problem
    with pytest.raises(audit.AuditError, match="record seq 0, of a log nothing of which is recorded in the test anchor: record 0 names no trail"):
        audit.append("erasure", directory=tmp_path / "legacy", anchor=MemoryAnchor())


def test_copies_writing_to_one_shared_anchor_diverge_and_the_one_left_behind_is_refused(tmp_path, anchor):
    original, copy = tmp_path / "original", tmp_path / "copy"
    _log(original, anchor, 2)
    shutil.copytree(original, copy)  # a copy of the data directory over the same (PostgreSQL) storage
    assert audit.verify(original, anchor=anchor).ok and audit.verify(copy, anchor=anchor).ok
    audit.append("erasure", directory=copy, anchor=anchor, status="erased")
    assert audit.verify(copy, anchor=anchor).ok
    left_behind = audit.verify(original, anchor=anchor).problem
    assert "the newest 1 record(s) are missing (the log ends at seq 1): they were removed, or another data directory" in left_behind
    with pytest.raises(audit.AuditError, match="records were removed or the log was replaced; nothing appended"):
        audit.append("erasure", directory=original, anchor=anchor)


def test_copies_appending_at_once_to_one_shared_anchor_fork_and_the_fork_is_caught(tmp_path, anchor):
    original, copy = tmp_path / "original", tmp_path / "copy"
    _log(original, anchor, 2)
    shutil.copytree(original, copy)
    read_before = anchor.newest(audit.trail_name())

    class ReadBeforeTheCopyWrote:
        """The original's append: it read the head before the copy's append recorded its own."""

        where = anchor.where

        def newest(self, trail):
            return read_before

        def record(self, trail, head):
            anchor.record(trail, head)

    audit.append("erasure", directory=copy, anchor=anchor, status="erased")
    audit.append("retention", directory=original, anchor=ReadBeforeTheCopyWrote())  # both wrote seq 2
    assert audit.verify(original, anchor=anchor).ok  # the newest head recorded is the original's
    assert audit.verify(copy, anchor=anchor).problem == (
        "record seq 2 is not the one recorded in the test anchor (the log was rewritten, or a copy of this data "
        "directory appends to the same trail)"
    )
    with pytest.raises(audit.AuditError, match="record seq 2 is not the one recorded in the test anchor"):
        audit.append("erasure", directory=copy, anchor=anchor)


def test_trails_under_their_own_names_share_one_anchor_under_one_name_the_second_is_refused(tmp_path, anchor, monkeypatch):
    production, staging = tmp_path / "production", tmp_path / "staging"
    _log(production, anchor, 2)
    monkeypatch.setenv("ADP_AUDIT_TRAIL", "staging")
    _log(staging, anchor, 3)
    assert audit.verify(staging, anchor=anchor).ok and set(anchor.heads) == {"adp", "staging"}
    monkeypatch.delenv("ADP_AUDIT_TRAIL")
    assert audit.verify(production, anchor=anchor).ok
    problem = audit.verify(staging, anchor=anchor).problem
    assert problem.startswith("the log is trail ") and "the same ADP_AUDIT_TRAIL" in problem
    with pytest.raises(audit.AuditError, match="recorded head seq 1 but the log holds no records"):
        audit.append("erasure", directory=tmp_path / "third", anchor=anchor)  # a new log cannot start a second trail
    assert list(audit.records(tmp_path / "third")) == []


@pytest.mark.parametrize("name", ["", "  ", "staging", "eu-prod.2", "A_1"])
def test_a_trail_name_of_letters_digits_dots_dashes_and_underscores_is_taken(monkeypatch, name):
    monkeypatch.setenv("ADP_AUDIT_TRAIL", name)
    assert adp_settings.audit_trail() == (name.strip() or "adp")


@pytest.mark.parametrize("name", ["-lead", ".hidden", "a b", "x" * 65, "a/b", "trail\nname", "é", "a;drop"])
def test_any_other_trail_name_is_refused_in_one_line(monkeypatch, name):
    monkeypatch.setenv("ADP_AUDIT_TRAIL", name)
    with pytest.raises(InputError, match="^ADP_AUDIT_TRAIL must be 1 to 64 letters") as refused:
        adp_settings.audit_trail()
    assert "\n" not in str(refused.value)


# -- the key ----------------------------------------------------------------------------------------


def test_the_audit_key_is_required_in_prod_long_and_never_the_pii_key(monkeypatch):
    monkeypatch.delenv("ADP_AUDIT_KEY", raising=False)
    monkeypatch.setenv("ADP_PII_HMAC_KEY", "pii-key-of-this-test")
    derived = adp_settings.audit_key()
    assert len(derived) == 32 and derived != b"pii-key-of-this-test"
    monkeypatch.setenv("ADP_PII_HMAC_KEY", "another-pii-key")
    assert adp_settings.audit_key() != derived
    monkeypatch.setenv("ADP_ENV", "prod")
    with pytest.raises(InputError, match=r"^ADP_AUDIT_KEY must be set when ADP_ENV=prod: a secret of at least 32 bytes"):
        adp_settings.audit_key()
    monkeypatch.setenv("ADP_AUDIT_KEY", "short")
    with pytest.raises(InputError, match=r"^ADP_AUDIT_KEY must hold at least 32 bytes, got 5"):
        adp_settings.audit_key()
    monkeypatch.setenv("ADP_AUDIT_KEY", " " + "k" * 40 + "\n")
    with pytest.raises(InputError, match=r"^ADP_AUDIT_KEY has only 1 different character\(s\): ADP_ENV=prod needs"):
        adp_settings.audit_key()
    monkeypatch.setenv("ADP_AUDIT_KEY", " 9d2f7a1c5e3b8f0a4c6e2d9b7f1a3c5e \n")
    assert adp_settings.audit_key() == b"9d2f7a1c5e3b8f0a4c6e2d9b7f1a3c5e"
    monkeypatch.setenv("ADP_ENV", "local")  # outside prod a set key is judged by its length only
    monkeypatch.setenv("ADP_AUDIT_KEY", "k" * 40)
    assert adp_settings.audit_key() == b"k" * 40


def test_a_log_verified_under_another_key_fails_at_its_first_record_and_holds_no_key(tmp_path, anchor, monkeypatch):
    monkeypatch.setenv("ADP_AUDIT_KEY", "w" * 40)
    _log(tmp_path, anchor, 2)
    assert audit.verify(tmp_path, anchor=anchor).ok
    assert b"w" * 32 not in b"".join(p.read_bytes() for p in tmp_path.iterdir())
    monkeypatch.setenv("ADP_AUDIT_KEY", "v" * 40)
    result = audit.verify(tmp_path, anchor=anchor)
    assert not result.ok and result.line == 1 and "or the log was written under another key" in result.problem


# -- concurrency ------------------------------------------------------------------------------------


def test_concurrent_appends_from_processes_keep_one_anchored_chain(tmp_path):
    log, anchor_file = tmp_path / "audit", tmp_path / "anchor" / "heads.jsonl"
    anchor_file.parent.mkdir()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(log), str(anchor_file), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(bound(300))
        assert p.exitcode == 0
    result = audit.verify(log, anchor=FileAnchor(anchor_file))
    assert result.ok and result.records == 100 and result.anchored_seq == 99
    assert sorted(r["seq"] for r in audit.records(log)) == list(range(100))
    assert len(anchor_file.read_text().splitlines()) == 100  # one anchored head per append


def test_any_text_a_record_carries_is_stored_as_it_verifies(tmp_path, anchor):
    texts = ["bad \udcff byte from a file name", "line\u2028separator", "tab\tand\nnewline", "Zürich 東京 🙂", "\x00"]
    for text in texts:
        audit.append("step_failed", directory=tmp_path, anchor=anchor, details={"error": text})
    assert [r["details"]["error"] for r in audit.records(tmp_path)] == ["bad ? byte from a file name", *texts[1:]]
    assert audit.verify(tmp_path, anchor=anchor).ok


def test_unknown_fields_and_missing_action_are_refused(tmp_path, anchor):
    with pytest.raises(audit.AuditError, match="unknown audit record field"):
        audit.append("materialization", directory=tmp_path, anchor=anchor, asset_key="typo")
    with pytest.raises(audit.AuditError, match="needs an action"):
        audit.append("", directory=tmp_path, anchor=anchor)
    assert not (tmp_path / audit.AUDIT_FILE).exists() and anchor.heads == {}


def test_subject_ref_is_keyed_and_holds_no_id(monkeypatch):
    ref = audit.subject_ref("CUST-000123", key="k1")
    assert ref.startswith("subject:") and "CUST-000123" not in ref
    assert ref == audit.subject_ref("CUST-000123", key="k1") != audit.subject_ref("CUST-000123", key="k2")
    monkeypatch.setenv("ADP_ACTOR", "svc-erasure")
    assert audit.default_actor() == "svc-erasure"


def test_log_lives_under_adp_data_dir(data_dir, anchor):
    audit.append("materialization", anchor=anchor, asset="raw/events")
    assert (data_dir / "audit" / audit.AUDIT_FILE).exists()
    assert audit.verify(anchor=anchor).ok
