"""One definition, two paths: the online interpreter equals the compiled DuckDB SQL.

Random source rows (ties at one event time, late arrivals, rows exactly on and just outside
window and TTL edges, NULL devices / countries / amounts) and random probe points (customer,
as-of time, transaction context; some probes are real transactions that must exclude
themselves) are evaluated by ``streaming.online_features.FeatureInterpreter`` and by
``features.compile.probe_sql`` in DuckDB; every feature, intermediates included, must match.
"""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import datetime, timedelta

import duckdb
import pytest

from ai_data_platform.features import compile as fc
from ai_data_platform.features.registry import TRANSACTION_FEATURES, Feature
from ai_data_platform.streaming import sql_expr
from ai_data_platform.streaming.online_features import ONLINE, FeatureInterpreter

T0 = datetime(2026, 11, 20, 12, 0, 0)
EVENT_TYPES = ("login", "page_view", "feature_use", "card_transaction")
DEVICES = ("dev-a", "dev-b", "dev-c", None)
COUNTRIES = ("DE", "FR", "US", None)
EVENT_COLS = ("event_id", "customer_id", "event_type", "event_time", "amount", "device_id", "ip_country", "_available_at")
PAYMENT_COLS = ("payment_id", "customer_id", "status", "amount", "created_at", "_available_at")


def _world(seed: int, customers: int = 6, events_per_customer: int = 70):
    rng = random.Random(seed)
    probes_at = [T0 - timedelta(days=d, seconds=rng.randint(0, 86_399)) for d in (0, 1, 5)]
    edges = []
    for at in probes_at:  # rows exactly on and just outside each window / TTL edge
        for span in (timedelta(hours=1), timedelta(hours=24), timedelta(days=7), timedelta(days=30), timedelta(days=90)):
            edges += [at - span, at - span - timedelta(microseconds=1), at - span + timedelta(microseconds=1)]
        edges += [at, at - timedelta(microseconds=1)]
    events, payments = [], []
    n = 0
    for c in range(customers):
        cid = f"C{c:07d}"
        tie = T0 - timedelta(hours=rng.randint(0, 48), microseconds=rng.randint(0, 999_999))
        for i in range(events_per_customer):
            n += 1
            r = rng.random()
            if r < 0.15:
                at = tie  # several rows at one instant
            elif r < 0.45:
                at = rng.choice(edges)
            else:
                at = T0 - timedelta(seconds=rng.uniform(-3600, 100 * 86400))
            at = at.replace(microsecond=at.microsecond) if rng.random() < 0.5 else at.replace(microsecond=0)
            lateness = rng.choice([timedelta(0), timedelta(0), timedelta(seconds=rng.randint(1, 7200)),
                                   timedelta(days=rng.randint(1, 3)), max(timedelta(0), rng.choice(probes_at) - at)])
            etype = rng.choice(EVENT_TYPES)
            amount = round(rng.lognormvariate(3.5, 0.8), 2) if etype == "card_transaction" and rng.random() > 0.05 else None
            events.append((f"E{n:06d}", cid, etype, at, amount, rng.choice(DEVICES), rng.choice(COUNTRIES), at + lateness))
        for i in range(12):
            n += 1
            at = rng.choice(edges) if rng.random() < 0.3 else T0 - timedelta(seconds=rng.uniform(0, 40 * 86400))
            payments.append((f"P{n:06d}", cid, rng.choice(("succeeded", "failed", "refunded")), 10.0, at,
                             at + rng.choice([timedelta(0), timedelta(hours=rng.randint(1, 30))])))
    probes = [("Q-none", "C9999999", probes_at[0], 10.0, "dev-a", "DE", "DE")]  # a customer without rows
    for c in range(customers):
        cid = f"C{c:07d}"
        own = [e for e in events if e[1] == cid and e[2] == "card_transaction"]
        for j, at in enumerate(probes_at):
            probes.append((f"Q{c}-{j}", cid, at, round(rng.uniform(1, 900), 2), rng.choice(DEVICES),
                           rng.choice(COUNTRIES), rng.choice(COUNTRIES)))
        for e in rng.sample(own, min(3, len(own))):  # real transactions: exclude themselves
            probes.append((e[0], cid, e[3], e[4], e[5], e[6], rng.choice(COUNTRIES)))
    return events, payments, probes


def _duckdb_values(events, payments, probes, features) -> dict[str, dict]:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA staging")
    con.execute("CREATE TABLE staging.events (event_id VARCHAR, customer_id VARCHAR, event_type VARCHAR, event_time TIMESTAMP, "
                "amount DOUBLE, device_id VARCHAR, ip_country VARCHAR, _available_at TIMESTAMP)")
    con.execute("CREATE TABLE staging.payments (payment_id VARCHAR, customer_id VARCHAR, status VARCHAR, amount DOUBLE, "
                "created_at TIMESTAMP, _available_at TIMESTAMP)")
    con.execute(f"CREATE TABLE probes ({', '.join(f'{n} {t}' for n, t in fc.PROBE_COLUMNS)})")
    con.executemany("INSERT INTO staging.events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", events)
    con.executemany("INSERT INTO staging.payments VALUES (?, ?, ?, ?, ?, ?)", payments)
    con.executemany("INSERT INTO probes VALUES (?, ?, ?, ?, ?, ?, ?)", probes)
    cur = con.execute(fc.probe_sql("probes", tuple(features)))
    cols = [d[0] for d in cur.description]
    return {row[0]: dict(zip(cols, row)) for row in cur.fetchall()}


