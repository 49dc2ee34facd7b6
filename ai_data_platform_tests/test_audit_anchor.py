"""The audit trail anchored in Dagster's storage at every append, checked by `adp audit verify`:
records deleted from the end, forged, rewritten, a log and head rolled back, an erasure record
removed, Dagster's storage out of reach, and honest writers (the CLI, runs, the sensor) at once."""

import json
import os
import shutil
import multiprocessing
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from ai_data_platform import runner
from ai_data_platform.cli import main
from ai_data_platform.governance import audit, retention
from ai_data_platform.governance.audit_anchor import AUDIT_LOG_KEY, DagsterAnchor, data_dir_anchor

from . import lifecycle_world as world
from .audit_tampering import RECORDS, TAMPERS, delete_newest, roll_back_elsewhere
from .services import POSTGRES, require_service
from .waiting import bound

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def anchored_world(tmp_path_factory):
    """A data directory whose log holds RECORDS records, each anchored by ``audit.append`` in the
    data directory's own Dagster storage (SQLite), and a pristine copy of its audit directory."""
    root = tmp_path_factory.mktemp("anchored") / "adp"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ADP_DATA_DIR", str(root))
        patch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
        with data_dir_anchor() as anchor:  # one instance for all (each `adp` command opens its own)
            for i in range(RECORDS):
                action = "erasure" if i == RECORDS - 1 else "retention"
                audit.append(action, anchor=anchor, row_counts={"rows": i}, actor="ci")
    pristine = root.parent / "pristine_audit"
    shutil.copytree(root / "audit", pristine)
    return root, pristine


@pytest.fixture()
def anchored(anchored_world, monkeypatch):
    """The anchored world with its audit directory as it was written (restored for every test)."""
    root, pristine = anchored_world
    monkeypatch.setenv("ADP_DATA_DIR", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))
    shutil.rmtree(root / "audit", ignore_errors=True)
    shutil.copytree(pristine, root / "audit")
    return root / "audit"


@pytest.fixture()
def fresh(data_dir, monkeypatch):
    """An empty data directory of its own (for tests that append, moving the anchor)."""
    monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster_home"))
    return data_dir / "audit"


