"""Staging rules on hand-made landing files: each bad row is quarantined by the rule it breaks,
exact duplicates are counted, PII never reaches staging, and rows are conserved."""

import csv
import json
import math
import re
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ai_data_platform import settings, warehouse
from ai_data_platform.governance.pii import hmac_hex
from ai_data_platform.governance.stores import PersonalData, RegionalStores
from ai_data_platform.sources import raw_load, staging
from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS, MAX_AMOUNT, PAYMENTS, REGIONS, SUPPORT_TICKETS
from ai_data_platform.sources.landing import LandingFileMissing, LandingZones

DAY = date(2026, 11, 20)
KEY = "test-key"
CUSTOMER_HEADER = list(CUSTOMERS.column_names)


def _customer(cid, email, **over):
    row = {
        "customer_id": cid, "name": "Ann Example", "email": email, "phone": "+49 151 1234",
        "country": "DE", "region": "EU", "segment": "smb", "signup_at": "2025-01-01T10:00:00Z",
        "marketing_consent": "true", "updated_at": "2026-11-20T08:00:00Z",
    }
    row.update(over)
    return row


def _write_csv(path, header, rows, raw_lines=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([r.get(h, "") for h in header])
        for line in raw_lines:
            fh.write(line + "\n")


def _zones(root) -> LandingZones:
    return LandingZones.from_settings(settings.Paths(root))


@pytest.fixture()
def landed(tmp_path):
    zones = _zones(tmp_path)
    eu = [
        _customer("C1", "Ann@Example.com"),
        _customer("C3", ""),  # not_null on email
        _customer("C4", "d@example.com", updated_at="2026-02-30T25:00:00Z"),  # invalid_timestamp
        _customer("C5", "e@example.com", region="MARS"),  # accepted_values
        _customer("C6", "f@example.com", marketing_consent="maybe"),  # invalid_boolean
        _customer("C1", "other@example.com"),  # unique_key (second C1)
    ]
    us = [_customer("C2", "bob@example.com", region="US")] * 2  # the second: an exact duplicate
    # one CRM export per region, read as one partition: EU records 1-7, US 8-9, APAC none
    _write_csv(zones.file(CUSTOMERS, DAY, "EU"), CUSTOMER_HEADER, eu, raw_lines=["C7,truncated"])
    _write_csv(zones.file(CUSTOMERS, DAY, "US"), CUSTOMER_HEADER, us)
    _write_csv(zones.file(CUSTOMERS, DAY, "APAC"), CUSTOMER_HEADER, [])

    pay_rows = [
        ("P1", "I1", "C1", 10.0, "EUR", "succeeded", None),
        ("P2", "I2", "C2", 5.0, "EUR", "failed", "card_declined"),
        ("P3", "I3", "C1", -4.0, "EUR", "succeeded", None),  # non_negative
        ("P4", "I4", "C999", 7.0, "EUR", "succeeded", None),  # known_customer
        ("P5", "I5", "C1", 7.0, "EUR", "??", None),  # accepted_values
    ]
    pay_rows += [
        ("P6", "I6", "C1", 1.0, "EUR", "succeeded", None),  # invalid_timestamp (2999)
        ("P7", "I7", "C1", float("nan"), "EUR", "succeeded", None),  # invalid_number: a DOUBLE column's NaN
        ("P8", "I8", "C1", float("inf"), "EUR", "succeeded", None),  # invalid_number
        ("P9", "I9", "C1", float("-inf"), "EUR", "succeeded", None),  # invalid_number, not non_negative
        ("P10", "I10", '["C1"]', 1.0, "EUR", "succeeded", None),  # invalid_id
        ("P11", "I11", "C1", 1e308, "EUR", "succeeded", None),  # out_of_range: finite, far beyond any amount
        ("P12", "I12", "C1", MAX_AMOUNT, "EUR", "succeeded", None),  # the largest amount there is: staged
    ]
    ts = pa.array(
        [
            "2026-11-20 09:00:00", "2026-11-20 10:00:00", "2026-11-20 11:00:00",
            "2026-11-20 12:00:00", "2026-11-20 13:00:00", "2999-01-01 00:00:00",
        ] + ["2026-11-20 14:00:00"] * 6
    ).cast(pa.timestamp("us"))
    cols = list(zip(*pay_rows))
    table = pa.table(
        {
            "payment_id": list(cols[0]), "invoice_id": list(cols[1]), "customer_id": list(cols[2]),
            "amount": list(cols[3]), "currency": list(cols[4]), "status": list(cols[5]),
            "failure_code": pa.array(list(cols[6]), pa.string()), "created_at": ts,
        }
    )
    path = zones.file(PAYMENTS, DAY)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)

    events = [
        {"event_id": "E1", "customer_id": "C1", "event_type": "login", "event_time": "2026-11-20T01:00:00Z"},
        {"event_id": "E2", "customer_id": "C2", "event_type": "card_transaction", "event_time": "2026-11-18T23:00:00Z", "amount": 12.5},
        {"event_id": "E3", "customer_id": None, "event_type": "login", "event_time": "2026-11-20T01:00:00Z"},
    ]
    ev_path = zones.file(EVENTS, DAY)
    ev_path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({c: e.get(c) for c in EVENTS.column_names}) for e in events]
    lines.append('{"event_id": "E4", "customer_id"')  # malformed
    lines.append(lines[0])  # exact duplicate
    hostile = [
        {"event_id": "E5", "customer_id": "C1", "event_type": "card_transaction", "event_time": "2026-11-20T02:00:00Z", "amount": math.nan},
        {"event_id": "E6", "customer_id": {"id": "C1"}, "event_type": "login", "event_time": "2026-11-20T02:00:00Z"},
        {"event_id": "E7", "customer_id": "C1", "event_type": "login", "event_time": "0001-01-01T00:00:00+01:00"},
    ]
    lines += [json.dumps({c: e.get(c) for c in EVENTS.column_names}) for e in hostile]  # NaN: JSON's NaN literal
    ev_path.write_text("\n".join(lines) + "\n")

    tickets = [
        {"ticket_id": "T1", "customer_email": " ANN@example.com", "created_at": "2026-11-20T05:00:00Z", "channel": "email", "category": "billing", "priority": "low", "status": "open", "body": "help, please"},
        {"ticket_id": "T2", "customer_email": "nobody@example.com", "created_at": "2026-11-20T05:00:00Z", "channel": "chat", "category": "billing", "priority": "low", "status": "open", "body": ""},
    ]
    for region in REGIONS:  # a ticket from an unknown email lands in the EU zone
        _write_csv(zones.file(SUPPORT_TICKETS, DAY, region), list(SUPPORT_TICKETS.column_names), tickets if region == "EU" else [])

    con = warehouse.connect(tmp_path / "wh.duckdb")
    warehouse.ensure_schemas(con)
    personal = _personal(tmp_path)
    for t in (CUSTOMERS, PAYMENTS, EVENTS, SUPPORT_TICKETS):
        raw_load.load_days(con, t, zones, [DAY], personal)
    results = {t.name: staging.stage_days(con, t, [DAY], personal)[0] for t in (CUSTOMERS, PAYMENTS, EVENTS, SUPPORT_TICKETS)}
    with personal.stores.attached(con):
        yield con, results
    con.close()


