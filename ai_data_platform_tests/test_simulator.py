"""Tests of the deterministic source simulator (ai_data_platform.sources.simulator).

The central check re-implements the staging rules in plain Python (malformed_row -> not_null ->
invalid_timestamp -> accepted_values -> non_negative -> known_customer -> unique_key, first
failing rule wins) and asserts that, file by file, the rows each rule catches are exactly the
dirt the manifest says was injected — so clean rows never fail a rule and every dirty row fails
the rule contracts.dirt_rule names. The CRM's tables land in one file per region and day
(``sources/landing.LandingZones``); a day of a table is all of its files.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ai_data_platform import settings
from ai_data_platform.errors import InputError
from ai_data_platform.governance.stores import DEFAULT_REGION
from ai_data_platform.sources.contracts import (
    CUSTOMERS,
    DIRT_KINDS,
    REGIONS,
    SOURCE_TABLES,
    SUPPORT_TICKETS,
    TIMESTAMP_FORMAT,
    SourceTable,
    dirt_rule,
    table,
)
from ai_data_platform.sources.landing import LandingZones
from ai_data_platform.sources.simulator import default_end, generate
from ai_data_platform.sources.simulator_dirt import UNKNOWN_CUSTOMER_REGION

END = date(2026, 1, 31)
SMALL = dict(customers=300, days=6, end=END, seed=7)
ARROW_TYPES = {"VARCHAR": pa.string(), "DOUBLE": pa.float64(), "TIMESTAMP": pa.timestamp("us"), "BOOLEAN": pa.bool_()}
MALFORMED = object()  # marker for a row that could not be parsed at all


# --- reading landing files -------------------------------------------------------------------


def zones_under(root: Path) -> LandingZones:
    """The landing zones of a data directory ``root`` (shared ``root/landing``, ``root/regions/<R>/landing``)."""
    return LandingZones.from_settings(settings.Paths(root))


def window_days(manifest: dict) -> list[date]:
    start, end = date.fromisoformat(manifest["start"]), date.fromisoformat(manifest["end"])
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def read_rows(contract: SourceTable, path: Path) -> list:
    """Rows of a landing file as dicts of raw values (strings for text formats); MALFORMED
    for a line that does not parse into exactly the contract's fields."""
    names = list(contract.column_names)
    if contract.file_format == "parquet":
        return pq.read_table(path).to_pylist()
    if contract.file_format == "csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            assert next(reader) == names
            return [
                dict(zip(names, (v if v != "" else None for v in row))) if len(row) == len(names) else MALFORMED
                for row in reader
            ]
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            rows.append(MALFORMED)
            continue
        rows.append(obj if isinstance(obj, dict) and list(obj) == names else MALFORMED)
    return rows


def raw_lines(contract: SourceTable, path: Path) -> list:
    """Hashable identity of each data row, to spot exact copies."""
    if contract.file_format == "parquet":
        return [tuple(r.values()) for r in pq.read_table(path).to_pylist()]
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # every line, the last included, ends with a newline
    return lines[1:-1] if contract.file_format == "csv" else lines[:-1]


def parse_time(value) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.strptime(value, TIMESTAMP_FORMAT)
    except (TypeError, ValueError):
        return None


def first_failing_rule(contract: SourceTable, row, day: date, known: set) -> str | None:
    """The staging rule a row fails first (None: the row is valid)."""
    if row is MALFORMED:
        return "malformed_row"
    for c in contract.columns:
        if c.required and row[c.name] is None:
            return "not_null"
    for c in contract.columns:
        if c.dtype == "TIMESTAMP" and row[c.name] is not None and parse_time(row[c.name]) is None:
            return "invalid_timestamp"
    event_time = parse_time(row[contract.time_column])
    if not datetime(2000, 1, 1) <= event_time < datetime.combine(day + timedelta(days=2), datetime.min.time()):
        return "invalid_timestamp"
    for c in contract.columns:
        if c.accepted_values and row[c.name] is not None and row[c.name] not in c.accepted_values:
            return "accepted_values"
    for c in contract.columns:
        if c.non_negative and row[c.name] is not None and float(row[c.name]) < 0:
            return "non_negative"
    if contract.customer_ref and row[contract.customer_ref] not in known:
        return "known_customer"
    return None


