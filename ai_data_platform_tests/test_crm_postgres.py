"""The CRM read from a real PostgreSQL database instead of the daily export.

Pure window / watermark / de-duplication logic first, then against the local PostgreSQL (one
fresh database for this module, dropped afterwards): seeding, extraction by watermark, a failed
load that leaves no trace, a late update caught by the overlap, a soft delete that takes the
customer out of the feature spine and Customer 360, and staging equal to the file export's.
"""

import csv
import os
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import psycopg
import pyarrow as pa
import pytest

from ai_data_platform import settings, warehouse
from ai_data_platform.features.compile import spine_ctes
from ai_data_platform.governance.stores import PersonalData, RegionalStores, alias
from ai_data_platform.marts.customer_360 import customer_360_sql
from ai_data_platform.resources import build_resources
from ai_data_platform.sources import crm_database, raw_load, staging
from ai_data_platform.sources import crm_postgres as crm
from ai_data_platform.sources.assets import raw_assets, staging_assets
from ai_data_platform.sources.contracts import CUSTOMERS, REGIONS, SOURCE_TABLES
from ai_data_platform.sources.landing import LandingZones
from ai_data_platform.sources.simulator import generate

from .conftest import END
from .services import POSTGRES, require_service

DAYS = [END - timedelta(days=2), END - timedelta(days=1), END]
KEY = "test-key"


def _personal() -> PersonalData:
    """The regional stores under the test's ADP_DATA_DIR (the ``con`` fixture's data dir)."""
    return PersonalData(KEY, RegionalStores.from_settings())
UTC = timezone.utc


# ---------------------------------------------------------------- pure logic


def test_first_window_is_a_full_extraction_and_later_ones_reach_the_overlap_below_the_watermark():
    first = crm.extract_window(date(2026, 11, 18), None)
    assert (first.lower, first.upper) == (None, datetime(2026, 11, 19))
    wm = datetime(2026, 11, 18, 23, 40)
    later = crm.extract_window(date(2026, 11, 19), wm, timedelta(minutes=90))
    assert (later.lower, later.upper) == (datetime(2026, 11, 18, 22, 10), datetime(2026, 11, 20))
    with pytest.raises(ValueError, match="overlap"):
        crm.extract_window(date(2026, 11, 19), wm, timedelta(minutes=-1))


def test_watermark_never_moves_backwards():
    wm = datetime(2026, 11, 19, 12, 0)
    late = [{"customer_id": "C1", "updated_at": datetime(2026, 11, 19, 11, 0, tzinfo=UTC)}]
    assert crm.advance_watermark(wm, late) == wm
    newer = [{"customer_id": "C1", "updated_at": datetime(2026, 11, 19, 14, 0, tzinfo=timezone(timedelta(hours=2)))}]
    assert crm.advance_watermark(wm, newer) == datetime(2026, 11, 19, 12, 0)  # 14:00+02:00 is noon UTC
    assert crm.advance_watermark(None, []) is None


def test_new_versions_skip_loaded_ones_and_keep_each_customers_latest():
    t = lambda h: datetime(2026, 11, 19, h, tzinfo=UTC)  # noqa: E731
    extracted = [
        {"customer_id": "C2", "updated_at": t(1)},
        {"customer_id": "C1", "updated_at": t(2)},  # already in raw (the overlap re-reads it)
        {"customer_id": "C3", "updated_at": t(5)},  # supersedes C3's 03:00 version, whatever the order
        {"customer_id": "C3", "updated_at": t(3)},
        {"customer_id": "C4", "updated_at": t(4)},
    ]
    loaded = [("C1", datetime(2026, 11, 19, 2))]
    kept = crm.new_versions(extracted, loaded)
    assert [(v["customer_id"], v["updated_at"].hour) for v in kept] == [("C2", 1), ("C4", 4), ("C3", 5)]


