"""A brute-force oracle for the feature SQL: point-in-time correctness, checked independently.

The platform compiles ``features/customer_daily`` and ``features/transaction`` from the feature
registry into set-based DuckDB SQL (``features/compile.py``). This module re-derives the same
features from the raw staged rows with plain Python loops and ``datetime`` arithmetic — it never
reuses the compiler or the registry's filter / expression strings; the only SQL it runs is
``SELECT <columns> FROM staging.<table> [WHERE customer_id IN (...)]`` — and compares the two on
the shared ``long_history`` warehouse (95 days, 300 customers).

Semantics re-implemented here:

Customer features for day ``D`` — ``as_of`` is midnight at the end of ``D``. A staged row counts
iff its event time < ``as_of`` **and** its ``_available_at`` <= ``as_of`` **and** its
``_partition_date`` <= ``D``. A windowed feature sees rows with event time >= ``as_of - window``.
Counts and sums are 0 over an empty window, averages NULL. ``days_since_last_event`` is the age
in days of the latest event within 90 days (NULL if none); ``last_payment_failed`` looks at the
latest payment within 45 days (ordered by created_at, _available_at, payment_id). The partition's
rows are the *active* customers: the latest CRM row (updated_at, _partition_date, _row_number)
among exports <= ``D`` signed up before ``as_of``, and some subscription whose latest record is
started before ``as_of`` and not cancelled before it.

Transaction features for a card transaction ``X`` — ``as_of`` is ``X.event_time``; a row of the
same customer counts iff event time < ``as_of`` and ``_available_at`` <= ``as_of`` (and, for
events, it is not ``X`` itself). The home country is the country on the customer's latest CRM row
(updated_at, _available_at, _row_number) available at ``as_of``.

Point-in-time injections then insert rows that must *not* count (an event time after ``as_of``
loaded early, a row loaded after ``as_of``) into a copy of the warehouse and recompute the SQL,
with a control row that must count, so the test is shown able to fail. The oracle is checked
against the SQL on every injected copy too.

The last test pins a difference this oracle found (and that was fixed): a card transaction
delivered more than ``MAX_LATENESS_DAYS`` late used to lose the oldest rows of its windows.
"""

from __future__ import annotations

import math
import random
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from ai_data_platform.features.compile import customer_daily_sql, transaction_sql
from ai_data_platform.warehouse import connect

pytestmark = pytest.mark.slow

SEED = 20261120
CUSTOMERS_PER_DAY = 40
TRANSACTION_SAMPLE = 150

EVENT_COLS = (
    "event_id", "customer_id", "event_type", "event_time", "amount", "device_id", "ip_country",
    "received_at", "_partition_date", "_available_at",
)
PAYMENT_COLS = ("payment_id", "customer_id", "status", "amount", "created_at", "_partition_date", "_available_at")
TICKET_COLS = ("ticket_id", "customer_id", "priority", "created_at", "_partition_date", "_available_at")
CHARGEBACK_COLS = ("chargeback_id", "customer_id", "reported_at", "_partition_date", "_available_at")
CRM_COLS = ("customer_id", "country", "signup_at", "updated_at", "_partition_date", "_row_number", "_available_at")
SUB_COLS = (
    "subscription_id", "customer_id", "started_at", "cancelled_at", "updated_at", "_partition_date", "_row_number",
)

CUSTOMER_FEATURES = (
    "logins_7d", "logins_30d", "events_7d", "events_30d", "events_90d", "active_days_30d",
    "days_since_last_event", "card_txn_count_30d", "card_txn_amount_30d", "card_txn_avg_amount_90d",
    "distinct_devices_30d", "last_card_txn_amount", "payment_failures_30d", "payment_failures_90d", "paid_amount_90d",
    "last_payment_failed", "tickets_30d", "urgent_tickets_90d", "chargebacks_90d",
    "activity_trend_7d_vs_30d", "payment_failure_rate_90d",
)
TRANSACTION_FEATURES = (
    "amount", "txn_count_1h", "txn_count_24h", "avg_txn_amount_90d", "amount_to_avg_90d", "is_new_device",
    "seconds_since_last_txn", "failed_payments_30d", "ip_country_mismatch",
)

