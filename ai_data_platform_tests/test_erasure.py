"""Right to erasure: the subject leaves every store, which a search of every file proves; a trace
the erasure does not know about fails it loudly; twice is harmless; an unknown id says so; datasets
are rewritten with the erasure in their history; the audit record holds no personal data; and no
re-run of the raw loads brings the subject back."""

import json
import shutil

import duckdb
import pytest

from ai_data_platform import warehouse
from ai_data_platform.governance import audit, erasure
from ai_data_platform.ml import datasets
from ai_data_platform.quality.gx_runner import MASKED_SAMPLE, ExpectationOutcome
from ai_data_platform.sources import raw_load, staging
from ai_data_platform.sources.contracts import SOURCE_TABLES

from . import lifecycle_world as world
from .lifecycle_world import DAYS, KEY, SUBJECT


@pytest.fixture()
def paths(lifecycle_paths):
    return lifecycle_paths


def _erase(paths, customer_id=SUBJECT, reason="GDPR request 2026-117"):
    return erasure.erase(customer_id, reason, paths=paths, personal=world.personal_data(paths.root))


def _count(paths, sql, params=()):
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchone()[0]
    finally:
        con.close()


def test_erasure_removes_the_subject_everywhere_and_a_search_of_every_file_finds_nothing(paths):
    region, subject = world.subject_row(paths)
    email = subject["email"]
    landing_mtimes = {p: p.stat().st_mtime_ns for p in world.landing_files(paths)}
    others_events = _count(paths, "SELECT count(*) FROM raw.events WHERE customer_id <> ?", [SUBJECT])
    before = datasets.read_manifest("churn", "2026-11-20", root=paths.root / "datasets")

    result = _erase(paths)

    assert (result.status, result.exit_code, result.traces) == ("erased", 0, [])
    places = set(result.counts)
    assert {"raw.customers", "staging.customers", "raw.support_tickets", "raw.events", "marts.customer_360",
            "features.customer_daily", "ml.churn_scores", "datasets/churn/2026-11-17", "datasets/churn/2026-11-20"} <= places
    assert any(p.endswith("store identity.customer_pii") for p in places)
    assert any(p.endswith("store raw.support_tickets_personal") for p in places)
    assert result.counts["raw.support_tickets"] == 2  # both tickets sent from their email, however it was written
    # rewritten out of the regional files that hold them    assert any(p.startswith(f"regions/{region}/landing/crm/support_tickets/") for p in places)
    assert any(p.startswith(f"regions/{region}/landing/crm/customers/") for p in places)
    assert not any(p.startswith("landing/crm/") for p in places)
    assert result.files_searched > 30

    # Independent of the verification: the text of every landing file, the warehouse, the dataset.
    for path in world.landing_files(paths):
        if path.suffix in (".csv", ".jsonl"):
            text = path.read_text().lower()
            assert SUBJECT.lower() not in text and email.lower() not in text, path
    for table in ("staging.customers", "staging.events", "marts.customer_360", "features.customer_daily", "ml.churn_scores"):
        assert _count(paths, f"SELECT count(*) FROM {table} WHERE customer_id = ?", [SUBJECT]) == 0, table
    assert _count(paths, "SELECT count(*) FROM raw.events WHERE customer_id <> ?", [SUBJECT]) == others_events
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        for t in SOURCE_TABLES:  # raw = staged + quarantined + duplicates still holds for every day
            assert all(c.holds for c in staging.conservation(con, t, DAYS[0], DAYS[-1])), t.name
    finally:
        con.close()
    # landing files keep their modification time: the late-landing sensor re-runs nothing
    assert all(p.stat().st_mtime_ns == m for p, m in landing_mtimes.items())

    after = datasets.read_manifest("churn", "2026-11-20", root=paths.root / "datasets")
    assert after["content_hash"] != before["content_hash"] and after["row_count"] == before["row_count"] - 2
    event = after["history"][-1]
    assert event["event"] == "erasure" and event["subject"] == result.subject_ref and event["rows_removed"] == 2
    assert event["previous_content_hash"] == before["content_hash"]
    assert SUBJECT not in json.dumps(after)
    frame = datasets.load_dataset("churn", "2026-11-20", root=paths.root / "datasets")  # verifies the new hash
    assert SUBJECT not in set(frame["customer_id"])

    record = list(audit.records())[-1]
    assert record["action"] == "erasure" and record["status"] == "erased"
    assert record["details"]["subject"] == audit.subject_ref(SUBJECT, KEY)
    assert record["details"]["verification"]["passed"] is True
    assert record["row_counts"]["ml.churn_scores"] == result.counts["ml.churn_scores"]
    log = (paths.root / "audit" / audit.AUDIT_FILE).read_text().lower()
    assert SUBJECT.lower() not in log and email.lower() not in log
    assert audit.verify().ok


