"""The feature SQL compiled from the registry: windows, point in time, active customers, cost bound."""

import json
from datetime import date, datetime, timedelta

import duckdb
import pytest

from ai_data_platform import warehouse
from ai_data_platform.features.compile import customer_daily_sql
from ai_data_platform.features.registry import (
    CUSTOMER_FEATURES,
    MAX_LATENESS_DAYS,
    TRANSACTION_FEATURES,
    max_window_days,
    published,
)
from ai_data_platform.sources.contracts import SOURCE_TABLES
from ai_data_platform.sources.staging import ensure_all_tables

D = date(2026, 11, 20)


def _ts(days_before: float, hour: int = 12) -> datetime:
    return datetime.combine(D, datetime.min.time()) + timedelta(hours=hour) - timedelta(days=days_before)


@pytest.fixture()
def con():
    c = duckdb.connect()
    warehouse.ensure_schemas(c)
    ensure_all_tables(c, SOURCE_TABLES)
    c.execute(
        "INSERT INTO staging.customers (customer_id, country, region, segment, signup_at, marketing_consent, updated_at, email_hash, _partition_date) VALUES "
        "('C1', 'DE', 'EU', 'smb', ?, true, ?, 'h1', ?), ('C2', 'US', 'US', 'smb', ?, false, ?, 'h2', ?), ('C3', 'US', 'US', 'smb', ?, false, ?, 'h3', ?)",
        [_ts(400), _ts(400), D - timedelta(days=60)] * 3,
    )
    c.execute(
        "INSERT INTO staging.subscriptions (subscription_id, customer_id, plan, mrr, currency, started_at, cancelled_at, updated_at, _partition_date) VALUES "
        "('S1', 'C1', 'pro', 49, 'EUR', ?, NULL, ?, ?), ('S2', 'C2', 'basic', 19, 'USD', ?, NULL, ?, ?), "
        "('S3', 'C3', 'basic', 19, 'USD', ?, NULL, ?, ?), ('S3', 'C3', 'basic', 19, 'USD', ?, ?, ?, ?)",
        [_ts(400), _ts(400), D - timedelta(days=60)] * 3 + [_ts(400), _ts(3), _ts(3), D - timedelta(days=3)],
    )
    events = [  # (id, customer, type, days before D, export day offset from event day)
        ("E1", "C1", "login", 0.2, 0),
        ("E2", "C1", "login", 6, 0),
        ("E3", "C1", "login", 8, 0),  # outside 7 days, inside 30
        ("E4", "C1", "login", 29, 0),
        ("E5", "C1", "login", 31, 0),  # outside 30 days, inside 90
        ("E6", "C1", "page_view", 95, 0),  # outside every window
        ("E7", "C1", "login", 2, 3),  # event 2 days ago, exported the day after D: not yet known
        ("E8", "C1", "login", 4, 2),  # late but exported by D: counts
        ("E9", "C1", "login", -0.6, -1),  # exported on D but stamped after the end of D
        ("E10", "C1", "login", 150, 0),  # old history: never read
    ]
    for eid, cid, etype, before, delay in events:
        t = _ts(before)
        c.execute(
            "INSERT INTO staging.events (event_id, customer_id, event_type, event_time, _partition_date) VALUES (?, ?, ?, ?, ?)",
            [eid, cid, etype, t, t.date() + timedelta(days=delay)],
        )
    c.execute(
        "INSERT INTO staging.payments (payment_id, customer_id, amount, currency, status, created_at, _partition_date) VALUES "
        "('P1', 'C1', 49, 'EUR', 'failed', ?, ?), ('P2', 'C1', 49, 'EUR', 'succeeded', ?, ?), ('P3', 'C1', 49, 'EUR', 'failed', ?, ?), "
        "('P4', 'C1', 49, 'EUR', 'failed', ?, ?)",
        [_ts(5), (D - timedelta(days=5)), _ts(2), (D - timedelta(days=2)), _ts(45), D - timedelta(days=45), _ts(150), D - timedelta(days=150)],
    )
    for table in ("customers", "subscriptions", "events", "payments"):
        c.execute(f"UPDATE staging.{table} SET _available_at = CAST(_partition_date + INTERVAL 1 DAY AS TIMESTAMP)")
    yield c
    c.close()