H1, D1, D7, D30, D45, D90 = (timedelta(hours=1), timedelta(days=1), timedelta(days=7),
                             timedelta(days=30), timedelta(days=45), timedelta(days=90))


# ---------------------------------------------------------------- reading staged rows


def fetch(con, table: str, cols: tuple[str, ...], customer_ids=None) -> list[dict]:
    """Rows of ``staging.<table>`` as dicts: a plain projection, optionally for some customers."""
    sql = f"SELECT {', '.join(cols)} FROM staging.{table}"
    params: list = []
    if customer_ids is not None:
        ids = sorted(customer_ids)
        if not ids:
            return []
        sql += f" WHERE customer_id IN ({', '.join('?' * len(ids))})"
        params = ids
    return [dict(zip(cols, row)) for row in con.execute(sql, params).fetchall()]


def by_customer(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[r["customer_id"]].append(r)
    return out


@dataclass
class Staged:
    """Every staged row the oracle needs, grouped by customer."""

    events: dict[str, list[dict]] = field(default_factory=dict)
    payments: dict[str, list[dict]] = field(default_factory=dict)
    tickets: dict[str, list[dict]] = field(default_factory=dict)
    chargebacks: dict[str, list[dict]] = field(default_factory=dict)
    crm: dict[str, list[dict]] = field(default_factory=dict)
    subscriptions: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, con, customer_ids=None) -> Staged:
        return cls(
            events=by_customer(fetch(con, "events", EVENT_COLS, customer_ids)),
            payments=by_customer(fetch(con, "payments", PAYMENT_COLS, customer_ids)),
            tickets=by_customer(fetch(con, "support_tickets", TICKET_COLS, customer_ids)),
            chargebacks=by_customer(fetch(con, "chargebacks", CHARGEBACK_COLS, customer_ids)),
            crm=by_customer(fetch(con, "customers", CRM_COLS, customer_ids)),
            subscriptions=fetch(con, "subscriptions", SUB_COLS, customer_ids),
        )


def end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time())


def known_at(rows, time_col: str, as_of: datetime, max_partition: date | None = None) -> list[dict]:
    """Rows whose event happened before ``as_of`` and which were loaded by ``as_of``."""
    return [
        r
        for r in rows
        if r[time_col] < as_of
        and r["_available_at"] <= as_of
        and (max_partition is None or r["_partition_date"] <= max_partition)
    ]


def within(rows, time_col: str, as_of: datetime, window: timedelta) -> list[dict]:
    return [r for r in rows if r[time_col] >= as_of - window]


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else None


# ---------------------------------------------------------------- customer oracle


def oracle_active_customers(staged: Staged, day: date) -> set[str]:
    as_of = end_of(day)
    latest_crm = {}
    for cid, rows in staged.crm.items():
        exported = [r for r in rows if r["_partition_date"] <= day]
        if exported:
            latest_crm[cid] = max(exported, key=lambda r: (r["updated_at"], r["_partition_date"], r["_row_number"]))
    latest_sub: dict[str, dict] = {}
    for r in staged.subscriptions:
        if r["_partition_date"] > day:
            continue
        key = (r["updated_at"], r["_partition_date"], r["_row_number"])
        best = latest_sub.get(r["subscription_id"])
        if best is None or key > (best["updated_at"], best["_partition_date"], best["_row_number"]):
            latest_sub[r["subscription_id"]] = r
    live = {
        s["customer_id"]
        for s in latest_sub.values()
        if s["started_at"] < as_of and (s["cancelled_at"] is None or s["cancelled_at"] >= as_of)
    }
    return {cid for cid, r in latest_crm.items() if r["signup_at"] < as_of and cid in live}


