"""The whole graph through Dagster with a real DuckDB in a temp ADP_DATA_DIR.

Generates a small data set once per module, materializes three daily partitions one run each
(as the nightly schedule does), then checks conservation, quarantine = injected dirt, PII,
idempotency and point-in-time behaviour, and that a heavily corrupted day is stopped by its gate.
"""

import json
import shutil
from datetime import date, timedelta

import dagster as dg
import pytest

from ai_data_platform import settings, warehouse
from ai_data_platform.definitions import defs
from ai_data_platform.governance.stores import PERSONAL_TABLES, RegionalStores
from ai_data_platform.resources import build_resources
from ai_data_platform.schedules import BATCH_GROUPS
from ai_data_platform.sources.contracts import REGIONS, SOURCE_TABLES, dirt_rule
from ai_data_platform.sources.landing import LandingZones
from ai_data_platform.sources.simulator import generate

from .conftest import END

pytestmark = pytest.mark.slow

DAYS = [END - timedelta(days=2), END - timedelta(days=1), END]
BATCH = dg.AssetSelection.groups(*BATCH_GROUPS)  # what the nightly job materializes
BATCH_KEYS = BATCH.resolve(defs.resolve_asset_graph())


def _all_assets_and_checks():
    return [*defs.assets, *defs.asset_checks]