def _personal(root):
    return PersonalData(KEY, RegionalStores(settings.region_store_paths(settings.Paths(root))))


def _quarantine(con, table):
    return {r[0]: (r[1], r[2]) for r in con.execute(f"SELECT _row_number, rule, column_name FROM quarantine.{table}").fetchall()}


def test_customers_each_bad_row_is_quarantined_by_its_rule(landed):
    con, results = landed
    q = _quarantine(con, "customers")
    assert q == {
        2: ("not_null", "email"),
        3: ("invalid_timestamp", "updated_at"),
        4: ("accepted_values", "region"),
        5: ("invalid_boolean", "marketing_consent"),
        6: ("unique_key", "customer_id"),
        7: ("malformed_row", None),
    }
    r = results["customers"]
    assert (r.raw, r.staged, r.quarantined, r.duplicates) == (9, 2, 6, 1)
    assert r.conserved
    # row numbers continue across the day's regional files; _file names each record's own file
    staged = con.execute("SELECT customer_id, _file, _row_number FROM staging.customers ORDER BY 1").fetchall()
    assert staged == [
        ("C1", "regions/EU/landing/crm/customers/2026-11-20.csv", 1),
        ("C2", "regions/US/landing/crm/customers/2026-11-20.csv", 8),
    ]


def test_quarantine_keeps_file_and_raw_value(landed):
    con, _ = landed
    row = con.execute(
        "SELECT _file, raw_value, raw_record FROM quarantine.customers WHERE rule = 'accepted_values'"
    ).fetchone()
    assert row[0] == "regions/EU/landing/crm/customers/2026-11-20.csv"
    assert row[1] == "MARS"
    assert json.loads(row[2])["customer_id"] == "C5" and "email" not in json.loads(row[2])
    # the personal values of rejected rows are in the regional store (C5's region is invalid: the default, EU)
    full = con.execute(
        "SELECT raw_value, raw_record FROM personal_eu.quarantine.customers_personal WHERE rule = 'accepted_values'"
    ).fetchone()
    assert full[0] == "MARS" and json.loads(full[1])["email"] == "e@example.com"
    main, personal = con.execute(
        "SELECT q.raw_value, p.raw_value FROM quarantine.customers q JOIN personal_eu.quarantine.customers_personal p "
        "USING (_partition_date, _row_number) WHERE q.rule = 'malformed_row'"
    ).fetchone()
    assert main is None and personal == "C7,truncated"
    not_null = con.execute("SELECT column_name, raw_value FROM quarantine.customers WHERE rule = 'not_null'").fetchone()
    assert not_null == ("email", None)


