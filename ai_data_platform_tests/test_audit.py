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
    ATTACKER_KEY, LOSES_NOTHING, RECORDS, TAMPERS, MemoryAnchor,
    cover_tracks, dump, forge_new, lines_of, rechain, rewrite, truncate_mid_record, write_records,
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
                    found = audit.Head(entry["seq"], entry["hash"], entry["mac"])
        return found

    def record(self, log, head):
        with self.path.open("a") as fh:
            fh.write(json.dumps({"log": log, "seq": head.seq, "hash": head.hash, "mac": head.mac}) + "\n")


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
    assert anchor.newest(audit.log_id(tmp_path)) == audit.Head(1, second["hash"], second["mac"])
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
