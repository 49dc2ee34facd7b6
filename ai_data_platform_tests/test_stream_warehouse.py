"""Streamed events in the warehouse, the nightly bootstrap of the online store, and the skew check.

One small world (40 customers, 3 export days): events streamed on the last day (receipt stamps
on that day, malformed records among them) land through the warehouse sink, the nightly batch
loads them into ``raw/events`` and stages them with row conservation; the online store is
consumed from the stream, bootstrapped from the warehouse (twice: idempotent), and its
materialized values are compared with the compiled SQL by the skew check — which passes on the
clean store and names the feature, customer and both values after one value is corrupted.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import datetime, time, timedelta

import dagster as dg
import pytest

from ai_data_platform import settings, warehouse
from ai_data_platform.features.compile import transaction_sql
from ai_data_platform.governance.stores import PersonalData
from ai_data_platform.resources import build_resources
from ai_data_platform.sources import raw_load, staging
from ai_data_platform.sources.contracts import CHARGEBACKS, CUSTOMERS, EVENTS, PAYMENTS
from ai_data_platform.sources.landing import LandingZones
from ai_data_platform.sources.simulator import generate
from ai_data_platform.streaming.bootstrap import bootstrap
from ai_data_platform.streaming.checks import online_offline_skew
from ai_data_platform.streaming.consumer import Consumer
from ai_data_platform.streaming.online_store import SqliteOnlineStore
from ai_data_platform.streaming.producer import EventProducer, encode
from ai_data_platform.streaming.skew import skew_report
from ai_data_platform.streaming.transport import FileSegmentTransport, to_us
from ai_data_platform.streaming.warehouse_sink import WarehouseSink

from .conftest import END
from .test_stream_exactly_once import MALFORMED
from .waiting import bound

DAYS = [END - timedelta(days=2), END - timedelta(days=1), END]
NOON = datetime.combine(END, time(12))


class Clock:
    """Receipt stamps: a record every 0.25 s from ``start``; settable."""

    def __init__(self, start: datetime):
        self.us = to_us(start)

    def __call__(self) -> int:
        self.us += 250_000
        return self.us


def _dump(store: SqliteOnlineStore) -> dict:
    con = sqlite3.connect(store.path)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in ("rows", "customers", "feature_values", "coverage")}
    finally:
        con.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream_world")
    paths = settings.Paths(root)
    generate(LandingZones.from_settings(paths), customers=40, days=len(DAYS), end=END, seed=5)
    clock = Clock(NOON)
    transport = FileSegmentTransport(paths.stream, clock=clock)
    events = EventProducer(40, seed=5).events(300, now=NOON - timedelta(minutes=30))
    transport.append([encode(e) for e in events] + list(MALFORMED))
    sink = WarehouseSink(transport, paths.warehouse)
    flushed = sink.flush()
    assert flushed.records == len(events) + len(MALFORMED) and flushed.quarantined == len(MALFORMED)
    con = warehouse.connect(paths.warehouse)
    try:
        warehouse.ensure_schemas(con)
        personal = PersonalData.from_settings(paths)
        for t in (CUSTOMERS, EVENTS, PAYMENTS, CHARGEBACKS):
            raw_load.load_days(con, t, LandingZones.from_settings(paths), DAYS, personal)
            staging.stage_days(con, t, DAYS, personal)
    finally:
        con.close()
    store = SqliteOnlineStore(paths.online / "features.sqlite")
    Consumer(transport, store, materialize_budget=0).step()
    return {"paths": paths, "transport": transport, "events": events, "store": store, "clock": clock}


def test_streamed_records_land_in_raw_events_and_are_staged_with_conservation(world):
    paths, events = world["paths"], world["events"]
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        raw = con.execute("SELECT count(*) FROM raw.events WHERE _partition_date = ? AND _file LIKE 'stream:file/events/%'", [END]).fetchone()[0]
        assert raw == len(events) + len(MALFORMED)
        (conserved,) = [c for c in staging.conservation(con, EVENTS, END, END)]
        assert conserved.holds, conserved.describe("staging.events")
        staged = con.execute("SELECT count(*), min(_available_at = received_at) FROM staging.events WHERE _file LIKE 'stream:%'").fetchone()
        rules = Counter(r for (r,) in con.execute("SELECT rule FROM quarantine.events WHERE _file LIKE 'stream:%'").fetchall())
        assert staged[1] is True  # the point-in-time load time of a streamed event is its receipt
        assert staged[0] + rules["known_customer"] == len(events)
        assert {k: v for k, v in rules.items() if k != "known_customer"} == Counter(MALFORMED.values())
        stream_rules = Counter(r for (r,) in con.execute("SELECT rule FROM stream.quarantine_events").fetchall())
        assert stream_rules == Counter(MALFORMED.values())  # the stream and the batch judge alike
        # the nightly feature table covers streamed card transactions
        cards = {e["event_id"] for e in events if e["event_type"] == "card_transaction"}
        featured = {r[0] for r in con.execute(f"SELECT transaction_id FROM ({transaction_sql(END)})").fetchall()}
        staged_cards = {r[0] for r in con.execute("SELECT event_id FROM staging.events WHERE _file LIKE 'stream:%' AND event_type = 'card_transaction'").fetchall()}
        assert staged_cards and staged_cards <= featured and staged_cards <= cards
    finally:
        con.close()


def test_bootstrap_is_idempotent_keeps_newer_stream_rows_and_skew_check_catches_corruption(world):
    paths, store, transport = world["paths"], world["store"], world["transport"]
    world["clock"].us = to_us(NOON + timedelta(days=1))
    later = transport.append([encode(EventProducer(40, seed=9).events(1, now=NOON + timedelta(days=1))[0])])
    Consumer(transport, store, materialize_budget=0).step()  # received after the warehouse coverage
    now = datetime.combine(END + timedelta(days=1), time())
    con = warehouse.connect(paths.warehouse)
    try:
        first = bootstrap(con, store, now=now)
        assert first.customers > 0 and first.materialized >= first.customers
        snapshot = _dump(store)
        second = bootstrap(con, store, now=now)
        assert _dump(store) == snapshot and second.rows_kept == first.rows_kept  # idempotent
        keys = [r[1] for r in snapshot["rows"]]
        assert len(keys) == len(set(keys))  # a streamed event and its staged copy: one row
        assert json.loads(later[0].payload)["event_id"] in keys  # newer than the warehouse: kept
        assert dict(snapshot["coverage"])["payments"] == to_us(now)

        assert skew_report(con, store).not_yet_landed == len(store.customer_ids())  # newer than the warehouse
        con.close()
        WarehouseSink(transport, paths.warehouse).flush()  # the sink lands the newer record
        con = warehouse.connect(paths.warehouse)
        report = skew_report(con, store)
        assert report.passed, report.describe()
        assert report.compared_customers >= 10 and report.compared_values >= 8 * report.compared_customers
        busy = [v for _, (_, v) in store.values(store.customer_ids()).items() if v["txn_count_24h"] > 0]
        assert busy, "the comparison must include customers with activity in the windows"

        victim, (as_of, values) = next((c, v) for c, v in sorted(store.values(store.customer_ids()).items()) if v[1]["txn_count_24h"] > 0)
        corrupted = dict(values, txn_amount_24h=values["txn_amount_24h"] + 0.01)
        store.put_values([(victim, 0, as_of, corrupted)])
        bad = skew_report(con, store)
        assert not bad.passed and len(bad.mismatches) == 1
        assert f"txn_amount_24h of customer {victim}" in bad.mismatches[0]
        assert f"online={corrupted['txn_amount_24h']!r}" in bad.mismatches[0] and f"offline={values['txn_amount_24h']!r}" in bad.mismatches[0]
    finally:
        con.close()
    # the Dagster check reports the same through the asset check
    store.put_values([(victim, 0, as_of, values)])
    ok = online_offline_skew(warehouse=build_resources(paths)["warehouse"])
    assert ok.passed, ok.description


def test_a_bootstrap_run_long_after_the_last_load_keeps_every_row_its_values_need(world, tmp_path):
    """Values are materialized as of the warehouse's coverage, not as of the bootstrap's wall
    clock: a repair run 88 days after the last load must still read the rows the 90-day windows
    need, back from the coverage (a lookback from `now` lost the oldest days: the skew check
    caught it in the 95-day demo)."""
    paths = world["paths"]
    store = SqliteOnlineStore(tmp_path / "late.sqlite")
    con = warehouse.connect(paths.warehouse)
    try:
        late = bootstrap(con, store, now=datetime.combine(END + timedelta(days=89), time()))
        on_time = bootstrap(con, SqliteOnlineStore(tmp_path / "on_time.sqlite"), now=datetime.combine(END + timedelta(days=1), time()))
        assert late.rows_kept == on_time.rows_kept > 0
        report = skew_report(con, store)
        assert report.passed and report.compared_values > 0, report.describe()
    finally:
        con.close()


def test_bootstrap_asset_materializes_through_dagster(world, monkeypatch):
    from ai_data_platform.streaming.assets import customer_features

    monkeypatch.setenv("ADP_DATA_DIR", str(world["paths"].root))
    result = dg.materialize([customer_features, online_offline_skew], resources=build_resources(world["paths"]))
    assert result.success
    (mat,) = result.asset_materializations_for_node("online__customer_features")
    assert mat.metadata["dagster/row_count"].value == world["store"].stats()["materialized"]
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["compared_values"].value > 0


def test_a_locked_warehouse_never_stalls_the_online_path(tmp_path):
    """Another process holds DuckDB's write lock (as a Dagster step does): the consumer keeps
    applying events online, the sink defers, and lands everything once the lock is free."""
    import subprocess
    import sys

    warehouse_path = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); c.execute('CREATE TABLE t (x INT)'); "
         "print('locked', flush=True); sys.stdin.read()", str(warehouse_path)],  # holds the lock until killed
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,  # or until this process is gone
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        transport = FileSegmentTransport(tmp_path / "stream")
        transport.append([encode(e) for e in EventProducer(10, seed=4).events(500)])
        store = SqliteOnlineStore(tmp_path / "online.sqlite")
        consumer = Consumer(transport, store, warehouse=warehouse_path, batch=100, flush_seconds=0.05)
        stats = consumer.run(max_records=500, max_seconds=bound(600))
        assert store.committed() == transport.end_position() == 499  # online: everything applied
        assert consumer.sink.sink.busy_count > 0 and consumer.sink.sink.position is None  # sink deferred
        assert stats.records == 500
    finally:
        holder.kill()
        holder.wait()
    landed = WarehouseSink(transport, warehouse_path).flush()  # the lock is free: it catches up
    assert (landed.records, landed.position) == (500, 499)