def test_staging_holds_no_direct_pii_and_uses_hmac_keys(landed):
    con, _ = landed
    cols = {c for c, _ in warehouse.table_columns(con, "staging.customers")}
    assert not {"name", "email", "phone"} & cols
    hashes = dict(con.execute("SELECT customer_id, email_hash FROM staging.customers").fetchall())
    assert hashes["C1"] == hmac_hex(KEY, "ann@example.com")
    raw_cols = {c for c, _ in warehouse.table_columns(con, "raw.customers")}
    assert not {"name", "email", "phone"} & raw_cols and {"email_hash", "phone_hash", "name_hash"} <= raw_cols
    ident = con.execute("SELECT email, name FROM personal_eu.identity.customer_pii WHERE customer_id = 'C1'").fetchone()
    assert ident == ("ann@example.com", "Ann Example")


def test_payments_rules_and_out_of_range_timestamp(landed):
    con, results = landed
    q = _quarantine(con, "payments")
    assert q == {
        3: ("non_negative", "amount"),
        4: ("known_customer", "customer_id"),
        5: ("accepted_values", "status"),
        6: ("invalid_timestamp", "created_at"),
        7: ("invalid_number", "amount"),
        8: ("invalid_number", "amount"),
        9: ("invalid_number", "amount"),
        10: ("invalid_id", "customer_id"),
        11: ("out_of_range", "amount"),
    }
    assert con.execute("SELECT list(payment_id ORDER BY payment_id) FROM staging.payments").fetchone()[0] == ["P1", "P12", "P2"]
    raw_value = con.execute("SELECT raw_value FROM quarantine.payments WHERE rule = 'out_of_range'").fetchone()[0]
    assert float(raw_value) == 1e308
    amount = con.execute("SELECT amount FROM staging.payments WHERE payment_id = 'P1'").fetchone()[0]
    assert amount == 10.0 and results["payments"].conserved


def test_events_malformed_json_null_customer_hostile_values_and_duplicates(landed):
    con, results = landed
    q = _quarantine(con, "events")
    assert q == {3: ("not_null", "customer_id"), 4: ("malformed_row", None), 6: ("invalid_number", "amount"),
                 7: ("invalid_id", "customer_id"), 8: ("invalid_timestamp", "event_time")}
    r = results["events"]
    assert (r.raw, r.staged, r.quarantined, r.duplicates) == (8, 2, 5, 1)
    # a late event (event time two days before the export day) is valid
    assert con.execute("SELECT count(*) FROM staging.events WHERE event_id = 'E2'").fetchone()[0] == 1


def test_support_tickets_resolve_customers_through_the_email_hash(landed):
    con, _ = landed
    rows = con.execute("SELECT ticket_id, customer_id FROM staging.support_tickets").fetchall()
    assert rows == [("T1", "C1")]
    assert _quarantine(con, "support_tickets") == {2: ("known_customer", "customer_email")}