def read_day(zones: LandingZones, contract: SourceTable, day: date) -> list:
    """The rows of every file of a table's day (one per region for the CRM's tables)."""
    return [row for path in zones.files(contract, day) for row in read_rows(contract, path)]


def audit(zones: LandingZones, manifest: dict) -> dict:
    """Apply the staging rules to every file; return per file the rule counts and clean rows.
    A day's files are one partition: a key seen in one region's file is a repeat in another's."""
    known: set = set()  # customer ids and emails seen in valid CRM rows of files up to the day
    result = {}
    for day in window_days(manifest):
        for contract in SOURCE_TABLES:  # customers first, so same-day references resolve
            seen_keys, day_valid = set(), []
            for path in zones.files(contract, day):
                rules, valid = Counter(), []
                for row in read_rows(contract, path):
                    rule = first_failing_rule(contract, row, day, known)
                    if rule is None and row[contract.key] in seen_keys:
                        rule = "unique_key"
                    if rule is None:
                        seen_keys.add(row[contract.key])
                        valid.append(row)
                    else:
                        rules[rule] += 1
                result[zones.name(path)] = {"rules": rules, "valid": valid}
                day_valid += valid
            if contract is CUSTOMERS:
                known.update(r["customer_id"] for r in day_valid)
                known.update(r["email"] for r in day_valid)
    return result


def sorted_rows(rows: list[dict]) -> list[tuple]:
    return sorted(tuple(map(str, r.values())) for r in rows)


def expected_rules(contract: SourceTable, dirt: dict) -> Counter:
    expected = Counter()
    for kind, count in dirt.items():
        if count:
            expected[dirt_rule(contract, kind) or "unique_key"] += count
    return expected


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[LandingZones, dict]:
    """300 customers x 6 days with a high dirty rate, so every kind of dirt occurs."""
    zones = zones_under(tmp_path_factory.mktemp("small"))
    return zones, generate(zones, dirty_rate=0.02, **SMALL)


@pytest.fixture(scope="module")
def month(tmp_path_factory) -> tuple[LandingZones, dict]:
    """2000 customers x 30 days: enough data for the churn and fraud signal."""
    zones = zones_under(tmp_path_factory.mktemp("month"))
    return zones, generate(zones, customers=2000, days=30, end=END, seed=3, dirty_rate=0.0)


def valid_rows(zones: LandingZones, name: str) -> list[dict]:
    """All rows of a table across days and regions (only for data sets generated with dirty_rate=0)."""
    contract = table(name)
    return [row for path in zones.landed(contract) for row in read_rows(contract, path)]


# --- determinism and layout ------------------------------------------------------------------


