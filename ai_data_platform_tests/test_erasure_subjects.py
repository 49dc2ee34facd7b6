"""Who an erasure is about: one known customer, by id, or by the email or phone of exactly one
customer; anything else (an unknown or hostile id, an id only payments reference, an email two
customers share) is refused with exit code 3, one line, nothing changed, an audit record
``nothing_found``. A step failing midway still leaves its audit record, without personal data."""

from __future__ import annotations

import csv
import hashlib

import duckdb
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ai_data_platform import cli
from ai_data_platform.governance import audit, erasure

from . import lifecycle_world as world
from .lifecycle_world import DAYS, SUBJECT
from .test_erasure_rules import HOSTILE


@pytest.fixture()
def paths(lifecycle_paths):
    return lifecycle_paths


def _state(paths) -> str:
    """A digest of every byte under the data directory except the audit trail: its log, and its
    anchor in Dagster's storage (``dagster_home``)."""
    digest = hashlib.sha256()
    trail = {"audit", "dagster_home"}
    for path in sorted(p for p in paths.root.rglob("*") if p.is_file() and not trail & set(p.relative_to(paths.root).parts)):
        digest.update(path.relative_to(paths.root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _count(paths, sql, params=()):
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchone()[0]
    finally:
        con.close()


def _last_audit(paths) -> dict:
    return list(audit.records(paths.root / "audit"))[-1]


@settings(max_examples=12)
@given(st.one_of(st.sampled_from(HOSTILE + ["C7654321", "c0000001", "C000000", " ", "C8000004"]), st.text(min_size=1, max_size=30)))
def test_an_id_no_customer_record_holds_is_refused_and_nothing_changes(lifecycle_built, tmp_path_factory, customer_id):
    paths = world.copy(lifecycle_built, tmp_path_factory.mktemp("unknown") / "adp")
    if not customer_id.strip():
        with pytest.raises(ValueError, match="a customer id is required"):
            erasure.erase(customer_id, "ticket 1", paths=paths, personal=world.personal_data(paths.root))
        return
    assume(customer_id.strip() not in {r["customer_id"] for r in _crm(paths)})  # a real customer: other tests erase those
    before = _state(paths)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADP_DATA_DIR", str(paths.root))  # the audit trail of this copy, anchored in its own storage
        result = erasure.erase(customer_id, "ticket 1", paths=paths, personal=world.personal_data(paths.root))

    assert (result.status, result.exit_code, result.counts) == ("unknown_subject", erasure.EXIT_UNKNOWN_SUBJECT, {})
    assert len(result.report()) == 1 and "nothing was erased and nothing recorded as suppressed" in result.report()[0]
    assert _state(paths) == before  # nothing deleted, nothing suppressed, no file created
    record = _last_audit(paths)
    assert (record["action"], record["status"], record["details"]["known_subject"]) == ("erasure", "nothing_found", False)
    assert record["details"]["subject"] == result.subject_ref and audit.verify(paths.root / "audit").ok


def _crm(paths) -> list[dict]:
    rows = []
    for path in world.zones(paths).landed(world.CUSTOMERS):
        with path.open(newline="") as fh:
            rows += list(csv.DictReader(fh))
    return rows


def test_an_id_only_other_records_reference_is_no_known_customer_and_its_rows_stay(paths, capsys):
    referenced = "C8000004"  # an events row of an id the CRM never had (the simulator's unknown_customer dirt)
    assert _count(paths, "SELECT count(*) FROM raw.events WHERE customer_id = ?", [referenced]) == 1

    assert cli.main(["erase", "--customer-id", referenced, "--reason", "ticket 2"]) == erasure.EXIT_UNKNOWN_SUBJECT

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("adp erase: no data about this customer id is held anywhere as a customer")
    assert referenced not in err
    assert _count(paths, "SELECT count(*) FROM raw.events WHERE customer_id = ?", [referenced]) == 1
    assert _count(paths, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'erased_subjects'") == 0


@pytest.mark.parametrize("customer_id", ["42", "EUR", "%", "x" * 100_000, "\udcff", "a\x00b"])
def test_the_command_line_refuses_hostile_ids_in_one_line(paths, capsys, customer_id):
    before = _state(paths)
    assert cli.main(["erase", "--customer-id", customer_id, "--reason", "ticket 3"]) == erasure.EXIT_UNKNOWN_SUBJECT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 200 and "traceback" not in err.lower()
    assert _state(paths) == before and _last_audit(paths)["status"] == "nothing_found"


def test_an_email_or_phone_of_exactly_one_customer_selects_them(paths, capsys):
    region, record = world.subject_row(paths)
    assert cli.main(["erase", "--email", f"  {record['email'].upper()} ", "--print-ref"]) == 0
    assert capsys.readouterr().out.strip() == audit.subject_ref(SUBJECT, world.KEY)

    result = erasure.erase_matching("phone", record["phone"].replace("+", "+ "), "ticket 4", paths=paths,
                                    personal=world.personal_data(paths.root))

    assert (result.status, result.subject_ref, result.traces) == ("erased", audit.subject_ref(SUBJECT, world.KEY), [])
    assert _count(paths, "SELECT count(*) FROM staging.customers WHERE customer_id = ?", [SUBJECT]) == 0
    # erased before: the email now names no customer, its HMAC is on the suppression list
    again = erasure.erase_matching("email", record["email"], "ticket 5", paths=paths, personal=world.personal_data(paths.root))
    assert (again.status, again.exit_code, again.subject_ref) == ("nothing_found", 0, result.subject_ref)


def test_an_email_or_phone_no_customer_or_several_customers_have_is_refused_without_the_value(paths, capsys):
    _, record = world.subject_row(paths)
    other = _crm(paths)[5]
    with world.zones(paths).file(world.CUSTOMERS, DAYS[-1], "EU").open("a", newline="") as fh:  # another customer, same phone
        csv.writer(fh).writerow(["C0999999", "Pat Doe", "pat@example.org", other["phone"], "DE", "EU", "consumer",
                                 "2026-01-01T00:00:00Z", "true", "2026-11-20T00:00:00Z"])
    before = _state(paths)

    assert cli.main(["erase", "--phone", other["phone"], "--reason", "ticket 6"]) == erasure.EXIT_UNKNOWN_SUBJECT
    err = capsys.readouterr().err
    assert err == "adp erase: 2 customers have this phone: erase each by --customer-id; nothing was erased and nothing recorded as suppressed\n"
    assert cli.main(["erase", "--email", "nobody@example.org", "--reason", "ticket 7"]) == erasure.EXIT_UNKNOWN_SUBJECT
    assert capsys.readouterr().err.startswith("adp erase: no customer has this email: nothing was erased")
    assert _state(paths) == before
    records = list(audit.records(paths.root / "audit"))[-2:]
    assert [(r["status"], r["details"]["customers_matching"], r["details"]["subject"]) for r in records] == [
        ("nothing_found", 2, None), ("nothing_found", 0, None)]
    log = (paths.root / "audit" / audit.AUDIT_FILE).read_text()
    assert other["phone"] not in log and "nobody@example.org" not in log
    with pytest.raises(ValueError, match="reason contains the subject's personal data"):
        erasure.erase_matching("email", record["email"], f"asked by {record['email']}", paths=paths, personal=world.personal_data(paths.root))


def test_a_step_failing_midway_leaves_an_audit_record_without_personal_data(paths, monkeypatch, capsys):
    email = world.subject_email(paths)

    def failing(*args, **kwargs):
        raise OSError(f"disk full while writing {SUBJECT} {email}")

    monkeypatch.setattr(erasure, "erase_datasets", failing)
    assert cli.main(["erase", "--customer-id", SUBJECT, "--reason", "ticket 8"]) == erasure.EXIT_TRACES_REMAIN

    err = capsys.readouterr().err
    assert err == ("adp erase: failed while rewriting dataset versions (OSError); the audit record says what was removed before\n")
    record = _last_audit(paths)
    assert (record["status"], record["details"]["failed_step"], record["details"]["error"]) == ("error", "rewriting dataset versions", "OSError")
    assert record["row_counts"]["staging.customers"] == 1  # what was removed before the failure
    log = (paths.root / "audit" / audit.AUDIT_FILE).read_text()
    assert SUBJECT not in log and email not in log

    monkeypatch.undo()
    monkeypatch.setenv("ADP_DATA_DIR", str(paths.root))
    monkeypatch.setenv("ADP_PII_HMAC_KEY", world.KEY)
    finished = erasure.erase(SUBJECT, "ticket 8", paths=paths, personal=world.personal_data(paths.root))
    assert (finished.status, finished.traces) == ("erased", []) and "datasets/churn/2026-11-20" in finished.counts
