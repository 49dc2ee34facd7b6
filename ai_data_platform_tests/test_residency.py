"""Data residency: personal data lives only in the store of its subject's region, and its landing
files only in the region's landing zone; it moves with the subject, and the check finds anything
stored elsewhere, naming store (or zone), table (or file) and count."""

from datetime import date, timedelta

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ai_data_platform import settings, warehouse
from ai_data_platform.governance import residency
from ai_data_platform.governance.stores import PERSONAL_TABLES, PersonalData, RegionalStores, alias
from ai_data_platform.sources import raw_load, staging
from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS, PAYMENTS, REGIONS, SOURCE_TABLES, SUPPORT_TICKETS
from ai_data_platform.sources.landing import LandingZones
from ai_data_platform.sources.simulator import generate

from .conftest import END
from .test_staging_rules import _write_csv as _csv

KEY = "residency-test-key"
PERSONAL_SOURCES = (CUSTOMERS, SUPPORT_TICKETS)


def _personal(root) -> PersonalData:
    return PersonalData(KEY, RegionalStores.from_settings(settings.Paths(root)))


def _zones(root) -> LandingZones:
    return LandingZones.from_settings(settings.Paths(root))


def _load(con, zones, days, personal, tables=SOURCE_TABLES):
    for t in tables:
        raw_load.load_days(con, t, zones, days, personal)
    return {t.name: staging.stage_days(con, t, days, personal) for t in tables}


def _rows(con, region, table, where="TRUE", params=()):
    return con.execute(f"SELECT * FROM {alias(region)}.{table} WHERE {where}", list(params)).fetchall()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """Three days of 80 simulated customers loaded and staged, with the stores."""
    root = tmp_path_factory.mktemp("residency")
    paths = settings.Paths(root)
    generate(LandingZones.from_settings(paths), customers=80, days=3, end=END, seed=17)
    personal = _personal(root)
    con = warehouse.connect(paths.warehouse)
    warehouse.ensure_schemas(con)
    _load(con, _zones(root), [END - timedelta(days=i) for i in (2, 1, 0)], personal)
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
            # the stores, the warehouse and every landing file of every zone: nothing out of place
            assert residency.violations(con, aliases, personal.stores.paths, paths.warehouse, zones=_zones(paths.root)) == []
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


def _customer(cid, region, email, updated_at, **over):
    return {
        "customer_id": cid, "name": f"Name {cid}", "email": email, "phone": f"+49 151 {cid[1:]}", "country": "DE",
        "region": region, "segment": "smb", "signup_at": "2025-01-01T10:00:00Z", "marketing_consent": "true",
        "updated_at": updated_at, **over,
    }


def _ticket(tid, email, created_at):
    return {"ticket_id": tid, "customer_email": email, "created_at": created_at, "channel": "email",
            "category": "billing", "priority": "low", "status": "open", "body": f"text of {tid}"}


def _land(zones, t, day, rows_by_region, raw_lines=()):
    """One export per region (header only where a region has no rows); ``raw_lines`` in the EU's."""
    header = list(t.column_names)
    for region in REGIONS:
        _csv(zones.file(t, day, region), header, rows_by_region.get(region, []), raw_lines if region == "EU" else ())