def landing_bytes(zones: LandingZones) -> dict[str, bytes]:
    return {zones.name(p): p.read_bytes() for root in zones.roots() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_identical_bytes_and_another_seed_differs(tmp_path, small):
    zones, _ = small
    again = zones_under(tmp_path / "again")
    generate(again, dirty_rate=0.02, **SMALL)
    first, second = landing_bytes(zones), landing_bytes(again)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []

    other = zones_under(tmp_path / "other")
    generate(other, dirty_rate=0.02, **{**SMALL, "seed": 8})
    third = landing_bytes(other)
    assert third.keys() == first.keys()
    changed = [k for k in first if k.endswith((".jsonl", ".csv")) and first[k] != third[k]]
    assert len(changed) >= 12  # events and CRM files of every day differ


def test_every_table_has_its_files_every_day_with_contract_columns(small):
    zones, manifest = small
    days = window_days(manifest)
    assert days == [END - timedelta(days=5) + timedelta(days=i) for i in range(6)]
    expected_files = {zones.name(p) for t in SOURCE_TABLES for d in days for p in zones.files(t, d)}
    assert len(expected_files) == 6 * (5 + 2 * 3)  # a shared file for 5 tables, one per region for the CRM's 2
    on_disk = set(landing_bytes(zones))
    assert on_disk == expected_files | {"landing/manifest.json"}
    assert set(manifest["files"]) == expected_files
    for contract in SOURCE_TABLES:
        for day in days:
            for path in zones.files(contract, day):
                if contract.file_format == "parquet":
                    schema = pq.read_schema(path)
                    assert schema.names == list(contract.column_names)
                    assert schema.types == [ARROW_TYPES[c.dtype] for c in contract.columns]
                elif contract.file_format == "csv":
                    assert path.read_text().splitlines()[0] == ",".join(contract.column_names)
                rows = read_rows(contract, path)
                entry = manifest["files"][zones.name(path)]
                assert entry["rows"] == len(rows)
                assert (entry["table"], entry["date"]) == (contract.name, day.isoformat())
                assert entry["region"] == (path.parts[-5] if contract.source == "crm" else None)


def test_the_crm_exports_each_region_to_its_zone_and_unknown_senders_to_the_eu(small):
    """Customers in their region's file, a ticket in its customer's region's file, tickets from
    unknown emails (dirt) in the EU file: no file of a zone holds another region's customer.
    (test_corrupt_... checks the unknown senders of a day with many.)"""
    zones, manifest = small
    assert REGIONS[UNKNOWN_CUSTOMER_REGION] == DEFAULT_REGION == "EU"  # the platform's default for the unplaceable
    region_of_email, region_of_id = {}, {}
    for path in zones.landed(CUSTOMERS):
        for row in read_rows(CUSTOMERS, path):
            if row is not MALFORMED and row["region"] in REGIONS:
                region_of_email[row["email"]] = region_of_id[row["customer_id"]] = row["region"]
    for region in REGIONS:
        for day in window_days(manifest):
            path = zones.file(CUSTOMERS, day, region)
            rows = [r for r in read_rows(CUSTOMERS, path) if r is not MALFORMED]
            assert {r["region"] for r in rows} <= {region, None}, path  # None: a copy with the region nulled (dirt)
            assert {region_of_id[r["customer_id"]] for r in rows if r["customer_id"] in region_of_id} <= {region}, path
            for line in path.read_text().splitlines()[1:]:  # malformed lines too: id, name, email of the region's
                assert region_of_id.get(line.split(",")[0], region) == region, (path, line)
            tickets = [r for r in read_rows(SUPPORT_TICKETS, zones.file(SUPPORT_TICKETS, day, region)) if r is not MALFORMED]
            senders = {region_of_email.get(t["customer_email"], "unknown") for t in tickets if t["customer_email"]}
            assert senders <= ({region, "unknown"} if region == "EU" else {region}), (region, day, senders)
    per_region = Counter(e["region"] for e in manifest["files"].values() if e["table"] == "customers" for _ in range(e["rows"]))
    assert all(per_region[r] > 20 for r in REGIONS)
    assert not any(e["dirt"]["unknown_customer"] for e in manifest["files"].values() if e["region"] in ("US", "APAC"))


def test_generate_wants_the_landing_zones(tmp_path):
    with pytest.raises(TypeError, match="LandingZones"):
        generate(tmp_path / "landing", customers=5, days=1, end=END, seed=1)


def test_days_without_rows_still_get_a_file(tmp_path):
    zones = zones_under(tmp_path)
    manifest = generate(zones, customers=5, days=2, end=END, seed=1, dirty_rate=0.0)
    empty = {rel: e for rel, e in manifest["files"].items() if e["rows"] == 0}
    assert {e["table"] for e in empty.values()} >= {"support_tickets", "chargebacks"}  # too few customers
    assert {e["region"] for e in empty.values() if e["table"] == "customers"}  # a region without customers that day
    for rel, entry in empty.items():
        contract, path = table(entry["table"]), tmp_path / rel
        if contract.file_format == "csv":
            assert path.read_text() == ",".join(contract.column_names) + "\n"
        elif contract.file_format == "parquet":
            read = pq.read_table(path)
            assert read.num_rows == 0 and read.schema.names == list(contract.column_names)
        else:
            assert path.read_bytes() == b""


def test_manifest_json_is_the_returned_manifest_with_sorted_keys(small):
    zones, manifest = small
    text = (zones.shared / "manifest.json").read_text()
    assert json.loads(text) == manifest
    assert text == json.dumps(manifest, sort_keys=True, indent=2) + "\n"
    assert manifest["args"] == {
        "customers": 300, "days": 6, "end": "2026-01-31", "seed": 7, "dirty_rate": 0.02, "corrupt": []
    }
    for name, total in manifest["totals"].items():
        entries = [e for e in manifest["files"].values() if e["table"] == name]
        assert total["rows"] == sum(e["rows"] for e in entries)
        assert total["dirt"] == {k: sum(e["dirt"][k] for e in entries) for k in DIRT_KINDS}


def test_regeneration_leaves_no_stale_files_and_spares_other_files(tmp_path):
    zones = zones_under(tmp_path)
    generate(zones, customers=20, days=4, end=END, seed=1)
    keep = zones.shared / "notes.txt"
    keep.write_text("not a landing file")
    old_layout = CUSTOMERS.landing_file(zones.shared, END)  # a CRM export from before exports were regional
    old_layout.parent.mkdir(parents=True)
    old_layout.write_text("customer_id\n")
    generate(zones, customers=20, days=2, end=END - timedelta(days=1), seed=1)
    for contract in SOURCE_TABLES:
        for folder in zones.dirs(contract):
            names = sorted(p.name for p in folder.iterdir())
            assert names == [f"2026-01-29.{contract.extension}", f"2026-01-30.{contract.extension}"]
    assert keep.read_text() == "not a landing file"
    assert not old_layout.exists()


# --- dirt: each kind caught by exactly its rule -----------------------------------------------


def test_injected_dirt_is_exactly_what_the_staging_rules_catch(small):
    zones, manifest = small
    audited = audit(zones, manifest)
    for contract in SOURCE_TABLES:
        total_dirt = Counter()
        for day in window_days(manifest):
            for path in zones.files(contract, day):
                rel = zones.name(path)
                dirt = manifest["files"][rel]["dirt"]
                assert audited[rel]["rules"] == expected_rules(contract, dirt), rel
                total_dirt.update(dirt)
        if contract.name in ("customers", "subscriptions", "events"):  # big enough for every kind
            kinds = [k for k in DIRT_KINDS if k != "unknown_customer" or contract.customer_ref]
            assert all(total_dirt[k] > 0 for k in kinds), (contract.name, total_dirt)
    assert manifest["totals"]["customers"]["dirt"]["unknown_customer"] == 0


def test_dirt_leaves_the_clean_records_untouched(tmp_path, small):
    """What survives staging of a dirty data set is exactly the data set generated without dirt,
    file by file (the clean rows are in the same region's file)."""
    zones, manifest = small
    clean = zones_under(tmp_path / "clean")
    generate(clean, dirty_rate=0.0, **SMALL)
    audited = audit(zones, manifest)
    for contract in SOURCE_TABLES:
        for day in window_days(manifest):
            for path in clean.files(contract, day):
                rel = clean.name(path)
                # a duplicate may precede its original, so compare the rows ignoring order
                assert sorted_rows(audited[rel]["valid"]) == sorted_rows(read_rows(contract, path)), rel


def test_dirt_kinds_have_their_defining_shape(small):
    zones, manifest = small
    events, subscriptions = table("events"), table("subscriptions")
    for day in window_days(manifest):
        for contract in SOURCE_TABLES:
            for path in zones.files(contract, day):  # a duplicate is in its original's file
                dirt = manifest["files"][zones.name(path)]["dirt"]
                lines = raw_lines(contract, path)
                assert sum(n - 1 for n in Counter(lines).values()) == dirt["duplicate"], path
        path = zones.file(events, day)
        rows = read_rows(events, path)
        dirt = manifest["files"][zones.name(path)]["dirt"]
        assert sum(r is MALFORMED for r in rows) == dirt["malformed"]
        unknown = [r for r in rows if r is not MALFORMED and r["customer_id"] and r["customer_id"].startswith("C8")]
        assert len(unknown) == dirt["unknown_customer"]
        bad_times = [r for r in rows if r is not MALFORMED and r["event_time"] and parse_time(r["event_time"]) is None]
        assert len(bad_times) == dirt["bad_timestamp"]
        sub_rows = read_rows(subscriptions, zones.file(subscriptions, day))
        sub_dirt = manifest["files"][zones.name(zones.file(subscriptions, day))]["dirt"]
        out_of_range = [r for r in sub_rows if r["updated_at"] and not 2000 <= r["updated_at"].year < 2100]
        assert len(out_of_range) == sub_dirt["bad_timestamp"]


def test_keys_are_unique_across_the_data_set_except_exact_duplicates(small):
    zones, manifest = small
    for name in ("events", "support_tickets", "invoices", "payments", "chargebacks"):
        contract = table(name)
        keys = Counter()
        for day in window_days(manifest):
            parsed = read_day(zones, contract, day)
            distinct = {tuple(r.values()) for r in parsed if r is not MALFORMED}  # exact copies once
            keys.update(dict(zip(contract.column_names, r))[contract.key] for r in distinct)
        assert max(keys.values(), default=1) == 1, name
        assert keys or name == "chargebacks"  # few disputes get reported within 6 days


# --- business rules of the clean data --------------------------------------------------------


def test_clean_rows_reference_customers_already_exported_by_crm(month):
    zones, manifest = month
    first_crm_day: dict[str, date] = {}
    email_day: dict[str, date] = {}
    for day in window_days(manifest):
        for row in read_day(zones, CUSTOMERS, day):
            first_crm_day.setdefault(row["customer_id"], day)
            email_day.setdefault(row["email"], day)
    start = date.fromisoformat(manifest["start"])
    assert len([d for d in first_crm_day.values() if d == start]) > 1500  # initial full export
    assert len([d for d in first_crm_day.values() if d > start]) > 20  # signups inside the window
    for contract in SOURCE_TABLES:
        if contract.customer_ref is None:
            continue
        lookup = email_day if contract.customer_ref == "customer_email" else first_crm_day
        for day in window_days(manifest):
            for row in read_day(zones, contract, day):
                assert lookup[row[contract.customer_ref]] <= day, (contract.name, day, row)
                if contract.name == "events":  # late events never predate the customer's first CRM day
                    assert parse_time(row["event_time"]).date() >= first_crm_day[row["customer_id"]]


def test_customer_rows_look_real(month):
    zones, _ = month
    rows = valid_rows(zones, "customers")
    initial = read_day(zones, CUSTOMERS, END - timedelta(days=29))
    emails = [r["email"] for r in initial]
    assert len(set(emails)) == len(emails) and all(e == e.lower() and "@" in e for e in emails)
    phones = [r["phone"] for r in initial]
    assert 0.02 < sum(p is None for p in phones) / len(phones) < 0.2
    assert all(re.fullmatch(r"\+[1-9]\d{7,14}", p) for p in phones if p)
    assert {r["marketing_consent"] for r in rows} == {"true", "false"}
    assert {r["region"] for r in rows} == {"EU", "US", "APAC"}
    us = {r["country"] for r in rows if r["region"] == "US"}
    assert us == {"US"}
    signups = sorted(r["signup_at"] for r in initial)
    assert signups[0] < "2024-03-01" and signups[-1] >= "2026-01-01"
    seen, updates = set(), 0
    for day in window_days(month[1]):
        for row in read_day(zones, CUSTOMERS, day):
            if row["customer_id"] in seen:
                updates += 1
                assert row["updated_at"][:10] == day.isoformat()
            seen.add(row["customer_id"])
    assert 0.0025 * 2000 * 29 < updates < 0.0075 * 2000 * 29  # ~0.5% profile changes a day


def test_subscriptions_invoices_and_payments_are_consistent(month):
    zones, _ = month
    subs = valid_rows(zones, "subscriptions")
    invoices = valid_rows(zones, "invoices")
    payments = valid_rows(zones, "payments")
    invoice_by_id = {i["invoice_id"]: i for i in invoices}
    assert {s["plan"] for s in subs} == {"basic", "pro", "business"}
    first_day = read_day(zones, table("subscriptions"), date(2026, 1, 2))
    assert len({s["customer_id"] for s in first_day}) == len(first_day) > 1500
    cancelled_in_window = [s for s in subs if s["cancelled_at"] and s["cancelled_at"] >= datetime(2026, 1, 2)]
    assert len(cancelled_in_window) > 10
    assert all(s["updated_at"] == s["cancelled_at"] for s in cancelled_in_window)
    assert all(p["invoice_id"] in invoice_by_id for p in payments)
    statuses = Counter(p["status"] for p in payments)
    assert statuses["succeeded"] > 10 * statuses["failed"] > 0 and statuses["refunded"] > 0
    assert all((p["failure_code"] is not None) == (p["status"] == "failed") for p in payments)
    # failed payments are retried a few days later on the same invoice
    by_invoice = defaultdict(list)
    for p in payments:
        by_invoice[p["invoice_id"]].append(p)
    retried = [ps for ps in by_invoice.values() if sum(p["status"] != "refunded" for p in ps) > 1]
    assert retried
    for attempts in retried:
        times = sorted(p["created_at"] for p in attempts if p["status"] != "refunded")
        assert all(timedelta(days=2) < b - a < timedelta(days=4) for a, b in zip(times, times[1:]))


def test_invoices_follow_the_billing_anniversary(month):
    zones, _ = month
    signup = {r["customer_id"]: parse_time(r["signup_at"]) for r in valid_rows(zones, "customers")}
    invoices = valid_rows(zones, "invoices")
    assert len(invoices) > 1000
    for invoice in invoices:
        issued, joined = invoice["issued_at"], signup[invoice["customer_id"]]
        if issued.date() == joined.date():
            assert issued >= joined  # the first invoice, at signup
            continue
        next_month = (issued.replace(day=1) + timedelta(days=32)).replace(day=1)
        month_days = (next_month - issued.replace(day=1)).days
        assert issued.day == min(joined.day, month_days)
        assert invoice["due_at"] - issued == timedelta(days=7)


def test_chargebacks_dispute_real_card_transactions_days_later(month):
    zones, _ = month
    chargebacks = valid_rows(zones, "chargebacks")
    assert len(chargebacks) > 20
    wanted = {c["transaction_id"] for c in chargebacks}
    transactions = {e["event_id"]: e for e in valid_rows(zones, "events") if e["event_id"] in wanted}
    for c in chargebacks:
        e = transactions[c["transaction_id"]]
        assert e["event_type"] == "card_transaction"
        assert (c["customer_id"], c["amount"], c["currency"]) == (e["customer_id"], e["amount"], e["currency"])
        assert c["transaction_at"] == parse_time(e["event_time"])
        assert timedelta(days=1) < c["reported_at"] - c["transaction_at"] <= timedelta(days=21)


def test_events_volume_types_and_late_arrivals(month):
    zones, manifest = month
    events = table("events")
    late_share = []
    for day in window_days(manifest):
        rows = read_day(zones, events, day)
        midnight = datetime.combine(day, datetime.min.time())
        times = [parse_time(r["event_time"]) for r in rows]
        assert max(times) < midnight + timedelta(days=1)  # nothing from the future
        late = [t for t in times if t < midnight]
        assert all(t >= midnight - timedelta(days=3) for t in late)
        if day >= END - timedelta(days=25):
            late_share.append(len(late) / len(rows))
        for r in rows:
            assert (r["amount"] is not None) == (r["event_type"] == "card_transaction")
            assert (r["page"] is not None) == (r["event_type"] == "page_view")
            assert (r["feature"] is not None) == (r["event_type"] == "feature_use")
    assert 0.01 < np.mean(late_share) < 0.03
    per_customer_day = manifest["totals"]["events"]["rows"] / (2000 * 30)
    assert 0.9 < per_customer_day < 1.3


def test_fraud_signal_new_device_and_foreign_ip(month):
    """Chargebacks for fraud hit transactions on a just-seen device from abroad far more often."""
    zones, _ = month
    home = {r["customer_id"]: r["country"] for r in valid_rows(zones, "customers")}
    fraud_disputed = {c["transaction_id"] for c in valid_rows(zones, "chargebacks") if c["reason"] == "fraudulent"}
    events = sorted(valid_rows(zones, "events"), key=lambda r: (r["event_time"], r["event_id"]))
    first_seen: dict[tuple[str, str], datetime] = {}
    risky, rest = [], []
    for e in events:
        at = parse_time(e["event_time"])
        first = first_seen.setdefault((e["customer_id"], e["device_id"]), at)
        if e["event_type"] != "card_transaction" or at < datetime(2026, 1, 9):  # a week to learn devices
            continue
        new_device = at - first < timedelta(days=1)
        foreign = e["ip_country"] != home[e["customer_id"]]
        (risky if new_device and foreign else rest).append(e["event_id"] in fraud_disputed)
    assert len(risky) >= 10 and sum(risky) >= 3 and len(rest) > 3000
    assert np.mean(risky) > 10 * np.mean(rest)


def test_churn_signal_failed_payments_tickets_and_fading_activity(month):
    zones, _ = month
    customers = valid_rows(zones, "customers")
    email_owner = {r["email"]: r["customer_id"] for r in customers}
    signup = {r["customer_id"]: r["signup_at"] for r in customers}
    window_start = datetime(2026, 1, 2)
    subs = valid_rows(zones, "subscriptions")
    cancelled_at = {
        s["customer_id"]: s["cancelled_at"] for s in subs if s["cancelled_at"] and s["cancelled_at"] >= window_start
    }
    live = {s["customer_id"] for s in subs if s["cancelled_at"] is None} - set(cancelled_at)
    failed = Counter(p["customer_id"] for p in valid_rows(zones, "payments") if p["status"] == "failed")
    tickets = Counter(email_owner[t["customer_email"]] for t in valid_rows(zones, "support_tickets"))
    assert len(cancelled_at) > 20
    for trouble in (failed, tickets):
        assert np.mean([trouble[c] for c in cancelled_at]) > 2 * np.mean([trouble[c] for c in live])

    # Voluntary churners (no failed payment, customers before the window) fade out beforehand.
    fading = {
        c: t
        for c, t in cancelled_at.items()
        if t >= datetime(2026, 1, 24) and not failed[c] and signup[c] < "2026-01-02"
    }
    last_week, third_week = 0, 0
    for e in valid_rows(zones, "events"):
        if e["customer_id"] in fading:
            age = fading[e["customer_id"]] - parse_time(e["event_time"])
            last_week += timedelta(0) <= age < timedelta(days=7)
            third_week += timedelta(days=14) <= age < timedelta(days=21)
    assert len(fading) >= 5 and third_week > 20
    assert last_week < 0.6 * third_week


def test_corrupt_replaces_the_requested_share_of_customer_references(tmp_path):
    days = [END - timedelta(days=i) for i in range(4, -1, -1)]
    events_day = days[2]
    corrupt = [("events", events_day, 0.25)] + [("support_tickets", d, 0.5) for d in days[1:]]
    zones = zones_under(tmp_path)
    manifest = generate(zones, customers=1000, days=5, end=END, seed=5, dirty_rate=0.0, corrupt=corrupt)
    assert manifest["args"]["corrupt"][0] == ["events", events_day.isoformat(), 0.25]
    crm_ids, crm_emails = set(), set()
    for day in days:
        for row in read_day(zones, CUSTOMERS, day):
            crm_ids.add(row["customer_id"])
            crm_emails.add(row["email"])
    checked = Counter()
    cases = (("events", "customer_id", crm_ids, 0.25), ("support_tickets", "customer_email", crm_emails, 0.5))
    for name, ref, known, rate in cases:
        contract = table(name)
        for day in days:
            rows = read_day(zones, contract, day)
            unknown = sum(r[ref] not in known for r in rows)
            listed_dirt = sum(manifest["files"][zones.name(path)]["dirt"]["unknown_customer"] for path in zones.files(contract, day))
            listed = (name, day) in {(n, d) for n, d, _ in corrupt}
            expected = int(np.floor(rate * len(rows) + 0.5)) if listed else 0
            assert listed_dirt == unknown == expected, (name, day)
            if name == "support_tickets":  # a ticket from an unknown sender is exported to the EU zone
                assert all(r[ref] in known for region in ("US", "APAC") for r in read_rows(contract, zones.file(contract, day, region)))
            checked[name] += unknown
    assert checked["events"] > 100 and checked["support_tickets"] > 0


def test_invalid_arguments_are_rejected(tmp_path):
    zones = zones_under(tmp_path)
    with pytest.raises(ValueError):
        generate(zones, customers=0, days=3, end=END, seed=1)
    with pytest.raises(ValueError):
        generate(zones, customers=10, days=3, end=END, seed=1, corrupt=[("customers", END, 0.1)])
    with pytest.raises(ValueError):
        generate(zones, customers=10, days=3, end=END, seed=1, corrupt=[("events", END + timedelta(days=1), 0.1)])
    with pytest.raises(InputError, match="unknown source table 'nope'"):
        generate(zones, customers=10, days=3, end=END, seed=1, corrupt=[("nope", END, 0.1)])
    with pytest.raises(InputError, match="end 0001-01-01 leaves no room"):  # no date arithmetic overflow
        generate(zones, customers=10, days=3, end=date(1, 1, 1), seed=1)
    assert not any(tmp_path.rglob("*.csv")), "rejected arguments write nothing"


def test_default_end_is_yesterday_utc():
    assert default_end() == (datetime.now(timezone.utc) - timedelta(days=1)).date()