def test_database_values_render_as_the_file_export_writes_them():
    assert crm.render_value("updated_at", datetime(2026, 11, 20, 8, 0, tzinfo=UTC)) == "2026-11-20T08:00:00Z"
    assert crm.render_value("updated_at", datetime(2026, 11, 20, 9, 0, 0, 250000, tzinfo=timezone(timedelta(hours=1)))) == "2026-11-20T08:00:00.250000Z"
    assert crm.render_value("marketing_consent", False) == "false"
    assert crm.render_value("deleted_at", None) is None
    table = crm.raw_records([{c: None for c in CUSTOMERS.raw_column_names} | {"customer_id": "C1", "updated_at": datetime(2026, 1, 1, tzinfo=UTC)}])
    assert table.column_names == [*CUSTOMERS.raw_column_names, "_row_number", "_raw_line"]
    assert table.column("_row_number").to_pylist() == [1]


def test_connection_strings_are_validated_and_never_echo_credentials():
    assert crm.source_label("postgresql://crm:s3cret@db.internal:6543/crm") == "postgresql://db.internal:6543/crm/customers"
    with pytest.raises(ValueError, match="CRM_DATABASE_URL"):
        crm.source_label("postgresql://host/db?nonsense_option=1")


def test_settings_read_the_database_url_and_validate_the_overlap(monkeypatch):
    monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    monkeypatch.delenv("CRM_OVERLAP_MINUTES", raising=False)
    assert settings.crm_database_url() is None and settings.crm_overlap() == crm.OVERLAP
    monkeypatch.setenv("CRM_DATABASE_URL", " postgresql://h/crm ")
    monkeypatch.setenv("CRM_OVERLAP_MINUTES", "90")
    assert (settings.crm_database_url(), settings.crm_overlap()) == ("postgresql://h/crm", timedelta(minutes=90))
    monkeypatch.setenv("CRM_OVERLAP_MINUTES", "1h")
    with pytest.raises(ValueError, match="CRM_OVERLAP_MINUTES"):
        settings.crm_overlap()


def test_table_drift_names_missing_and_extra_columns_and_refuses_a_table_without_keys():
    present = [c for c in CUSTOMERS.raw_column_names if c != "deleted_at"] + ["crm_owner"]
    assert crm.column_drift(present) == (("deleted_at",), ("crm_owner",))
    with pytest.raises(LookupError, match="updated_at"):
        crm.column_drift([c for c in CUSTOMERS.raw_column_names if c != "updated_at"])
    with pytest.raises(LookupError, match="no table"):
        crm.column_drift([])


def test_seed_rows_leave_out_what_a_typed_table_cannot_hold():
    row = {c: None for c in CUSTOMERS.column_names} | {"customer_id": "C1", "name": "Ann", "updated_at": "2026-11-20T08:00:00Z", "marketing_consent": "true"}
    rows = [
        row,
        row,  # the same version again
        row | {"customer_id": "C2", "updated_at": "not-a-date"},
        row | {"customer_id": "C3", "marketing_consent": "maybe"},
        row | {"customer_id": "C4", "name": None},  # kept: staging quarantines it, as from a file
        {c: None for c in CUSTOMERS.column_names},  # a malformed record
    ]
    raw_lines = [None] * 5 + ["C5,truncated"]
    table = pa.table({c: [r[c] for r in rows] for c in CUSTOMERS.column_names} | {"_raw_line": raw_lines})
    seeded = crm.seed_rows(table)
    assert [v["customer_id"] for v in seeded.versions] == ["C1", "C4"]
    assert seeded.versions[0]["marketing_consent"] is True and seeded.versions[0]["deleted_at"] is None
    assert seeded.skipped == {"malformed": 1, "invalid_updated_at": 1, "invalid_value": 1, "duplicate_version": 1}


# ---------------------------------------------------------------- against PostgreSQL