def test_a_customer_who_moves_region_takes_all_their_personal_data_along(tmp_path):
    zones, day1, day2 = _zones(tmp_path), date(2026, 11, 19), date(2026, 11, 20)
    mover = "mover@example.eu"
    _land(zones, CUSTOMERS, day1, {
        "EU": [
            _customer("C1", "EU", mover, "2026-11-19T08:00:00Z"),
            _customer("C1", "EU", mover, "2026-11-19T09:00:00Z", marketing_consent="maybe"),  # quarantined, still C1's
        ],
        "US": [_customer("C2", "US", "stay@example.com", "2026-11-19T08:00:00Z")],
    }, raw_lines=["C9,Somebody,truncated"])  # unsplittable: no region can be known
    _land(zones, SUPPORT_TICKETS, day1, {"EU": [
        _ticket("T1", mover, "2026-11-19T10:00:00Z"),
        _ticket("T2", "stranger@example.org", "2026-11-19T10:00:00Z"),  # unknown email: quarantined
    ]})
    _land(zones, CUSTOMERS, day2, {"US": [_customer("C1", "US", mover, "2026-11-20T08:00:00Z")]})  # C1 now lives in the US
    _land(zones, SUPPORT_TICKETS, day2, {"US": [_ticket("T3", mover, "2026-11-20T10:00:00Z")]})

    personal = _personal(tmp_path)
    con = warehouse.connect(tmp_path / "warehouse.duckdb")
    warehouse.ensure_schemas(con)
    con.execute("SET force_compression = 'uncompressed'")  # so the stores' bytes can be searched at all
    first = _load(con, zones, [day1], personal, PERSONAL_SOURCES)
    eu_file = personal.stores.paths["EU"]
    assert mover.encode() in eu_file.read_bytes()
    with personal.stores.attached(con):
        assert len(_rows(con, "EU", "identity.customer_pii", "customer_id = 'C1'")) == 1
        assert len(_rows(con, "EU", "raw.support_tickets_personal", "ticket_id = 'T1'")) == 1
    placed = first["customers"][0].residency["quarantine.customers_personal"]
    assert placed["rows_by_region"] == {"EU": 2, "US": 0, "APAC": 0}  # C1's bad row and the unsplittable line
    assert placed["unresolved_records"] == [f"regions/EU/landing/crm/customers/{day1}.csv#3"]

    eu_exports = [zones.file(t, day1, "EU") for t in PERSONAL_SOURCES]
    mtimes = {p: p.stat().st_mtime_ns for t in PERSONAL_SOURCES for p in zones.files(t, day1)}
    loads = raw_load.load_days(con, CUSTOMERS, zones, [day2], personal)
    assert loads[0].extra["residency"]["moved_between_regions"] == {
        "identity.customer_pii EU->US": 1,
        "raw.customers_personal EU->US": 2,
        "raw.support_tickets_personal EU->US": 1,
        "quarantine.customers_personal EU->US": 1,
    }
    # their earlier exports move too: customer rows and tickets, out of the EU zone into the same
    # day's US files, byte for byte
    assert loads[0].extra["residency"]["landing_records_moved"] == {"customers EU->US": 2, "support_tickets EU->US": 1}
    assert all(mover.encode() not in p.read_bytes() for p in eu_exports)
    assert b"C9,Somebody,truncated" in zones.file(CUSTOMERS, day1, "EU").read_bytes()  # nobody's: stays
    assert b"T2," in zones.file(SUPPORT_TICKETS, day1, "EU").read_bytes()
    us_day1 = zones.file(CUSTOMERS, day1, "US").read_text().splitlines()
    assert us_day1[1].startswith("C2,") and [line.split(",")[:2] for line in us_day1[2:]] == [["C1", "Name C1"]] * 2
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # nothing to re-run: the data did not change
    assert raw_load.load_days(con, CUSTOMERS, zones, [day2], personal)[0].extra["residency"]["landing_records_moved"] == {}

    _load(con, zones, [day2], personal, (SUPPORT_TICKETS,))
    staging.stage_days(con, CUSTOMERS, [day2], personal)
    reloaded = raw_load.load_days(con, CUSTOMERS, zones, [day1], personal)  # day 1 again, from where its records are now
    assert reloaded[0].rows == 4

    with personal.stores.attached(con) as aliases:
        for table in PERSONAL_TABLES:
            subject = "customer_id" if table.customer_id else "email_hash"
            value = "C1" if table.customer_id else con.execute("SELECT email_hash FROM staging.customers WHERE customer_id = 'C1' LIMIT 1").fetchone()[0]
            assert _rows(con, "EU", table.name, f"trim({subject}) = ?", [value]) == [], table.name
        assert {r[0] for r in con.execute("SELECT _partition_date FROM personal_us.identity.customer_pii WHERE customer_id = 'C1'").fetchall()} == {day1, day2}
        assert len(_rows(con, "US", "raw.support_tickets_personal", "ticket_id IN ('T1', 'T3')")) == 2
        assert len(_rows(con, "EU", "raw.support_tickets_personal", "ticket_id = 'T2'")) == 1  # unknown email: default store
        assert residency.violations(con, aliases, personal.stores.paths, tmp_path / "warehouse.duckdb", zones=zones) == []
    con.close()
    assert mover.encode() not in eu_file.read_bytes()  # moved out and the EU store compacted: nothing left behind
    us = duckdb.connect(str(personal.stores.paths["US"]), read_only=True)
    assert us.execute("SELECT count(*) FROM identity.customer_pii WHERE email = ?", [mover]).fetchone()[0] == 2
    us.close()


