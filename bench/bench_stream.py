"""Benchmark (issue 5): stream consumer throughput, event-to-online latency, serving latency, and
the same feature lookup from the DuckDB warehouse (the naive alternative), side by side in one run.

1. **Consumer throughput**: ``--events`` events of ``--customers`` customers, appended once to a
   segment-file stream (and, for Redis, to a Redis Stream; setup not timed), consumed by a fresh
   subprocess (``bench/child.py``: peak RSS its own) into an empty store, batches of 5000:
   - ``online``: records consumed per second until the last batch committed (SQLite / Redis), run
     as ``adp stream consume`` runs (materialization takes up to a quarter of the apply time);
   - ``online + warehouse``: until the warehouse sink has landed every record too (SQLite);
   - materialization: the customers left dirty materialized afterwards, customers per second.
2. **Event-to-online latency** at ``--rate`` (1,000) events/s: a real ``adp stream consume``
   subprocess; this process appends at the rate and polls the store's committed position every
   2 ms: latency = first poll that sees the record's position committed - its receipt stamp.
3. **Serving**: ``adp serve`` (uvicorn, one process) over the throughput run's store (all
   customers) and a fraud model; a separate load-generating process (asyncio streams) with
   ``--clients`` (50) concurrent keep-alive connections, each for ``--http-seconds``: closed loop
   (every client sends its next request as soon as the previous answered: saturation) and paced
   (``GET /features/{id}``: 250 and 500 requests/s in all; ``POST /score``: 100, 250 and 500).
4. **Naive alternative**, same run: the same customer-level features for the same customers
   computed on request from the DuckDB warehouse (the compiled SQL, ``compile.probe_sql``, over the
   landed stream events) vs ``get_online_features`` in process.

Medians of ``--runs``. Results merge into bench/results.json under "stream".

    python bench/bench_stream.py [--workdir data/bench] [--events 200000] [--customers 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from child import run_snippet  # noqa: E402
from results_file import record  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
BIN = Path(sys.executable).parent

_CONSUME = r"""
import json, sys, time
from pathlib import Path
from ai_data_platform.streaming.consumer import Consumer, materialize
from ai_data_platform.streaming.online_features import ONLINE
from ai_data_platform.streaming.transport import FileSegmentTransport
from ai_data_platform.streaming.warehouse_sink import wait_until
src, store_path, warehouse, backend, prefix, n = sys.argv[1:7]
n = int(n)
if backend == "redis":
    from ai_data_platform.streaming.redis_backend import RedisOnlineStore, RedisStreamTransport
    transport = RedisStreamTransport("redis://127.0.0.1:6379/0", prefix)
    store = RedisOnlineStore("redis://127.0.0.1:6379/0", prefix)
else:
    from ai_data_platform.streaming.online_store import SqliteOnlineStore
    transport = FileSegmentTransport(Path(src))
    store = SqliteOnlineStore(Path(store_path))
# the consumer as `adp stream consume` runs it: batches of 5000, materialization's time share, housekeeping
consumer = Consumer(transport, store, warehouse=None if warehouse == "-" else Path(warehouse), batch=5000)
t0 = time.perf_counter()
if consumer.sink is not None:
    consumer.sink.start()
while consumer.stats.records < n:
    consumer.cycle()
online = time.perf_counter() - t0
landed = None
if consumer.sink is not None:
    end = transport.end_position()
    wait_until(lambda: consumer.sink.sink.position == end, 600, 0.01)
    landed = time.perf_counter() - t0
    consumer.sink.stop()
t1 = time.perf_counter()
customers = 0
while k := materialize(store, ONLINE, limit=2000):  # the backlog left (materialization alone)
    customers += k
mat = time.perf_counter() - t1
print(json.dumps({"ok": consumer.stats.records == n, "online_seconds": online, "landed_seconds": landed,
                  "materialize_seconds": mat, "customers": customers, "rows": store.stats()["rows"]}))
