"""The stream's judge of one event: the staging layer's verdict on the same record, rule by rule and
field by field; and no record, however hostile, makes it raise."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS, MAX_AMOUNT
from ai_data_platform.sources.staging_sql import _typed_expr, judged_sql, max_value_sql, raw_ddl, staging_ddl, typed
from ai_data_platform.sources.json_object import MAX_DEPTH, MAX_RECORD_BYTES, read_object
from ai_data_platform.streaming.events import judge, parse_timestamp
from ai_data_platform.streaming.transport import FileSegmentTransport, to_us
from ai_data_platform.streaming.warehouse_sink import WarehouseSink, load_into_raw

from .hostile import hostile_event

RECEIVED = datetime(2026, 11, 30, 10, 0, 1)
VALID = {"event_id": "ES1", "customer_id": "C0000001", "event_type": "card_transaction",
         "event_time": "2026-11-30T10:00:00Z", "session_id": "s1", "page": None, "feature": None, "amount": 12.5,
         "currency": "EUR", "merchant_category": "grocery", "device_id": "dev-1", "ip_country": "DE"}


def _judge(**fields):
    return judge(json.dumps(VALID | fields).encode(), RECEIVED)


def _staged_number(text: str) -> float | None:
    return duckdb.execute(f"SELECT {_typed_expr('t', 'DOUBLE')} FROM (SELECT ? AS t)", [text]).fetchone()[0]


@pytest.mark.parametrize("amount", [0, 7, 12.5, -0.0, 2**53 + 1, 2**70, 10**30, 10**400, "12.5", " 3 ", "\t3", "1e3", "1E5",
                                    "NaN", "-Infinity", "inf", "1e999", "-1e999", "1e-999", "1_000", "\u0661", "0x10",
                                    float("nan"), float("inf"), True, "lots", [1], {"a": 1}, "", "  "])
def test_amounts_are_read_as_staging_reads_their_text(amount):
    text = amount if isinstance(amount, str) else json.dumps(amount)
    staged = _staged_number(text)
    event, violation = _judge(amount=amount)
    if staged is None and text.strip(" "):
        assert event is None and (violation.rule, violation.column) == ("invalid_number", "amount"), violation
    elif staged is not None and staged > MAX_AMOUNT:
        assert event is None and (violation.rule, violation.column, violation.raw_value) == ("out_of_range", "amount", text)
    else:
        assert violation is None and event["amount"] == staged and math.isfinite(event["amount"] or 0.0)


_JUST_ABOVE = math.nextafter(MAX_AMOUNT, math.inf)


@pytest.mark.parametrize(("amount", "rule"), [
    (MAX_AMOUNT, None), (int(MAX_AMOUNT), None), ("1e8", None), (" 100000000.0 ", None), (99_999_999.99, None),
    (_JUST_ABOVE, "out_of_range"), (repr(_JUST_ABOVE), "out_of_range"), ("100000000.00000002", "out_of_range"),
    (1e308, "out_of_range"), ("1e308", "out_of_range"), (2**63, "out_of_range"), (10**30, "out_of_range"),
    ("1.7976931348623157e308", "out_of_range"), (-1e308, "non_negative"),  # rule order: non_negative first
])
def test_amounts_above_the_contracts_maximum_are_out_of_range_in_the_stream_and_in_staging(amount, rule):
    """A finite number too large to be an amount (``contracts.MAX_AMOUNT``) is refused alike by the
    stream's judge and by staging's SQL: the bound is one exact DOUBLE comparison on both paths."""
    text = amount if isinstance(amount, str) else json.dumps(amount)
    event, violation = _judge(amount=amount)
    assert (violation.rule if violation else None) == rule, violation
    staged = duckdb.execute(
        f"SELECT {_typed_expr('t', 'DOUBLE')} > {max_value_sql(EVENTS.column('amount'))} FROM (SELECT ? AS t)", [text]
    ).fetchone()[0]
    assert staged == (rule == "out_of_range")


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", "1e999", float("nan"), float("inf"), 10**400])
def test_non_finite_and_overflowing_amounts_are_invalid_numbers(amount):
    event, violation = _judge(amount=amount)
    assert event is None and (violation.rule, violation.column) == ("invalid_number", "amount")
    assert _staged_number(amount if isinstance(amount, str) else json.dumps(amount)) is None


def test_text_fields_are_trimmed_as_staging_trims_and_non_strings_keep_their_json_text():
    event, violation = _judge(device_id="  dev-9\xa0", page="   ", ip_country=49, session_id="\ts1")
    assert violation is None
    assert (event["device_id"], event["page"], event["ip_country"]) == ("dev-9", None, "49")
    assert event["session_id"] == "\ts1"  # DuckDB's trim removes spaces, not tabs
    assert event["event_time"] == datetime(2026, 11, 30, 10) and event["received_at"] == RECEIVED


@pytest.mark.parametrize(("fields", "rule", "column", "raw"), [
    ({"customer_id": None}, "not_null", "customer_id", None),
    ({"customer_id": "  "}, "not_null", "customer_id", "  "),
    ({"customer_id": "\u3000"}, "not_null", "customer_id", "\u3000"),
    ({"customer_id": {"id": "C0000001"}}, "invalid_id", "customer_id", '{"id": "C0000001"}'),
    ({"customer_id": ["C0000001"]}, "invalid_id", "customer_id", '["C0000001"]'),
    ({"customer_id": "C1\x00"}, "invalid_id", "customer_id", "C1\x00"),
    ({"event_id": "E" * 129}, "invalid_id", "event_id", "E" * 129),
    ({"event_time": "2026-12-02T00:00:00"}, "invalid_timestamp", "event_time", "2026-12-02T00:00:00"),  # receipt day + 2
    ({"event_time": "1999-12-31T23:59:59"}, "invalid_timestamp", "event_time", "1999-12-31T23:59:59"),
    ({"event_time": "0001-01-01T00:00:00+01:00"}, "invalid_timestamp", "event_time", "0001-01-01T00:00:00+01:00"),
    ({"event_time": "9999-12-31T23:59:59-14:00"}, "invalid_timestamp", "event_time", "9999-12-31T23:59:59-14:00"),
    ({"event_time": "2026-11-30T23:59:60Z"}, "invalid_timestamp", "event_time", "2026-11-30T23:59:60Z"),  # a leap second
    ({"event_time": "2026-11-30T24:00:00"}, "invalid_timestamp", "event_time", "2026-11-30T24:00:00"),
    ({"event_time": 20261130}, "invalid_timestamp", "event_time", "20261130"),  # Python would read it; DuckDB does not
    ({"event_time": "2026-W48-1"}, "invalid_timestamp", "event_time", "2026-W48-1"),
    ({"event_type": "teleport"}, "accepted_values", "event_type", "teleport"),
    ({"amount": -0.5}, "non_negative", "amount", "-0.5"),
    ({"amount": 1e308}, "out_of_range", "amount", "1e+308"),
    ({"amount": "100000001"}, "out_of_range", "amount", "100000001"),
    ({"amount": "NaN"}, "invalid_number", "amount", "NaN"),
    ({"amount": "lots", "event_type": "teleport"}, "invalid_number", "amount", "lots"),  # rule order: type before values
    ({"customer_id": {"a": 1}, "event_time": "yesterday"}, "invalid_id", "customer_id", '{"a": 1}'),  # ids before times
])
def test_each_rule_names_its_column_and_the_raw_text(fields, rule, column, raw):
    event, violation = _judge(**fields)
    assert event is None and (violation.rule, violation.column, violation.raw_value) == (rule, column, raw)


def test_the_last_instant_before_the_upper_bound_is_valid():
    event, violation = _judge(event_time="2026-12-01T23:59:59.999999")
    assert violation is None and event["event_time"] == datetime(2026, 12, 1, 23, 59, 59, 999999)


@pytest.mark.parametrize("payload", [
    b"{not json", b'["an", "array"]', b"42", b"null", b"", b"\xff\xfe{}",
    b'{"event_id": "E1", "customer_id": "C\xff1"}',  # not UTF-8
    b'{"customer_id": "\xed\xa0\x80"}',  # an encoded surrogate
    b'{"customer_id": "\\ud800"}',  # an escaped lone surrogate
    b'{"customer_id": "C1", "customer_id": "C2"}',  # a key twice
    b'{"deep": ' + b"[" * (MAX_DEPTH) + b"]" * (MAX_DEPTH) + b"}",
    b'{"deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # RecursionError in Python's parser
    b'{"amount": ' + b"1" * 5000 + b"}",  # ValueError: more digits than Python converts
    b'{"amount": nan}', b'{"a": 1,}', b"\xef\xbb\xbf{}", '{"a": 1}'.encode("utf-16"),
    b'{"page": "' + b"p" * MAX_RECORD_BYTES + b'"}',
])
def test_what_is_not_one_readable_json_object_is_a_malformed_row_and_raises_nothing(payload):
    assert read_object(payload) is None
    event, violation = judge(payload, RECEIVED)
    assert event is None and (violation.rule, violation.column) == ("malformed_row", None)
    assert violation.raw_value == payload.decode("utf-8", "replace")


def test_nesting_up_to_the_limit_and_paired_surrogates_are_read():
    assert read_object(b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}") is not None
    assert read_object(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}


@pytest.mark.parametrize("text", [
    "2026-11-30T10:00:00Z", "2026-11-30T10:00:00.123456Z", "2026-11-30 10:00:00", "2026-11-30T10:00",
    "2026-11-30T10:00:00+02:00", "2026-11-30T10:00:00-0530", "2026-11-30 10:00:00+02", " 2026-11-30T23:30:00-01:00 ",
    "2026-11-30", "20261130", "2026-W48-1", "yesterday", "", "2026-11-30T24:00:00", "2026-11-30T10:00:00+24:00",
    "2026-11-30T10:00:00+02:00:30", "2026-11-30T10", "2026-11-30T10:00:00,5", "2026-11-30T10:00:00 UTC", "epoch",
    "\t2026-11-30T10:00:00", "\xa02026-11-30T10:00:00", "2026-11-30T10:00:00\x00", "2026-1-30", "2026-11-30T10:00:00.1234567",
])
def test_timestamps_read_alike_in_the_stream_and_in_staging_whatever_the_session_time_zone(text):
    """An offset is converted to UTC on both paths (a plain cast to TIMESTAMP would drop it);
    text outside the grammar both share is unparseable on both."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")
    staged = con.execute(f"SELECT {_typed_expr('t', 'TIMESTAMP')} FROM (SELECT ? AS t)", [text]).fetchone()[0]
    assert parse_timestamp(text) == staged
    if text == "2026-11-30T10:00:00+02:00":
        assert staged == datetime(2026, 11, 30, 8)