def test_personal_data_in_another_regions_landing_zone_or_the_shared_one_is_caught_naming_file_and_count(simulated, tmp_path):
    import shutil

    paths = settings.Paths(tmp_path / "copy")
    shutil.copytree(simulated[0].root, paths.root)
    personal, zones = _personal(paths.root), _zones(paths.root)
    con = warehouse.connect(paths.warehouse)
    try:
        with personal.stores.attached(con, read_only=True) as aliases:
            email, name, phone = con.execute(
                "SELECT email, name, phone FROM personal_eu.identity.customer_pii WHERE phone IS NOT NULL ORDER BY customer_id LIMIT 1"
            ).fetchone()
            # an EU customer's record mis-exported to the US zone (twice), an EU email in the shared
            # events file, and a stray CRM export in the shared zone (the layout before regional landing)
            us_file = zones.file(CUSTOMERS, END, "US")
            with us_file.open("a") as fh:
                fh.write(f"C0099998,{name},{email.upper()},,DE,EU,smb,2025-01-01T10:00:00Z,true,{END}T08:00:00Z\n")
                fh.write(f"C0099999,Someone Else,{email},,DE,EU,smb,2025-01-01T10:00:00Z,true,{END}T09:00:00Z\n")
            events_file = zones.file(EVENTS, END - timedelta(days=1))
            with events_file.open("a") as fh:
                fh.write('{"event_id": "E999", "customer_id": "C0000001", "device_id": "%s"}\n' % email)
            stray = CUSTOMERS.landing_file(zones.shared, END)
            stray.parent.mkdir(parents=True)
            shutil.copyfile(zones.file(CUSTOMERS, END - timedelta(days=2), "EU"), stray)
            payments = zones.file(PAYMENTS, END)  # a phone in a Parquet column, and a note named by no day
            table = pq.read_table(payments)
            codes = pa.array([phone] + [None] * (table.num_rows - 1), pa.string())
            pq.write_table(table.set_column(table.schema.get_field_index("failure_code"), "failure_code", codes), payments)
            (zones.regional["APAC"] / "callbacks.txt").write_bytes(b"rappel \xe9: " + name.encode() + b"\n")  # not UTF-8
            found = residency.violations(con, aliases, personal.stores.paths, paths.warehouse, zones=zones)
            last_day = residency.violations(con, aliases, personal.stores.paths, paths.warehouse, [END], zones)
    finally:
        con.close()
    eu_rows = sum(1 for _ in stray.open()) - 1
    assert sorted(v.describe() for v in found) == sorted([
        f"US landing zone: regions/US/landing/crm/customers/{END}.csv: 2 record(s) holding names, emails or phones "
        "of EU subjects (they belong in the EU landing zone)",
        f"shared landing zone: landing/behavioral/events/{END - timedelta(days=1)}.jsonl: 1 record(s) holding names, "
        "emails or phones of EU subjects (personal data lands only in its subject's region's zone)",
        f"shared landing zone: landing/crm/customers/{END}.csv: {eu_rows} record(s) holding names, emails or phones "
        "of EU subjects (personal data lands only in its subject's region's zone)",
        f"shared landing zone: landing/billing/payments/{END}.parquet: 1 record(s) holding names, emails or phones "
        "of EU subjects (personal data lands only in its subject's region's zone)",
        "APAC landing zone: regions/APAC/landing/callbacks.txt: 1 record(s) holding names, emails or phones "
        "of EU subjects (they belong in the EU landing zone)",
    ])
    by_file = {v.table: v for v in found}
    assert by_file[f"regions/US/landing/crm/customers/{END}.csv"].personal_table == "raw.customers_personal"  # fails raw/customers_personal's check
    assert by_file[f"regions/US/landing/crm/customers/{END}.csv"].path == str(us_file)
    # a run's check searches the landing files of its own days (the events file is of the day before)
    # and every file not named by a day
    assert {v.table for v in last_day} == {f"regions/US/landing/crm/customers/{END}.csv", f"landing/crm/customers/{END}.csv",
                                         f"landing/billing/payments/{END}.parquet", "regions/APAC/landing/callbacks.txt"}


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
        eu_email = con.execute("SELECT email FROM personal_eu.identity.customer_pii ORDER BY customer_id LIMIT 1").fetchone()[0]
    con.execute("CREATE TABLE marts.callbacks AS SELECT ? AS phone", [phone])
    con.close()
    misplaced = _zones(paths.root).file(SUPPORT_TICKETS, END, "APAC")  # an EU customer's ticket in the APAC export
    with misplaced.open("a") as fh:
        fh.write(f"T0999999,{eu_email},{END}T10:00:00Z,email,billing,low,open,call me\n")
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
    assert set(failed) == {("identity/customer_pii", "residency"), ("raw/support_tickets_personal", "residency")}
    message = failed[("identity/customer_pii", "residency")].metadata["message"].text
    assert message == f"main warehouse ({paths.warehouse}): marts.callbacks.phone: 1 row(s) holding direct identifiers (names, emails, phones) of APAC subjects"
    message = failed[("raw/support_tickets_personal", "residency")].metadata["message"].text
    assert message == (f"APAC landing zone: regions/APAC/landing/crm/support_tickets/{END}.csv: 1 record(s) holding names, "
                       "emails or phones of EU subjects (they belong in the EU landing zone)")