@pytest.fixture(scope="module")
def pg_database():
    """A fresh database for this module (dropped afterwards); yields its URL."""
    require_service(*POSTGRES)
    name = f"adp_crm_test_{os.getpid()}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    """Every source's landing files for 3 days of 50 customers, with plenty of dirt."""
    zones = LandingZones.from_settings(settings.Paths(tmp_path_factory.mktemp("crm_landing")))
    manifest = generate(zones, customers=50, days=3, end=END, seed=26, dirty_rate=0.05)
    return zones, manifest


@pytest.fixture()
def crm_url(pg_database, landing):
    """The module database freshly seeded with the landed CRM exports."""
    crm_database.seed(pg_database, landing[0], DAYS)
    return pg_database


@pytest.fixture()
def con(data_dir):
    c = warehouse.connect(settings.Paths(data_dir).warehouse)
    warehouse.ensure_schemas(c)
    yield c
    c.close()


def _pg(url: str, query: str, params=()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def _add_version(url: str, customer_id: str, updated_at: datetime, deleted_at: datetime | None = None) -> None:
    """The CRM writes a new version of a customer (its latest profile, new timestamps)."""
    _pg(
        url,
        "INSERT INTO customers SELECT customer_id, name, email, phone, country, region, segment, signup_at, "
        "marketing_consent, %s, %s FROM customers WHERE customer_id = %s ORDER BY updated_at DESC LIMIT 1",
        [updated_at.replace(tzinfo=UTC), deleted_at and deleted_at.replace(tzinfo=UTC), customer_id],
    )


def _quiet_customers(url: str, since: datetime, n: int) -> list[str]:
    """``n`` customers with no version at or after ``since``."""
    rows = _pg(url, "SELECT customer_id FROM customers GROUP BY 1 HAVING max(updated_at) < %s ORDER BY 1 LIMIT %s", [since.replace(tzinfo=UTC), n])
    assert len(rows) == n
    return [r[0] for r in rows]


def _landed_versions(zones: LandingZones) -> set[tuple[str, str]]:
    """(customer_id, updated_at) of every whole landed CRM record with a parseable updated_at, of every region."""
    out = set()
    for path in (p for day in DAYS for p in zones.files(CUSTOMERS, day)):
        with path.open(newline="") as fh:
            for rec in csv.DictReader(fh):
                if None in rec.values() or rec.get(None):
                    continue  # a malformed record: too few or too many fields
                try:
                    datetime.fromisoformat(rec["updated_at"])
                except ValueError:
                    continue
                out.add((rec["customer_id"], rec["updated_at"]))
    return out


def _raw_versions(con, day) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT customer_id, updated_at FROM raw.customers WHERE _partition_date = ? ORDER BY ALL", [day]
    ).fetchall()


def _pg_versions(url, lower, upper) -> list[tuple[str, str]]:
    rows = _pg(
        url,
        "SELECT customer_id, updated_at FROM customers WHERE updated_at >= %s AND updated_at < %s",
        [lower or datetime(1900, 1, 1, tzinfo=UTC), upper.replace(tzinfo=UTC)],
    )
    return sorted((cid, crm.render_timestamp(ua)) for cid, ua in rows)


