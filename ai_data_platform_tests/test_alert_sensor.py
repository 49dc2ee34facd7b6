"""Tests of the ``alert_sensor`` against a tiny, self-contained code location.

Real state is produced through Dagster: failed blocking checks and failed runs by materializing /
executing in a test instance, freshness state by running the freshness daemon's own per-asset
evaluation (``FreshnessDaemon._evaluate_asset`` with the real policy evaluators), with
``freeze_time`` to move "now" past the policy windows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange
from dagster._core.loader import LoadingContextForTest
from dagster._core.test_utils import freeze_time
from dagster._daemon.freshness import FreshnessDaemon

from ai_data_platform.observability.sensors import (
    CHECK_IDS_RETAINED,
    AlertCursor,
    alert_sensor,
)

PARTITIONS = dg.StaticPartitionsDefinition(["eu", "us"])


@dg.asset(
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=2), warn_window=timedelta(hours=1)
    )
)
def orders() -> int:
    return 1


@dg.asset(
    partitions_def=PARTITIONS,
    freshness_policy=dg.FreshnessPolicy.cron(
        deadline_cron="0 9 * * *", lower_bound_delta=timedelta(hours=1)
    ),
)
def customers() -> int:
    return 1


@dg.asset(deps=[customers], partitions_def=PARTITIONS)
def customer_features() -> int:
    return 2


@dg.asset_check(asset=customers, blocking=True, description="customers must not be empty")
def customers_not_empty() -> dg.AssetCheckResult:
    """Blocking, ERROR severity, always failing: each evaluation is one alert."""
    return dg.AssetCheckResult(
        passed=False,
        metadata={"message": "0 rows loaded", "row_count": 0},
        description="no customers",
    )


@dg.asset_check(asset=orders, blocking=False)
def orders_soft_check() -> dg.AssetCheckResult:
    """Failing but not blocking: no alert."""
    return dg.AssetCheckResult(passed=False)


@dg.asset_check(asset=orders, blocking=True)
def orders_warn_only() -> dg.AssetCheckResult:
    """Blocking but WARN severity (does not block): no alert."""
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=orders, blocking=True)
def orders_positive() -> dg.AssetCheckResult:
    """Blocking and passing: no alert."""
    return dg.AssetCheckResult(passed=True)


@dg.op
def explode() -> None:
    raise ValueError("warehouse unreachable")


@dg.job
def nightly_export() -> None:
    explode()


DEFS = dg.Definitions(
    assets=[orders, customers, customer_features],
    asset_checks=[customers_not_empty, orders_soft_check, orders_warn_only, orders_positive],
    jobs=[nightly_export],
    sensors=[alert_sensor],
)
CHECK_KEY = dg.AssetCheckKey(dg.AssetKey("customers"), "customers_not_empty")


# -- fixtures & helpers ----------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ADP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ADP_ALERT_WEBHOOK_URL", raising=False)
    return tmp_path / "data"


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as test_instance:
        yield test_instance


def tick(instance: dg.DagsterInstance, cursor: str | None = None):
    """Evaluate one sensor tick the way the daemon does; returns SensorExecutionData."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=DEFS)
    data = alert_sensor.evaluate_tick(context)
    assert not data.run_requests  # the sensor never launches runs
    assert data.skip_message and data.cursor
    return data


def alert_lines(data_dir: Path) -> list[dict]:
    path = data_dir / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def fail_customers(instance: dg.DagsterInstance, partition: str) -> None:
    """Materialize a customers partition; its blocking check fails, and so does the run."""
    result = dg.materialize(
        [customers, customer_features, customers_not_empty],
        instance=instance,
        partition_key=partition,
        raise_on_error=False,
    )
    assert not result.success


def fail_job(instance: dg.DagsterInstance) -> str:
    result = DEFS.get_job_def("nightly_export").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert not result.success
    return result.run_id


def materialize_orders(instance: dg.DagsterInstance) -> None:
    result = dg.materialize(
        [orders, orders_soft_check, orders_warn_only, orders_positive], instance=instance
    )
    assert result.success


def run_freshness_daemon(instance: dg.DagsterInstance) -> None:
    """One freshness-daemon iteration over DEFS: evaluate each asset's policy, record changes."""
    daemon = FreshnessDaemon()

    async def evaluate_all() -> None:
        for node in DEFS.resolve_asset_graph().asset_nodes:
            await daemon._evaluate_asset(context=LoadingContextForTest(instance), node=node)

    asyncio.run(evaluate_all())


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# -- tests -----------------------------------------------------------------------------------------


def test_sensor_is_registered_as_specified():
    assert alert_sensor.name == "alert_sensor"
    assert alert_sensor.minimum_interval_seconds == 60
    assert alert_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert DEFS.resolve_sensor_def("alert_sensor").name == "alert_sensor"


