"""The online store in Dagster: runless materializations from the consumer, freshness, alerts."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import dagster as dg
from dagster._core.loader import LoadingContextForTest
from dagster._core.test_utils import freeze_time
from dagster._daemon.freshness import FreshnessDaemon

from ai_data_platform import settings
from ai_data_platform.observability.sensors import alert_sensor
from ai_data_platform.resources import build_resources
from ai_data_platform.streaming.assets import KEY, customer_features
from ai_data_platform.streaming.consumer import Consumer
from ai_data_platform.streaming.online_store import SqliteOnlineStore
from ai_data_platform.streaming.producer import EventProducer, encode
from ai_data_platform.streaming.reporting import Reporter, report_materialization
from ai_data_platform.streaming.transport import FileSegmentTransport


def test_consumer_reports_runless_materializations_with_lag_and_throughput(data_dir):
    transport = FileSegmentTransport(data_dir / "stream")
    transport.append([encode(e) for e in EventProducer(10, seed=1).events(200)])
    reporter = Reporter(interval=3600)
    Consumer(transport, SqliteOnlineStore(data_dir / "online" / "f.sqlite"), reporter=reporter).run(until_idle=True)
    assert reporter.error is None and reporter.sent == 2  # throttled: the first one, and the final one on exit
    with dg.DagsterInstance.from_config(str(settings.ensure_dagster_home())) as instance:
        records = instance.fetch_materializations(KEY, limit=10).records
        assert len(records) == 2 and records[0].run_id == ""  # runless; newest first
        md = records[0].asset_materialization.metadata
        assert md["records_consumed"].value == 200 and md["events_per_second"].value > 0
        assert 0 <= md["lag_seconds"].value < 120 and md["position"].value == 199
    assert not reporter.maybe_report({"x": 1})  # within the interval: not sent again


def test_stale_online_store_raises_a_freshness_alert(tmp_path, data_dir):
    defs = dg.Definitions(assets=[customer_features], sensors=[alert_sensor], resources=build_resources())
    node = defs.resolve_asset_graph().get(KEY)

    def evaluate(instance):
        asyncio.run(FreshnessDaemon()._evaluate_asset(context=LoadingContextForTest(instance), node=node))

    def tick(instance, cursor):
        data = alert_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))
        return data.cursor

    start = time.time()
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home")) as instance:
        with freeze_time(start):
            report_materialization({"lag_seconds": 0.2, "events_per_second": 1000.0}, instance=instance)
            evaluate(instance)
            cursor = tick(instance, None)
        assert not (data_dir / "alerts.jsonl").exists()  # fresh: no alert
        with freeze_time(start + timedelta(minutes=20).total_seconds()):  # the consumer stopped reporting
            evaluate(instance)
            tick(instance, cursor)
    alerts = [json.loads(line) for line in (data_dir / "alerts.jsonl").read_text().splitlines()]
    assert [(a["kind"], a["asset_key"], a["severity"]) for a in alerts] == [("freshness", "online/customer_features", "error")]