# ---------------------------------------------------------------- the batch's verdict on the same records


class _Clock:
    """Receipt stamps a microsecond apart from 10:00 on RECEIVED's day."""

    def __init__(self):
        self.us = to_us(RECEIVED)

    def __call__(self) -> int:
        self.us += 1
        return self.us


def _staging_verdicts(root, payloads: list[bytes]) -> tuple[list, list]:
    """Land ``payloads`` as the stream does (transport, warehouse sink) and stage them as the nightly
    batch does (``raw/events`` from the landed records, the staging SQL): per record in order, the
    stream's (typed, violation) and staging's (rule, column, typed values)."""
    transport = FileSegmentTransport(root / "stream", clock=_Clock())
    records = transport.append(payloads)
    WarehouseSink(transport, root / "warehouse.duckdb", max_records=len(payloads) + 1).flush()
    con = duckdb.connect(str(root / "warehouse.duckdb"))
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS raw; CREATE SCHEMA IF NOT EXISTS staging")
        con.execute(raw_ddl(EVENTS))
        con.execute(staging_ddl(CUSTOMERS))  # empty: every valid event is an unknown customer's
        day = RECEIVED.date()
        load_into_raw(con, "raw.events", EVENTS.column_names, day, 0)
        values = ", ".join(f"{typed(c)}" for c in EVENTS.column_names)
        staged = con.execute(
            f"SELECT _violation.rule, _violation.column_name, {values} FROM ({judged_sql(EVENTS, day)}) ORDER BY _row_number"
        ).fetchall()
    finally:
        con.close()
    streamed = [judge(r.payload, r.received_at) for r in records]
    return streamed, staged