def oracle_customer(staged: Staged, cid: str, day: date) -> dict:
    """Every compared customer feature of ``cid`` as of the end of ``day``."""
    as_of = end_of(day)
    events = known_at(staged.events.get(cid, []), "event_time", as_of, day)
    payments = known_at(staged.payments.get(cid, []), "created_at", as_of, day)
    tickets = known_at(staged.tickets.get(cid, []), "created_at", as_of, day)
    chargebacks = known_at(staged.chargebacks.get(cid, []), "reported_at", as_of, day)

    ev7, ev30, ev90 = (within(events, "event_time", as_of, w) for w in (D7, D30, D90))
    logins = lambda rows: sum(1 for r in rows if r["event_type"] == "login")  # noqa: E731
    cards30 = [r for r in ev30 if r["event_type"] == "card_transaction"]
    cards90 = [r for r in ev90 if r["event_type"] == "card_transaction"]
    pay30, pay45, pay90 = (within(payments, "created_at", as_of, w) for w in (D30, D45, D90))
    failures30 = sum(1 for p in pay30 if p["status"] == "failed")
    failures90 = sum(1 for p in pay90 if p["status"] == "failed")
    successes90 = [p for p in pay90 if p["status"] == "succeeded"]
    latest_payment = max(pay45, key=lambda p: (p["created_at"], p["_available_at"], p["payment_id"]), default=None)
    latest_event = max((r["event_time"] for r in ev90), default=None)
    # ties at one event time: the later-loaded row wins, then the larger id (deterministic)
    latest_card = max(cards30, key=lambda r: (r["event_time"], r["_available_at"], r["event_id"]), default=None)

    return {
        "logins_7d": logins(ev7),
        "logins_30d": logins(ev30),
        "events_7d": len(ev7),
        "events_30d": len(ev30),
        "events_90d": len(ev90),
        "active_days_30d": len({r["event_time"].date() for r in ev30}),
        "days_since_last_event": None if latest_event is None else (as_of - latest_event).total_seconds() / 86400,
        "card_txn_count_30d": len(cards30),
        "card_txn_amount_30d": sum(r["amount"] for r in cards30 if r["amount"] is not None),
        "card_txn_avg_amount_90d": mean(r["amount"] for r in cards90 if r["amount"] is not None),
        "distinct_devices_30d": len({r["device_id"] for r in ev30 if r["device_id"] is not None}),
        "last_card_txn_amount": None if latest_card is None else latest_card["amount"],
        "payment_failures_30d": failures30,
        "payment_failures_90d": failures90,
        "paid_amount_90d": sum(p["amount"] for p in successes90),
        "last_payment_failed": None if latest_payment is None else int(latest_payment["status"] == "failed"),
        "tickets_30d": len(within(tickets, "created_at", as_of, D30)),
        "urgent_tickets_90d": sum(1 for t in within(tickets, "created_at", as_of, D90) if t["priority"] in ("high", "urgent")),
        "chargebacks_90d": len(within(chargebacks, "reported_at", as_of, D90)),
        "activity_trend_7d_vs_30d": None if not ev30 else (len(ev7) / 7) / (len(ev30) / 30),
        "payment_failure_rate_90d": None if failures90 + len(successes90) == 0 else failures90 / (failures90 + len(successes90)),
    }


# ---------------------------------------------------------------- transaction oracle


def card_transactions(staged: Staged) -> list[dict]:
    return [r for rows in staged.events.values() for r in rows if r["event_type"] == "card_transaction"]


def home_country(staged: Staged, cid: str, as_of: datetime):
    loaded = [r for r in staged.crm.get(cid, []) if r["_available_at"] <= as_of]
    latest = max(loaded, key=lambda r: (r["updated_at"], r["_available_at"], r["_row_number"]), default=None)
    return None if latest is None else latest["country"]


