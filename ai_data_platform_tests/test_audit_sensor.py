"""The audit and lineage sensor: one audit record per materialization, check result and failed
run/step, exactly once, with the run's actor, row counts, code and input data versions."""

import json
from collections import Counter

import dagster as dg
import pytest

from ai_data_platform import warehouse
from ai_data_platform.cli import main
from ai_data_platform.definitions import defs
from ai_data_platform.governance import audit
from ai_data_platform.governance import openlineage as ol
from ai_data_platform.governance.audit_events import actor_of
from ai_data_platform.governance.audit_sensor import audit_lineage_sensor, evaluate_audit_once

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def own_trail(tmp_path, monkeypatch) -> None:
    """A fresh data dir whose audit trail is anchored in the tiny world's instance, which every test
    shares: under a trail name of its own (ADP_AUDIT_TRAIL), as data directories sharing one
    Dagster storage must be."""
    monkeypatch.setenv("ADP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ADP_AUDIT_TRAIL", tmp_path.name)


@pytest.fixture()
def recorded(tiny_world, tmp_path, monkeypatch):
    """The tiny world's event log recorded by one tick into a fresh data dir."""
    paths, instance, days = tiny_world
    own_trail(tmp_path, monkeypatch)
    result = evaluate_audit_once(instance, defs, None)
    return instance, days, result, list(audit.records())


def _recordable_events(instance) -> int:
    """Materializations and check evaluations of the tiny world's (one, successful) run."""
    run_id = instance.get_runs()[0].run_id
    types = {dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION}
    return len(instance.get_records_for_run(run_id, of_type=types).records)


def test_every_materialization_and_check_result_becomes_one_record(recorded, tiny_world):
    instance, days, result, records = recorded
    run = instance.get_runs()[0]
    materializations = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    checks = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    actions = Counter(r["action"] for r in records)
    assert actions == {"materialization": len(materializations), "check": len(checks)}
    assert result.records == len(records) and not result.more and audit.verify().ok
    keys = {(r["asset"], r["partition"]) for r in records if r["action"] == "materialization"}
    assert keys == {(m.event_log_entry.dagster_event.asset_key.to_user_string(), m.event_log_entry.dagster_event.partition) for m in materializations}
    assert all(r["run_id"] == run.run_id and r["actor"] == "tiny-world-fixture" for r in records)


def test_a_materialization_record_carries_rows_code_and_input_data_versions(recorded, tiny_world):
    paths, _, _ = tiny_world
    instance, days, _, records = recorded
    day = days[1].isoformat()
    (record,) = [r for r in records if r["action"] == "materialization" and r["asset"] == "staging/payments" and r["partition"] == day]
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        stored = con.execute("SELECT count(*) FROM staging.payments WHERE _partition_date = ?", [days[1]]).fetchone()[0]
    finally:
        con.close()
    assert record["row_counts"]["rows"] == stored > 0
    assert record["code_version"] == "1" and record["status"] == "success"
    assert set(record["input_data_versions"]) == {"raw/payments", "staging/customers"}
    staged = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(["staging", "payments"]), asset_partitions=[day]), limit=1).records[0]
    tags = staged.asset_materialization.tags  # what Dagster recorded for this materialization
    assert record["input_data_versions"] == {
        "raw/payments": tags["dagster/input_data_version/raw/payments"],
        "staging/customers": tags["dagster/input_data_version/staging/customers"],
    }
    assert record["details"]["data_version"] == tags["dagster/data_version"]
    assert record["details"]["job"] == "nightly" and record["details"]["step"] == "stage_payments"
    (check,) = [r for r in records if r["action"] == "check" and r["asset"] == "features/customer_daily" and r["details"]["check"] == "pii_gate"]
    assert check["status"] == "passed" and check["details"]["blocking"] is True and "no PII found" in check["details"]["message"]


def test_a_retried_tick_records_nothing_twice(recorded, tiny_world):
    instance, _, first, records = recorded
    again = evaluate_audit_once(instance, defs, None)  # the cursor of the first tick was lost
    assert again.records == 0 and again.duplicates_skipped == len(records)
    later = evaluate_audit_once(instance, defs, first.cursor)
    assert later.records == 0 and len(list(audit.records())) == len(records)


