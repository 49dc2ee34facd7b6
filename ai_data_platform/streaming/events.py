"""Judge one record against a form of the EVENTS contract, with the staging rules and their names:
the one judge of the event stream (``adp stream consume``) and of the HTTP API (``POST /score``).

:func:`judge` never raises. Whatever a hostile record holds (bytes that are not UTF-8, JSON nested
a thousand deep, a year-1 timestamp with an offset, ``1e999``, an object for an id), the answer is
a typed record or a :class:`Violation` naming the rule and the column.

The rules and their order are the staging layer's (``sources/staging_sql.py``), compiled from the
same contract, reading text with the same grammar (``sources/value_grammar.py``):
``malformed_row`` (not one JSON object: ``json_object.read_object``) -> ``unknown_field`` (a field a
closed form does not have: the HTTP API's) -> ``not_null`` (a required field missing or blank) ->
``invalid_id`` -> ``invalid_timestamp`` (event time unparseable or outside [2000-01-01, receipt day
+ 2 days)) -> ``invalid_number`` (``NaN``, ``Infinity`` and overflowing numbers included) ->
``accepted_values`` -> ``non_negative`` -> ``out_of_range`` (a number above its column's ``max_value``).
``known_customer`` and ``unique_key`` are not judged here:
the nightly batch judges the same records again (they land in ``raw/events``), and the online
store keeps one row per event id. An event's ``received_at`` is the transport's receipt stamp,
whatever the payload says.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from ai_data_platform.sources.contracts import EARLIEST_VALID_TIME, EVENTS, Column, SourceTable
from ai_data_platform.sources.json_object import read_object
from ai_data_platform.sources.staging_sql import id_columns
from ai_data_platform.sources.value_grammar import MAX_ID_LENGTH, SQL_SPACES, is_id, is_timestamp_text, number, sql_trim

_EARLIEST = datetime.fromisoformat(EARLIEST_VALID_TIME)
_INT_LIMIT = 2**63
_TEXT_TYPES = ("VARCHAR",)
_NUMBER_TYPES = ("DOUBLE",)


@dataclass(frozen=True)
class Violation:
    rule: str
    column: str | None
    raw_value: str | None


class Form:
    """The record a judge expects: contract columns (in contract order), the event-time column,
    the columns holding ids, and whether fields outside the columns are refused (``closed``).
    ``receipt_column`` is set from the judge's ``received_at``, never read from the record."""

    __slots__ = ("columns", "time_column", "ids", "closed", "receipt_column", "names", "required", "text", "numbers",
                 "accepted_values", "non_negative", "maximums")

    def __init__(self, columns: Iterable[Column], time_column: str | None, ids: Iterable[str], *,
                 closed: bool = False, receipt_column: str | None = None):
        self.columns = tuple(columns)
        self.time_column, self.ids, self.closed, self.receipt_column = time_column, tuple(ids), closed, receipt_column
        self.names = frozenset(c.name for c in self.columns)
        self.required = tuple(c.name for c in self.columns if c.required)
        self.text = tuple(c.name for c in self.columns if c.dtype in _TEXT_TYPES)
        supported = _TEXT_TYPES + _NUMBER_TYPES
        unsupported = [c.name for c in self.columns if c.dtype not in supported and c.name != time_column]
        if unsupported or not set(self.ids) <= set(self.text):
            raise ValueError(f"a judged form holds text (ids among it), DOUBLE and one event-time column; "
                             f"not {unsupported or sorted(set(self.ids) - set(self.text))}")
        self.numbers = tuple(c.name for c in self.columns if c.dtype in _NUMBER_TYPES)
        self.accepted_values = tuple((c.name, frozenset(c.accepted_values)) for c in self.columns if c.accepted_values)
        self.non_negative = tuple(c.name for c in self.columns if c.non_negative)
        self.maximums = tuple((c.name, float(c.max_value)) for c in self.columns if c.max_value is not None)

    @classmethod
    def of(cls, t: SourceTable, receipt_column: str | None = None) -> Form:
        """A contract's records as staging judges them (``receipt_column`` left to the transport)."""
        columns = [c for c in t.columns if c.name != receipt_column]
        return cls(columns, t.time_column, id_columns(t), receipt_column=receipt_column)


EVENT = Form.of(EVENTS, receipt_column="received_at")


# ---------------------------------------------------------------- values