def test_verification_fails_naming_every_trace_the_erasure_does_not_know_about(paths):
    import sqlite3

    email = world.subject_email(paths)
    con = warehouse.connect(paths.warehouse)
    con.execute("CREATE TABLE marts.callcenter_notes (note VARCHAR, agent VARCHAR)")
    con.execute("INSERT INTO marts.callcenter_notes VALUES (?, 'jo'), ('called C00000012 back', 'al')", [f"called {SUBJECT} back"])
    con.close()
    events = paths.root / "dagster_home" / "history" / "runs" / "planted.db"
    events.parent.mkdir(parents=True)
    sqlite = sqlite3.connect(events)
    sqlite.execute("CREATE TABLE event_logs (id INTEGER, event TEXT)")
    sqlite.execute("INSERT INTO event_logs VALUES (1, ?)", [json.dumps({"message": f"unexpected values ['{email.upper()}']"})])
    sqlite.commit()
    sqlite.close()
    (paths.root / "exports").mkdir()
    (paths.root / "exports" / "callback_list.txt").write_text(f"{SUBJECT};please call\nC0000011;later\n")

    result = _erase(paths)

    assert (result.status, result.exit_code) == ("traces_remain", erasure.EXIT_TRACES_REMAIN)
    assert sorted(t.describe() for t in result.traces) == [
        "dagster_home/history/runs/planted.db: event_logs.event: 1 x email",
        "exports/callback_list.txt: text: 1 x customer id",
        "warehouse.duckdb: marts.callcenter_notes.note: 1 x customer id",
    ]
    assert "VERIFICATION FAILED: 3 trace(s) remain" in "\n".join(result.report())
    assert list(audit.records())[-1]["details"]["verification"]["traces"] == [t.describe() for t in result.traces]


def test_erasing_twice_is_harmless_and_an_unknown_id_is_reported(paths):
    assert _erase(paths).status == "erased"
    warehouse_bytes = paths.warehouse.read_bytes()

    again = _erase(paths)

    assert (again.status, again.exit_code, again.counts, again.traces) == ("nothing_found", 0, {}, [])
    assert again.erased_before is not None
    assert paths.warehouse.read_bytes() == warehouse_bytes  # nothing changed, nothing compacted
    assert list(audit.records())[-1]["details"]["nothing_found"] is True

    unknown = _erase(paths, "C7654321")
    assert (unknown.status, unknown.exit_code) == ("unknown_subject", erasure.EXIT_UNKNOWN_SUBJECT)
    assert "nothing was erased and nothing recorded as suppressed" in "\n".join(unknown.report())
    assert _count(paths, "SELECT count(*) FROM meta.erased_subjects WHERE subject_ref = ?", [unknown.subject_ref]) == 0


def test_a_reason_holding_personal_data_is_refused_before_anything_changes(paths):
    email = world.subject_email(paths)
    with pytest.raises(ValueError, match="reason contains the subject's personal data"):
        _erase(paths, reason=f"request from {email}")
    assert _count(paths, "SELECT count(*) FROM raw.customers WHERE customer_id = ?", [SUBJECT]) > 0