def _online_values(events, payments, probes, interpreter: FeatureInterpreter) -> dict[str, dict]:
    rows = {"events": [dict(zip(EVENT_COLS, e)) for e in events], "payments": [dict(zip(PAYMENT_COLS, p)) for p in payments]}
    out = {}
    for pid, cid, at, amount, device, ip, home in probes:
        mine = {s: [r for r in rs if r["customer_id"] == cid] for s, rs in rows.items()}
        ctx = {"_txn_amount": amount, "_txn_device_id": device, "_txn_ip_country": ip, "_txn_home_country": home}
        out[pid] = interpreter.evaluate(mine, at, ctx, exclude_event=pid)
    return out


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b and type(a) is type(b)


def _mismatches(offline: dict, online: dict, names) -> list[str]:
    assert offline.keys() == online.keys()
    return [f"{pid} {n}: sql={offline[pid][n]!r} online={online[pid][n]!r}"
            for pid in sorted(offline) for n in names if not _same(offline[pid][n], online[pid][n])]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_interpreter_equals_compiled_sql_on_random_rows(seed):
    events, payments, probes = _world(seed)
    offline = _duckdb_values(events, payments, probes, TRANSACTION_FEATURES)
    online = _online_values(events, payments, probes, ONLINE)
    names = [f.name for f in TRANSACTION_FEATURES]
    assert not _mismatches(offline, online, names)
    # the data exercises every branch: non-zero velocity, NULL and non-NULL averages, new and seen devices
    for name, predicate in {
        "txn_count_1h": lambda v: v > 0, "txn_count_24h": lambda v: v > 0, "avg_txn_amount_90d": lambda v: v is None,
        "amount_zscore_90d": lambda v: v is not None, "is_new_device": lambda v: v == 0,
        "ip_country_mismatch": lambda v: v is None, "foreign_ip_txn_count_24h": lambda v: v > 0,
        "failed_payments_30d": lambda v: v > 0, "seconds_since_last_txn": lambda v: v is None,
    }.items():
        assert any(predicate(v[name]) for v in online.values()), name
        assert not all(predicate(v[name]) for v in online.values()), name


def test_changing_a_declaration_changes_both_paths():
    events, payments, probes = _world(7)
    changed = tuple(
        dataclasses.replace(f, window="2h") if f.name == "txn_count_1h"
        else dataclasses.replace(f, filter="event_type = 'login' AND ip_country <> _txn_home_country") if f.name == "foreign_ip_txn_count_24h"
        else f
        for f in TRANSACTION_FEATURES
    )
    before_sql = _duckdb_values(events, payments, probes, TRANSACTION_FEATURES)
    after_sql = _duckdb_values(events, payments, probes, changed)
    after_online = _online_values(events, payments, probes, FeatureInterpreter(changed))
    assert not _mismatches(after_sql, after_online, [f.name for f in changed])
    for name in ("txn_count_1h", "foreign_ip_txn_count_24h"):
        assert any(before_sql[p][name] != after_sql[p][name] for p in probes_ids(probes)), name


def probes_ids(probes):
    return [p[0] for p in probes]


def test_unsupported_sql_fails_when_compiled():
    bad = Feature("lowered", "x", "transaction", "count", source="events", window="1h", filter="lower(event_type) = 'login'")
    with pytest.raises(sql_expr.UnsupportedExpression, match="(?i)lower"):
        FeatureInterpreter((bad,))


@pytest.mark.parametrize("sql", [
    "a = b", "a <> b AND c", "a = 1 OR c", "NOT c", "a IN (1, 2, NULL)", "a IN (1, 2)",
    "CASE WHEN c THEN a / b ELSE -a END", "CAST(c AS INTEGER)", "CAST(a / 2.0 AS BIGINT)", "a IS NULL OR b IS NULL",
])
def test_three_valued_logic_matches_duckdb(sql):
    values = [None, 0, 1, 2, 5]
    rows = [{"a": a, "b": b, "c": c} for a in values for b in values for c in (None, True, False)]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, a INTEGER, b INTEGER, c BOOLEAN)")
    con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [(i, r["a"], r["b"], r["c"]) for i, r in enumerate(rows)])
    expected = [v for (v,) in con.execute(f"SELECT {sql} FROM t ORDER BY i").fetchall()]
    f = sql_expr.compile_sql(sql)
    assert all(_same(e, f(r, {})) or (e is True and f(r, {}) is True) for e, r in zip(expected, rows)), sql
