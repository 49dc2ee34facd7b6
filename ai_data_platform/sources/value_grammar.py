"""The text forms staging accepts for typed values: one grammar for the SQL of the nightly batch
and the Python of the stream's judge.

DuckDB's casts and Python's parsers each accept more than the other (``TRY_CAST`` reads
``2026-11-30T24:00:00``, ``+99:00`` offsets, ``epoch`` and zone names; ``datetime.fromisoformat``
reads ``2026-11-30T10`` and ``,5`` fractions; ``float`` reads Arabic-Indic digits), so a value is
typed only when its text matches the patterns here, on both paths; within them the two parsers give
the same value. Patterns use ASCII classes only (``[0-9]``, never ``\\d``): RE2 (DuckDB) and
Python's ``re`` read them alike.

* **trim**: DuckDB's ``trim`` removes Unicode space separators (category Zs) only, not tabs or
  newlines; :func:`sql_trim` removes exactly those.
* **number** (``DOUBLE``): an optionally signed decimal with an optional exponent, and finite:
  ``NaN``, ``Infinity`` and overflowing text (``1e999``) are not numbers.
* **timestamp**: ``YYYY-MM-DD``, optionally a time ``[T ]HH:MM[:SS[.fraction]]`` and then ``Z`` or
  an offset ``±HH[[:]MM]`` below 24 hours.
* **id** (a table's key and its customer reference): at most :data:`MAX_ID_LENGTH` characters, no
  control character, and not JSON structure (an object or array rendered as text starts with
  ``{`` or ``[``).
"""

from __future__ import annotations

import math
import re

# Unicode category Zs: what DuckDB's trim() removes from both ends
SQL_SPACES = "\u0020\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"
NUMBER_PATTERN = r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_HOUR = "(?:[01][0-9]|2[0-3])"
TIMESTAMP_PATTERN = (
    rf"[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}(?:[T ]{_HOUR}:[0-5][0-9](?::[0-5][0-9](?:\.[0-9]+)?)?"
    rf"(?:Z|[+-]{_HOUR}(?::?[0-5][0-9])?)?)?"
)
MAX_ID_LENGTH = 128
_CONTROL = r"\x00-\x1f\x7f-\x9f"
ID_PATTERN = rf"[^{_CONTROL}\[{{][^{_CONTROL}]{{0,{MAX_ID_LENGTH - 1}}}"
ID_RULE_TEXT = f"an id of 1..{MAX_ID_LENGTH} characters, no control character, not a JSON object or array"

_NUMBER = re.compile(NUMBER_PATTERN)
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
_ID = re.compile(ID_PATTERN)


def sql_trim(text: str) -> str:
    """``text`` as DuckDB's ``trim(text)`` leaves it."""
    return text.strip(SQL_SPACES)


def number(text: str) -> float | None:
    """The finite number a (trimmed) text holds, else None: ``TRY_CAST`` under :data:`NUMBER_PATTERN`."""
    if _NUMBER.fullmatch(text) is None:
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def is_timestamp_text(text: str) -> bool:
    """Whether a (trimmed) text has the timestamp form staging reads (its calendar is checked by the parse)."""
    return _TIMESTAMP.fullmatch(text) is not None


def is_id(text: str) -> bool:
    """Whether a (trimmed) text is a valid id; Python text must also be valid Unicode (no lone
    surrogate), which DuckDB text always is. (Letters and digits alone always are one: the
    stream's hot path skips the pattern for them.)"""
    return (len(text) <= MAX_ID_LENGTH and text.isalnum()) or _ID.fullmatch(text) is not None


def number_sql(text_sql: str) -> str:
    """SQL: the finite DOUBLE ``text_sql`` (trimmed, non-empty text) holds, NULL otherwise."""
    cast = f"TRY_CAST({text_sql} AS DOUBLE)"
    return f"CASE WHEN regexp_full_match({text_sql}, '{NUMBER_PATTERN}') AND isfinite({cast}) THEN {cast} END"


def timestamp_text_sql(text_sql: str) -> str:
    """SQL: whether ``text_sql`` (trimmed) has the timestamp form."""
    return f"regexp_full_match({text_sql}, '{TIMESTAMP_PATTERN}')"


def id_sql(text_sql: str) -> str:
    """SQL: whether ``text_sql`` (trimmed, non-empty) is a valid id."""
    return f"regexp_full_match({text_sql}, '{ID_PATTERN}')"