def test_a_backfill_of_re_delivered_files_cannot_bring_the_subject_back(paths, lifecycle_built):
    _erase(paths)
    for erased_zone, delivered_zone in zip(world.zones(paths).roots(), world.zones(lifecycle_built).roots()):
        shutil.rmtree(erased_zone)
        shutil.copytree(delivered_zone, erased_zone)  # the sources deliver the old exports again
    personal = world.personal_data(paths.root)
    con = warehouse.connect(paths.warehouse)
    try:
        dropped = {}
        for t in SOURCE_TABLES:
            loads = raw_load.load_days(con, t, world.zones(paths), DAYS, personal)
            dropped[t.name] = sum(load.extra.get("erased_subject_rows_dropped", 0) for load in loads)
            staging.stage_days(con, t, DAYS, personal)
        assert dropped["customers"] >= 1 and dropped["events"] >= 1 and dropped["support_tickets"] == 2
        for t in SOURCE_TABLES:
            column = "customer_email_hash" if t.name == "support_tickets" else "customer_id"
            value = SUBJECT if column == "customer_id" else next(iter(erasure.resolve(SUBJECT, paths, personal).email_hashes))
            assert con.execute(f"SELECT count(*) FROM raw.{t.name} WHERE trim({column}) = ?", [value]).fetchone()[0] == 0, t.name
    finally:
        con.close()