def materialize_day(paths: settings.Paths, day: date, instance=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        _all_assets_and_checks(),
        selection=BATCH,
        partition_key=day.isoformat(),
        resources=build_resources(paths),
        instance=instance,
        raise_on_error=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    paths = settings.Paths(root)
    manifest = generate(LandingZones.from_settings(paths), customers=400, days=5, end=END, seed=7, dirty_rate=0.01)
    instance = dg.DagsterInstance.ephemeral()
    # The first two days as one single-run backfill (the CRM's initial full export is on day 1),
    # then one run per day, as the nightly schedule does.
    history = dg.materialize(
        _all_assets_and_checks(),
        selection=BATCH,
        resources=build_resources(paths),
        instance=instance,
        tags={
            "dagster/asset_partition_range_start": (END - timedelta(days=4)).isoformat(),
            "dagster/asset_partition_range_end": (END - timedelta(days=3)).isoformat(),
        },
    )
    assert history.success
    results = {day: materialize_day(paths, day, instance) for day in DAYS}
    return paths, manifest, results, instance


def test_three_days_materialize_with_every_check_passing(built):
    paths, _, results, _ = built
    for day, result in results.items():
        assert result.success, f"run for {day} failed"
        failed = [
            (e.asset_key.to_user_string(), e.check_name, e.metadata.get("message"))
            for e in result.get_asset_check_evaluations()
            if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
        ]
        assert failed == []
        materialized = {e.asset_key for e in result.get_asset_materialization_events()}
        assert materialized == set(BATCH_KEYS)
        assert all(e.partition == day.isoformat() for e in result.get_asset_check_evaluations())


def _injected(manifest, table, day):
    """Rows and dirt of a table's day, over its files (one per region for the CRM's tables)."""
    entries = [info for info in manifest["files"].values() if info["table"] == table and info["date"] == day.isoformat()]
    regions = sorted(info["region"] or "" for info in entries)
    assert regions == (sorted(REGIONS) if table in ("customers", "support_tickets") else [""]), (table, day)
    dirt = {kind: sum(info["dirt"][kind] for info in entries) for kind in entries[0]["dirt"]}
    return {"rows": sum(info["rows"] for info in entries), "dirt": dirt}


def test_quarantine_counts_equal_injected_dirt(built):
    paths, manifest, _, _ = built
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        for t in SOURCE_TABLES:
            for day in DAYS:
                info = _injected(manifest, t.name, day)
                expected: dict[str, int] = {}
                for kind, n in info["dirt"].items():
                    rule = dirt_rule(t, kind)
                    if rule and n:
                        expected[rule] = expected.get(rule, 0) + n
                got = dict(con.execute(
                    f"SELECT rule, count(*) FROM quarantine.{t.name} WHERE _partition_date = ? GROUP BY 1", [day]
                ).fetchall())
                assert got == expected, f"{t.name} {day}"
                raw = con.execute(f"SELECT count(*) FROM raw.{t.name} WHERE _partition_date = ?", [day]).fetchone()[0]
                staged = con.execute(f"SELECT count(*) FROM staging.{t.name} WHERE _partition_date = ?", [day]).fetchone()[0]
                assert raw == info["rows"]
                assert raw == staged + sum(got.values()) + info["dirt"]["duplicate"]
    finally:
        con.close()


def test_conservation_metadata_recorded_for_every_partition(built):
    _, _, results, _ = built
    for day, result in results.items():
        mats = {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}
        for t in SOURCE_TABLES:
            md = mats[f"staging/{t.name}"].materialization.metadata
            c = md["conservation"].value
            assert c["raw_rows"] == c["staged_rows"] + c["quarantined_rows"] + c["duplicate_rows"]
            assert md["dagster/row_count"].value == c["staged_rows"]
            assert "dagster/column_schema" in md


IDENTITY_UNION = " UNION ALL ".join(f"SELECT * FROM personal_{r.lower()}.identity.customer_pii" for r in REGIONS)


def test_no_direct_pii_outside_the_identity_table(built):
    paths, _, _, _ = built
    con = warehouse.connect(paths.warehouse, read_only=True)
    with RegionalStores.from_settings(paths).attached(con, read_only=True):
        con.execute(f"CREATE TEMP TABLE identity_all AS {IDENTITY_UNION}")
    try:
        emails = {r[0] for r in con.execute("SELECT email FROM identity_all").fetchall()}
        names = {r[0] for r in con.execute("SELECT name FROM identity_all").fetchall()}
        assert emails and names
        for schema in ("raw", "staging", "quarantine", "marts", "features"):
            for (table,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
            ).fetchall():
                cols = [c for c, ty in warehouse.table_columns(con, f"{schema}.{table}") if ty == "VARCHAR"]
                for col in cols:
                    leaked = con.execute(
                        f"SELECT count(*) FROM {schema}.{table} WHERE {warehouse.quote(col)} IN (SELECT email FROM identity_all) "
                        f"OR {warehouse.quote(col)} IN (SELECT name FROM identity_all) "
                        f"OR regexp_matches({warehouse.quote(col)}, '[^@ ]+@[^@ ]+\\.[a-z]+')"
                    ).fetchone()[0]
                    assert leaked == 0, f"{schema}.{table}.{col} holds direct PII"
    finally:
        con.close()


def test_customer_360_and_features_have_one_row_per_customer(built):
    paths, _, _, _ = built
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        for table in ("marts.customer_360", "features.customer_daily"):
            dupes = con.execute(
                f"SELECT count(*) FROM (SELECT _partition_date, customer_id FROM {table} GROUP BY ALL HAVING count(*) > 1)"
            ).fetchone()[0]
            assert dupes == 0
            days = {r[0] for r in con.execute(f"SELECT DISTINCT _partition_date FROM {table}").fetchall()}
            assert days == {END - timedelta(days=i) for i in range(5)}
        n_features = len(warehouse.table_columns(con, "features.customer_daily")) - 2
        assert n_features >= 15
        # features are only for customers with a live subscription, all of whom are in customer_360
        orphan = con.execute(
            "SELECT count(*) FROM features.customer_daily f ANTI JOIN marts.customer_360 m "
            "ON f.customer_id = m.customer_id AND f._partition_date = m._partition_date"
        ).fetchone()[0]
        assert orphan == 0
        active = con.execute(
            "SELECT count(*) FROM marts.customer_360 WHERE _partition_date = ? AND subscription_status = 'active'", [END]
        ).fetchone()[0]
        featured = con.execute("SELECT count(*) FROM features.customer_daily WHERE _partition_date = ?", [END]).fetchone()[0]
        assert featured == active > 0
    finally:
        con.close()


def _snapshot(paths, tables):
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        with RegionalStores.from_settings(paths).attached(con, read_only=True):
            out = {}
            for table, exclude in tables:
                cols = [d[0] for d in con.execute(f"SELECT * FROM {table} LIMIT 0").description if d[0] not in exclude]
                col_sql = ", ".join(warehouse.quote(c) for c in cols)
                out[table] = con.execute(
                    f"SELECT {col_sql} FROM {table} WHERE _partition_date = ? ORDER BY ALL", [DAYS[1]]
                ).fetchall()
            return out
    finally:
        con.close()


def test_rematerializing_a_partition_leaves_identical_tables(built):
    paths, _, _, instance = built
    tables = [(f"raw.{t.name}", {"_loaded_at"}) for t in SOURCE_TABLES]
    tables += [(f"staging.{t.name}", set()) for t in SOURCE_TABLES]
    tables += [(f"quarantine.{t.name}", set()) for t in SOURCE_TABLES]
    tables += [("marts.customer_360", set()), ("features.customer_daily", set())]
    tables += [(f"personal_{r.lower()}.{p.name}", {"_loaded_at"}) for r in REGIONS for p in PERSONAL_TABLES]
    before = _snapshot(paths, tables)
    assert sum(len(v) for v in before.values()) > 1000
    assert materialize_day(paths, DAYS[1], instance).success
    assert _snapshot(paths, tables) == before


def test_features_for_a_day_ignore_data_that_arrives_later(built, tmp_path):
    """A late record (event time inside the window, exported after the day) must not change it."""
    paths, _, _, _ = built
    copy = settings.Paths(tmp_path / "copy")
    shutil.copytree(paths.root, copy.root)
    con = warehouse.connect(copy.warehouse)
    try:
        before = con.execute("SELECT * FROM features.customer_daily WHERE _partition_date = ? ORDER BY customer_id", [DAYS[0]]).fetchall()
        cid = before[0][0]
        # an event at noon on DAYS[0], but exported a day later: invisible as of the end of DAYS[0]
        con.execute(
            "INSERT INTO staging.events (event_id, customer_id, event_type, event_time, _partition_date, _file, _row_number, _available_at) "
            "VALUES ('E-late', ?, 'login', ?, ?, 'late.jsonl', 1, ?)",
            [cid, f"{DAYS[0]} 12:00:00", DAYS[1], f"{DAYS[2]} 00:00:00"],
        )
        from ai_data_platform.features.compile import customer_daily_sql

        after = con.execute(f"SELECT * EXCLUDE (_partition_date) FROM ({customer_daily_sql(DAYS[0])}) ORDER BY customer_id").fetchall()
        assert [r[:-1] for r in before] == after
        # ...but the same event exported on DAYS[0] itself does count
        con.execute(
            "UPDATE staging.events SET _partition_date = ?, _available_at = ? WHERE event_id = 'E-late'",
            [DAYS[0], f"{DAYS[0]} 12:00:05"],
        )
        changed = con.execute(f"SELECT logins_7d FROM ({customer_daily_sql(DAYS[0])}) WHERE customer_id = ?", [cid]).fetchone()[0]
        old = dict((r[0], r) for r in before)[cid]
        cols = [c for c, _ in warehouse.table_columns(con, "features.customer_daily")]
        assert changed == old[cols.index("logins_7d")] + 1
    finally:
        con.close()


def test_corrupted_day_fails_its_gate_and_features_are_not_built(tmp_path):
    paths = settings.Paths(tmp_path / "corrupt")
    bad_day = END
    generate(LandingZones.from_settings(paths), customers=2000, days=3, end=END, seed=11, corrupt=[("payments", bad_day, 0.3)])
    instance = dg.DagsterInstance.ephemeral()
    for day in (END - timedelta(days=2), END - timedelta(days=1)):
        assert materialize_day(paths, day, instance).success
    result = materialize_day(paths, bad_day, instance)
    assert not result.success
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    ri = [e for e in failed if e.check_name == "referential_integrity"]
    assert [e.asset_key.to_user_string() for e in ri] == ["staging/payments"]
    message = ri[0].metadata["message"].text
    assert "staging.payments partition 2026-11-20" in message and "unknown customers" in message
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "features/customer_daily" not in materialized
    assert "staging/payments" in materialized  # the gate judges what was staged
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM features.customer_daily WHERE _partition_date = ?", [bad_day]).fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM features.customer_daily WHERE _partition_date = ?", [END - timedelta(days=1)]).fetchone()[0] > 0
    finally:
        con.close()


