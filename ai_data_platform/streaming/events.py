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
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ai_data_platform.sources.contracts import EARLIEST_VALID_TIME, EVENTS

_EARLIEST = datetime.fromisoformat(EARLIEST_VALID_TIME)
_COLUMNS = [c for c in EVENTS.column_names if c != "received_at"]  # the transport stamps receipt
_TEXT = [c.name for c in EVENTS.columns if c.dtype == "VARCHAR"]
_REQUIRED = [c.name for c in EVENTS.columns if c.required]
_TYPED = [c for c in EVENTS.columns if c.dtype != "VARCHAR" and c.name not in (EVENTS.time_column, "received_at")]
_ACCEPTED = [c for c in EVENTS.columns if c.accepted_values]
_NON_NEGATIVE = [c for c in EVENTS.columns if c.non_negative]
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
    """ISO 8601 to naive UTC (an offset is converted); None if unparseable."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return t.astimezone(timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def _parse_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def judge(payload: bytes, received_at: datetime) -> tuple[dict[str, Any] | None, Violation | None]:
    """``(typed event, None)`` for a valid event, ``(None, violation)`` otherwise."""
    try:
        record = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        record = None
    if not isinstance(record, dict):
        return None, Violation("malformed_row", None, payload.decode("utf-8", "replace"))
    raw = {c: _text(record.get(c)) for c in _COLUMNS}
    for name in _REQUIRED:
        if raw[name] is None or raw[name].strip() == "":
            return None, Violation("not_null", name, raw[name])
    event_time = parse_timestamp(raw[EVENTS.time_column])
    upper = datetime.combine(received_at.date() + timedelta(days=2), datetime.min.time())
    if event_time is None or event_time < _EARLIEST or event_time >= upper:
        return None, Violation("invalid_timestamp", EVENTS.time_column, raw[EVENTS.time_column])
    typed: dict[str, Any] = {c: (raw[c].strip() or None) if raw[c] is not None else None for c in _TEXT}
    for c in _TYPED:
        text = raw[c.name]
        value = None if text is None or text.strip() == "" else _parse_number(text)
        if text is not None and text.strip() != "" and value is None:
            return None, Violation(_TYPE_RULES[c.dtype], c.name, text)
        typed[c.name] = value
    for c in _ACCEPTED:
        if typed[c.name] is not None and typed[c.name] not in c.accepted_values:
            return None, Violation("accepted_values", c.name, raw[c.name])
    for c in _NON_NEGATIVE:
        if typed[c.name] is not None and typed[c.name] < 0:
            return None, Violation("non_negative", c.name, raw[c.name])
    typed[EVENTS.time_column] = event_time
    typed["received_at"] = received_at
    return typed, None