def _verify(capsys) -> tuple[int, str, str]:
    code = main(["audit", "verify"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_append_is_anchored_and_verify_matches_the_newest_head(anchored, capsys):
    with data_dir_anchor() as anchor:
        assert anchor.newest(audit.trail_name()) == audit.Head.of(list(audit.records())[-1])
    code, out, err = _verify(capsys)
    assert (code, err) == (0, "")
    assert out == (f"{audit.audit_path()}: {RECORDS} record(s), hash chain intact, every MAC valid; the newest record "
                   f"matches the head recorded in Dagster (seq {RECORDS - 1})\n")


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_adp_audit_verify_catches_every_tampering_in_one_line(anchored, capsys, name):
    tamper, message = TAMPERS[name]
    tamper(anchored)
    code, out, err = _verify(capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("audit trail BROKEN: ") and message in err, err


def test_a_log_and_head_rolled_back_to_an_older_copy_are_caught_against_dagster(fresh, capsys):
    saved = fresh.parent / "saved_audit"
    with data_dir_anchor() as anchor:
        for i in range(3):
            audit.append("retention", anchor=anchor, row_counts={"rows": i})
        shutil.copytree(fresh, saved)
        audit.append("erasure", anchor=anchor, status="erased")
        audit.append("erasure", anchor=anchor, status="erased")
    shutil.rmtree(fresh)
    shutil.copytree(saved, fresh)
    assert audit.verify().ok  # the files alone are consistent
    code, _, err = _verify(capsys)
    assert code == 1
    assert "Dagster recorded head seq 4 but the log has no such record: the newest 2 record(s) are missing (the log ends at seq 2)" in err


def test_a_record_beyond_the_head_recorded_in_dagster_is_not_anchored(anchored, capsys):
    class Elsewhere:
        where = "elsewhere"

        def newest(self, log):
            return audit.Head.of(list(audit.records())[-1])

        def record(self, log, head):
            pass

    audit.append("erasure", anchor=Elsewhere())  # a key holder writing past the platform's anchor
    code, _, err = _verify(capsys)
    assert code == 1 and f"record(s) seq {RECORDS}..{RECORDS} are not anchored in Dagster" in err


def test_an_adp_erase_record_deleted_with_audit_head_rewritten_is_caught_and_erasure_is_refused(
    lifecycle_paths, monkeypatch, capsys
):
    monkeypatch.setenv("DAGSTER_HOME", str(lifecycle_paths.dagster_home))
    assert main(["erase", "--customer-id", world.SUBJECT, "--reason", "ticket 11"]) == 0
    capsys.readouterr()
    code, out, _ = _verify(capsys)
    assert code == 0 and "matches the head recorded in Dagster (seq 0)" in out
    (record,) = audit.records()
    assert record["action"] == "erasure" and record["status"] == "erased"

    delete_newest(lifecycle_paths.root / "audit")  # the erasure record goes; audit.head follows the log
    code, _, err = _verify(capsys)
    assert code == 1 and "Dagster recorded head seq 0 but the log has no such record: the newest 1 record(s) are missing" in err

    other = "C0000002"
    held = _rows(lifecycle_paths, other)
    assert held > 0
    assert main(["erase", "--customer-id", other, "--reason", "ticket 12"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("adp erase: audit trail: ") and "records were removed" in err and "nothing appended" in err
    assert _rows(lifecycle_paths, other) == held  # refused before anything changed
    assert list(audit.records()) == []


def _erase_nobody(number: int) -> int:
    """`adp erase` of an id no one has: nothing erased, one `nothing_found` erasure record appended."""
    return main(["erase", "--customer-id", f"NOBODY{number}", "--reason", f"T-{number}"])


@pytest.mark.parametrize("place", ["linked_directory", "replaced", "linked_file"])
def test_the_newest_records_rolled_back_behind_a_new_path_are_caught_and_appends_refused(fresh, capsys, place):
    assert [_erase_nobody(i) for i in range(1, 5)] == [3, 3, 3, 3]
    capsys.readouterr()
    assert _verify(capsys)[0] == 0
    roll_back_elsewhere(fresh, 2, place)  # mv audit audit.orig; the first 2 records where the log was; audit.head to match
    missing = "Dagster recorded head seq 3 but the log has no such record: the newest 2 record(s) are missing"
    code, _, err = _verify(capsys)
    assert code == 1 and missing in err
    assert _erase_nobody(9) == 4
    err = capsys.readouterr().err
    assert err.startswith("adp erase: audit trail: ") and "records were removed or the log was replaced" in err
    assert [r["action"] for r in audit.records()] == ["erasure", "erasure"]  # no gap record stands in for them
    code, _, err = _verify(capsys)
    assert code == 1 and missing in err


def test_a_data_directory_moved_or_copied_with_its_storage_verifies_and_takes_appends(fresh, monkeypatch, capsys):
    assert [_erase_nobody(i) for i in (1, 2)] == [3, 3]
    root = fresh.parent
    copy, moved = root.with_name("copy"), root.with_name("moved")
    shutil.copytree(root, copy, symlinks=True)  # cp -a: the copy carries its own dagster_home (SQLite)
    root.rename(moved)
    for place in (copy, moved):
        monkeypatch.setenv("ADP_DATA_DIR", str(place))
        monkeypatch.setenv("DAGSTER_HOME", str(place / "dagster_home"))
        capsys.readouterr()
        code, out, err = _verify(capsys)
        assert (code, err) == (0, "") and "matches the head recorded in Dagster (seq 1)" in out
        assert _erase_nobody(3) == 3
        code, out, _ = _verify(capsys)
        assert code == 0 and "matches the head recorded in Dagster (seq 2)" in out


@pytest.fixture()
def shared_postgres(monkeypatch):
    """A Dagster storage of its own in the local PostgreSQL, for data directories to share."""
    require_service(*POSTGRES)
    import psycopg

    database = f"adp_audit_{uuid.uuid4().hex[:12]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{database}"')
    monkeypatch.setenv("DAGSTER_PG_URL", f"postgresql://postgres@127.0.0.1:5432/{database}")
    try:
        yield database
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_data_directories_sharing_one_postgresql_storage_are_one_trail_per_name(fresh, shared_postgres, monkeypatch, capsys):
    def use(root):
        monkeypatch.setenv("ADP_DATA_DIR", str(root))
        monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster_home"))

    original = fresh.parent
    assert [_erase_nobody(i) for i in (1, 2)] == [3, 3]
    assert "postgres" in (original / "dagster_home" / "dagster.yaml").read_text()
    import psycopg

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{shared_postgres}") as con:
        heads = con.execute("SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_OBSERVATION'").fetchone()
    assert heads == (2,)  # the heads live in PostgreSQL
    copy = original.with_name("copy")
    shutil.copytree(original, copy, symlinks=True)  # a second writer of the same trail in the same storage
    use(copy)
    assert _erase_nobody(3) == 3  # the copy moves the trail on
    use(original)
    capsys.readouterr()
    code, _, err = _verify(capsys)
    assert code == 1 and "the newest 1 record(s) are missing (the log ends at seq 1): they were removed, or another" in err
    assert _erase_nobody(4) == 4  # the one left behind takes no more records
    assert "records were removed or the log was replaced" in capsys.readouterr().err

    other = original.with_name("other")  # another deployment on the same storage
    other.mkdir()
    use(other)
    assert _erase_nobody(5) == 4  # under the same name its new log cannot start a second trail
    capsys.readouterr()
    monkeypatch.setenv("ADP_AUDIT_TRAIL", "staging")
    assert _erase_nobody(5) == 3
    capsys.readouterr()
    code, out, _ = _verify(capsys)
    assert code == 0 and "matches the head recorded in Dagster (seq 0)" in out
    monkeypatch.delenv("ADP_AUDIT_TRAIL")
    use(copy)
    code, out, _ = _verify(capsys)
    assert code == 0 and "matches the head recorded in Dagster (seq 2)" in out


def test_heads_recorded_under_a_log_path_belong_to_no_trail(fresh):
    """Observations written before trails were named (metadata ``log``: a path) are no trail's head:
    a log of that time names no trail_id, does not verify, and moved aside, a new trail starts."""
    instance = runner.prepare_instance()
    try:
        old_head = {"log": str(audit.audit_path()), "head_seq": 4, "head_hash": "0" * 64, "head_mac": "0" * 64}
        instance.report_runless_asset_event(dg.AssetObservation(asset_key=AUDIT_LOG_KEY, metadata=old_head))
        anchor = DagsterAnchor(instance)
        assert anchor.newest(audit.trail_name()) is None
        first = audit.append("erasure", anchor=anchor, status="erased")
        assert anchor.newest(audit.trail_name()) == audit.Head.of(first)
        assert audit.verify(anchor=anchor).anchored_seq == 0
    finally:
        instance.dispose()


def test_a_bad_trail_name_stops_adp_in_one_line(fresh, monkeypatch, capsys):
    monkeypatch.setenv("ADP_AUDIT_TRAIL", "eu prod; rm -rf /")
    assert main(["audit", "verify"]) == 2
    assert capsys.readouterr().err == ("adp audit verify: ADP_AUDIT_TRAIL must be 1 to 64 letters, digits, '.', '_' or "
                                       "'-' starting with a letter or digit, got 'eu prod; rm -rf /'\n")


def _rows(paths, customer_id) -> int:
    import duckdb

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM staging.customers WHERE customer_id = ?", [customer_id]).fetchone()[0]
    finally:
        con.close()


def test_dagster_storage_out_of_reach_keeps_the_record_reports_it_then_records_the_gap(fresh, monkeypatch, capsys):
    audit.append("retention", row_counts={"rows": 1})
    def cannot_open():
        raise ConnectionError("could not connect to server: Connection refused")

    with monkeypatch.context() as broken:
        broken.setattr(runner, "prepare_instance", cannot_open)  # the storage's server is down
        not_anchored = r"seq 1..1 written but not anchored in Dagster \(cannot open the Dagster instance: "
        with pytest.raises(audit.AuditAnchorError, match=not_anchored):
            audit.append("erasure", status="erased")
        code, _, err = _verify(capsys)
        assert code == 1 and err.startswith("audit trail NOT VERIFIED: ") and "cannot read the head recorded in Dagster" in err
        with pytest.raises(audit.AuditError, match="cannot read the head recorded in Dagster"):
            retention.run(retention.load_policy(), date(2026, 11, 20))
    assert [r["action"] for r in audit.records()] == ["retention", "erasure"]  # kept; retention refused before acting
    code, _, err = _verify(capsys)
    assert code == 1 and "record(s) seq 1..1 are not anchored in Dagster" in err

    def unreachable(self, event):
        raise ConnectionError("server closed the connection unexpectedly")

    with monkeypatch.context() as broken:  # reachable when read, gone when the head is written
        broken.setattr(dg.DagsterInstance, "report_runless_asset_event", unreachable)
        with pytest.raises(audit.AuditAnchorError, match=r"seq 2..3 written but not anchored in Dagster \(server closed"):
            audit.append("erasure", status="erased")
    assert [r["action"] for r in audit.records()][2:] == [audit.GAP_ACTION, "erasure"]

    audit.append("retention", row_counts={"rows": 2})
    code, out, err = _verify(capsys)
    assert (code, err) == (0, "")
    notes = [line.split(" were not anchored when written")[0] for line in out.splitlines() if line.startswith("note: ")]
    assert notes == ["note: record(s) seq 1..1", "note: record(s) seq 1..3"]  # the second failure left 2..3 unanchored too
    assert "matches the head recorded in Dagster (seq 5)" in out


def test_adp_materialize_reports_a_trail_that_refuses_the_sensor_records_in_one_line(anchored, capsys):
    delete_newest(anchored)
    instance = runner.prepare_instance()
    try:
        assert runner.run_audit_sensor(instance) == (0, 0)
    finally:
        instance.dispose()
    err = capsys.readouterr().err
    assert err.startswith("audit trail: ") and err.count("\n") == 1 and "records were removed" in err


def test_the_audit_key_is_required_in_prod(fresh, monkeypatch, capsys):
    monkeypatch.setenv("ADP_ENV", "prod")
    monkeypatch.setenv("ADP_PII_HMAC_KEY", "Zq8v3Lr9Xk2Pw7Nt5Hb1Md4Fg6Jc0Ys8-a-usable-pii-key")
    monkeypatch.delenv("ADP_AUDIT_KEY", raising=False)
    assert main(["audit", "verify"]) == 2
    assert capsys.readouterr().err == (
        "adp audit verify: ADP_AUDIT_KEY must be set when ADP_ENV=prod: a secret of at least 32 bytes, kept out of "
        "$ADP_DATA_DIR\n"
    )


def _cli_writer(name: str, appends: int) -> None:
    """What `adp erase` does to the trail, ``appends`` times: one append anchored in the data dir's instance."""
    for i in range(appends):
        audit.append("erasure", status="erased", details={"writer": name, "i": i})


def _runs_and_sensor(runs: int) -> None:
    """A job run, then an audit sensor tick, ``runs`` times, on the data dir's instance."""
    from ai_data_platform.governance.audit_sensor import evaluate_audit_once

    @dg.asset
    def orders():
        return 1

    code = dg.Definitions(assets=[orders])
    instance = runner.prepare_instance()
    cursor = None
    for _ in range(runs):
        dg.materialize([orders], instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
        cursor = evaluate_audit_once(instance, code, cursor).cursor


def test_honest_concurrent_writers_never_raise_a_false_alarm(fresh, capsys):
    """Two `adp`-like processes appending, one process running jobs and the audit sensor, all on
    one Dagster instance, while this process verifies over and over."""
    runner.prepare_instance().dispose()  # created once, before the writers race for it
    fork = multiprocessing.get_context("fork")
    writers = [fork.Process(target=_cli_writer, args=(name, 3)) for name in ("cli-a", "cli-b")]
    writers.append(fork.Process(target=_runs_and_sensor, args=(2,)))
    for writer in writers:
        writer.start()
    outcomes = []
    with data_dir_anchor() as anchor:
        while any(w.is_alive() for w in writers):
            outcomes.append(audit.verify(anchor=anchor))
            time.sleep(0.5)
        for writer in writers:
            writer.join(bound(600))
        assert [w.exitcode for w in writers] == [0, 0, 0]
        outcomes.append(audit.verify(anchor=anchor))
    assert len(outcomes) >= 2 and [o.problem for o in outcomes if not o.ok] == []
    records = list(audit.records())
    assert sorted(r["action"] for r in records) == ["erasure"] * 6 + ["materialization"] * 2  # no gap: every append anchored
    instance = runner.prepare_instance()
    try:
        assert len(instance.fetch_observations(AUDIT_LOG_KEY, limit=100).records) >= 7  # one head per append
        assert DagsterAnchor(instance).newest(audit.trail_name()) == audit.Head.of(records[-1])
    finally:
        instance.dispose()
    code, out, err = _verify(capsys)
    assert (code, err) == (0, "") and "8 record(s), hash chain intact, every MAC valid" in out

    package_root = str(Path(__file__).parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    lines = audit.audit_path().read_text().splitlines()
    forged = json.loads(lines[-1])
    forged["status"] = "failed"
    audit.audit_path().write_text("\n".join([*lines[:-1], json.dumps(forged)]) + "\n")
    broken = subprocess.run([str(BIN / "adp"), "audit", "verify"], env=env, capture_output=True, text=True,
                            timeout=bound(900))
    assert broken.returncode == 1 and broken.stdout == "" and "Traceback" not in broken.stderr
    assert broken.stderr.count("\n") == 1 and "hash does not match the record's content (record 7 was edited)" in broken.stderr
