"""Exactly-once effect: a real ``adp stream consume`` SIGKILLed at random moments, repeatedly.

Events (and malformed records) are appended while a consumer subprocess runs; it is killed with
SIGKILL at random moments (start-up, mid-batch, mid-warehouse-flush), restarted, killed again,
and finally run until idle. Then every produced event must have been applied exactly once:

* online store: exactly the valid event ids, once each, per customer;
* warehouse: every record once in ``stream.records`` (by position), every valid event once in
  ``stream.events``, every malformed record once in ``stream.quarantine_events`` with its rule;
* feature values equal a single clean in-process pass over the same stream AND the offline
  recomputation with the compiled DuckDB SQL over the landed events.

The same scenario runs for the file transport + SQLite and for Redis (stream + store).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from ai_data_platform.features import compile as fc
from ai_data_platform.streaming import backends
from ai_data_platform.streaming.consumer import Consumer
from ai_data_platform.streaming.online_api import get_online_features
from ai_data_platform.streaming.online_features import ONLINE
from ai_data_platform.streaming.online_store import SqliteOnlineStore
from ai_data_platform.streaming.producer import EventProducer, encode
from ai_data_platform.streaming import redis_backend
from ai_data_platform.streaming.redis_backend import RedisStreamTransport
from ai_data_platform.streaming.transport import FileSegmentTransport

from .services import REDIS, require_service
from .waiting import bound, wait_for

BIN = Path(sys.executable).parent
KILLS = 5
MALFORMED = {
    b"{not json": "malformed_row",
    b'["an", "array"]': "malformed_row",
    b'{"event_id": "EBAD1", "event_type": "login", "event_time": "2026-11-20T00:00:00Z"}': "not_null",
    b'{"event_id": "EBAD2", "customer_id": "C0000001", "event_type": "login", "event_time": "yesterday"}': "invalid_timestamp",
    b'{"event_id": "EBAD3", "customer_id": "C0000001", "event_type": "teleport", "event_time": "2026-11-20T00:00:00Z"}': "accepted_values",
    b'{"event_id": "EBAD4", "customer_id": "C0000001", "event_type": "card_transaction", "event_time": "2026-11-20T00:00:00Z", "amount": -5}': "non_negative",
    b'{"event_id": "EBAD5", "customer_id": "C0000001", "event_type": "card_transaction", "event_time": "2026-11-20T00:00:00Z", "amount": "lots"}': "invalid_number",
    # hostile ones: each once crashed the consumer (and every restart) or passed as a valid event
    b'{"event_id": "EBAD6", "customer_id": "C0000001", "event_type": "login", "event_time": "0001-01-01T00:00:00+01:00"}': "invalid_timestamp",
    b'{"event_id": "EBAD7", "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}": "malformed_row",
    b'{"event_id": "EBAD8", "customer_id": "C0000001", "event_type": "card_transaction", "event_time": "2026-11-20T00:00:00Z", "amount": NaN}': "invalid_number",
    b'{"event_id": "EBAD9", "customer_id": "C0000001", "event_type": "card_transaction", "event_time": "2026-11-20T00:00:00Z", "amount": "1e999"}': "invalid_number",
    b'{"event_id": "EBAD10", "customer_id": {"id": "C0000001"}, "event_type": "login", "event_time": "2026-11-20T00:00:00Z"}': "invalid_id",
    b'{"event_id": "EBAD11", "customer_id": "C0000001", "customer_id": "C0000002", "event_type": "login", "event_time": "2026-11-20T00:00:00Z"}': "malformed_row",
    b'{"event_id": "EBAD12", "customer_id": "C\xff", "event_type": "login", "event_time": "2026-11-20T00:00:00Z"}': "malformed_row",  # not UTF-8
}


def _append(transport, producer: EventProducer, n: int, rng: random.Random, produced: list[dict]) -> int:
    events = producer.events(n)
    payloads = [encode(e) for e in events]
    # a duplicate delivery of an earlier event (same id): must still count once
    if produced:
        payloads.append(encode(rng.choice(produced)))
    produced.extend(events)
    transport.append(payloads)
    return len(payloads)


def _consume_cmd() -> list[str]:
    return [str(BIN / "adp"), "stream", "consume", "--until-idle", "--batch", "3", "--flush-seconds", "0.05",
            "--flush-records", "20", "--no-report"]


def run_kill_scenario(env: dict, transport, store, warehouse: Path, seed: int) -> dict:
    rng = random.Random(seed)
    producer = EventProducer(25, seed=seed)
    produced: list[dict] = []
    for payload in MALFORMED:
        transport.append([payload])
    appended = len(MALFORMED) + _append(transport, producer, 200, rng, produced)
    positions, mid_stream_kills = [], 0
    for _ in range(KILLS):
        appended += _append(transport, producer, rng.randint(150, 250), rng, produced)  # the stream goes on
        before = store.committed()
        proc = subprocess.Popen(_consume_cmd(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:  # until it is applying batches (and flushing micro-batches), or has caught up already
            wait_for(lambda: (store.committed(), proc.poll()), "the consumer to commit a batch or exit",
                     until=lambda seen: seen[0] != before or seen[1] is not None, max_interval=0.005)
            time.sleep(rng.uniform(0.0, 0.15))  # then at a random moment
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        position = store.committed()
        positions.append(position)
        if position is not None and position < transport.end_position():
            mid_stream_kills += 1
    final = subprocess.run(_consume_cmd(), env=env, capture_output=True, text=True, timeout=bound(900))
    assert final.returncode == 0, final.stderr[-3000:]
    committed = [p for p in positions if p is not None]
    assert positions[len(positions) - len(committed):] == committed == sorted(committed), positions  # never backwards
    assert mid_stream_kills >= 3, positions  # most kills hit a consumer with work left
    return {"produced": produced, "appended": appended, "stats": json.loads(final.stdout.strip().splitlines()[-1])}


def check_exactly_once(result: dict, transport, store, warehouse: Path, replay) -> None:
    """``replay``: a second reader of the same retained stream, for the clean single pass."""
    produced = result["produced"]
    valid_ids = {e["event_id"] for e in produced}
    per_customer = Counter(e["customer_id"] for e in {e["event_id"]: e for e in produced}.values())
    end = transport.end_position()
    total_records = result["appended"]

    # online store: each valid event once
    states = store.states(sorted(per_customer))
    stored = Counter()
    ids = []
    for cid, state in states.items():
        rows = state.rows.get("events", [])
        stored[cid] = len(rows)
        ids += [r["event_id"] for r in rows]
    assert len(ids) == len(set(ids)) and set(ids) == valid_ids
    assert stored == per_customer
    assert store.committed() == end

    # warehouse: every record once, each valid event once, each malformed record quarantined once
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        n, distinct, hi = con.execute("SELECT count(*), count(DISTINCT _position), max(_position) FROM stream.records").fetchone()
        assert (n, distinct, hi) == (total_records, total_records, end)
        events = dict(con.execute("SELECT event_id, count(*) FROM stream.events GROUP BY 1").fetchall())
        duplicate_deliveries = total_records - len(MALFORMED) - len(valid_ids)
        assert set(events) == valid_ids and sum(events.values()) == len(valid_ids) + duplicate_deliveries
        rules = Counter(r for (r,) in con.execute("SELECT rule FROM stream.quarantine_events").fetchall())
        assert rules == Counter(MALFORMED.values())
        offline = _offline_values(con, sorted(per_customer), store)
    finally:
        con.close()

    # values: equal to a single clean pass, and to the compiled SQL over the landed events
    clean_store = SqliteOnlineStore(warehouse.parent / "clean" / "features.sqlite")
    Consumer(replay, clean_store, batch=100_000).run(until_idle=True)
    online = get_online_features(sorted(per_customer), store=store, now=offline["as_of"])
    clean = get_online_features(sorted(per_customer), store=clean_store, now=offline["as_of"])
    for cid in per_customer:
        assert online[cid]["features"] == clean[cid]["features"], cid
        for name, value in online[cid]["features"].items():
            expected = offline["values"][cid][name]
            assert value == pytest.approx(expected, rel=1e-9) if value is not None else expected is None, (cid, name, value, expected)
    assert any(v["features"]["txn_count_24h"] > 0 for v in online.values())


def _offline_values(con, customers: list[str], store) -> dict:
    as_of = store.coverage()["events"]
    con.execute(f"CREATE TEMP TABLE probes ({', '.join(f'{n} {t}' for n, t in fc.PROBE_COLUMNS)})")
    con.executemany("INSERT INTO probes VALUES (?, ?, ?, NULL, NULL, NULL, NULL)", [(f"probe-{c}", c, as_of) for c in customers])
    relation = "(SELECT * FROM stream.events QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY _position) = 1)"
    cur = con.execute(fc.probe_sql("probes", relations={"events": relation, "payments": "(SELECT NULL::VARCHAR AS customer_id, NULL::TIMESTAMP AS created_at, NULL::TIMESTAMP AS _available_at, NULL::VARCHAR AS status, NULL::VARCHAR AS payment_id WHERE false)"}))
    cols = [d[0] for d in cur.description]
    rows = {r[0].removeprefix("probe-"): dict(zip(cols, r)) for r in cur.fetchall()}
    names = ONLINE.customer_level()
    return {"as_of": as_of, "values": {c: {n: rows[c][n] for n in names} for c in customers}}


def test_sigkill_file_transport_sqlite_store(data_dir):
    env = dict(os.environ, ADP_DATA_DIR=str(data_dir))
    env.pop("REDIS_URL", None)
    os.environ.pop("REDIS_URL", None)
    transport, store = backends.transport(), backends.online_store()
    warehouse = data_dir / "warehouse.duckdb"
    result = run_kill_scenario(env, transport, store, warehouse, seed=11)
    check_exactly_once(result, transport, store, warehouse, FileSegmentTransport(data_dir / "stream"))


def test_sigkill_redis_stream_and_store(data_dir, monkeypatch):
    require_service(*REDIS)
    prefix = f"adp-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("ADP_REDIS_PREFIX", prefix)
    env = dict(os.environ, ADP_DATA_DIR=str(data_dir))
    transport, store = backends.transport(), backends.online_store()
    try:
        assert transport.label.startswith("redis/") and store.label.startswith("redis:")
        result = run_kill_scenario(env, transport, store, data_dir / "warehouse.duckdb", seed=12)
        replay = RedisStreamTransport("redis://127.0.0.1:6379/0", prefix, group="replay")
        check_exactly_once(result, transport, store, data_dir / "warehouse.duckdb", replay)
    finally:
        delete_prefix(prefix)


def delete_prefix(prefix: str) -> None:
    redis_backend.delete_prefix("redis://127.0.0.1:6379/0", prefix)