def test_negative_amounts_fail_the_gx_gate_with_expectation_detail(tmp_path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    paths = settings.Paths(tmp_path / "negative")
    generate(LandingZones.from_settings(paths), customers=2000, days=2, end=END, seed=5)
    from ai_data_platform.sources.contracts import PAYMENTS

    path = LandingZones.from_settings(paths).file(PAYMENTS, END)
    table = pq.read_table(path)
    n = table.num_rows
    flip = [i % 3 == 0 for i in range(n)]  # a third of the rows
    amount = pc.if_else(flip, pc.negate(table.column("amount")), table.column("amount"))
    pq.write_table(table.set_column(table.schema.get_field_index("amount"), "amount", amount), path)
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_day(paths, END - timedelta(days=1), instance).success
    result = materialize_day(paths, END, instance)
    assert not result.success
    gx = [e for e in result.get_asset_check_evaluations() if e.check_name == "gx_suite" and e.asset_key.path == ["staging", "payments"]]
    assert len(gx) == 1 and not gx[0].passed
    message = gx[0].metadata["message"].text
    assert "staging.payments partition 2026-11-20" in message
    assert "expect_column_values_to_be_between(amount)" in message and "rows unexpected" in message
    failures = gx[0].metadata["failures"].value["2026-11-20"]
    between = next(f for f in failures if f["expectation"] == "expect_column_values_to_be_between")
    assert between["unexpected_count"] >= n // 3 - 5 and all(v < 0 for v in between["sample_unexpected"])
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "features/customer_daily" not in materialized