def oracle_transaction(staged: Staged, txn: dict) -> dict:
    """Every compared feature of card transaction ``txn`` as of just before it."""
    cid, as_of = txn["customer_id"], txn["event_time"]
    prior = [r for r in known_at(staged.events.get(cid, []), "event_time", as_of) if r["event_id"] != txn["event_id"]]
    cards = [r for r in prior if r["event_type"] == "card_transaction"]
    avg90 = mean(r["amount"] for r in within(cards, "event_time", as_of, D90) if r["amount"] is not None)
    last_card = max((r["event_time"] for r in within(cards, "event_time", as_of, D30)), default=None)
    device = txn["device_id"]  # an unknown (NULL) device can never have been seen
    seen = device is not None and any(r["device_id"] == device for r in within(prior, "event_time", as_of, D90))
    payments = within(known_at(staged.payments.get(cid, []), "created_at", as_of), "created_at", as_of, D30)
    home, ip = home_country(staged, cid, as_of), txn["ip_country"]
    return {
        "amount": txn["amount"],
        "txn_count_1h": len(within(cards, "event_time", as_of, H1)),
        "txn_count_24h": len(within(cards, "event_time", as_of, D1)),
        "avg_txn_amount_90d": avg90,
        "amount_to_avg_90d": txn["amount"] / avg90 if avg90 is not None and avg90 > 0 else None,
        "is_new_device": 0 if seen else 1,
        "seconds_since_last_txn": None if last_card is None else (as_of - last_card).total_seconds(),
        "failed_payments_30d": sum(1 for p in payments if p["status"] == "failed"),
        "ip_country_mismatch": None if ip is None or home is None else int(ip != home),
    }


def is_late(event: dict) -> bool:
    """Delivered on a later day than it happened."""
    return event["_available_at"].date() > event["event_time"].date()


# ---------------------------------------------------------------- comparing


def stratified_sample(rng: random.Random, groups: list[tuple[list[str], int]], total: int) -> list[str]:
    """Up to ``cap`` ids from each group in turn (no repeats), ``total`` at most, deterministic."""
    picked: list[str] = []
    for group, cap in groups:
        pool = sorted(set(group) - set(picked))
        picked += rng.sample(pool, min(len(pool), cap, total - len(picked)))
    return picked