def _row(con, cid):
    df = con.execute(customer_daily_sql(D)).df()
    return df.set_index("customer_id").loc[cid]


def test_windows_and_point_in_time(con):
    r = _row(con, "C1")
    assert r.logins_7d == 3  # E1, E2, E8 (late but exported by D); not E7 (exported after D) nor E9 (after D)
    assert r.logins_30d == 5  # + E3, E4
    assert r.events_90d == 6  # + E5; E6 is 95 days old
    assert r.payment_failures_30d == 1 and r.payment_failures_90d == 2
    assert r.payment_failure_rate_90d == pytest.approx(2 / 3)
    assert r.days_since_last_event == pytest.approx(0.7)  # E1, 16.8 hours before the end of D
    assert r.tenure_days == 400 and r.mrr == 49 and r.marketing_consent == 1


def test_customer_without_activity_gets_zeros_and_nulls_not_missing(con):
    r = _row(con, "C2")
    assert r.logins_30d == 0 and r.events_90d == 0 and r.payment_failures_90d == 0
    assert r.days_since_last_event != r.days_since_last_event  # NaN: no event in 90 days
    assert r.activity_trend_7d_vs_30d != r.activity_trend_7d_vs_30d


def test_only_customers_with_a_live_subscription_are_featured(con):
    ids = set(con.execute(customer_daily_sql(D)).df().customer_id)
    assert ids == {"C1", "C2"}  # C3 cancelled three days before D
    earlier = set(con.execute(customer_daily_sql(D - timedelta(days=10))).df().customer_id)
    assert earlier == {"C1", "C2", "C3"}  # ...and was active ten days before


def test_every_windowed_scan_is_bounded_by_export_day(con):
    """Cost follows the window: each source scan carries a pushed-down _partition_date range.

    Sources with no row outside the window are left out: DuckDB drops a filter its statistics
    prove always true."""
    plan = json.loads(con.execute("EXPLAIN (FORMAT json) " + customer_daily_sql(D)).fetchall()[0][1])

    def walk(node):
        for n in node if isinstance(node, list) else [node]:
            yield n
            yield from walk(n.get("children", []))

    filters: dict[str, list[str]] = {}
    for n in walk(plan):
        info = n.get("extra_info", {})
        if "Table" in info:
            filters.setdefault(info["Table"].split(".")[-1], []).append(str(info.get("Filters", "")))
    lower = (D - timedelta(days=max_window_days() + MAX_LATENESS_DAYS)).isoformat()
    for table in ("events", "payments"):
        assert filters[table], table
        for f in filters[table]:
            assert f"_partition_date >= '{lower}'" in f, (table, filters[table])
            assert f"_partition_date <= '{D.isoformat()}'" in f


def test_registry_declares_enough_features_across_sources():
    names = [f.name for f in published(CUSTOMER_FEATURES)]
    assert len(names) == len(set(names)) and len(names) >= 25
    sources = {f.source for f in CUSTOMER_FEATURES if f.source}
    assert {"events", "payments", "support_tickets"} <= sources
    assert {"7d", "30d", "90d"} <= {f.window for f in CUSTOMER_FEATURES if f.window}
    assert all(f.description for f in CUSTOMER_FEATURES)
    txn = [f.name for f in published(TRANSACTION_FEATURES)]
    assert len(txn) >= 10 and {"txn_count_1h", "txn_count_24h", "is_new_device", "ip_country_mismatch"} <= set(txn)


def test_a_feature_added_to_the_registry_extends_the_existing_table(con):
    from ai_data_platform.features.compile import customer_daily_columns

    old = tuple(f for f in CUSTOMER_FEATURES if f.name != "logins_7d")
    ddl = ", ".join(f"{n} {t}" for n, t in customer_daily_columns(old))
    con.execute(f"CREATE TABLE features.customer_daily ({ddl})")
    warehouse.replace_partitions(con, "features.customer_daily", [D - timedelta(days=1)], lambda d: customer_daily_sql(d, old))
    warehouse.replace_partitions(con, "features.customer_daily", [D], customer_daily_sql)
    rows = dict(con.execute("SELECT _partition_date, max(logins_7d) FROM features.customer_daily GROUP BY 1").fetchall())
    assert rows[D] == 3 and rows[D - timedelta(days=1)] is None  # old partition untouched, new one complete