def test_restaging_a_day_replaces_it_exactly(landed, tmp_path):
    con, _ = landed
    before = con.execute("SELECT * FROM staging.payments ORDER BY payment_id").fetchall()
    q_before = con.execute("SELECT * FROM quarantine.payments ORDER BY _row_number").fetchall()
    staging.stage_days(con, PAYMENTS, [DAY])
    assert con.execute("SELECT * FROM staging.payments ORDER BY payment_id").fetchall() == before
    assert con.execute("SELECT * FROM quarantine.payments ORDER BY _row_number").fetchall() == q_before


def test_conservation_is_recounted_from_the_tables(landed):
    con, _ = landed
    (c,) = staging.conservation(con, CUSTOMERS, DAY, DAY)
    assert (c.raw, c.staged, c.quarantined, c.duplicates) == (9, 2, 6, 1) and c.holds
    con.execute("DELETE FROM quarantine.customers WHERE rule = 'not_null'")  # a row silently lost
    (c,) = staging.conservation(con, CUSTOMERS, DAY, DAY)
    assert not c.holds
    assert "1 rows unaccounted for" in c.describe("staging.customers")


def test_schema_drift_names_missing_and_added_columns_per_file(tmp_path):
    zones = _zones(tmp_path)
    drifted = [c for c in CUSTOMER_HEADER if c != "segment"] + ["loyalty_tier"]  # only the US export changed
    for region in REGIONS:
        header = drifted if region == "US" else CUSTOMER_HEADER
        _write_csv(zones.file(CUSTOMERS, DAY, region), header, [_customer(f"C{region}", f"{region}@b.c", region=region)])
    con = warehouse.connect(tmp_path / "wh.duckdb")
    warehouse.ensure_schemas(con)
    (load,) = raw_load.load_days(con, CUSTOMERS, zones, [DAY], _personal(tmp_path))
    assert load.drift.missing == ("segment",) and load.drift.added == ("loyalty_tier",)
    assert load.drift.describe(CUSTOMERS, DAY) == (
        "schema drift in crm/customers 2026-11-20: regions/US/landing/crm/customers/2026-11-20.csv: "
        "missing ['segment']; unexpected ['loyalty_tier']"
    )
    assert load.files == tuple(f"regions/{r}/landing/crm/customers/2026-11-20.csv" for r in REGIONS) and load.rows == 3
    con.close()


def test_a_day_missing_one_regions_export_is_an_error_naming_the_file(tmp_path):
    zones = _zones(tmp_path)
    for region in ("EU", "APAC"):
        _write_csv(zones.file(CUSTOMERS, DAY, region), CUSTOMER_HEADER, [_customer(f"C{region}", f"{region}@b.c", region=region)])
    con = warehouse.connect(tmp_path / "wh.duckdb")
    warehouse.ensure_schemas(con)
    missing = zones.file(CUSTOMERS, DAY, "US")
    with pytest.raises(LandingFileMissing, match=f"no landing file for crm/customers: expected {re.escape(str(missing))}$"):
        raw_load.load_days(con, CUSTOMERS, zones, [DAY], _personal(tmp_path))
    assert not warehouse.table_exists(con, "raw.customers") or con.execute("SELECT count(*) FROM raw.customers").fetchone()[0] == 0
    con.close()


def test_volume_band_flags_a_collapse_but_not_noise():
    med, low, high = raw_load.volume_band([1000, 1010, 990, 1005])
    assert low < 900 and high > 1100 and low > 400
    med, low, high = raw_load.volume_band([3, 5, 4])
    assert low == 0.0 and high >= 8  # small counts: wide band, no false alarms


def test_tolerance_absorbs_chance_in_small_partitions_but_not_corruption():
    from ai_data_platform.quality.tolerances import allowed_rate, exceeds

    assert not exceeds(5, 243, 0.02)  # 2.1% by chance in a small partition
    assert exceeds(73, 243, 0.02)  # 30% corruption
    assert not exceeds(2300, 110_000, 0.02) and exceeds(2600, 110_000, 0.02)  # large: the rate itself
    assert 0.05 < allowed_rate(110_000, 0.05) < 0.053


