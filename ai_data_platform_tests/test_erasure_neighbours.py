"""Erasing a subject next to customers who resemble them: a subject is one customer id.

Another customer with the subject's phone or name written otherwise, with an id that differs only
in case, or with the subject's email in another case, is never erased with them: what they share
is not the subject's alone (left out of selection and search, reported as not searched, never the
value), and an id is compared case counting. A mention of the subject in another customer's
record (a support ticket's text) is that customer's record: kept, reported as a mention, never a
failed verification; a trace anywhere no known customer is attributed to (a log, a Dagster blob, a
row of an id no customer record holds) still fails it.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import zlib

import duckdb
import pytest

from ai_data_platform import cli, warehouse
from ai_data_platform.governance import audit, erasure, suppression
from ai_data_platform.governance.pii import hmac_hex, normalize_email
from ai_data_platform.governance.search import Trace
from ai_data_platform.governance.stores import DEFAULT_REGION
from ai_data_platform.sources import raw_load, staging
from ai_data_platform.sources.contracts import CUSTOMERS, SUPPORT_TICKETS

from . import lifecycle_world as world
from .lifecycle_world import DAYS, KEY, SUBJECT

PHONE_TWIN, EMAIL_TWIN, CASE_TWIN = "C0000301", "C0000300", SUBJECT.lower()


@pytest.fixture()
def paths(lifecycle_paths):
    return lifecycle_paths


def _crm(paths) -> dict[str, dict]:
    records = {}
    for path in world.zones(paths).landed(CUSTOMERS):
        with path.open(newline="") as fh:
            records |= {r["customer_id"]: r for r in csv.DictReader(fh)}
    return records


def _land(paths, table, region: str, rows: list[list[str]]) -> None:
    """Append records to the last day's file of ``table`` in ``region`` and load that day again."""
    with world.zones(paths).file(table, DAYS[-1], region).open("a", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        for row in rows:
            writer.writerow(row)
    personal = world.personal_data(paths.root)
    con = warehouse.connect(paths.warehouse)
    try:
        raw_load.load_days(con, table, world.zones(paths), [DAYS[-1]], personal)
        staging.stage_days(con, table, [DAYS[-1]], personal)
    finally:
        con.close()


def _customer(record: dict, **changes) -> list[str]:
    return [{**record, **changes}[c] for c in CUSTOMERS.column_names]


def _in_store(paths, region: str, sql: str, params=()) -> int:
    con = duckdb.connect(str(paths.root / "regions" / region / "personal.duckdb"), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()[0][0]
    finally:
        con.close()


def _count(paths, sql, params=()) -> int:
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()[0][0]
    finally:
        con.close()


def _erase(paths, customer_id=SUBJECT, reason="DSR 7"):
    return erasure.erase(customer_id, reason, paths=paths, personal=world.personal_data(paths.root))


def _landed_ids(paths, table=CUSTOMERS) -> list[str]:
    out = []
    for path in world.zones(paths).landed(table):
        with path.open(newline="") as fh:
            out += [r[table.column_names[0]] for r in csv.DictReader(fh)]
    return out


def _audit_text(paths) -> str:
    return (paths.root / "audit" / audit.AUDIT_FILE).read_text()


# ---------------------------------------------------------------- B1: a phone or name written otherwise


def test_a_phone_or_name_another_customer_has_written_otherwise_is_not_theirs_alone(paths):
    region, record = world.subject_row(paths)
    phone = record["phone"]  # +12312158541
    spaced = f"{phone[:2]} {phone[2:5]} {phone[5:8]} {phone[8:]}"  # +1 231 215 8541
    _land(paths, CUSTOMERS, region, [
        _customer(record, customer_id=PHONE_TWIN, name="Pat Twin", email="pat.twin@example.org", phone=spaced),
        _customer(record, customer_id="C0000302", name=f"  {record['name'].upper()} ", email="name.twin@example.org",
                  phone="+15550000302"),
    ])
    assert _in_store(paths, region, "SELECT count(*) FROM identity.customer_pii WHERE customer_id = ?", [PHONE_TWIN]) == 1

    result = _erase(paths)

    assert (result.status, result.exit_code, result.traces) == ("erased", 0, [])
    assert result.not_searched["a phone"] == "shared with 1 other customer(s): not theirs alone"
    assert result.not_searched["a name"] == "shared with 1 other customer(s): not theirs alone"
    for twin in (PHONE_TWIN, "C0000302"):  # untouched everywhere
        assert twin in _landed_ids(paths)
        assert _in_store(paths, region, "SELECT count(*) FROM identity.customer_pii WHERE customer_id = ?", [twin]) == 1
        assert _in_store(paths, region, "SELECT count(*) FROM raw.customers_personal WHERE customer_id = ?", [twin]) == 1
        for layer in ("raw", "staging"):
            assert _count(paths, f"SELECT count(*) FROM {layer}.customers WHERE customer_id = ?", [twin]) == 1, (twin, layer)
    assert _count(paths, "SELECT count(*) FROM staging.customers WHERE customer_id = ?", [SUBJECT]) == 0
    report = "\n".join(result.report())
    assert spaced not in report and phone not in report and record["name"] not in report
    assert phone not in _audit_text(paths) and record["name"].lower() not in _audit_text(paths).lower()
    # the phone is the twin's alone now, however it is written
    assert erasure.customers_matching("phone", phone, paths, world.personal_data(paths.root)) == {PHONE_TWIN}


def test_a_phone_written_otherwise_makes_the_phone_name_two_customers(paths, capsys):
    region, record = world.subject_row(paths)
    phone = record["phone"]
    _land(paths, CUSTOMERS, region, [_customer(record, customer_id=PHONE_TWIN, name="Pat Twin", email="pat.twin@example.org",
                                               phone=f"{phone[:2]} ({phone[2:5]}) {phone[5:8]}-{phone[8:]}")])

    assert cli.main(["erase", "--phone", phone, "--reason", "DSR 9"]) == erasure.EXIT_UNKNOWN_SUBJECT
    assert capsys.readouterr().err.startswith("adp erase: 2 customers have this phone")
    assert cli.main(["erase", "--customer-id", SUBJECT, "--reason", f"call back {phone}"]) == 2  # their phone, shared or not


# ---------------------------------------------------------------- B2: ids differing only in case


def test_a_customer_whose_id_differs_only_in_case_is_another_customer_and_no_trace(paths):
    region, record = world.subject_row(paths)
    _land(paths, CUSTOMERS, region, [_customer(record, customer_id=CASE_TWIN, name="Lower Case", email="lower.case@example.org",
                                               phone="+15550000001")])
    notes = paths.root / "exports" / "notes.txt"
    notes.parent.mkdir()
    notes.write_text(f"called {CASE_TWIN} back\n")  # the other customer, by their id, in free text
    (paths.root / "exports" / "blob.bin").write_bytes(b"\x00\x01" + CASE_TWIN.encode() + b"\x00")

    result = _erase(paths)

    assert (result.status, result.exit_code, result.traces, result.mentions_kept) == ("erased", 0, [], [])
    for layer in ("raw", "staging"):
        assert _count(paths, f"SELECT count(*) FROM {layer}.customers WHERE customer_id = ?", [CASE_TWIN]) == 1
        assert _count(paths, f"SELECT count(*) FROM {layer}.customers WHERE customer_id = ?", [SUBJECT]) == 0
    assert CASE_TWIN in _landed_ids(paths)
    again = _erase(paths)
    assert (again.status, again.exit_code, again.traces) == ("nothing_found", 0, [])
    # the subject's own id, in the same places, is a trace
    notes.write_text(f"called {SUBJECT} back\n")
    (paths.root / "exports" / "blob.bin").write_bytes(b"\x00\x01" + SUBJECT.encode() + b"\x00")
    assert sorted(t.describe() for t in _erase(paths).traces) == ["exports/blob.bin: bytes: 1 x customer id",
                                                                  "exports/notes.txt: text: 1 x customer id"]


# ---------------------------------------------------------------- B3: an email two customer ids share


def test_an_email_another_customer_id_has_is_not_theirs_alone_and_their_records_stay(paths, capsys):
    region, record = world.subject_row(paths)
    email = record["email"]
    tickets_before = _count(paths, "SELECT count(*) FROM raw.support_tickets")
    _land(paths, CUSTOMERS, region, [_customer(record, customer_id=EMAIL_TWIN, name="Email Twin", email=f" {email.upper()}",
                                               phone="+15550000300")])
    assert erasure.customers_matching("email", email, paths, world.personal_data(paths.root)) == {SUBJECT, EMAIL_TWIN}

    assert cli.main(["erase", "--email", email, "--reason", "DSR 10"]) == erasure.EXIT_UNKNOWN_SUBJECT
    assert capsys.readouterr().err.startswith("adp erase: 2 customers have this email")
    with pytest.raises(ValueError, match="reason contains the subject's personal data"):
        _erase(paths, reason=f"asked by {email}")  # still theirs, if not theirs alone
    result = _erase(paths)

    assert (result.status, result.exit_code, result.traces) == ("erased", 0, [])
    assert result.not_searched["an email"] == "shared with 1 other customer(s): not theirs alone"
    assert EMAIL_TWIN in _landed_ids(paths)
    assert _in_store(paths, region, "SELECT count(*) FROM identity.customer_pii WHERE customer_id = ?", [EMAIL_TWIN]) == 1
    for layer in ("raw", "staging"):
        assert _count(paths, f"SELECT count(*) FROM {layer}.customers WHERE customer_id = ?", [EMAIL_TWIN]) == 1
    # the tickets sent from the shared email are not theirs alone: kept, in every layer and store,
    # and no longer linked to them
    assert _count(paths, "SELECT count(*) FROM raw.support_tickets") == tickets_before
    assert {"T70000001", "T70000002"} <= set(_landed_ids(paths, SUPPORT_TICKETS))
    assert _in_store(paths, region, "SELECT count(*) FROM raw.support_tickets_personal WHERE ticket_id LIKE 'T70%'") == 2
    assert _count(paths, "SELECT count(*) FROM staging.support_tickets WHERE customer_id = ?", [SUBJECT]) == 0
    linked = result.counts["staging.support_tickets.customer_id of records not theirs alone (records kept)"]
    assert linked == 2 == _count(paths, "SELECT count(*) FROM staging.support_tickets WHERE ticket_id LIKE 'T70%' AND customer_id IS NULL")
    # the shared email is on no suppression list (the twin's next export loads), and nowhere in the audit
    erased = _count(paths, f"SELECT count(*) FROM {suppression.TABLE} WHERE key_hash = ?", [hmac_hex(KEY, normalize_email(email))])
    assert erased == 0
    assert email.lower() not in _audit_text(paths).lower()


def test_a_ticket_from_an_email_theirs_alone_is_theirs_even_from_an_unknown_sender_record(paths):
    region, record = world.subject_row(paths)
    _land(paths, SUPPORT_TICKETS, region, [["T7999990", f"  {record['email'].upper()}", "2026-11-20T11:00:00Z", "email", "billing",
                                            "normal", "open", "it is me again"]])

    result = _erase(paths)

    assert (result.status, result.traces) == ("erased", [])
    assert "an email" not in result.not_searched
    assert not {"T70000001", "T70000002", "T7999990"} & set(_landed_ids(paths, SUPPORT_TICKETS))
    assert _count(paths, "SELECT count(*) FROM raw.support_tickets WHERE ticket_id LIKE 'T7%'") == 0


# ---------------------------------------------------------------- B4: mentions in others' records


def _neighbour(paths, region: str) -> dict:
    return next(r for cid, r in sorted(_crm(paths).items()) if cid != SUBJECT and r["region"] == region)


def test_a_mention_in_another_customers_ticket_is_kept_and_reported_never_a_failure(paths, capsys):
    region, record = world.subject_row(paths)
    other = _neighbour(paths, region)
    body = f"my partner {SUBJECT} ({record['email']}, {record['phone']}) asked me to write"
    _land(paths, SUPPORT_TICKETS, region, [
        ["T7999991", other["email"], "2026-11-20T12:00:00Z", "email", "billing", "normal", "open", body],
        ["T7999993", other["email"], "2026-11-20T12:00:00Z", "email", "billing", "???", "open", body],  # quarantined
    ])

    assert cli.main(["erase", "--customer-id", SUBJECT, "--reason", "DSR 11"]) == 0

    out = capsys.readouterr().out
    assert "mentions kept in other customers' records (not theirs: not erased):" in out
    assert "verified: no trace of the subject" in out
    landing = f"regions/{region}/landing/crm/support_tickets/{DAYS[-1]}.csv"
    record_ = list(audit.records(paths.root / "audit"))[-1]
    kept = record_["details"]["verification"]["mentions_kept_in_other_customers_records"]
    assert (record_["status"], record_["details"]["verification"]["passed"]) == ("erased", True)
    assert {k.split(": ")[0] for k in kept} == {landing, f"regions/{region}/personal.duckdb"}
    assert f"{landing}: text: 2 x customer id" in kept
    assert f"regions/{region}/personal.duckdb: raw.support_tickets_personal.body: 2 x email" in kept
    assert f"regions/{region}/personal.duckdb: quarantine.support_tickets_personal.raw_record: 1 x email" in kept
    assert {"T7999991", "T7999993"} <= set(_landed_ids(paths, SUPPORT_TICKETS))  # their tickets are theirs: kept
    assert _in_store(paths, region, "SELECT count(*) FROM raw.support_tickets_personal WHERE ticket_id LIKE 'T799999_'") == 2
    assert SUBJECT not in _audit_text(paths) and record["email"] not in _audit_text(paths)

    again = _erase(paths)  # and every later run: nothing found, the mentions reported again
    assert (again.status, again.exit_code, again.traces) == ("nothing_found", 0, [])
    assert {t.file for t in again.mentions_kept} == {landing, f"regions/{region}/personal.duckdb"}


def test_a_trace_no_known_customer_is_attributed_to_still_fails_the_verification(paths):
    region, record = world.subject_row(paths)
    other = _neighbour(paths, region)
    email = record["email"]
    logs = paths.root / "logs"
    logs.mkdir()
    (logs / "app.log").write_text(json.dumps({"customer_id": other["customer_id"], "msg": f"merged into {SUBJECT}"}) + "\n")
    runs = paths.root / "dagster_home" / "history" / "runs"
    runs.mkdir(parents=True)
    con = sqlite3.connect(runs / "blobs.db")
    con.execute("CREATE TABLE snapshots (id INTEGER, customer_id TEXT, body BLOB)")
    con.execute("INSERT INTO snapshots VALUES (1, NULL, ?)", [zlib.compress(json.dumps({"customer_id": other["customer_id"],
                                                                                        "note": email}).encode())])
    con.commit()
    con.close()
    wh = warehouse.connect(paths.warehouse)
    wh.execute("CREATE TABLE marts.notes (customer_id VARCHAR, note VARCHAR)")
    wh.execute("INSERT INTO marts.notes VALUES ('C8000004', ?), (?, ?), (NULL, ?)",  # an orphan's, another's, no one's
               [f"about {SUBJECT}", other["customer_id"], f"about {SUBJECT}", f"about {email}"])
    wh.close()
    # a ticket from an address no customer has: attributed to no known customer
    _land(paths, SUPPORT_TICKETS, region, [["T7999992", "stranger@example.net", "2026-11-20T12:00:00Z", "email", "billing", "normal",
                                            "open", f"is {SUBJECT} still with you?"]])

    result = _erase(paths)

    assert (result.status, result.exit_code) == ("traces_remain", erasure.EXIT_TRACES_REMAIN)
    described = {t.describe() for t in result.traces}
    unplaced = f"regions/{DEFAULT_REGION}/personal.duckdb"  # the stranger's personal data: the default region's store
    assert described == {
        "dagster_home/history/runs/blobs.db: snapshots.body: 1 x email",  # a blob, whatever its JSON says
        "logs/app.log: text: 1 x customer id",  # a log line, whatever it says
        f"regions/{region}/landing/crm/support_tickets/{DAYS[-1]}.csv: text: 1 x customer id",  # the stranger's ticket
        f"{unplaced}: raw.support_tickets_personal.body: 1 x customer id",
        f"{unplaced}: quarantine.support_tickets_personal.raw_record: 1 x customer id",
        "warehouse.duckdb: marts.notes.note: 1 x customer id",  # the orphan's row
        "warehouse.duckdb: marts.notes.note: 1 x email",  # no one's row
    }
    assert [t.describe() for t in result.mentions_kept] == ["warehouse.duckdb: marts.notes.note: 1 x customer id"]  # the other's


def test_managed_databases_holding_kept_mentions_are_compacted_before_they_are_trusted(tmp_path):
    """The search does not look in a database's bytes for a value its tables show (a kept mention):
    deleted rows holding it would go unseen, so every managed database with kept mentions that this
    erasure did not compact is compacted before the verification is repeated."""
    from ai_data_platform import settings
    from ai_data_platform.governance.erasure import Verification, _uncompacted
    from ai_data_platform.governance.stores import PersonalData, RegionalStores

    paths = settings.Paths(tmp_path)
    personal = PersonalData(KEY, RegionalStores.from_settings(paths))
    store = next(iter(personal.stores.paths.values()))
    name = store.relative_to(paths.root).as_posix()
    found = Verification([], 3, [Trace(name, "raw.support_tickets_personal.body", "email", 1)])
    assert _uncompacted(found, paths, personal, compacted=set()) == [store]
    assert _uncompacted(found, paths, personal, compacted={store}) == []
    found = Verification([Trace(name, "bytes on disk", "email", 1)], 3, [])
    assert _uncompacted(found, paths, personal, compacted={store}) == [store]