def test_readme_carries_the_whole_catalog():
    from pathlib import Path

    from ai_data_platform.features.registry import catalog

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [e["name"] for e in catalog() if f"| `{e['name']}` |" not in readme]
    assert missing == [], f"README catalog is stale; regenerate it from the registry: {missing}"


def test_adp_features_list_prints_the_catalog_and_assets_carry_each_description(capsys):
    import dagster as dg

    from ai_data_platform import cli
    from ai_data_platform.definitions import defs

    assert cli.main(["features", "list", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    for feature in published(CUSTOMER_FEATURES) + published(TRANSACTION_FEATURES):
        entry = entries.pop(feature.name)
        assert (entry["entity"], entry["description"], entry["owner"]) == (feature.entity, feature.description, feature.owner)
        assert entry["window"] == feature.window and entry["ttl"] == feature.ttl
    assert entries == {}, f"listed but not published: {sorted(entries)}"

    assert cli.main(["features", "list", "--entity", "transaction"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"{len(published(TRANSACTION_FEATURES))} features"
    assert {line.split()[0] for line in lines[1:-1]} == {f.name for f in published(TRANSACTION_FEATURES)}

    for table, features in (("customer_daily", CUSTOMER_FEATURES), ("transaction", TRANSACTION_FEATURES)):
        key = dg.AssetKey(["features", table])
        schema = defs.resolve_assets_def(key).specs_by_key[key].metadata["dagster/column_schema"]
        described = {c.name: c.description for c in getattr(schema, "schema", schema).columns}
        for feature in published(features):
            assert described[feature.name] == feature.description, (table, feature.name)


@pytest.mark.parametrize("amounts, shown", [
    ((1e308, 1e308), "card_txn_amount_30d=inf"),  # finite amounts whose sum overflows
    ((float("inf"),), "=inf"),
    ((float("-inf"),), "=-inf"),
    ((float("nan"),), "=nan"),
])
def test_a_non_finite_feature_value_fails_the_blocking_feature_gate_naming_the_column(con, data_dir, amounts, shown):
    """Staging bounds amounts (``out_of_range``), but whatever makes a feature NaN or infinite, the
    blocking ``gx_suite`` of features/customer_daily fails on it, naming the column and the value.
    (The fixture's NULL features, e.g. a customer's days since a last payment, are no failure.)"""
    import dagster as dg

    from ai_data_platform import settings
    from ai_data_platform.definitions import defs
    from ai_data_platform.resources import build_resources

    for i, amount in enumerate(amounts):  # rows staging would quarantine, written past it
        t = _ts(1 + i)
        con.execute(
            "INSERT INTO staging.events (event_id, customer_id, event_type, event_time, amount, _partition_date, _available_at) "
            "VALUES (?, 'C2', 'card_transaction', ?, ?, ?, ?)",
            [f"EX{i}", t, amount, t.date(), datetime.combine(t.date() + timedelta(days=1), datetime.min.time())],
        )
    paths = settings.Paths(data_dir)
    con.execute(f"ATTACH '{paths.warehouse}' AS target")
    con.execute("COPY FROM DATABASE memory TO target")
    con.execute("DETACH target")
    key = dg.AssetKey(["features", "customer_daily"])
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        selection=dg.AssetSelection.assets(key),
        partition_key=D.isoformat(),
        resources=build_resources(paths),
        raise_on_error=False,
    )
    (gate,) = [e for e in result.get_asset_check_evaluations() if e.asset_key == key and e.check_name == "gx_suite"]
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    message = gate.metadata["message"].text
    assert "expect_column_values_to_be_null(_non_finite_values): 1 of 2 rows unexpected" in message, message
    assert shown in message and "card_txn_amount_30d" in message
    assert not result.success