def test_non_finite_amounts_in_a_parquet_double_column_are_invalid_numbers_and_fail_the_gate(tmp_path):
    """NaN and ±Infinity in a DOUBLE column: quarantined as ``invalid_number``, never staged, and the
    blocking GX gate sees them as the unparseable values they are (not as amounts that pass
    ``non_negative``), so a partition full of them fails it."""
    from ai_data_platform.quality.gx_runner import validate_dataframe
    from ai_data_platform.quality.suites import staging_suite

    zones = _zones(tmp_path)
    n = 40
    amounts = [math.nan, math.inf, -math.inf, -math.nan] * 5 + [12.5] * (n - 20)
    table = pa.table({
        "payment_id": [f"P{i}" for i in range(n)], "invoice_id": [f"I{i}" for i in range(n)], "customer_id": ["C1"] * n,
        "amount": pa.array(amounts, pa.float64()), "currency": ["EUR"] * n, "status": ["succeeded"] * n,
        "failure_code": pa.nulls(n, pa.string()), "created_at": pa.array(["2026-11-20 09:00:00"] * n).cast(pa.timestamp("us")),
    })
    path = zones.file(PAYMENTS, DAY)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    con = warehouse.connect(tmp_path / "wh.duckdb")
    try:
        warehouse.ensure_schemas(con)
        raw_load.load_days(con, PAYMENTS, zones, [DAY], _personal(tmp_path))
        (result,) = staging.stage_days(con, PAYMENTS, [DAY])
        assert result.rules["invalid_number"] == 20 and result.conserved
        assert con.execute("SELECT count(*) FROM staging.payments WHERE NOT isfinite(amount)").fetchone()[0] == 0
        candidates = staging.candidate_rows(con, PAYMENTS, DAY)
        assert candidates["amount"].isna().sum() == 20 and not candidates["amount"].isin([math.inf, -math.inf]).any()
        report = validate_dataframe(candidates, staging_suite(PAYMENTS, rows=len(candidates)))
    finally:
        con.close()
    assert not report.success
    (failure,) = [o for o in report.failures() if o.column == "amount"]
    assert failure.expectation == "expect_column_values_to_not_be_null" and failure.unexpected_count == 20


def test_finite_amounts_beyond_the_contracts_maximum_are_out_of_range_and_fail_the_gate(tmp_path):
    """1e308 is a finite number but no amount: a partition of them is quarantined as ``out_of_range``
    (never staged, so no sum downstream overflows to infinity) and fails the blocking GX gate, whose
    between-expectation carries the contract's maximum."""
    from ai_data_platform.quality.gx_runner import validate_dataframe
    from ai_data_platform.quality.suites import staging_suite

    zones = _zones(tmp_path)
    n = 40
    amounts = [1e308, 1.7976931348623157e308, MAX_AMOUNT * 10] * 6 + [12.5] * (n - 18)
    table = pa.table({
        "payment_id": [f"P{i}" for i in range(n)], "invoice_id": [f"I{i}" for i in range(n)], "customer_id": ["C1"] * n,
        "amount": pa.array(amounts, pa.float64()), "currency": ["EUR"] * n, "status": ["succeeded"] * n,
        "failure_code": pa.nulls(n, pa.string()), "created_at": pa.array(["2026-11-20 09:00:00"] * n).cast(pa.timestamp("us")),
    })
    path = zones.file(PAYMENTS, DAY)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    con = warehouse.connect(tmp_path / "wh.duckdb")
    try:
        warehouse.ensure_schemas(con)
        raw_load.load_days(con, PAYMENTS, zones, [DAY], _personal(tmp_path))
        (result,) = staging.stage_days(con, PAYMENTS, [DAY])
        assert result.rules == {"out_of_range": 18, "known_customer": n - 18} and result.conserved  # no customers landed
        candidates = staging.candidate_rows(con, PAYMENTS, DAY)
        report = validate_dataframe(candidates, staging_suite(PAYMENTS, rows=len(candidates)))
    finally:
        con.close()
    assert not report.success
    (failure,) = [o for o in report.failures() if o.column == "amount"]
    assert failure.expectation == "expect_column_values_to_be_between" and failure.unexpected_count == 18