"""

_LOAD = r"""
# A lean load generator: asyncio streams speaking HTTP/1.1 keep-alive, one connection per client
# (a full client library such as httpx costs more CPU per request than the server on 2 cores).
import asyncio, json, random, sys, time
from urllib.parse import urlparse
base, kind, clients, seconds, paced, ids = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), json.loads(sys.argv[6])
url = urlparse(base)
lat, errors = [], []
def request(rng):
    cid = rng.choice(ids)
    if kind == "features":
        return f"GET /features/{cid} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    body = json.dumps({"customer_id": cid, "amount": round(rng.uniform(5, 900), 2), "device_id": "dev-bench",
                       "ip_country": rng.choice(["DE", "US", "FR"])}).encode()
    return (f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
async def client(i):
    rng = random.Random(i)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    deadline = time.perf_counter() + seconds
    nxt = time.perf_counter() + rng.random() / paced if paced else 0.0
    while True:
        if paced:
            delay = nxt - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            nxt += 1.0 / paced
        if time.perf_counter() >= deadline:
            break
        t = time.perf_counter()
        writer.write(request(rng))
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        lat.append(time.perf_counter() - t)
        if not head.startswith(b"HTTP/1.1 200"):
            errors.append(head[:40].decode())
    writer.close()
async def main():
    t = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return time.perf_counter() - t
wall = asyncio.run(main())
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(json.dumps({"ok": not errors, "errors": errors[:3], "requests": len(lat), "rps": len(lat) / wall,
                  "p50_ms": q(0.5), "p95_ms": q(0.95), "p99_ms": q(0.99)}))
"""


def _env(data_dir: Path, **extra) -> dict:
    env = dict(os.environ, ADP_DATA_DIR=str(data_dir), PYTHONPATH=str(HERE.parent))
    env.pop("REDIS_URL", None)  # SQLite unless the caller asks for Redis
    env.update(extra)
    return env


def _delete_prefix(prefix: str) -> None:
    from ai_data_platform.streaming.redis_backend import delete_prefix

    delete_prefix(REDIS_URL, prefix)


def prepare_stream(workdir: Path, events: int, customers: int) -> Path:
    from ai_data_platform.streaming.producer import EventProducer, encode
    from ai_data_platform.streaming.transport import FileSegmentTransport

    src = workdir / "stream_src"
    marker = src / "bench.json"
    wanted = {"events": events, "customers": customers}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return src
    shutil.rmtree(src, ignore_errors=True)
    transport = FileSegmentTransport(src)
    producer = EventProducer(customers, seed=42)
    for i in range(0, events, 10_000):
        transport.append([encode(e) for e in producer.events(min(10_000, events - i))])
    marker.write_text(json.dumps(wanted))
    return src


def payloads(src: Path):
    from ai_data_platform.streaming.transport import FileSegmentTransport

    t = FileSegmentTransport(src)
    after = None
    while batch := t.scan(after, 10_000):
        yield [r.payload for r in batch]
        after = batch[-1].position


def throughput(src: Path, workdir: Path, events: int, backend: str, warehouse: bool) -> tuple[dict, float]:
    run = workdir / f"run-{uuid.uuid4().hex[:8]}"
    run.mkdir(parents=True)
    prefix = f"adp-bench-{uuid.uuid4().hex}"
    try:
        if backend == "redis":
            from ai_data_platform.streaming.redis_backend import RedisStreamTransport

            t = RedisStreamTransport(REDIS_URL, prefix)
            for chunk in payloads(src):
                t.append(chunk)
            t.close()
        args = [str(src), str(run / "features.sqlite"), str(run / "warehouse.duckdb") if warehouse else "-", backend, prefix, str(events)]
        return run_snippet(_CONSUME, args, _env(run))
    finally:
        if backend == "redis":
            _delete_prefix(prefix)
        if not (backend == "sqlite" and warehouse):
            shutil.rmtree(run, ignore_errors=True)


def latency(workdir: Path, backend: str, rate: float, seconds: float, customers: int) -> dict:
    from ai_data_platform.streaming import backends
    from ai_data_platform.streaming.producer import EventProducer, produce
    from ai_data_platform.streaming.transport import now_us, to_us

    run = workdir / f"latency-{uuid.uuid4().hex[:8]}"
    run.mkdir(parents=True)
    prefix = f"adp-bench-{uuid.uuid4().hex}"
    extra = {"REDIS_URL": REDIS_URL, "ADP_REDIS_PREFIX": prefix} if backend == "redis" else {}
    env = _env(run, **extra)
    saved = {k: os.environ.get(k) for k in ("ADP_DATA_DIR", "REDIS_URL", "ADP_REDIS_PREFIX")}
    os.environ.update({"ADP_DATA_DIR": str(run), **extra})
    if backend != "redis":
        os.environ.pop("REDIS_URL", None)
    proc = None
    try:
        transport, store = backends.transport(), backends.online_store()
        transport.append([b'{"warm": "up"}'])  # create the stream / group before the consumer starts
        proc = subprocess.Popen([str(BIN / "adp"), "stream", "consume", "--no-report", "--batch", "5000"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 60
        while store.committed() is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the consumer did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        sent: list[tuple[int, int]] = []
        seen: list[tuple[int, int]] = []  # (poll time µs, committed position)
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                seen.append((now_us(), store.committed() or -1))
                time.sleep(0.002)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        produce(transport, EventProducer(customers, seed=1), rate=rate, duration=seconds,
                on_batch=lambda events, records: sent.extend((r.position, to_us(r.received_at)) for r in records))
        time.sleep(1.0)
        stop.set()
        poller.join()
        lat, i = [], 0
        for position, received in sent:
            while i < len(seen) and seen[i][1] < position:
                i += 1
            if i == len(seen):
                break
            lat.append((seen[i][0] - received) / 1000)
        lat.sort()
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]  # noqa: E731
        return {"events": len(sent), "measured": len(lat), "p50_ms": q(0.5), "p95_ms": q(0.95), "p99_ms": q(0.99), "max_ms": lat[-1]}
    finally:
        if proc is not None:
            os.killpg(proc.pid, 15)
            proc.wait(30)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if backend == "redis":
            _delete_prefix(prefix)
        shutil.rmtree(run, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_model(data_dir: Path) -> None:
    import numpy as np
    import pandas as pd

    from ai_data_platform.features.registry import TRANSACTION_FEATURES, published
    from ai_data_platform.ml import models

    features = [f.name for f in published(TRANSACTION_FEATURES)]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f: rng.random(2000) for f in features})
    frame["label"] = (frame["amount_to_avg_90d"] + 0.3 * rng.random(2000) > 0.9).astype(int)
    frame["t"] = pd.date_range("2026-01-01", periods=2000, freq="h")
    trained = models.train_model("fraud", "2026-11-01", frame, features=features, label="label", time_column="t")
    models.save_model(trained, dataset_manifest={"content_hash": "sha256:bench", "version": "2026-11-01"},
                      gate_passed=True, margin=0.02, root=data_dir / "models")


def serving(store_dir: Path, clients: int, seconds: float, ids: list[str]) -> dict:
    _train_model(store_dir)
    (store_dir / "online").mkdir(exist_ok=True)
    shutil.copy(store_dir / "features.sqlite", store_dir / "online" / "features.sqlite")
    port = _free_port()
    proc = subprocess.Popen([str(BIN / "adp"), "serve", "--port", str(port)], env=_env(store_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=15) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"adp serve did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        out = {}
        sample = json.dumps(ids[:2000])
        modes = {"features": (("closed_loop", 0.0), ("paced_250rps", 5.0), ("paced_500rps", 10.0)),
                 "score": (("closed_loop", 0.0), ("paced_100rps", 2.0), ("paced_250rps", 5.0), ("paced_500rps", 10.0))}
        for kind, kind_modes in modes.items():
            for mode, paced in kind_modes:
                figures, _ = run_snippet(_LOAD, [f"http://127.0.0.1:{port}", kind, str(clients), str(seconds), str(paced), sample], dict(os.environ))
                out[f"{kind}_{mode}"] = figures
        return out
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


def naive_lookup(store_dir: Path, ids: list[str], n: int = 200) -> dict:
    """The same customer-level features: in-process online lookup vs compiled SQL over the warehouse."""
    import duckdb

    from ai_data_platform.features import compile as fc
    from ai_data_platform.streaming.bootstrap import source_relation
    from ai_data_platform.streaming.online_api import get_online_features, utc_now
    from ai_data_platform.streaming.online_features import ONLINE
    from ai_data_platform.streaming.online_store import SqliteOnlineStore

    store = SqliteOnlineStore(store_dir / "features.sqlite")
    con = duckdb.connect(str(store_dir / "warehouse.duckdb"), read_only=True)
    relation = source_relation(con, "events", ONLINE.needed_columns("events"))
    features = tuple(f for f in ONLINE.features if f.source != "payments")
    features = tuple(f for f in features if f.agg != "derived" or f.name in ("amount_to_avg_90d", "amount_zscore_90d", "is_new_device"))
    con.execute(f"CREATE TEMP TABLE p ({', '.join(f'{c} {t}' for c, t in fc.PROBE_COLUMNS)})")
    sql = fc.probe_sql("p", features, {"events": relation})
    online_ms, warehouse_ms, diffs = [], [], 0
    for cid in ids[:n]:
        now = utc_now()
        t = time.perf_counter()
        values = get_online_features([cid], store=store, now=now)[cid]["features"]
        online_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        con.execute("DELETE FROM p")
        con.execute("INSERT INTO p VALUES (?, ?, ?, NULL, NULL, NULL, NULL)", [f"q-{cid}", cid, now])
        row = dict(zip([d[0] for d in con.execute(sql).description], con.execute(sql).fetchall()[0]))
        warehouse_ms.append((time.perf_counter() - t) * 1000 / 2)  # the statement ran twice above
        diffs += sum(1 for k in ("txn_count_24h", "distinct_devices_7d") if row[k] != values[k])
    con.close()
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]  # noqa: E731
    return {"lookups": len(online_ms), "online_p50_ms": q(online_ms, 0.5), "online_p99_ms": q(online_ms, 0.99),
            "warehouse_p50_ms": q(warehouse_ms, 0.5), "warehouse_p99_ms": q(warehouse_ms, 0.99),
            "ratio_p50": q(warehouse_ms, 0.5) / q(online_ms, 0.5), "value_differences": diffs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("ADP_DATA_DIR", HERE.parent / "data")) / "bench")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--latency-seconds", type=float, default=15.0)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--http-seconds", type=float, default=10.0)
    ap.add_argument("--skip-redis", action="store_true")
    args = ap.parse_args()
    workdir = args.workdir / "stream"
    workdir.mkdir(parents=True, exist_ok=True)
    src = prepare_stream(workdir, args.events, args.customers)
    backends_ = ["sqlite"] + ([] if args.skip_redis else ["redis"])

    runs: dict[str, list] = {"sqlite_online": [], "sqlite_with_warehouse": [], "redis_online": []}
    store_dir = None
    for _ in range(args.runs):  # interleaved
        figures, peak = throughput(src, workdir, args.events, "sqlite", warehouse=False)
        runs["sqlite_online"].append((figures, peak))
        figures, peak = throughput(src, workdir, args.events, "sqlite", warehouse=True)
        runs["sqlite_with_warehouse"].append((figures, peak))
        kept = [p for p in workdir.glob("run-*") if (p / "warehouse.duckdb").exists()]
        store_dir = max(kept, key=lambda p: p.stat().st_mtime)
        for old in kept:
            if old != store_dir:
                shutil.rmtree(old, ignore_errors=True)
        if "redis" in backends_:
            runs["redis_online"].append(throughput(src, workdir, args.events, "redis", warehouse=False))

    def summarize(name: str, key: str) -> dict:
        rs = runs[name]
        if not rs:
            return {}
        rates = [args.events / f[key] for f, _ in rs]
        mats = [f["customers"] / f["materialize_seconds"] for f, _ in rs if f["materialize_seconds"]]
        return {"events_per_second": statistics.median(rates), "runs": [round(r) for r in rates],
                "materialized_customers_per_second": statistics.median(mats) if mats else None,
                "peak_rss_mib": statistics.median(p for _, p in rs)}

    result = {
        "events": args.events, "customers": args.customers, "runs": args.runs,
        "throughput": {
            "sqlite_online": summarize("sqlite_online", "online_seconds"),
            "sqlite_online_plus_warehouse_landed": summarize("sqlite_with_warehouse", "landed_seconds"),
            "sqlite_online_while_warehouse_sink_runs": summarize("sqlite_with_warehouse", "online_seconds"),
            "redis_online": summarize("redis_online", "online_seconds"),
        },
    }
    print(json.dumps(result["throughput"], indent=2), flush=True)

    lat = {}
    for backend in backends_:
        measured = [latency(workdir, backend, args.rate, args.latency_seconds, args.customers) for _ in range(args.runs)]
        lat[backend] = {k: statistics.median(m[k] for m in measured) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")}
        lat[backend]["events_per_run"] = measured[0]["events"]
    result["latency_at_rate"] = {"rate": args.rate, "seconds": args.latency_seconds, **lat}
    print(json.dumps(result["latency_at_rate"], indent=2), flush=True)

    from ai_data_platform.streaming.online_store import SqliteOnlineStore

    ids = SqliteOnlineStore(store_dir / "features.sqlite").customer_ids()
    http_runs = [serving(store_dir, args.clients, args.http_seconds, ids) for _ in range(args.runs)]
    result["serving"] = {
        "clients": args.clients, "seconds": args.http_seconds,
        **{k: {m: statistics.median(r[k][m] for r in http_runs) for m in ("rps", "p50_ms", "p95_ms", "p99_ms")} for k in http_runs[0]},
    }
    print(json.dumps(result["serving"], indent=2), flush=True)
    result["naive_warehouse_lookup"] = naive_lookup(store_dir, ids)
    print(json.dumps(result["naive_warehouse_lookup"], indent=2), flush=True)
    record("stream", result)
    shutil.rmtree(store_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
