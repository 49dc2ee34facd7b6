"""The rules erasure attributes records by and verification searches by, on their own (no world):
identifier fields and whole values of unparseable lines, never a word a short id resembles; every
kind of file read without crashing, whatever the needle."""

from __future__ import annotations

import gzip
import json
import sqlite3
import zlib
from collections import Counter

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ai_data_platform.governance.attribution import Identifiers
from ai_data_platform.governance.search import EMAIL, ID, NAME, PHONE, Matcher, Needle, is_word, search_file

HOSTILE = ["7", "42", "49", "EUR", "US", "login", "%", "_", "(.*)", "\\", 'say "hi"', "'", "\x00", "x" * 100_000, "\udcff"]


@pytest.mark.parametrize(
    ("subject", "line", "theirs"),
    [
        ("42", '{"event_id":"E1","customer_id":"C5","event_time":"2026-11-20T06:42:49Z"}', False),  # a number in a timestamp
        ("42", '{"event_id":"E1","customer_id":42,"event_type":"login"}', True),  # a JSON number is the id as text
        ("42", '{"event_id":"E1","customer_id": 42, "ev', True),  # cut off after an unquoted id
        ("42", "garbage at 06:42:49 for 42", False),  # a word, no whole value
        ("42", "42,Ann Lee,ann@example.org", True),  # a CSV field of a record
        ("42", "42", False),  # a lone value is no record
        ("EUR", '{"payment_id":"P1","customer_id":"C5","currency":"EUR"}', False),  # parsed: currency is no identifier
        ("EUR", '{"customer_id":"EUR","amou', True),  # cut off: a whole quoted string
        ("EUR", '{"customer_id":"C5","tags":["EUR"],"amou', False),  # a complete fragment, judged by its keys
        ("EUR", 'rows_by_region {"US": 10} currencies ["EUR", "USD"]', False),
        ("US", 'rows {"customer_id": "US"} seen', True),
        ("eur", '{"customer_id":"EUR"}', False),  # ids compare exactly: case counts
        ("C0000001", '{"customer_id":"  C0000001 "}', True),  # surrounding spaces aside, as the warehouse trims
        ("C0000001", '{"customer_id":"\\u0043\\u0030000001"}', True),  # an escape spells the id
        ("C0000001", '{"customer":{"customer_id":"C0000001"}}', True),  # at any depth
        ("%", '{"customer_id":"C5","note":"100%"}', False),
        ("(.*)", '{"customer_id":"(.*)"}', True),
        ("(.*)", '{"customer_id":"anything"}', False),
        ('say "hi"', '{"customer_id":"say \\"hi\\""}', True),
        ("42", '{"customer_id":"42","customer_id":"C5"}', True),  # a key twice: every value counts
        ("C5", '{"customer_id":"42","customer_id":"C5"}', True),
    ],
)
def test_a_line_is_the_subjects_only_by_identifier_fields_or_whole_values(subject, line, theirs):
    assert Identifiers.of([subject]).owns_line(line) is theirs


def test_emails_and_phones_attribute_by_their_normalized_form_only_where_they_can_be_one():
    ids = Identifiers.of([], ["Ann@Example.org "], ["+49 151 2345678"])
    assert ids.owns_fields({"customer_email": " ANN@example.ORG"}) and ids.owns_fields({"phone": "+491512345678"})
    assert ids.owns_line('{"ticket_id": "T1", "customer_email": "ann@example.org", "bo')
    assert not ids.owns_fields({"note": "ann@example.org"})  # not an identifier field
    short = Identifiers.of([], ["eur"], ["7"])  # hostile CRM values: no @, one digit
    assert short.owns_fields({"email": "EUR"}) and short.owns_fields({"phone": "7"})
    assert not short.owns_line('{"currency":"EUR","amount":"7","x') and not short.owns_line("EUR,7,DE")


@given(st.sampled_from(HOSTILE), st.text(max_size=200))
def test_no_id_crashes_attribution_or_matches_a_text_without_it(subject, text):
    ids = Identifiers.of([subject])
    owned = ids.owns_line(text)
    assert not owned or subject.strip(" ") in text or "\\u" in text