def test_seeding_writes_each_exported_version_once_with_a_soft_delete_column(crm_url, landing):
    zones, manifest = landing
    columns = [r[0] for r in _pg(crm_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'customers'")]
    assert {"updated_at", "deleted_at"} <= set(columns)
    stored = {(cid, crm.render_timestamp(ua)) for cid, ua in _pg(crm_url, "SELECT customer_id, updated_at FROM customers")}
    assert stored == _landed_versions(zones)
    assert _pg(crm_url, "SELECT count(*), count(deleted_at) FROM customers") == [(len(stored), 0)]
    report = crm_database.seed(crm_url, zones, DAYS)  # seeding again replaces, never appends
    dirt = manifest["totals"]["customers"]["dirt"]
    assert report.versions == len(stored) == _pg(crm_url, "SELECT count(*) FROM customers")[0][0]
    assert report.skipped["duplicate_version"] == dirt["duplicate"] > 0
    assert report.skipped["malformed"] == dirt["malformed"] > 0
    assert report.versions + sum(report.skipped.values()) == manifest["totals"]["customers"]["rows"]


def test_adp_generate_seeds_the_database_named_by_its_flag(pg_database, landing, data_dir, capsys):
    from ai_data_platform import cli

    argv = ["generate", "--customers", "50", "--days", "3", "--seed", "26", "--end", END.isoformat()]
    assert cli.main([*argv, "--crm-database-url", pg_database]) == 0
    assert f"into {crm.source_label(pg_database)}" in capsys.readouterr().out
    stored = {(cid, crm.render_timestamp(ua)) for cid, ua in _pg(pg_database, "SELECT customer_id, updated_at FROM customers")}
    assert stored == _landed_versions(LandingZones.from_settings())
    assert cli.main([*argv, "--crm-database-url", "postgresql://127.0.0.1/x?no_such_option=1"]) == 2
    assert "not a valid PostgreSQL connection string" in capsys.readouterr().err


def test_each_partition_extracts_its_days_versions_by_the_watermark(crm_url, con):
    a, b, c = _quiet_customers(crm_url, datetime.combine(DAYS[0], datetime.min.time()), 3)
    midnight = datetime.combine(DAYS[2], datetime.min.time())
    _add_version(crm_url, a, midnight - timedelta(hours=14))  # day 2
    _add_version(crm_url, b, midnight)  # the first instant of day 3
    _add_version(crm_url, c, midnight + timedelta(days=1, seconds=-1))  # its last second
    for day in DAYS:  # one run per day, as the nightly schedule does
        raw_load.load_crm_days(con, crm_url, [day], personal=_personal())
    marks = con.execute(
        "SELECT _partition_date, watermark, window_lower, window_upper FROM meta.crm_watermark ORDER BY 1"
    ).fetchall()
    assert [m[0] for m in marks] == DAYS
    assert marks[0][2] is None  # the first load is a full extraction, like the first export
    for (_, previous, _, _), (_, _, lower, _) in zip(marks, marks[1:]):
        assert lower == previous - crm.OVERLAP
    everything_loaded = []
    for day, watermark, _, upper in marks:
        lower = datetime.combine(day, datetime.min.time(), UTC) if day != DAYS[0] else None
        assert _raw_versions(con, day) == _pg_versions(crm_url, lower, upper)
        everything_loaded += _raw_versions(con, day)
        newest = max(datetime.fromisoformat(ua).replace(tzinfo=None) for _, ua in everything_loaded)
        assert watermark == newest
    assert len(everything_loaded) == len(set(everything_loaded)) == _pg(crm_url, "SELECT count(*) FROM customers")[0][0]
    assert (a, "2026-11-19T10:00:00Z") in _raw_versions(con, DAYS[1])
    assert {(b, "2026-11-20T00:00:00Z"), (c, "2026-11-20T23:59:59Z")} <= set(_raw_versions(con, DAYS[2]))
    # Re-running a partition replaces it exactly and leaves the watermarks alone.
    before = (_raw_versions(con, DAYS[1]), con.execute("SELECT * EXCLUDE (_loaded_at) FROM meta.crm_watermark ORDER BY 1").fetchall())
    raw_load.load_crm_days(con, crm_url, [DAYS[1]], personal=_personal())
    assert (_raw_versions(con, DAYS[1]), con.execute("SELECT * EXCLUDE (_loaded_at) FROM meta.crm_watermark ORDER BY 1").fetchall()) == before


def test_a_failed_load_leaves_raw_and_watermark_unchanged_and_the_retry_loads_each_version_once(crm_url, con, monkeypatch):
    raw_load.load_crm_days(con, crm_url, DAYS[:1], personal=_personal())
    watermark = con.execute("SELECT max(watermark) FROM meta.crm_watermark").fetchone()[0]
    rows = con.execute("SELECT count(*) FROM raw.customers").fetchone()[0]
    fetch = crm_database.fetch_versions
    calls = []

    def connection_lost_on_the_second_day(*args):
        calls.append(args)
        if len(calls) == 2:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return fetch(*args)

    monkeypatch.setattr(crm_database, "fetch_versions", connection_lost_on_the_second_day)
    with pytest.raises(psycopg.OperationalError):
        raw_load.load_crm_days(con, crm_url, DAYS[1:], personal=_personal())
    assert con.execute("SELECT max(watermark) FROM meta.crm_watermark").fetchone()[0] == watermark
    assert con.execute("SELECT count(*) FROM raw.customers").fetchone()[0] == rows
    assert con.execute("SELECT count(*) FROM meta.crm_watermark WHERE _partition_date > ?", [DAYS[0]]).fetchone()[0] == 0

    monkeypatch.setattr(crm_database, "fetch_versions", fetch)
    raw_load.load_crm_days(con, crm_url, DAYS[1:], personal=_personal())
    versions = con.execute("SELECT customer_id, updated_at FROM raw.customers").fetchall()
    assert len(versions) == len(set(versions)) == _pg(crm_url, "SELECT count(*) FROM customers")[0][0]
    assert con.execute("SELECT max(watermark) FROM meta.crm_watermark").fetchone()[0] > watermark


def test_a_late_update_within_the_overlap_is_caught_once(crm_url, con):
    raw_load.load_crm_days(con, crm_url, DAYS, personal=_personal())
    watermark = con.execute("SELECT max(watermark) FROM meta.crm_watermark").fetchone()[0]
    ids = _quiet_customers(crm_url, watermark - timedelta(hours=3), 3)  # none of their versions near the watermark
    late = {  # committed after the last run, with updated_at at or below its watermark
        ids[0]: watermark,
        ids[1]: watermark - timedelta(minutes=30),
        ids[2]: watermark - crm.OVERLAP - timedelta(minutes=30),  # older than the overlap reaches
    }
    for cid, updated_at in late.items():
        _add_version(crm_url, cid, updated_at)
    next_day, day_after = END + timedelta(days=1), END + timedelta(days=2)
    raw_load.load_crm_days(con, crm_url, [next_day], personal=_personal())
    expected = sorted((cid, crm.render_timestamp(late[cid])) for cid in ids[:2])
    assert _raw_versions(con, next_day) == expected
    raw_load.load_crm_days(con, crm_url, [next_day], personal=_personal())  # a re-run
    raw_load.load_crm_days(con, crm_url, [day_after], personal=_personal())  # its window overlaps the late versions again
    assert _raw_versions(con, next_day) == expected
    assert _raw_versions(con, day_after) == []
    assert con.execute("SELECT max(watermark) FROM meta.crm_watermark").fetchone()[0] == watermark


def _stage_everything(con, zones, crm_url):
    raw_load.load_crm_days(con, crm_url, DAYS, personal=_personal())
    for t in SOURCE_TABLES:
        if t is not CUSTOMERS:
            raw_load.load_days(con, t, zones, DAYS, _personal())
    for t in SOURCE_TABLES:  # customers first: the others check their customer references
        staging.stage_days(con, t, DAYS, _personal())


def _spine(con, day) -> set[str]:
    return {r[0] for r in con.execute("WITH " + ",\n".join(spine_ctes(day)) + " SELECT customer_id FROM spine").fetchall()}


def _customer_360(con, day) -> set[str]:
    return {r[0] for r in con.execute(f"SELECT customer_id FROM ({customer_360_sql(day)})").fetchall()}


def test_a_soft_delete_reaches_staging_and_takes_the_customer_out_of_spine_and_customer_360(crm_url, con, landing):
    _stage_everything(con, landing[0], crm_url)
    spine, c360 = {d: _spine(con, d) for d in DAYS[1:]}, {d: _customer_360(con, d) for d in DAYS[1:]}
    victim = min(spine[DAYS[1]] & spine[DAYS[2]])
    deleted_at = datetime.combine(DAYS[2], datetime.min.time()) + timedelta(hours=9)
    _add_version(crm_url, victim, deleted_at, deleted_at=deleted_at)  # the CRM soft-deletes the customer
    raw_load.load_crm_days(con, crm_url, DAYS[2:], personal=_personal())  # the nightly run for the day of the deletion
    staging.stage_days(con, CUSTOMERS, DAYS[2:], _personal())

    raw = con.execute("SELECT _partition_date, deleted_at FROM raw.customers WHERE customer_id = ? AND deleted_at IS NOT NULL", [victim]).fetchall()
    assert raw == [(DAYS[2], crm.render_timestamp(deleted_at))]
    staged = con.execute("SELECT deleted_at FROM staging.customers WHERE customer_id = ? AND deleted_at IS NOT NULL", [victim]).fetchall()
    assert staged == [(deleted_at,)]
    assert (_spine(con, DAYS[1]), _customer_360(con, DAYS[1])) == (spine[DAYS[1]], c360[DAYS[1]])  # the day before: unchanged
    assert _spine(con, DAYS[2]) == spine[DAYS[2]] - {victim}
    assert _customer_360(con, DAYS[2]) == c360[DAYS[2]] - {victim}


def _asset(assets, key: str):
    return next(a for a in assets if dg.AssetKey(key.split("/")) in a.keys)


@pytest.mark.slow
def test_staging_from_postgres_equals_staging_from_the_file_export(crm_url, landing, data_dir, tmp_path, monkeypatch):
    # Through Dagster, with the database: one single-run backfill of raw + staging customers.
    monkeypatch.setenv("CRM_DATABASE_URL", crm_url)
    result = dg.materialize(  # the data dir has no landing files: only the database can feed it
        [_asset(raw_assets, "raw/customers"), _asset(staging_assets, "staging/customers")],
        resources=build_resources(settings.Paths(data_dir)),
        tags={"dagster/asset_partition_range_start": DAYS[0].isoformat(), "dagster/asset_partition_range_end": DAYS[-1].isoformat()},
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations() if e.check_name != "volume_anomaly")
    raw_md = next(e.materialization.metadata for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(["raw", "customers"]))
    assert raw_md["files"].value == [crm.source_label(crm_url)] * 3
    assert len(raw_md["extract_windows"].value) == 3

    # From the file export, by the same functions the file-based asset calls.
    file_con = warehouse.connect(tmp_path / "file.duckdb")
    warehouse.ensure_schemas(file_con)
    file_personal = PersonalData(build_resources()["pii"].key, RegionalStores.from_settings(settings.Paths(tmp_path)))
    raw_load.load_days(file_con, CUSTOMERS, landing[0], DAYS, file_personal)
    staging.stage_days(file_con, CUSTOMERS, DAYS, file_personal)

    query = "SELECT * EXCLUDE (_file, _row_number) FROM ({}) ORDER BY ALL"
    identity = " UNION ALL ".join(f"SELECT * FROM {alias(r)}.identity.customer_pii" for r in REGIONS)
    db_con = warehouse.connect(settings.Paths(data_dir).warehouse, read_only=True)
    try:
        with RegionalStores.from_settings(settings.Paths(data_dir)).attached(db_con, read_only=True), file_personal.stores.attached(file_con):
            for table in ("SELECT * FROM staging.customers", identity):
                from_db = db_con.execute(query.format(table)).fetchall()
                assert from_db == file_con.execute(query.format(table)).fetchall()
                assert len(from_db) > 50
    finally:
        db_con.close()
        file_con.close()