def test_a_re_delivered_line_of_an_erased_subject_that_cannot_be_split_is_not_loaded_again(paths):
    """The suppression filter drops, at a re-load, an unsplittable line holding an erased id or email
    as a whole value (as erasure removes it and the stream drops it), and keeps everybody else's."""
    from ai_data_platform.governance.attribution import Identifiers
    from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS, SUPPORT_TICKETS

    region, record = world.subject_row(paths)
    email, day = record["email"], DAYS[-1]
    assert _erase(paths).status == "erased"
    zones = world.zones(paths)
    landed = {
        zones.file(CUSTOMERS, day, region): [
            ",".join(record[c] for c in CUSTOMERS.column_names),  # their record, parsed
            f"{SUBJECT},{record['name']},{email}",  # cut short: the id and the email as whole fields
            "C0000002,Someone Else,someone@example.org",  # somebody else's, cut short
        ],
        zones.file(SUPPORT_TICKETS, day, region): [f"T7999999,{email.upper()}", "T7999998,someone@example.org"],
        zones.file(EVENTS, day): ['{"event_id":"E9999999","customer_id":"' + SUBJECT + '","ev',
                                  '{"event_id":"E9999998","customer_id":"C0000002","ev'],
    }
    for path, lines in landed.items():  # the source delivers the day again, with these records in it
        text = path.read_bytes()
        path.write_bytes(text + "".join(line + "\n" for line in lines).encode())
    personal = world.personal_data(paths.root)
    subject = Identifiers.of([SUBJECT], [email])
    con = warehouse.connect(paths.warehouse)
    try:
        dropped = {}
        for t in (CUSTOMERS, SUPPORT_TICKETS, EVENTS):
            dropped[t.name] = sum(load.extra.get("erased_subject_rows_dropped", 0) for load in raw_load.load_days(
                con, t, zones, [day], personal))
            staging.stage_days(con, t, [day], personal)
        assert dropped == {"customers": 2, "support_tickets": 1, "events": 1}
        assert con.execute("SELECT count(*) FROM raw.customers WHERE trim(customer_id) = ?", [SUBJECT]).fetchone()[0] == 0
        relations = [("raw.events", "_raw_line"), ("quarantine.events", "raw_record")]
        with personal.stores.attached(con) as aliases:
            for a in aliases.values():
                relations += [(f"{a}.raw.{t}_personal", "_raw_line") for t in ("customers", "support_tickets")]
                relations += [(f"{a}.quarantine.{t}_personal", "raw_record") for t in ("customers", "support_tickets")]
            raw_lines = [line for table, column in relations for (line,) in con.execute(
                f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL").fetchall()]
    finally:
        con.close()
    assert not [line for line in raw_lines if subject.owns_line(line)]
    others = {"C0000002,Someone Else,someone@example.org", "T7999998,someone@example.org",
              '{"event_id":"E9999998","customer_id":"C0000002","ev'}
    assert others <= set(raw_lines)


def test_erasing_a_subject_whose_record_opens_a_bom_prefixed_crlf_export(paths):
    """The CRM export holding the subject starts with a UTF-8 byte order mark, has CRLF line ends
    and, first, a record of theirs with an email no store holds yet and no phone (exported after the
    last load): it is theirs by its customer_id, found under the marked header, its email is theirs,
    and every record holding it is erased; every other byte (the mark too) stays."""
    import csv
    import io

    region, record = world.subject_row(paths)
    path = world.zones(paths).file(world.CUSTOMERS, DAYS[0], region)
    header, *rows = path.read_bytes().decode().splitlines()
    newest = io.StringIO()
    csv.writer(newest, lineterminator="").writerow([{"email": "newest.address@example.net", "phone": ""}.get(c, record[c]) for c in header.split(",")])
    others = [r for r in rows if not r.startswith(SUBJECT + ",")]
    ticket = world.zones(paths).file(world.SUPPORT_TICKETS, DAYS[0], region)
    ticket.write_bytes(ticket.read_bytes() + b"T7999999,Newest.Address@example.net\n")  # cut short, sent from it
    path.write_bytes(b"\xef\xbb\xbf" + "".join(line + "\r\n" for line in [header, newest.getvalue(), *rows]).encode())

    result = _erase(paths)

    assert (result.status, result.traces) == ("erased", [])
    assert path.read_bytes() == b"\xef\xbb\xbf" + "".join(line + "\r\n" for line in [header, *others]).encode()
    assert b"newest" not in ticket.read_bytes().lower()


def test_samples_of_subject_identifiers_never_reach_check_results():
    outcome = ExpectationOutcome("expect_column_values_to_be_unique", "customer_id", {"column": "customer_id"}, False, 10, 2, 20.0,
                                 ["C0000001", "C0000002"], None, None)
    compound = ExpectationOutcome("expect_compound_columns_to_be_unique", None, {"column_list": ["snapshot_date", "customer_id"]},
                                  False, 10, 1, 10.0, [{"snapshot_date": "2026-11-20", "customer_id": "C0000001"}], None, None)
    amounts = ExpectationOutcome("expect_column_values_to_be_between", "amount", {"column": "amount"}, False, 10, 1, 10.0, [-4.0], None, None)
    assert outcome.sample_unexpected == [MASKED_SAMPLE, MASKED_SAMPLE]
    assert compound.sample_unexpected == [MASKED_SAMPLE]
    assert "C0000001" not in outcome.describe_failure() and amounts.sample_unexpected == [-4.0]


def test_the_erase_customer_job_takes_a_subject_reference_and_the_cli_reports_exit_codes(paths, capsys):
    import dagster as dg

    from ai_data_platform import cli
    from ai_data_platform.definitions import defs
    from ai_data_platform.resources import build_resources

    assert cli.main(["erase", "--customer-id", SUBJECT, "--print-ref"]) == 0
    ref = capsys.readouterr().out.strip()
    assert ref == audit.subject_ref(SUBJECT, KEY)
    run_config = {"ops": {"erase_subject": {"config": {"subject_ref": ref, "reason": "ticket 9"}}}}
    result = defs.resolve_job_def("erase_customer").execute_in_process(
        run_config=run_config, instance=dg.DagsterInstance.ephemeral(), resources=build_resources(paths), raise_on_error=False
    )
    assert result.success
    assert result.output_for_node("erase_subject") == "erased"
    assert _count(paths, "SELECT count(*) FROM staging.customers WHERE customer_id = ?", [SUBJECT]) == 0

    assert cli.main(["erase", "--customer-id", SUBJECT, "--reason", "ticket 9"]) == 0
    assert "nothing found" in capsys.readouterr().out
    assert cli.main(["erase", "--customer-id", "C7654321", "--reason", "ticket 10"]) == 3
    assert "no data about this customer id is held anywhere" in capsys.readouterr().err
    assert cli.main(["erase", "--customer-id", SUBJECT]) == 2