def _agree(payload: bytes, streamed, staged) -> None:
    event, violation = streamed
    rule, column, *values = staged
    if violation is not None:
        assert (rule, column) == (violation.rule, violation.column), (payload[:300], violation, staged[:2])
        return
    assert rule == "known_customer", (payload[:300], staged)  # the one rule after the stream's
    assert dict(zip(EVENTS.column_names, values)) == event, (payload[:300], values, event)


@settings(max_examples=6)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_stream_and_the_nightly_batch_judge_hostile_records_alike(tmp_path_factory, seed):
    """Hostile records (``hostile.py``: every kind of bad bytes, JSON, id, time and number) through
    the stream's judge and through the warehouse sink, ``raw/events`` and the staging SQL: the same
    rule and column for each rejected record, the same typed values for each valid one."""
    rng = random.Random(seed)
    payloads = [hostile_event(rng, RECEIVED + timedelta(minutes=5)) for _ in range(400)]
    streamed, staged = _staging_verdicts(tmp_path_factory.mktemp("agree"), payloads)
    assert len(staged) == len(payloads)
    for payload, s, b in zip(payloads, streamed, staged):
        _agree(payload, s, b)


@settings(max_examples=6)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_landed_json_lines_file_reads_each_line_as_the_stream_reads_a_record(tmp_path_factory, seed):
    """The batch reader of ``landing/behavioral/events/<day>.jsonl`` reads a line as the stream's
    judge reads a payload (``json_object.read_object``): hostile lines (nested thousands deep, a
    key twice, a lone surrogate, ...) become rows kept whole in ``_raw_line`` for quarantine, never
    an exception; every line is one row."""
    from ai_data_platform.sources.landing import read_landing_file

    rng = random.Random(seed)
    payloads = [hostile_event(rng, RECEIVED + timedelta(minutes=5)) for _ in range(300)]
    payloads += [b"[" * 100_000 + b"]" * 100_000, b'{"a": ' * 5000 + b"1" + b"}" * 5000]
    lines = [p.decode("utf-8", "replace") for p in payloads]
    lines = [line for line in lines if line.strip()]  # a blank line holds no record
    path = tmp_path_factory.mktemp("jsonl") / "2026-11-30.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8") + b"\n")
    landed = read_landing_file(EVENTS, path).table.to_pylist()
    assert len(landed) == len(lines)
    for line, row in zip(lines, landed):
        readable = read_object(line.encode("utf-8")) is not None
        assert (row["_raw_line"] is None) == readable, line[:80]