def test_a_tick_that_crashed_before_its_audit_append_is_completed_exactly_once(tiny_world, tmp_path, monkeypatch):
    paths, instance, days = tiny_world
    own_trail(tmp_path, monkeypatch)
    small = evaluate_audit_once(instance, defs, None, max_events=20)  # first page only
    assert small.more and 20 <= small.records < _recordable_events(instance)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr(audit, "append_many", crash)
        with pytest.raises(OSError, match="disk full"):
            evaluate_audit_once(instance, defs, small.cursor, max_events=20)
    while evaluate_audit_once(instance, defs, None, max_events=20).more:
        pass
    records = list(audit.records())
    sources = [(r["details"]["event_storage_id"], r["details"]["event_part"]) for r in records]
    assert len(sources) == len(set(sources)) == _recordable_events(instance) and audit.verify().ok


def test_a_failed_step_a_failed_check_and_the_failed_run_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("ADP_DATA_DIR", str(tmp_path))
    partitions = dg.DailyPartitionsDefinition(start_date="2026-01-01")

    @dg.asset(partitions_def=partitions, metadata={"dagster/row_count": 3})
    def orders():
        return 1

    @dg.asset_check(asset=orders, blocking=True)
    def orders_not_empty():
        return dg.AssetCheckResult(passed=False, metadata={"message": "0 orders"})

    @dg.asset(partitions_def=partitions)
    def exploding():
        raise ValueError("the source API returned 503")

    @dg.asset(partitions_def=partitions, deps=[orders])
    def revenue():
        return 1

    code = dg.Definitions(assets=[orders, exploding, revenue], asset_checks=[orders_not_empty])
    with dg.instance_for_test() as instance:
        result = dg.materialize([orders, orders_not_empty, exploding, revenue], partition_key="2026-01-02",
                                instance=instance, raise_on_error=False, tags={"dagster/schedule_name": "hourly"}, run_config=QUIET)
        assert not result.success
        tick = evaluate_audit_once(instance, code, None)
    records = list(audit.records())
    by_action = Counter(r["action"] for r in records)
    assert by_action == {"materialization": 1, "check": 1, "run_failed": 1, "step_failed": 2}
    assert all(r["actor"] == "schedule:hourly" for r in records)
    (run_failed,) = [r for r in records if r["action"] == "run_failed"]
    assert run_failed["run_id"] == result.run_id
    assert set(run_failed["details"]["failed_steps"]) == {"exploding", "orders_orders_not_empty"}
    assert set(run_failed["details"]["not_materialized"]) == {"exploding[2026-01-02]", "revenue[2026-01-02]"}
    (step,) = [r for r in records if r["action"] == "step_failed" and r["details"]["step"] == "exploding"]
    assert step["asset"] == "exploding" and step["partition"] == "2026-01-02" and "503" in step["details"]["error"]
    (check,) = [r for r in records if r["action"] == "check"]
    assert check["status"] == "failed" and check["details"]["message"] == "0 orders"
    events = ol.LineageSink.from_env().read()
    fails = [e for e in events if e["eventType"] == "FAIL"]
    assert {e["job"]["name"] for e in fails} == {"exploding", "orders:orders_not_empty"}
    exploded = next(e for e in fails if e["job"]["name"] == "exploding")
    assert "503" in exploded["run"]["facets"]["errorMessage"]["message"]
    assert tick.records == 5


def test_a_runless_report_is_attributed_to_adp_actor(tmp_path, monkeypatch):
    monkeypatch.setenv("ADP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ADP_ACTOR", "ticket-4711")
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="vendor_feed", metadata={"dagster/row_count": 7}))
        evaluate_audit_once(instance, None, None)
    (record,) = audit.records()
    assert (record["asset"], record["actor"], record["row_counts"], record.get("run_id")) == ("vendor_feed", "ticket-4711", {"rows": 7}, None)