def test_failed_blocking_check_and_failed_runs_alert_once(instance, data_dir):
    fail_customers(instance, "eu")
    fail_run_id = fail_job(instance)
    materialize_orders(instance)  # non-blocking / WARN / passing checks: no alerts

    first = tick(instance)
    lines = alert_lines(data_dir)
    kinds = sorted(line["kind"] for line in lines)
    assert kinds == ["check_failed", "run_failed", "run_failed"], first.skip_message
    assert "3 alert(s)" in first.skip_message

    (check,) = [line for line in lines if line["kind"] == "check_failed"]
    assert check["asset_key"] == "customers"
    assert check["partition"] == "eu"
    assert check["severity"] == "error"
    assert check["details"]["check_name"] == "customers_not_empty"
    assert "customers_not_empty" in check["message"] and "0 rows loaded" in check["message"]
    assert "eu" in check["title"]
    assert check["run_id"]

    job_alert = next(line for line in lines if line.get("run_id") == fail_run_id)
    assert job_alert["kind"] == "run_failed"
    assert job_alert["details"]["job_name"] == "nightly_export"
    assert job_alert["details"]["failed_steps"] == ["explode"]
    assert "warehouse unreachable" in job_alert["message"]
    check_run = next(
        line for line in lines if line["kind"] == "run_failed" and line["run_id"] == check["run_id"]
    )
    assert check_run["partition"] == "eu"
    assert check_run["details"]["tags"]["dagster/partition"] == "eu"

    # Same state, next tick: nothing new.
    second = tick(instance, first.cursor)
    assert len(alert_lines(data_dir)) == 3
    assert second.skip_message.startswith("0 alert(s)")

    # One new failed run: exactly one more alert.
    new_run_id = fail_job(instance)
    third = tick(instance, second.cursor)
    lines = alert_lines(data_dir)
    assert len(lines) == 4
    assert lines[-1]["kind"] == "run_failed" and lines[-1]["run_id"] == new_run_id

    # One new failed blocking check evaluation: exactly one more check alert (plus its run).
    fail_customers(instance, "us")
    fourth = tick(instance, third.cursor)
    new = alert_lines(data_dir)[4:]
    assert sorted(line["kind"] for line in new) == ["check_failed", "run_failed"]
    assert all(line["partition"] == "us" for line in new)
    assert tick(instance, fourth.cursor).skip_message.startswith("0 alert(s)")

    # A lost cursor does not replay: ids already in alerts.jsonl are suppressed.
    assert tick(instance, None).skip_message.startswith("0 alert(s)")
    assert len(alert_lines(data_dir)) == 6
    ids = [line["id"] for line in alert_lines(data_dir)]
    assert len(set(ids)) == len(ids)


def test_freshness_alerts_on_state_changes_only(instance, data_dir):
    materialize_orders(instance)
    now = time.time()
    run_freshness_daemon(instance)  # orders: UNKNOWN -> PASS; customers: never materialized
    first = tick(instance)
    assert alert_lines(data_dir) == []  # UNKNOWN -> PASS is not alert-worthy
    assert AlertCursor.from_json(first.cursor).freshness == {
        "orders": "PASS",
        "customers": "UNKNOWN",
    }

    with freeze_time(now + timedelta(minutes=90).total_seconds()):
        run_freshness_daemon(instance)  # past warn_window
    second = tick(instance, first.cursor)
    (warn,) = alert_lines(data_dir)
    assert (warn["kind"], warn["severity"], warn["asset_key"]) == ("freshness", "warning", "orders")
    assert warn["details"]["previous_state"] == "PASS" and warn["details"]["state"] == "WARN"

    with freeze_time(now + timedelta(hours=3).total_seconds()):
        run_freshness_daemon(instance)  # past fail_window
    third = tick(instance, second.cursor)
    fail = alert_lines(data_dir)[-1]
    assert len(alert_lines(data_dir)) == 2
    assert (fail["kind"], fail["severity"], fail["asset_key"]) == ("freshness", "error", "orders")
    assert fail["title"] == "Freshness FAIL: orders"
    assert "fail after 2:00:00" in fail["message"]

    # Still failing on the next daemon pass and tick: no repeat alert.
    with freeze_time(now + timedelta(hours=3, minutes=1).total_seconds()):
        run_freshness_daemon(instance)
    fourth = tick(instance, third.cursor)
    assert len(alert_lines(data_dir)) == 2

    # Fresh again: one info "recovered" alert.
    materialize_orders(instance)
    run_freshness_daemon(instance)
    tick(instance, fourth.cursor)
    recovered = alert_lines(data_dir)[-1]
    assert len(alert_lines(data_dir)) == 3
    assert (recovered["severity"], recovered["title"]) == ("info", "Freshness recovered: orders")


