"""The stream's judge of one event: the staging layer's parse of the same text, field by field."""

from __future__ import annotations

import json
import math
from datetime import datetime

import duckdb
import pytest

from ai_data_platform.streaming.events import judge

RECEIVED = datetime(2026, 11, 30, 10, 0, 1)
VALID = {"event_id": "ES1", "customer_id": "C0000001", "event_type": "card_transaction",
         "event_time": "2026-11-30T10:00:00Z", "session_id": "s1", "page": None, "feature": None, "amount": 12.5,
         "currency": "EUR", "merchant_category": "grocery", "device_id": "dev-1", "ip_country": "DE"}


def _judge(**fields):
    return judge(json.dumps(VALID | fields).encode(), RECEIVED)


@pytest.mark.parametrize("amount", [0, 7, 12.5, -0.0, 2**53 + 1, 2**70, 10**30, "12.5", " 3 ", "1e3", "NaN", True, "lots", [1], ""])
def test_amounts_parse_as_staging_parses_their_text(amount):
    text = amount if isinstance(amount, str) else json.dumps(amount)
    staged = duckdb.execute("SELECT TRY_CAST(nullif(trim(?), '') AS DOUBLE)", [text]).fetchone()[0]
    event, violation = _judge(amount=amount)
    if staged is None and text.strip():
        assert event is None and (violation.rule, violation.column, violation.raw_value) == ("invalid_number", "amount", text)
    else:
        assert violation is None
        got = event["amount"]
        assert got == staged or (got is None and staged is None) or (math.isnan(got) and math.isnan(staged)), (got, staged)


def test_text_fields_are_trimmed_and_non_strings_keep_their_json_text():
    event, violation = _judge(device_id="  dev-9 ", page="   ", ip_country=49)
    assert violation is None
    assert (event["device_id"], event["page"], event["ip_country"]) == ("dev-9", None, "49")
    assert event["event_time"] == datetime(2026, 11, 30, 10) and event["received_at"] == RECEIVED


@pytest.mark.parametrize(("fields", "rule", "column", "raw"), [
    ({"customer_id": None}, "not_null", "customer_id", None),
    ({"customer_id": "  "}, "not_null", "customer_id", "  "),
    ({"event_time": "2026-12-02T00:00:00"}, "invalid_timestamp", "event_time", "2026-12-02T00:00:00"),  # receipt day + 2
    ({"event_time": "1999-12-31T23:59:59"}, "invalid_timestamp", "event_time", "1999-12-31T23:59:59"),
    ({"event_time": 20261130}, "invalid_timestamp", "event_time", "20261130"),  # Python would read it; DuckDB does not
    ({"event_time": "2026-W48-1"}, "invalid_timestamp", "event_time", "2026-W48-1"),
    ({"event_type": "teleport"}, "accepted_values", "event_type", "teleport"),
    ({"amount": -0.5}, "non_negative", "amount", "-0.5"),
    ({"amount": "lots", "event_type": "teleport"}, "invalid_number", "amount", "lots"),  # rule order: type before values
])
def test_each_rule_names_its_column_and_the_raw_text(fields, rule, column, raw):
    event, violation = _judge(**fields)
    assert event is None and (violation.rule, violation.column, violation.raw_value) == (rule, column, raw)


def test_the_last_instant_before_the_upper_bound_is_valid():
    event, violation = _judge(event_time="2026-12-01T23:59:59.999999")
    assert violation is None and event["event_time"] == datetime(2026, 12, 1, 23, 59, 59, 999999)


@pytest.mark.parametrize("text", [
    "2026-11-30T10:00:00Z", "2026-11-30T10:00:00.123456Z", "2026-11-30 10:00:00", "2026-11-30T10:00",
    "2026-11-30T10:00:00+02:00", "2026-11-30T10:00:00-0530", "2026-11-30 10:00:00+02", " 2026-11-30T23:30:00-01:00 ",
    "2026-11-30", "20261130", "2026-W48-1", "yesterday", "",
])
def test_timestamps_read_alike_in_the_stream_and_in_staging_whatever_the_session_time_zone(text):
    """An offset is converted to UTC on both paths (a plain cast to TIMESTAMP would drop it)."""
    from ai_data_platform.sources.staging_sql import _typed_expr
    from ai_data_platform.streaming.events import parse_timestamp

    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")
    staged = con.execute(f"SELECT {_typed_expr('t', 'TIMESTAMP')} FROM (SELECT ? AS t)", [text]).fetchone()[0]
    streamed = parse_timestamp(text) if text.strip() else None
    assert streamed == staged
    if text.strip().startswith("2026-11-30T10:00:00+02:00"):
        assert staged == datetime(2026, 11, 30, 8)
