"""The audit log: append-only, hash-chained, serialized across processes, tamper-evident."""

import json
import multiprocessing

import pytest

from ai_data_platform.governance import audit


def _append_many(directory: str, worker: int, n: int) -> None:
    from pathlib import Path

    for i in range(n):
        audit.append("materialization", directory=Path(directory), asset=f"raw/w{worker}", partition=str(i), row_counts={"rows": i})


def _lines(directory):
    return (directory / audit.AUDIT_FILE).read_text().splitlines()


def _rewrite(directory, lines):
    (directory / audit.AUDIT_FILE).write_text("".join(line + "\n" for line in lines))


def test_records_chain_and_verify(tmp_path):
    first = audit.append("materialization", directory=tmp_path, asset="staging/payments", partition="2026-11-20", row_counts={"rows": 10}, actor="ci")
    second = audit.append("erasure", directory=tmp_path, details={"subject": audit.subject_ref("C1", key="k")}, actor="dpo")
    assert (first["seq"], second["seq"]) == (0, 1)
    assert first["prev_hash"] == audit.GENESIS_HASH and second["prev_hash"] == first["hash"]
    assert [r["action"] for r in audit.records(tmp_path)] == ["materialization", "erasure"]
    assert audit.head(tmp_path) == {"seq": 1, "hash": second["hash"]}
    result = audit.verify(tmp_path)
    assert result.ok and result.records == 2


def test_an_edited_record_is_detected_at_its_line(tmp_path):
    for i in range(5):
        audit.append("check", directory=tmp_path, asset="features/customer_daily", row_counts={"rows": i})
    lines = _lines(tmp_path)
    edited = json.loads(lines[2])
    edited["row_counts"]["rows"] = 999  # the content changed, the stored hash did not
    lines[2] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    _rewrite(tmp_path, lines)
    result = audit.verify(tmp_path)
    assert not result.ok and result.line == 3 and "edited" in result.problem


def test_a_rehashed_edit_breaks_the_next_link(tmp_path):
    for i in range(4):
        audit.append("check", directory=tmp_path, row_counts={"rows": i})
    lines = _lines(tmp_path)
    edited = json.loads(lines[1])
    edited["row_counts"]["rows"] = 7
    edited["hash"] = audit.record_hash(edited)  # a careful forger recomputes this record's hash
    lines[1] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    _rewrite(tmp_path, lines)
    result = audit.verify(tmp_path)
    assert not result.ok and result.line == 3 and "prev_hash" in result.problem


@pytest.mark.parametrize("tamper", ["delete_middle", "swap", "truncate_tail"])
def test_removed_reordered_or_truncated_records_are_detected(tmp_path, tamper):
    for i in range(5):
        audit.append("retention", directory=tmp_path, row_counts={"deleted": i})
    lines = _lines(tmp_path)
    if tamper == "delete_middle":
        del lines[2]
    elif tamper == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    else:
        lines = lines[:3]
    _rewrite(tmp_path, lines)
    result = audit.verify(tmp_path)
    assert not result.ok
    if tamper == "truncate_tail":
        assert "cut off the end" in result.problem


def test_concurrent_appends_from_processes_keep_one_chain(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    result = audit.verify(tmp_path)
    assert result.ok and result.records == 100
    assert sorted(r["seq"] for r in audit.records(tmp_path)) == list(range(100))


def test_unknown_fields_and_missing_action_are_refused(tmp_path):
    with pytest.raises(audit.AuditError, match="unknown audit record field"):
        audit.append("materialization", directory=tmp_path, asset_key="typo")
    with pytest.raises(audit.AuditError, match="needs an action"):
        audit.append("", directory=tmp_path)
    assert not (tmp_path / audit.AUDIT_FILE).exists()


def test_subject_ref_is_keyed_and_holds_no_id(monkeypatch):
    ref = audit.subject_ref("CUST-000123", key="k1")
    assert ref.startswith("subject:") and "CUST-000123" not in ref
    assert ref == audit.subject_ref("CUST-000123", key="k1") != audit.subject_ref("CUST-000123", key="k2")
    monkeypatch.setenv("ADP_ACTOR", "svc-erasure")
    assert audit.default_actor() == "svc-erasure"


def test_log_lives_under_adp_data_dir(data_dir):
    audit.append("materialization", asset="raw/events")
    assert (data_dir / "audit" / audit.AUDIT_FILE).exists()
    assert audit.verify().ok
