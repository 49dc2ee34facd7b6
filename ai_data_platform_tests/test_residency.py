"""Data residency: personal data lives only in the store of its subject's region, moves with the
subject, and the check finds anything stored elsewhere, naming store, table and count."""

import csv
from datetime import date, timedelta

import duckdb
import pytest

from ai_data_platform import settings, warehouse
from ai_data_platform.governance import residency
from ai_data_platform.governance.stores import PERSONAL_TABLES, PersonalData, RegionalStores, alias
from ai_data_platform.sources import raw_load, staging
from ai_data_platform.sources.contracts import CUSTOMERS, REGIONS, SOURCE_TABLES, SUPPORT_TICKETS
from ai_data_platform.sources.simulator import generate

from .conftest import END

KEY = "residency-test-key"
PERSONAL_SOURCES = (CUSTOMERS, SUPPORT_TICKETS)


def _personal(root) -> PersonalData:
    return PersonalData(KEY, RegionalStores.from_settings(settings.Paths(root)))


def _load(con, landing, days, personal, tables=SOURCE_TABLES):
    for t in tables:
        raw_load.load_days(con, t, landing, days, personal)
    return {t.name: staging.stage_days(con, t, days, personal) for t in tables}


def _rows(con, region, table, where="TRUE", params=()):
    return con.execute(f"SELECT * FROM {alias(region)}.{table} WHERE {where}", list(params)).fetchall()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Three days of 80 simulated customers loaded and staged, with the stores."""
    root = tmp_path_factory.mktemp("residency")
    paths = settings.Paths(root)
    generate(paths.landing, customers=80, days=3, end=END, seed=17)
    personal = _personal(root)
    con = warehouse.connect(paths.warehouse)
    warehouse.ensure_schemas(con)
    _load(con, paths.landing, [END - timedelta(days=i) for i in (2, 1, 0)], personal)
    con.close()
    return paths, personal


def test_each_customers_personal_data_is_only_in_their_regions_store(simulated):
    paths, personal = simulated
    con = warehouse.connect(paths.warehouse)
    try:
        latest = dict(con.execute("SELECT customer_id, arg_max(region, updated_at) FROM staging.customers GROUP BY 1").fetchall())
        assert set(latest.values()) == set(REGIONS)
        raw_cols = {c for c, _ in warehouse.table_columns(con, "raw.customers")}
        assert not {"name", "email", "phone"} & raw_cols
        with personal.stores.attached(con) as aliases:
            for region in REGIONS:
                held = {r[0] for r in con.execute(f"SELECT DISTINCT customer_id FROM {alias(region)}.identity.customer_pii").fetchall()}
                assert held and held == {c for c, r in latest.items() if r == region}, region
                raw_held = {r[0] for r in con.execute(
                    f"SELECT DISTINCT trim(customer_id) FROM {alias(region)}.raw.customers_personal WHERE customer_id IN (SELECT customer_id FROM staging.customers)"
                ).fetchall()}
                assert raw_held == held, region
            assert residency.violations(con, aliases, personal.stores.paths, paths.warehouse) == []
    finally:
        con.close()


def test_an_eu_row_in_the_us_store_or_the_main_warehouse_is_caught_naming_store_table_and_count(simulated, tmp_path):
    import shutil

    paths = settings.Paths(tmp_path / "copy")
    shutil.copytree(simulated[0].root, paths.root)
    personal = _personal(paths.root)
    con = warehouse.connect(paths.warehouse)
    try:
        with personal.stores.attached(con) as aliases:
            eu = con.execute("SELECT customer_id, email, phone FROM personal_eu.identity.customer_pii ORDER BY customer_id LIMIT 2").fetchall()
            con.execute("INSERT INTO personal_us.identity.customer_pii SELECT * FROM personal_eu.identity.customer_pii WHERE customer_id = ?", [eu[0][0]])
            con.execute("CREATE TABLE marts.notes (customer_id VARCHAR, note VARCHAR)")
            con.execute("INSERT INTO marts.notes VALUES (?, 'called back'), (?, ?)", [eu[1][0], eu[1][0], f"{eu[1][1]}"])
            con.execute(
                "UPDATE staging.events SET device_id = ? WHERE rowid IN (SELECT rowid FROM staging.events WHERE _partition_date = ? LIMIT 3)",
                [eu[1][1], END],
            )
            found = residency.violations(con, aliases, personal.stores.paths, paths.warehouse)
            # a run's check searches the warehouse's partitioned tables in its own days only
            earlier = residency.violations(con, aliases, personal.stores.paths, paths.warehouse, [END - timedelta(days=1)])
    finally:
        con.close()
    messages = sorted(v.describe() for v in found)
    us_store = str(personal.stores.paths["US"])
    assert f"US store ({us_store}): identity.customer_pii: {1} row(s) of EU subjects (they belong in the EU store)" in messages
    assert f"main warehouse ({paths.warehouse}): marts.notes.note: 1 row(s) holding direct identifiers (names, emails, phones) of EU subjects" in messages
    assert f"main warehouse ({paths.warehouse}): staging.events.device_id: 3 row(s) holding direct identifiers (names, emails, phones) of EU subjects" in messages
    # a pseudonymous customer id in the main warehouse is allowed: it is how cross-region tables join
    assert not any("marts.notes.customer_id" in m for m in messages)
    assert len(messages) >= 3
    assert not any("staging.events" in v.describe() for v in earlier) and any("marts.notes.note" in v.describe() for v in earlier)


def _csv(path, header, rows, raw_lines=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([r.get(h, "") for h in header])
        for line in raw_lines:
            fh.write(line + "\n")


def _customer(cid, region, email, updated_at, **over):
    return {
        "customer_id": cid, "name": f"Name {cid}", "email": email, "phone": f"+49 151 {cid[1:]}", "country": "DE",
        "region": region, "segment": "smb", "signup_at": "2025-01-01T10:00:00Z", "marketing_consent": "true",
        "updated_at": updated_at, **over,
    }


def _ticket(tid, email, created_at):
    return {"ticket_id": tid, "customer_email": email, "created_at": created_at, "channel": "email",
            "category": "billing", "priority": "low", "status": "open", "body": f"text of {tid}"}


def test_a_customer_who_moves_region_takes_all_their_personal_data_along(tmp_path):
    landing, day1, day2 = tmp_path / "landing", date(2026, 11, 19), date(2026, 11, 20)
    mover = "mover@example.eu"
    header, theader = list(CUSTOMERS.column_names), list(SUPPORT_TICKETS.column_names)
    _csv(CUSTOMERS.landing_file(landing, day1), header, [
        _customer("C1", "EU", mover, "2026-11-19T08:00:00Z"),
        _customer("C2", "US", "stay@example.com", "2026-11-19T08:00:00Z"),
        _customer("C1", "EU", mover, "2026-11-19T09:00:00Z", marketing_consent="maybe"),  # quarantined, still C1's
    ], raw_lines=["C9,Somebody,truncated"])  # unsplittable: no region can be known
    _csv(SUPPORT_TICKETS.landing_file(landing, day1), theader, [
        _ticket("T1", mover, "2026-11-19T10:00:00Z"),
        _ticket("T2", "stranger@example.org", "2026-11-19T10:00:00Z"),  # unknown email: quarantined
    ])
    _csv(CUSTOMERS.landing_file(landing, day2), header, [_customer("C1", "US", mover, "2026-11-20T08:00:00Z")])
    _csv(SUPPORT_TICKETS.landing_file(landing, day2), theader, [_ticket("T3", mover, "2026-11-20T10:00:00Z")])

    personal = _personal(tmp_path)
    con = warehouse.connect(tmp_path / "warehouse.duckdb")
    warehouse.ensure_schemas(con)
    con.execute("SET force_compression = 'uncompressed'")  # so the stores' bytes can be searched at all
    first = _load(con, landing, [day1], personal, PERSONAL_SOURCES)
    eu_file = personal.stores.paths["EU"]
    assert mover.encode() in eu_file.read_bytes()
    with personal.stores.attached(con):
        assert len(_rows(con, "EU", "identity.customer_pii", "customer_id = 'C1'")) == 1
        assert len(_rows(con, "EU", "raw.support_tickets_personal", "ticket_id = 'T1'")) == 1
    placed = first["customers"][0].residency["quarantine.customers_personal"]
    assert placed["rows_by_region"] == {"EU": 2, "US": 0, "APAC": 0}  # C1's bad row and the unsplittable line
    assert placed["unresolved_records"] == ["crm/customers/2026-11-19.csv#4"]

    loads = raw_load.load_days(con, CUSTOMERS, landing, [day2], personal)  # C1 now lives in the US
    assert loads[0].extra["residency"]["moved_between_regions"] == {
        "identity.customer_pii EU->US": 1,
        "raw.customers_personal EU->US": 2,
        "raw.support_tickets_personal EU->US": 1,
        "quarantine.customers_personal EU->US": 1,
    }
    _load(con, landing, [day2], personal, (SUPPORT_TICKETS,))
    staging.stage_days(con, CUSTOMERS, [day2], personal)

    with personal.stores.attached(con) as aliases:
        for table in PERSONAL_TABLES:
            subject = "customer_id" if table.customer_id else "email_hash"
            value = "C1" if table.customer_id else con.execute("SELECT email_hash FROM staging.customers WHERE customer_id = 'C1' LIMIT 1").fetchone()[0]
            assert _rows(con, "EU", table.name, f"trim({subject}) = ?", [value]) == [], table.name
        assert {r[0] for r in con.execute("SELECT _partition_date FROM personal_us.identity.customer_pii WHERE customer_id = 'C1'").fetchall()} == {day1, day2}
        assert len(_rows(con, "US", "raw.support_tickets_personal", "ticket_id IN ('T1', 'T3')")) == 2
        assert len(_rows(con, "EU", "raw.support_tickets_personal", "ticket_id = 'T2'")) == 1  # unknown email: default store
        assert residency.violations(con, aliases, personal.stores.paths, tmp_path / "warehouse.duckdb") == []
    con.close()
    assert mover.encode() not in eu_file.read_bytes()  # moved out and the EU store compacted: nothing left behind
    us = duckdb.connect(str(personal.stores.paths["US"]), read_only=True)
    assert us.execute("SELECT count(*) FROM identity.customer_pii WHERE email = ?", [mover]).fetchone()[0] == 2
    us.close()


def test_the_blocking_residency_check_fails_the_run_that_finds_a_leak(simulated, tmp_path):
    import shutil

    import dagster as dg

    from ai_data_platform.governance.residency_checks import residency_check
    from ai_data_platform.resources import build_resources
    from ai_data_platform.sources.assets import raw_assets, staging_assets
    from ai_data_platform.sources.checks import source_checks

    paths = settings.Paths(tmp_path / "copy")
    shutil.copytree(simulated[0].root, paths.root)
    personal = _personal(paths.root)
    con = warehouse.connect(paths.warehouse)
    with personal.stores.attached(con):
        phone = con.execute("SELECT phone FROM personal_apac.identity.customer_pii WHERE phone IS NOT NULL LIMIT 1").fetchone()[0]
    con.execute("CREATE TABLE marts.callbacks AS SELECT ? AS phone", [phone])
    con.close()
    resources = build_resources(paths) | {"pii": build_resources(paths)["pii"].model_copy(update={"hmac_key": KEY})}
    result = dg.materialize(
        [*raw_assets, *staging_assets, *source_checks, residency_check],
        selection=dg.AssetSelection.groups("crm"),
        partition_key=END.isoformat(),
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    failed = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations() if not e.passed}
    assert set(failed) == {("identity/customer_pii", "residency")}
    message = failed[("identity/customer_pii", "residency")].metadata["message"].text
    assert message == f"main warehouse ({paths.warehouse}): marts.callbacks.phone: 1 row(s) holding direct identifiers (names, emails, phones) of APAC subjects"