def is_null(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def same(expected, actual) -> bool:
    if is_null(expected) or is_null(actual):
        return is_null(expected) and is_null(actual)
    if isinstance(expected, float) or isinstance(actual, float):
        return actual == pytest.approx(expected, rel=1e-9, abs=1e-9)
    return expected == actual


def mismatches(label: str, expected: dict, actual: dict) -> list[str]:
    return [f"{label} {k}: oracle={expected[k]!r} platform={actual.get(k)!r}" for k in expected if not same(expected[k], actual.get(k))]


def platform_rows(con, sql: str, params=()) -> list[dict]:
    cur = con.execute(sql, list(params))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def world(long_history):
    paths, _instance, _first, end = long_history
    con = connect(paths.warehouse, read_only=True)
    try:
        staged = Staged.load(con)
        customer_daily = defaultdict(dict)
        for r in platform_rows(con, "SELECT * FROM features.customer_daily"):
            customer_daily[r["_partition_date"]][r["customer_id"]] = r
        transactions = {r["transaction_id"]: r for r in platform_rows(con, "SELECT * FROM features.transaction")}
    finally:
        con.close()
    return {"paths": paths, "end": end, "staged": staged,
            "customer_daily": customer_daily, "transactions": transactions}


# ---------------------------------------------------------------- 1. customer_daily


@pytest.mark.parametrize("days_back", [0, 20, 60])
def test_customer_daily_matches_oracle(world, days_back):
    day = world["end"] - timedelta(days=days_back)
    staged: Staged = world["staged"]
    partition = world["customer_daily"][day]
    active = oracle_active_customers(staged, day)

    # the partition's rows are exactly the active customers (all of them, not a sample)
    assert set(partition) == active, (
        f"{day}: only in platform {sorted(set(partition) - active)}, only in oracle {sorted(active - set(partition))}"
    )
    assert len(active) > 100

    # a sample mixing quiet customers, busy ones and the rarer branches
    expected = {cid: oracle_customer(staged, cid, day) for cid in sorted(active)}
    where = lambda pred: [c for c, f in expected.items() if pred(f)]  # noqa: E731
    quiet = where(lambda f: f["events_7d"] == 0)
    groups = [
        (quiet, CUSTOMERS_PER_DAY // 4),
        (where(lambda f: f["last_payment_failed"] == 1), 3),
        (where(lambda f: f["chargebacks_90d"] > 0), 3),
        (where(lambda f: f["urgent_tickets_90d"] > 0), 3),
        (where(lambda f: f["payment_failures_90d"] > 0), 3),
        (where(lambda f: f["events_7d"] > 0), CUSTOMERS_PER_DAY),
        (list(expected), CUSTOMERS_PER_DAY),
    ]
    sample = stratified_sample(random.Random(SEED + days_back), groups, CUSTOMERS_PER_DAY)
    assert len(sample) == CUSTOMERS_PER_DAY

    problems = [m for cid in sorted(sample) for m in mismatches(f"{day} {cid}", expected[cid], partition[cid])]
    assert not problems, "\n".join(problems)

    # the sample exercises every branch the day offers
    values = [expected[c] for c in sample]
    for branch in (
        lambda f: f["events_7d"] == 0,
        lambda f: f["events_7d"] > 0,
        lambda f: f["card_txn_count_30d"] > 0,
        lambda f: f["last_payment_failed"] is not None,
        lambda f: f["payment_failures_90d"] > 0,
    ):
        assert any(map(branch, values)) or not where(branch)
    print(f"\n{day}: partition = oracle's {len(active)} active customers; {len(sample)} compared "
          f"({sum(v['events_7d'] == 0 for v in values)} without events in 7d, "
          f"{sum(v['events_30d'] == 0 for v in values)} without in 30d), {len(CUSTOMER_FEATURES)} features each")


def test_customer_oracle_covers_every_compared_feature():
    staged = Staged()
    assert tuple(oracle_customer(staged, "nobody", date(2026, 1, 1))) == CUSTOMER_FEATURES
    txn = {"customer_id": "nobody", "event_id": "x", "event_time": datetime(2026, 1, 1), "amount": 1.0,
           "device_id": None, "ip_country": None}
    assert tuple(oracle_transaction(staged, txn)) == TRANSACTION_FEATURES


# ---------------------------------------------------------------- 2. features.transaction


def test_transaction_features_match_oracle(world):
    staged: Staged = world["staged"]
    platform = world["transactions"]
    txns = card_transactions(staged)

    # every staged card transaction has exactly one feature row, in its export day's partition
    assert {t["event_id"]: t["_partition_date"] for t in txns} == {
        tid: r["_partition_date"] for tid, r in platform.items()
    }

    expected = {t["event_id"]: oracle_transaction(staged, t) for t in txns}
    rng = random.Random(SEED)
    ids = sorted(expected)
    velocity_1h = [i for i in ids if expected[i]["txn_count_1h"] > 0]
    velocity_24h = [i for i in ids if expected[i]["txn_count_24h"] > 0 and i not in set(velocity_1h)]
    by_id = {t["event_id"]: t for t in txns}
    late = [i for i in ids if is_late(by_id[i])]
    picked = stratified_sample(rng, [(velocity_1h, 30), (velocity_24h, 30), (late, 30), (ids, TRANSACTION_SAMPLE)], TRANSACTION_SAMPLE)
    assert len(picked) == TRANSACTION_SAMPLE

    problems = []
    for tid in sorted(picked):
        row = platform[tid]
        assert (row["customer_id"], row["transaction_time"]) == (by_id[tid]["customer_id"], by_id[tid]["event_time"])
        problems += mismatches(f"{tid} ({row['_partition_date']})", expected[tid], row)
    assert not problems, "\n".join(problems)

    n_1h = sum(1 for i in picked if expected[i]["txn_count_1h"] > 0)
    n_24h = sum(1 for i in picked if expected[i]["txn_count_24h"] > 0)
    n_late = sum(1 for i in picked if is_late(by_id[i]))
    n_days = len({by_id[i]["_partition_date"] for i in picked})
    assert n_1h > 0 or not velocity_1h
    assert n_24h > 0 or not velocity_24h
    assert n_late > 0 or not late
    assert n_days >= 10
    print(f"\n{len(picked)} of {len(txns)} card transactions compared over {n_days} export days: "
          f"{n_1h} with txn_count_1h > 0 ({len(velocity_1h)} in all), {n_24h} with txn_count_24h > 0, "
          f"{n_late} delivered late ({len(late)} late card transactions in all)")


# ---------------------------------------------------------------- 3. point-in-time injections


def warehouse_copy(paths, tmp_path) -> Path:
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(paths.warehouse, copy)
    wal = Path(str(paths.warehouse) + ".wal")
    if wal.exists():
        shutil.copyfile(wal, Path(str(copy) + ".wal"))
    return copy


def insert_event(con, **values) -> None:
    cols = ", ".join(values)
    con.execute(f"INSERT INTO staging.events ({cols}) VALUES ({', '.join('?' * len(values))})", list(values.values()))


class Injector:
    """Recomputes one row of a feature query on a warehouse copy with an event staged, then
    rolls the event back; also checks the oracle agrees with the SQL on the injected data."""

    def __init__(self, con, sql: str, where: str, key: str, customer_id: str, oracle):
        self.con, self.sql, self.where, self.key, self.customer_id, self.oracle = con, sql, where, key, customer_id, oracle

    def __call__(self, event: dict | list[dict] | None) -> dict:
        events = [] if event is None else [event] if isinstance(event, dict) else event
        self.con.execute("BEGIN TRANSACTION")
        try:
            for e in events:
                insert_event(self.con, **e)
            rows = platform_rows(self.con, f"SELECT * FROM ({self.sql}) WHERE {self.where} = ?", [self.key])
            staged = Staged.load(self.con, [self.customer_id])
        finally:
            self.con.execute("ROLLBACK")
        assert len(rows) == 1
        label = ", ".join(e["event_id"] for e in events) or "no injection"
        problems = mismatches(f"oracle on injected data ({label})", self.oracle(staged), rows[0])
        assert not problems, "\n".join(problems)
        return rows[0]


def login(customer_id: str, event_time: datetime, available_at: datetime, partition: date, n: int) -> dict:
    return {
        "event_id": f"E_ORACLE_{n}", "customer_id": customer_id, "event_type": "login", "event_time": event_time,
        "received_at": available_at, "device_id": "D_ORACLE", "ip_country": "ZZ",
        "_partition_date": partition, "_file": "oracle-injection", "_row_number": 900_000 + n,
        "_available_at": available_at,
    }


def test_customer_daily_point_in_time_injections(world, tmp_path):
    day = world["end"] - timedelta(days=20)
    as_of = end_of(day)
    cid = sorted(world["customer_daily"][day])[7]
    con = connect(warehouse_copy(world["paths"], tmp_path))
    try:
        run = Injector(con, customer_daily_sql(day), "customer_id", cid, cid, lambda st: oracle_customer(st, cid, day))
        baseline = run(None)
        assert not mismatches("recomputed vs stored", world["customer_daily"][day][cid], baseline)

        noon = datetime.combine(day, time(12))
        must_not_count = {
            # (a) an event time after as_of, somehow loaded (and exported) before it
            "future event loaded early": login(cid, as_of + timedelta(hours=10), as_of - H1, day, 1),
            # (b) happened during the day but loaded two days later (a late correction)
            "late correction": login(cid, noon, as_of + timedelta(days=1, hours=9), day + timedelta(days=2), 2),
            # lineage says exported on the day, but only available after as_of
            "available after as_of": login(cid, noon, as_of + timedelta(seconds=1), day, 3),
            # exported on a later day although available in time: that export does not exist yet
            "exported after the day": login(cid, noon, noon + timedelta(seconds=5), day + timedelta(days=1), 4),
            # exactly at as_of: not before it
            "event at as_of": login(cid, as_of, noon, day, 5),
        }
        for name, event in must_not_count.items():
            problems = mismatches(name, baseline, run(event))
            assert not problems, "\n".join(problems)

        # (c) control: the same login loaded in time counts, once, in every window
        control = run(login(cid, noon, noon + timedelta(seconds=5), day, 6))
        for feature in ("logins_7d", "logins_30d", "events_7d", "events_30d", "events_90d"):
            assert control[feature] == baseline[feature] + 1, feature
        assert control["days_since_last_event"] <= 0.5  # a login at noon is at most half a day old
        # loaded exactly at as_of: known by then, counts
        assert run(login(cid, noon, as_of, day, 7))["logins_7d"] == baseline["logins_7d"] + 1
        # window edges: [as_of - 7d, as_of) is half-open
        edge = run(login(cid, as_of - D7, noon, day, 8))
        assert (edge["logins_7d"], edge["logins_30d"]) == (baseline["logins_7d"] + 1, baseline["logins_30d"] + 1)
        outside = run(login(cid, as_of - D7 - timedelta(seconds=1), noon, day, 9))
        assert (outside["logins_7d"], outside["logins_30d"]) == (baseline["logins_7d"], baseline["logins_30d"] + 1)
    finally:
        con.close()


def card_transaction(customer_id: str, event_time: datetime, available_at: datetime, day: date, event_id: str,
                     amount: float) -> dict:
    return login(customer_id, event_time, available_at, day, 0) | {
        "event_id": event_id, "event_type": "card_transaction", "amount": amount, "_row_number": 910_000 + int(amount),
    }


def test_ties_at_one_event_time_are_broken_by_load_time_then_id(world, tmp_path):
    """Two card transactions at the same instant: the "last" value must not depend on row order."""
    day = world["end"] - timedelta(days=20)
    as_of = end_of(day)
    cid = sorted(world["customer_daily"][day])[11]
    instant = as_of - timedelta(seconds=1)
    noon = datetime.combine(day, time(12))
    con = connect(warehouse_copy(world["paths"], tmp_path))
    try:
        later = con.execute("SELECT count(*) FROM staging.events WHERE customer_id = ? AND event_time >= ? "
                            "AND event_time < ?", [cid, instant, as_of])
        assert later.fetchone()[0] == 0, "the injected instant must be the customer's latest before as_of"
        run = Injector(con, customer_daily_sql(day), "customer_id", cid, cid, lambda st: oracle_customer(st, cid, day))
        early_b = card_transaction(cid, instant, noon, day, "E_TIE_B", 11.0)
        later_a = card_transaction(cid, instant, noon + H1, day, "E_TIE_A", 22.0)
        # different load times: the later-loaded one wins although its id sorts first, in either order
        assert run([early_b, later_a])["last_card_txn_amount"] == 22.0
        assert run([later_a, early_b])["last_card_txn_amount"] == 22.0
        # same load time: the larger id wins, in either insertion order
        same_a = card_transaction(cid, instant, noon, day, "E_TIE_A", 33.0)
        same_b = card_transaction(cid, instant, noon, day, "E_TIE_B", 44.0)
        assert run([same_a, same_b])["last_card_txn_amount"] == 44.0
        assert run([same_b, same_a])["last_card_txn_amount"] == 44.0
    finally:
        con.close()


def test_transaction_point_in_time_injections(world, tmp_path):
    staged: Staged = world["staged"]
    platform = world["transactions"]
    # a transaction with no card transaction in the hour before it, away from midnight
    candidates = sorted(
        (t for t in card_transactions(staged)
         if platform[t["event_id"]]["txn_count_1h"] == 0 and t["event_time"].hour >= 2
         and t["_partition_date"] == t["event_time"].date()),
        key=lambda t: t["event_id"],
    )
    txn = random.Random(SEED).choice(candidates)
    at, day, cid, tid = txn["event_time"], txn["_partition_date"], txn["customer_id"], txn["event_id"]
    con = connect(warehouse_copy(world["paths"], tmp_path))
    try:
        run = Injector(con, transaction_sql(day), "transaction_id", tid, cid, lambda st: oracle_transaction(st, txn))
        baseline = run(None)
        assert not mismatches("recomputed vs stored", platform[tid], baseline)

        def card(event_time, available_at, n, partition=day):
            return {**login(cid, event_time, available_at, partition, n), "event_type": "card_transaction",
                    "amount": 12.5, "currency": "EUR", "device_id": txn["device_id"], "ip_country": txn["ip_country"]}

        ten_before = at - timedelta(minutes=10)
        must_not_count = {
            # (a) happens after the transaction, though loaded before it
            "future event loaded early": card(at + timedelta(minutes=10), at - timedelta(minutes=5), 11),
            # (b) happened 10 minutes before, but the collector received it after the transaction
            "loaded after the transaction": card(ten_before, at + timedelta(minutes=1), 12),
            # a late correction exported the next day
            "late correction": card(ten_before, end_of(day) + timedelta(hours=9), 13, day + timedelta(days=1)),
            # at the same instant as the transaction: not before it
            "simultaneous": card(at, at - timedelta(minutes=1), 14),
        }
        for name, event in must_not_count.items():
            problems = mismatches(name, baseline, run(event))
            assert not problems, "\n".join(problems)

        # (c) control: loaded before the transaction, it counts once
        control = run(card(ten_before, at - timedelta(minutes=1), 15))
        assert control["txn_count_1h"] == baseline["txn_count_1h"] + 1
        assert control["txn_count_24h"] == baseline["txn_count_24h"] + 1
        assert control["seconds_since_last_txn"] == 600
        # loaded exactly at the transaction time: known by then, counts
        assert run(card(ten_before, at, 16))["txn_count_1h"] == baseline["txn_count_1h"] + 1
        # window edges: [at - 1h, at) is half-open
        edge = run(card(at - H1, at - H1, 17))
        assert (edge["txn_count_1h"], edge["txn_count_24h"]) == (baseline["txn_count_1h"] + 1, baseline["txn_count_24h"] + 1)
        outside = run(card(at - H1 - timedelta(seconds=1), at - H1, 18))
        assert (outside["txn_count_1h"], outside["txn_count_24h"]) == (baseline["txn_count_1h"], baseline["txn_count_24h"] + 1)
    finally:
        con.close()


def test_transaction_delivered_beyond_max_lateness_keeps_its_whole_window(world, tmp_path):
    staged: Staged = world["staged"]
    # the earliest failed payment; a card transaction 29 days later, delivered 10 days after that
    payment = min(
        (p for rows in staged.payments.values() for p in rows if p["status"] == "failed"),
        key=lambda p: (p["created_at"], p["payment_id"]),
    )
    cid = payment["customer_id"]
    at = datetime.combine(payment["created_at"].date() + timedelta(days=29), time(12))
    day = at.date() + timedelta(days=10)
    assert day <= world["end"]
    txn = {**login(cid, at, end_of(day) - H1, day, 21), "event_type": "card_transaction", "amount": 10.0}
    con = connect(warehouse_copy(world["paths"], tmp_path))
    try:
        run = Injector(con, transaction_sql(day), "transaction_id", txn["event_id"], cid,
                       lambda st: oracle_transaction(st, txn))
        row = run(txn)  # raises: the oracle counts the failed payment, the SQL does not
        assert row["failed_payments_30d"] >= 1
    finally:
        con.close()
