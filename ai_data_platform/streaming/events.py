"""Judge one streamed event against the EVENTS contract, with the staging rules and their names.

The rules and their order are the staging layer's (``sources/staging_sql.py``), read from the
same contract: ``malformed_row`` (not a JSON object) -> ``not_null`` (a required field missing
or blank) -> ``invalid_timestamp`` (event time unparseable or outside [2000-01-01, receipt day +
2 days)) -> ``invalid_number`` -> ``accepted_values`` -> ``non_negative``. ``known_customer`` and
``unique_key`` are not judged here: the nightly batch judges the same records again (they land in
``raw/events``), and the online store keeps one row per event id. The event's ``received_at`` is
the transport's receipt stamp, whatever the payload says.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from ai_data_platform.sources.contracts import EARLIEST_VALID_TIME, EVENTS

_EARLIEST = datetime.fromisoformat(EARLIEST_VALID_TIME)
_CALENDAR_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:$|[T ])")
_TIME = EVENTS.time_column
_TEXT = [c.name for c in EVENTS.columns if c.dtype == "VARCHAR"]
_REQUIRED = [c.name for c in EVENTS.columns if c.required]
# numbers and flags; the event time is judged on its own, received_at is the transport's stamp
_TYPED = [c for c in EVENTS.columns if c.dtype != "VARCHAR" and c.name not in (_TIME, "received_at")]
_ACCEPTED_VALUES = [(c.name, frozenset(c.accepted_values)) for c in EVENTS.columns if c.accepted_values]
_NON_NEGATIVE_NAMES = [c.name for c in EVENTS.columns if c.non_negative]
_TYPE_RULES = {"TIMESTAMP": "invalid_timestamp", "DOUBLE": "invalid_number", "BIGINT": "invalid_number", "BOOLEAN": "invalid_boolean"}


@dataclass(frozen=True)
class Violation:
    rule: str
    column: str | None
    raw_value: str | None


def _text(value: Any) -> str | None:
    """A JSON value as the raw layer keeps it: strings as they are, anything else as JSON."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def parse_timestamp(text: str) -> datetime | None:
    """ISO 8601 to naive UTC (an offset is converted); None if unparseable.

    Only the extended calendar form (``YYYY-MM-DD`` first) that DuckDB's cast in staging also
    reads: Python alone would accept ``20261130`` or week dates the nightly batch quarantines.
    """
    text = text.strip()
    if not _CALENDAR_DATE.match(text):
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def _parse_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@lru_cache(maxsize=8)
def _upper_bound(received_day: date) -> datetime:
    """Event times must be before the receipt day + 2 days (the staging rule's upper bound)."""
    return datetime.combine(received_day + timedelta(days=2), datetime.min.time())


_INT_LIMIT = 2**63


def _as_number(value: Any) -> float | None:
    """A JSON number as ``float(json.dumps(value))`` would give it, without the round trip (None:
    not a plain number, judge its text)."""
    kind = type(value)
    if kind is float or (kind is int and -_INT_LIMIT < value < _INT_LIMIT):
        return float(value)
    return None


def judge(payload: bytes, received_at: datetime) -> tuple[dict[str, Any] | None, Violation | None]:
    """``(typed event, None)`` for a valid event, ``(None, violation)`` otherwise.

    A field's text is what the raw layer keeps (``_text``); it is only built where a rule needs it
    (blank checks, a violation's raw value), so a valid event costs one JSON parse and a few
    lookups — the consumer's hot path.
    """
    try:
        record = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict):
        return None, Violation("malformed_row", None, payload.decode("utf-8", "replace"))
    get = record.get
    for name in _REQUIRED:
        value = get(name)
        if value is None or (type(value) is str and value.strip() == ""):
            return None, Violation("not_null", name, value)
    time_text = _text(get(_TIME))
    event_time = parse_timestamp(time_text)
    if event_time is None or event_time < _EARLIEST or event_time >= _upper_bound(received_at.date()):
        return None, Violation("invalid_timestamp", _TIME, time_text)
    typed: dict[str, Any] = {}
    for name in _TEXT:
        value = get(name)
        typed[name] = None if value is None else (value if type(value) is str else json.dumps(value)).strip() or None
    for c in _TYPED:
        raw = get(c.name)
        value = None if raw is None else _as_number(raw)
        if raw is not None and value is None:
            text = _text(raw)
            if text.strip() != "":
                value = _parse_number(text)
                if value is None:
                    return None, Violation(_TYPE_RULES[c.dtype], c.name, text)
        typed[c.name] = value
    for name, accepted in _ACCEPTED_VALUES:
        if typed[name] is not None and typed[name] not in accepted:
            return None, Violation("accepted_values", name, _text(get(name)))
    for name in _NON_NEGATIVE_NAMES:
        if typed[name] is not None and typed[name] < 0:
            return None, Violation("non_negative", name, _text(get(name)))
    typed[_TIME] = event_time
    typed["received_at"] = received_at
    return typed, None