def raw_text(value: Any) -> str | None:
    """A JSON value as the raw layer keeps it: strings as they are, anything else as JSON."""
    if value is None:
        return None
    return value if type(value) is str else json.dumps(value)


def parse_timestamp(text: str) -> datetime | None:
    """ISO 8601 to naive UTC (an offset is converted); None if unparseable or not representable.

    Only text of staging's timestamp form (``value_grammar.TIMESTAMP_PATTERN``), read as DuckDB's
    cast in staging reads it: Python alone would accept ``2026-11-30T10`` or ``,5`` fractions the
    nightly batch quarantines. A time an offset moves out of years 1..9999 is None (outside the
    range staging accepts).
    """
    text = text.strip(SQL_SPACES)
    if not is_timestamp_text(text):
        return None
    try:
        t = datetime.fromisoformat(text)
        return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t
    except (ValueError, OverflowError):
        return None


@lru_cache(maxsize=8)
def _upper_bound(received_day: date) -> datetime:
    """Event times must be before the receipt day + 2 days (the staging rule's upper bound)."""
    return datetime.combine(received_day + timedelta(days=2), datetime.min.time())


def _as_number(value: Any) -> float | None:
    """A finite JSON number as ``float(json.dumps(value))`` would give it, without the round trip
    (None: not a plain finite number, judge its text)."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int and -_INT_LIMIT < value < _INT_LIMIT:
        return float(value)
    return None


# ---------------------------------------------------------------- the judge


def judge(payload: bytes, received_at: datetime, form: Form = EVENT) -> tuple[dict[str, Any] | None, Violation | None]:
    """``(typed record, None)`` for a valid record, ``(None, violation)`` otherwise; never raises.

    A field's text is what the raw layer keeps (:func:`raw_text`); it is only built where a rule
    needs it (blank checks, a violation's raw value), so a valid event costs one JSON parse and a
    few lookups — the consumer's hot path.
    """
    try:
        record = read_object(payload)
        if record is not None:
            return _judge_fields(record, received_at, form)
    except Exception:  # a defect here must not stop a service: the record is quarantined, kept whole
        pass
    return None, Violation("malformed_row", None, payload.decode("utf-8", "replace"))


def _judge_fields(record: dict[str, Any], received_at: datetime, form: Form) -> tuple[dict | None, Violation | None]:
    get = record.get
    if form.closed:
        for name in record:
            if name not in form.names:
                return None, Violation("unknown_field", name, None)
    for name in form.required:
        value = get(name)
        if value is None or (type(value) is str and value.strip(SQL_SPACES) == ""):
            return None, Violation("not_null", name, value)
    typed: dict[str, Any] = {}
    for name in form.text:
        value = get(name)
        if value is not None and type(value) is not str:
            value = json.dumps(value)
        typed[name] = value and value.strip(SQL_SPACES) or None
    for name in form.ids:
        value = typed[name]
        if value is not None and not (len(value) <= MAX_ID_LENGTH and value.isalnum()) and not is_id(value):
            return None, Violation("invalid_id", name, raw_text(get(name)))
    time_column = form.time_column
    if time_column is not None:
        raw_time = get(time_column)
        event_time = None
        if raw_time is not None:
            time_text = raw_text(raw_time)
            event_time = parse_timestamp(time_text)
            if event_time is None or event_time < _EARLIEST or event_time >= _upper_bound(received_at.date()):
                return None, Violation("invalid_timestamp", time_column, time_text)
        typed[time_column] = event_time
    for name in form.numbers:
        raw = get(name)
        value = None if raw is None else _as_number(raw)
        if raw is not None and value is None:
            text = sql_trim(raw_text(raw))
            value = number(text) if text else None
            if value is None and text:
                return None, Violation("invalid_number", name, raw_text(raw))
        typed[name] = value
    for name, accepted in form.accepted_values:
        if typed[name] is not None and typed[name] not in accepted:
            return None, Violation("accepted_values", name, raw_text(get(name)))
    for name in form.non_negative:
        if typed[name] is not None and typed[name] < 0:
            return None, Violation("non_negative", name, raw_text(get(name)))
    for name, limit in form.maximums:
        if typed[name] is not None and typed[name] > limit:
            return None, Violation("out_of_range", name, raw_text(get(name)))
    if form.receipt_column is not None:
        typed[form.receipt_column] = received_at
    return typed, None