@pytest.mark.parametrize(
    ("label", "value", "word"),
    [(ID, "C0000001", True), (ID, "f47ac10b-58cc-4372-a567-0e02b2c3d479", True), (ID, "42", False), (ID, "EUR", False),
     (ID, "login", False), (ID, "card_transaction", False), (ID, "2026-11-20", False), (ID, "1b9d6bcd-bbfd", False),
     (NAME, "Ann Lee", False), (NAME, "Aoife Bianchi", True), (NAME, "Page", False), (EMAIL, "ann@example.org", True),
     (EMAIL, "eur", False), (PHONE, "+49 151 2345678", True), (PHONE, "42", False)],
)
def test_only_distinctive_values_are_searched_as_words(label, value, word):
    assert is_word(Needle(label, value)) is word


def _search(tmp_path, needles, name="f"):
    return sorted(t.describe() for t in search_file(tmp_path / name, needles, file=name, allowed=lambda *a: False))


def test_a_table_is_searched_by_identifier_columns_keys_and_raw_records_not_by_what_a_short_id_resembles(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE TABLE pay (customer_id VARCHAR, currency VARCHAR, event_time VARCHAR, raw_record VARCHAR, note VARCHAR)")
    con.execute("INSERT INTO pay VALUES ('C5', 'EUR', '06:42:49', '{\"customer_id\":\"C5\",\"currency\":\"EUR\"}', 'paid 42, EUR'),"
                "('EUR', 'USD', '07:00:00', NULL, NULL), ('C6', 'EUR', NULL, '{\"customer_id\":\"EUR\",\"amou', NULL)")
    con.execute("CREATE TABLE ids (customer_id BIGINT)")
    con.execute("INSERT INTO ids VALUES (42), (7)")
    con.close()
    assert _search(tmp_path, [Needle(ID, "EUR")], "w.duckdb") == ["w.duckdb: main.pay.customer_id: 1 x customer id",
                                                                   "w.duckdb: main.pay.raw_record: 1 x customer id"]
    assert _search(tmp_path, [Needle(ID, "42")], "w.duckdb") == ["w.duckdb: main.ids.customer_id: 1 x customer id"]
    assert _search(tmp_path, [Needle(ID, "49")], "w.duckdb") == []


def test_dagsters_compressed_blobs_are_read_and_judged_like_any_text(tmp_path):
    metadata = {"entry_data": {"data": {"EU": 14, "US": 10}}, "value_set": ["EUR", "USD"], "sample": "unexpected ann@example.org"}
    con = sqlite3.connect(tmp_path / "runs.db")
    con.execute("CREATE TABLE snapshots (id INTEGER, body BLOB, ts TIMESTAMP)")
    con.execute("INSERT INTO snapshots VALUES (1, ?, '2026-11-20 06:42:49')", [zlib.compress(json.dumps(metadata).encode())])
    con.execute("INSERT INTO snapshots VALUES (2, ?, NULL)", [b"\x00\x01binary\xff\xfe" + b"Ann@Example.org" + b"\x00"])
    con.execute("INSERT INTO snapshots VALUES (3, ?, NULL)", [b"x\x9c not zlib at all"])
    con.commit()
    con.close()
    needles = [Needle(ID, "US"), Needle(ID, "EUR"), Needle(ID, "42"), Needle(EMAIL, "ann@example.org")]
    assert _search(tmp_path, needles, "runs.db") == ["runs.db: snapshots.body: 2 x email"]


def test_text_files_are_read_by_what_they_hold_compressed_or_not_and_binary_files_as_bytes(tmp_path):
    (tmp_path / "export.csv").write_text("customer_id,country,currency\nC5,DE,EUR\nDE,FR,USD\nC7,DE\n")
    (tmp_path / "events.jsonl.gz").write_bytes(gzip.compress(b'{"customer_id":"C5","currency":"EUR"}\n{"customer_id":"EUR"}\n'))
    (tmp_path / "log.txt").write_text('06:42:49 rows {"US": 10}\nerasure requested for C0000001;call back\n')
    (tmp_path / "model.bin").write_bytes(b"\x00\x01,42,\x00" + b"C0000001" + b"\x00")
    (tmp_path / "manifest.json").write_text(json.dumps({"rows": 42, "customers": {"top": "EUR"}}, indent=2))
    assert _search(tmp_path, [Needle(ID, "DE")], "export.csv") == ["export.csv: text: 2 x customer id"]  # its own row, a short row
    assert _search(tmp_path, [Needle(ID, "EUR")], "events.jsonl.gz") == ["events.jsonl.gz: text: 1 x customer id"]
    assert _search(tmp_path, [Needle(ID, "US")], "log.txt") == []
    assert _search(tmp_path, [Needle(ID, "C0000001")], "log.txt") == ["log.txt: text: 1 x customer id"]
    assert _search(tmp_path, [Needle(ID, "42"), Needle(ID, "C0000001")], "model.bin") == ["model.bin: bytes: 1 x customer id"]
    assert _search(tmp_path, [Needle(ID, "42"), Needle(ID, "EUR")], "manifest.json") == []


def test_a_file_that_cannot_be_read_as_what_it_looks_like_is_reported_not_a_crash(tmp_path):
    (tmp_path / "fake.duckdb").write_bytes(b"\x00" * 8 + b"DUCK" + b"\x00" * 100 + b"ann@example.org")
    (tmp_path / "fake.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    pq.write_table(pa.table({"customer_id": ["C5", "42"]}), tmp_path / "ok.parquet")
    traces = _search(tmp_path, [Needle(EMAIL, "ann@example.org")], "fake.duckdb")
    assert "fake.duckdb: bytes on disk: 1 x email" in traces
    assert any(t.startswith("fake.duckdb: unreadable as duckdb (") for t in traces)
    assert _search(tmp_path, [Needle(ID, "42")], "fake.sqlite")[0].startswith("fake.sqlite: unreadable as sqlite")
    assert _search(tmp_path, [Needle(ID, "42")], "ok.parquet") == ["ok.parquet: data.customer_id: 1 x customer id"]


@given(st.sampled_from(HOSTILE))
def test_pathological_needles_neither_crash_a_search_nor_match_what_does_not_hold_them(tmp_path_factory, value):
    root = tmp_path_factory.mktemp("pathological")
    con = sqlite3.connect(root / "s.db")
    con.execute("CREATE TABLE t (customer_id TEXT, note TEXT, blob BLOB)")
    con.execute("INSERT INTO t VALUES ('C5', '100% of _all_ (.*) say \"hi\"', ?)", [zlib.compress(b'{"customer_id": "C5"}')])
    con.commit()
    con.close()
    db = duckdb.connect(str(root / "w.duckdb"))
    db.execute("CREATE TABLE t AS SELECT 'C5' AS customer_id, '100% of _all_' AS note")
    db.close()
    (root / "t.txt").write_text('100% of _all_ (.*) say "hi" 06:42:49 EUR\n')
    needles = [Needle(ID, value), Needle(EMAIL, value), Needle(NAME, value), Needle(PHONE, value)]
    for name in ("s.db", "w.duckdb", "t.txt"):
        assert search_file(root / name, needles, file=name, allowed=lambda *a: False) == []
    assert Matcher(needles).in_value("C5") == set()


def test_the_stream_drops_an_erased_subjects_unparseable_payload_by_the_same_rule():
    from datetime import datetime

    from ai_data_platform.governance.pii import hmac_hex
    from ai_data_platform.streaming.erased import ERASED_SUBJECT, ErasedSubjects, judge_record
    from ai_data_platform.streaming.transport import Record

    erased = ErasedSubjects({hmac_hex("k", "42"), hmac_hex("k", "EUR")}, "k")

    def dropped(payload: bytes) -> bool:
        return judge_record(Record(1, datetime(2026, 11, 20), payload, "s"), erased).dropped == ERASED_SUBJECT

    assert dropped(b'{"customer_id":"42","amou') and dropped(b"42,login,2026-11-20") and dropped(b'{"customer_id": 42, "x')
    assert dropped(b'{"event_id":"E1","customer_id":"42","event_type":"teleport"}')  # rejected, but theirs
    assert dropped(b'{"customer_id":"C5","currency":"EUR","amou')  # cut off: "EUR" is a whole value, as erasure judges it
    assert not dropped(b"garbage at 06:42:49 for 42") and not dropped(b'{"customer_id":"C5","tags":["EUR"],"x')
    assert not dropped(b'{"event_id":"E2","customer_id":"C5","currency":"EUR","event_type":"teleport"}')


def test_a_databases_blobs_and_nested_values_are_read_too(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE TABLE t (payload BLOB, meta STRUCT(customer_id VARCHAR, currency VARCHAR), tags VARCHAR[])")
    con.execute("INSERT INTO t VALUES (?, {'customer_id': 'C5', 'currency': 'EUR'}, ['EUR']), (NULL, {'customer_id': 'EUR', "
                "'currency': 'USD'}, NULL)", [zlib.compress(b'{"customer_id": "EUR"}')])
    con.close()
    assert _search(tmp_path, [Needle(ID, "EUR")], "w.duckdb") == ["w.duckdb: main.t.meta: 1 x customer id",
                                                                   "w.duckdb: main.t.payload: 1 x customer id"]


@pytest.mark.parametrize(
    ("text", "found"),
    [("mail ann@example.org.", True), ("<ANN@Example.org>", True), ("ann@example.org.uk", False), ("joann@example.org", False),
     ("jo.ann@example.org", False), ("ann@example.org-x", False), ("ann@example.orgx", False)],
)
def test_an_email_is_a_word_only_where_it_is_not_part_of_a_longer_address(text, found):
    matcher = Matcher([Needle(EMAIL, "ann@example.org")])
    assert (matcher.in_words(text) == {EMAIL}) is found
    assert (matcher.in_bytes(b"\x00" + text.encode() + b"\x00") == {EMAIL}) is found


# Pieces of raw lines: identifier keys, separators, JSON escapes, a timestamp, ids and emails
LINE_PIECES = st.sampled_from(['"customer_id"', '"email"', '"customer_email"', '"note"', ":", ",", " ", "{", "}", "[", "]",
                               '"', "\\", "\\u0034", "\n", "\x00", "42", "4", "EUR", " 42 ", "06:42:49", "Ann@X.org",
                               "ann@x.org", "bo@x.org", "true", "é"])
RAW_LINES = st.lists(LINE_PIECES, max_size=14).map("".join)
POOL_IDS = ("42", "4", "EUR", "2", "06", "true")
POOL_EMAILS = ("ann@x.org", "bo@x.org")


@given(RAW_LINES)
def test_a_lines_keys_are_exactly_the_ids_and_emails_that_make_it_someones(line):
    from ai_data_platform.governance.attribution import line_keys

    keys = line_keys(line)
    for cid in POOL_IDS:
        assert (cid in keys.customer_ids) == Identifiers.of([cid]).owns_line(line), cid
    for email in POOL_EMAILS:
        assert (email in keys.emails) == Identifiers.of([], [email]).owns_line(line), email


@given(st.lists(RAW_LINES, min_size=1, max_size=8), st.sampled_from(POOL_IDS), st.sampled_from(POOL_EMAILS))
def test_the_raw_load_drops_exactly_the_unsplit_lines_erasure_attributes_to_an_erased_subject(lines, cid, email):
    from ai_data_platform.governance import suppression
    from ai_data_platform.governance.pii import hmac_hex
    from ai_data_platform.sources.contracts import EVENTS

    con = duckdb.connect()
    con.execute("CREATE SCHEMA meta")
    suppression.record(con, "subject:x", hmac_hex("k", cid), [hmac_hex("k", email)])
    con.execute("CREATE TABLE landed (customer_id VARCHAR, _raw_line VARCHAR)")
    con.executemany("INSERT INTO landed VALUES (NULL, ?)", [[line] for line in lines])
    keep = suppression.keep_condition(con, EVENTS, "k", hashed=False)
    kept = [line for (line,) in con.execute(f"SELECT _raw_line FROM landed WHERE {keep}").fetchall()]
    subject = Identifiers.of([cid], [email])
    assert sorted(kept) == sorted(line for line in lines if not subject.owns_line(line))


# ---------------------------------------------------------------- one customer id, compared case counting


def test_a_customer_id_is_compared_case_counting_everywhere_an_email_in_any_case_a_phone_normalized():
    matcher = Matcher([Needle(ID, "C0000001"), Needle(EMAIL, "ann@example.org"), Needle(PHONE, "+4915136411992")])
    for text in ("called c0000001 back", '{"customer_id": "c0000001"}', "c0000001,Ann Lee,x", '{"note": "c0000001"}'):
        assert matcher.in_value(text, raw_record=True) == set(), text
    assert matcher.in_value("c0000001", "customer_id") == set() and matcher.in_bytes(b"\x00c0000001\x00") == set()
    assert matcher.in_value("called C0000001 back") == {ID} and matcher.in_bytes(b"\x00C0000001\x00") == {ID}
    assert matcher.in_value("mail ANN@Example.ORG") == {EMAIL} and matcher.in_bytes(b"\x00ANN@EXAMPLE.ORG\x00") == {EMAIL}
    assert matcher.in_value("+49 151 3641 1992", "phone") == {PHONE}


def test_case_twins_ids_are_not_found_in_any_kind_of_file(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE TABLE t (customer_id VARCHAR, note VARCHAR, payload BLOB)")
    con.execute("INSERT INTO t VALUES ('c0000001', 'called c0000001', ?)", [zlib.compress(b'{"customer_id": "c0000001"}')])
    con.close()
    (tmp_path / "log.txt").write_text("erasure requested for c0000001\n")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01c0000001\x00")
    for name in ("w.duckdb", "log.txt", "blob.bin"):
        assert _search(tmp_path, [Needle(ID, "C0000001")], name) == [], name
        assert _search(tmp_path, [Needle(ID, "c0000001")], name) != [], name


@pytest.mark.parametrize(
    ("fields", "theirs"),
    [({"customer_id": "C2", "email": "ann@x.org"}, False),  # another customer's record, whatever email it holds
     ({"customer_id": " ", "email": "ANN@x.org"}, True),  # a blank id: by the email
     ({"customer_email": "ann@x.org", "body": "hi"}, True),  # a ticket: by the email
     ({"customer_id": "C1", "email": "bo@x.org"}, True),
     ({"order": {"customer_id": "C2"}, "email": "ann@x.org"}, False),  # an id at any depth decides
     ({"customer_id": None, "phone": "+49 151 2345678"}, True)],
)
def test_a_customer_id_decides_whose_a_record_is(fields, theirs):
    subject = Identifiers.of(["C1"], ["ann@x.org"], ["+491512345678"])
    assert subject.owns_fields(fields) is theirs
    assert subject.owns_line(json.dumps(fields)) is theirs


# ---------------------------------------------------------------- CSV records cut as the loader cuts them


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_a_csv_file_is_searched_record_by_record_as_the_loader_cuts_it(tmp_path, end):
    # a quote inside an unquoted field is a character (it opens nothing), a record ends at LF, CRLF
    # or a lone CR, a blank line is no record, a byte order mark is no part of the header
    text = end.join(["customer_id,note", "", 'C5,a 27" screen', "42,hello", '7,"two', 'lines"', "8,x"]) + end
    (tmp_path / "export.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert _search(tmp_path, [Needle(ID, "42")], "export.csv") == ["export.csv: text: 1 x customer id"]
    assert _search(tmp_path, [Needle(ID, "8")], "export.csv") == ["export.csv: text: 1 x customer id"]
    assert _search(tmp_path, [Needle(ID, "screen")], "export.csv") == []


# ---------------------------------------------------------------- whose record a hit is in


def test_hits_in_another_owners_record_are_set_apart_with_their_owner_and_the_rest_are_traces(tmp_path):
    from ai_data_platform.governance.search import Owner, search

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE TABLE tickets (customer_email VARCHAR, body VARCHAR)")
    con.execute("INSERT INTO tickets VALUES ('bo@x.org', 'friend of C0000001'), ('ann@x.org', 'it is me'), (NULL, 'C0000001?')")
    con.execute("CREATE TABLE notes (customer_id VARCHAR, note VARCHAR)")
    con.execute("INSERT INTO notes VALUES ('C2', 'about C0000001'), ('C0000001', 'mine')")
    con.close()
    (tmp_path / "t.csv").write_text("customer_id,note\nC3,about ann@x.org\n")
    (tmp_path / "e.jsonl").write_text('{"customer_id": "C4", "page": "/u/C0000001"}\n')
    (tmp_path / "app.log").write_text('{"customer_id": "C4", "page": "/u/C0000001"}\n')  # a log line: no one's record
    needles = [Needle(ID, "C0000001"), Needle(EMAIL, "ann@x.org")]

    found = search([tmp_path], needles, attribute=True)

    mentions = sorted((m.trace.describe(), m.owner) for m in found.in_others_records)
    assert mentions == [
        ("e.jsonl: text: 1 x customer id", Owner(frozenset({"C4"}))),
        ("t.csv: text: 1 x email", Owner(frozenset({"C3"}))),
        ("w.duckdb: main.notes.note: 1 x customer id", Owner(frozenset({"C2"}))),
        ("w.duckdb: main.tickets.body: 1 x customer id", Owner(frozenset(), frozenset({"bo@x.org"}))),
    ]
    assert sorted(t.describe() for t in found.traces) == [
        "app.log: text: 1 x customer id",
        "w.duckdb: main.notes.customer_id: 1 x customer id",  # their own record
        "w.duckdb: main.tickets.body: 1 x customer id",  # a ticket from no one
        "w.duckdb: main.tickets.customer_email: 1 x email",  # their own ticket
    ]
    def totals(traces):
        return Counter({(t.file, t.location, t.needle): t.count for t in traces})

    everything = totals(found.traces)
    for m in found.in_others_records:
        everything[(m.trace.file, m.trace.location, m.trace.needle)] += m.trace.count
    assert totals(search([tmp_path], needles).traces) == everything  # without attribution: every hit a trace


def test_a_row_kept_as_received_and_a_stream_segment_line_are_their_records(tmp_path):
    from ai_data_platform.governance.search import Owner, search

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("CREATE TABLE records (_position BIGINT, _payload VARCHAR)")
    con.execute("INSERT INTO records VALUES (1, ?), (2, ?), (3, ?)", [
        '{"customer_id": "C4", "page": "/u/C0000001"}',  # the stream payload of C4
        '{"customer_id": "C4", "customer_id": "C5", "page": "/u/C0000001"}',  # a key twice: whose is unclear
        'page /u/C0000001',  # no record at all
    ])
    con.close()
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "0001.log").write_text('1796701173465674\t{"customer_id":"C4","page":"/u/C0000001"}\n'
                                                  '1796701173465675\tC4 saw /u/C0000001\n')

    found = search([tmp_path], [Needle(ID, "C0000001")], attribute=True)

    assert sorted((m.trace.describe(), m.owner) for m in found.in_others_records) == [
        ("events/0001.log: text: 1 x customer id", Owner(frozenset({"C4"}))),
        ("w.duckdb: main.records._payload: 1 x customer id", Owner(frozenset({"C4"}))),
    ]
    assert sorted(t.describe() for t in found.traces) == ["events/0001.log: text: 1 x customer id",
                                                          "w.duckdb: main.records._payload: 2 x customer id"]