def test_moving_landing_records_is_byte_exact_idempotent_and_safe_to_interrupt(tmp_path, monkeypatch):
    """A mover's records, an unsplittable line naming them included, leave the old region's export
    byte for byte; anybody else's stay; a crash after the target was written (the copy exists in
    both zones) is completed by the next run without a second copy."""
    from ai_data_platform.governance import residency_landing

    zones, day = _zones(tmp_path), date(2026, 11, 19)
    mover = "mover@example.eu"
    _land(zones, CUSTOMERS, day, {
        "EU": [_customer("C1", "EU", mover, "2026-11-19T08:00:00Z"), _customer("C2", "EU", "stay@example.eu", "2026-11-19T08:00:00Z")],
        "US": [_customer("C3", "US", "us@example.com", "2026-11-19T08:00:00Z")],
    }, raw_lines=["C1,Name C1,MOVER@example.eu", "C9,Somebody,truncated"])
    eu, us = zones.file(CUSTOMERS, day, "EU"), zones.file(CUSTOMERS, day, "US")
    eu_lines, us_before = eu.read_text().splitlines(keepends=True), us.read_text()
    mtimes = {eu: eu.stat().st_mtime_ns, us: us.stat().st_mtime_ns}
    movers = residency_landing._Movers({"C1": "US"}, {mover: "US"}, {"C1": "US", "C2": "EU", "C3": "US"})

    real_write = residency_landing.write_keeping_mtime
    def crash_on_the_source(path, data, mtime_ns=None):
        if path == eu:
            raise OSError("disk gone")
        real_write(path, data, mtime_ns)
    monkeypatch.setattr(residency_landing, "write_keeping_mtime", crash_on_the_source)
    with pytest.raises(OSError):
        residency_landing._relocate_file(CUSTOMERS, zones, day, "EU", movers)
    assert eu.read_text() == "".join(eu_lines)  # untouched: the records are in both zones, none lost
    monkeypatch.setattr(residency_landing, "write_keeping_mtime", real_write)

    assert residency_landing._relocate_file(CUSTOMERS, zones, day, "EU", movers).moved == {"customers EU->US": 2}
    assert eu.read_text() == "".join(eu_lines[i] for i in (0, 2, 4))  # header, C2, C9's line: exact bytes
    assert us.read_text() == us_before + eu_lines[1] + eu_lines[3]  # once, though written twice
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    assert residency_landing._relocate_file(CUSTOMERS, zones, day, "EU", movers) == residency_landing.Relocation()