def test_the_actor_is_the_launcher_or_the_trigger():
    def run(**tags):
        return dg.DagsterRun(job_name="nightly", run_id="r", tags=tags)

    assert actor_of(run(**{"adp/actor": "alice", "dagster/schedule_name": "nightly_schedule"})) == "alice"
    assert actor_of(run(**{"dagster/schedule_name": "nightly_schedule"})) == "schedule:nightly_schedule"
    assert actor_of(run(**{"dagster/sensor_name": "late_landing_sensor"})) == "sensor:late_landing_sensor"
    assert actor_of(run(**{"dagster/backfill": "abcd"})) == "backfill:abcd"


def test_the_sensor_is_on_by_default_and_persists_its_cursor(tiny_world, tmp_path, monkeypatch):
    _, instance, _ = tiny_world
    own_trail(tmp_path, monkeypatch)
    assert audit_lineage_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    tick = audit_lineage_sensor.evaluate_tick(context)
    assert json.loads(tick.cursor)["after"] > 0
    assert f"{_recordable_events(instance)} audit record(s)" in tick.skip_message


def test_adp_audit_verify_names_an_edited_line_and_show_filters(recorded, capsys, monkeypatch):
    from contextlib import nullcontext

    from ai_data_platform.governance import audit_anchor

    instance = recorded[0]  # the tick anchored every append in the tiny world's instance: verify against it
    monkeypatch.setattr(audit_anchor, "data_dir_anchor", lambda: nullcontext(audit_anchor.DagsterAnchor(instance)))
    assert main(["audit", "verify"]) == 0
    assert "hash chain intact" in capsys.readouterr().out
    assert main(["audit", "show", "--asset", "staging/payments", "--action", "materialization", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown) == 3 and {r["asset"] for r in shown} == {"staging/payments"}
    assert main(["audit", "show", "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3  # header + 2 records
    path = audit.audit_path()
    lines = path.read_text().splitlines()
    edited = json.loads(lines[7])
    edited["row_counts"] = {"rows": 999}
    lines[7] = json.dumps(edited, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert "line 8" in err and "edited" in err


def test_records_cut_off_and_re_headed_are_caught_against_dagster(tmp_path, monkeypatch, capsys):
    from ai_data_platform import runner
    from ai_data_platform.governance.audit_sensor import report_head

    monkeypatch.setenv("ADP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))  # restored after the test
    for i in range(5):
        audit.append("materialization", asset="raw/events", partition=f"2026-11-1{i}", row_counts={"rows": i})
    report_head(runner.prepare_instance())
    assert main(["audit", "verify"]) == 0
    assert "matches the head recorded in Dagster (seq 4)" in capsys.readouterr().out
    path = audit.audit_path()
    kept = path.read_text().splitlines()[:3]  # cut two records and forge a matching audit.head
    path.write_text("\n".join(kept) + "\n")
    last = json.loads(kept[-1])
    (path.parent / audit.HEAD_FILE).write_text(json.dumps({"seq": last["seq"], "hash": last["hash"]}) + "\n")
    assert audit.verify().ok  # the file alone looks fine
    assert main(["audit", "verify"]) == 1
    assert "Dagster recorded head seq 4 but the log has no such record" in capsys.readouterr().err


def test_every_append_of_a_tick_is_anchored_and_a_log_cut_short_takes_no_more(recorded):
    from ai_data_platform.governance.audit_anchor import DagsterAnchor

    from .audit_tampering import delete_newest

    instance, _, _, records = recorded
    assert DagsterAnchor(instance).newest(audit.trail_name()) == audit.Head.of(records[-1])
    assert audit.verify(anchor=DagsterAnchor(instance)).ok
    delete_newest(audit.audit_dir(), 2)
    kept = audit.audit_path().read_bytes()
    with pytest.raises(audit.AuditError, match="records were removed or the log was replaced; nothing appended"):
        evaluate_audit_once(instance, defs, None)
    assert audit.audit_path().read_bytes() == kept
    assert "the newest 2 record(s) are missing" in audit.verify(anchor=DagsterAnchor(instance)).problem


def test_a_check_over_a_range_run_names_the_range(recorded):
    _, days, _, records = recorded
    checks = [r for r in records if r["action"] == "check" and r["details"]["check"] == "pii_gate"]
    assert checks and {r["partition"] for r in checks} == {f"{days[0].isoformat()}...{days[-1].isoformat()}"}