def test_freshness_first_tick_already_failing(instance, data_dir):
    """A daemon-recorded FAIL (reported as the daemon does) alerts on the very first tick."""
    instance.report_runless_asset_event(
        FreshnessStateChange(
            key=dg.AssetKey("customers"),
            previous_state=FreshnessState.UNKNOWN,
            new_state=FreshnessState.FAIL,
            state_change_timestamp=time.time(),
        )
    )
    first = tick(instance)
    (alert,) = alert_lines(data_dir)
    assert alert["kind"] == "freshness"
    assert (alert["asset_key"], alert["severity"]) == ("customers", "error")
    assert "cron" in alert["message"]
    tick(instance, first.cursor)
    assert len(alert_lines(data_dir)) == 1


def test_many_runless_check_failures_page_and_stay_deduplicated(instance, data_dir):
    """More failures than one page (and than the cursor keeps) still alert exactly once each."""

    def report_failures(count: int, offset: int) -> None:
        for n in range(offset, offset + count):
            instance.report_runless_asset_event(
                dg.AssetCheckEvaluation(
                    asset_key=CHECK_KEY.asset_key,
                    check_name=CHECK_KEY.name,
                    passed=False,
                    blocking=True,
                    metadata={"message": f"external failure {n}"},
                )
            )

    report_failures(CHECK_IDS_RETAINED + 5, 0)
    first = tick(instance)
    lines = alert_lines(data_dir)
    assert len(lines) == CHECK_IDS_RETAINED + 5
    assert {line["kind"] for line in lines} == {"check_failed"}
    assert {line["message"].rsplit(" ", 1)[-1] for line in lines} == {
        str(n) for n in range(CHECK_IDS_RETAINED + 5)
    }
    cursor = AlertCursor.from_json(first.cursor)
    assert len(cursor.checks[CHECK_KEY.to_user_string()]) == CHECK_IDS_RETAINED

    second = tick(instance, first.cursor)
    assert len(alert_lines(data_dir)) == CHECK_IDS_RETAINED + 5
    report_failures(1, 100)
    tick(instance, second.cursor)
    lines = alert_lines(data_dir)
    assert len(lines) == CHECK_IDS_RETAINED + 6
    assert lines[-1]["message"].endswith("external failure 100")


def test_unreachable_webhook_does_not_crash_the_tick(instance, data_dir, monkeypatch):
    monkeypatch.setenv("ADP_ALERT_WEBHOOK_URL", closed_port_url())
    run_id = fail_job(instance)
    result = tick(instance)
    assert "1 webhook delivery failure(s)" in result.skip_message
    (alert,) = alert_lines(data_dir)
    assert alert["run_id"] == run_id and alert["kind"] == "run_failed"


def test_a_failing_secret_webhook_shows_in_no_tick_log_or_file(instance, data_dir, monkeypatch, caplog, capsys):
    from ai_data_platform_tests.test_alerts import assert_no_secret, secret_url

    monkeypatch.setenv("ADP_ALERT_WEBHOOK_URL", secret_url(closed_port_url().rsplit("/", 1)[0]))
    fail_job(instance)
    with caplog.at_level(logging.DEBUG):
        result = tick(instance)
    assert "1 webhook delivery failure(s)" in result.skip_message
    captured = capsys.readouterr()
    logged = "".join(dg.serialize_value(r.event_log_entry) for r in instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.RUN_FAILURE), limit=100))
    assert_no_secret(result.skip_message, caplog.text, captured.out, captured.err, logged,
                     (data_dir / "alerts.jsonl").read_text())
    assert "Alert webhook delivery to http://127.0.0.1:" in captured.err  # the sensor's Dagster log


def test_webhook_receives_slack_payload(instance, data_dir, monkeypatch):
    from ai_data_platform_tests.test_alerts import webhook_server

    fail_job(instance)
    with webhook_server(fail_first=1) as (url, hook):
        monkeypatch.setenv("ADP_ALERT_WEBHOOK_URL", url)
        result = tick(instance)
    assert "webhook" not in result.skip_message  # delivered on the retry
    assert len(hook.received) == 2
    payload = json.loads(hook.received[-1]["body"])
    assert set(payload) == {"text", "blocks"} and "nightly_export" in payload["text"]


def test_an_error_in_one_part_does_not_stop_the_others(instance, data_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("storage hiccup")

    monkeypatch.setattr(type(instance), "get_freshness_state_records", broken)
    fail_job(instance)
    result = tick(instance)
    assert "1 error(s): freshness: storage hiccup" in result.skip_message
    assert [line["kind"] for line in alert_lines(data_dir)] == ["run_failed"]


def test_cursor_round_trip_and_garbage():
    cursor = AlertCursor(
        freshness={"a/b": "FAIL"}, checks={"a/b:c": [3, 2]}, runs_updated_after=12.5,
        alert_ids=["x"],
    )
    assert AlertCursor.from_json(cursor.to_json()) == cursor
    assert AlertCursor.from_json(None) == AlertCursor()
    assert AlertCursor.from_json("not json") == AlertCursor()
    assert AlertCursor.from_json(json.dumps({"version": 999})) == AlertCursor()
