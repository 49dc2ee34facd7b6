"""Which records belong to a data subject: exact attribution, never a word found somewhere in a text.

A subject is one customer id. A record is the subject's when its **identifier fields** say so:

* ``customer_id`` equals their customer id (surrounding spaces aside, as the warehouse's
  ``trim``; case counts: ``eur`` is not ``EUR``). A record under a customer id decides by it
  alone: another customer's record is never theirs, whatever email or phone it holds;
* a record with no customer id (no such field, or a blank one; a support ticket) is theirs when
  ``email`` / ``customer_email`` normalizes (``pii.normalize_email``) to one of their emails, or
  ``phone`` normalizes (``pii.normalize_phone``) to one of their phones. The caller gives only
  emails and phones that are *theirs alone* (no other customer has them: ``erasure_subject.py``).

That holds for a parsed record of any store (a CSV row split by its header, a JSON object, a
Parquet or database row). A **raw line that cannot be parsed** (a truncated CSV row, a cut-off
JSON object, a stream payload that is not an object) has no fields to go by; it is the subject's
only when it holds one of their identifiers as a *whole* value:

* a quoted JSON string (escapes decoded): ``"customer_id": "42", "amo`` holds ``42``;
* a value after an identifier key, quoted or not: ``{"customer_id": 42, "ev`` holds ``42``;
* a field of a comma-separated record of at least two fields: ``42,Ann Lee,ann@`` holds ``42``
  (a lone value is not a record: ``EUR`` alone is a currency, not the subject ``EUR``).

A complete JSON object or array inside such a line (``rows {"US": 10}``, ``tags ["EUR"]``) is
parsed and judged by its identifier keys, like a parsed record: its strings are no whole values of
the line. A parsed record or fragment counts by identifier keys at any depth (a customer id at any
depth deciding), and by every value of a key it holds twice (one reader keeps the first, another
the last).

Emails count in a raw line only when they have an ``@``, phones only with at least
:data:`MIN_PHONE_DIGITS` digits: a short "phone" like ``7`` would match any quoted number. So
``06:42:49`` holds neither ``42`` nor ``49``, ``"currency": "EUR"`` in a parsed object is not the
customer ``EUR``, and a 100 000-character or ``%``-shaped id is compared, never compiled into a
pattern. Pure Python, no DuckDB, no Dagster.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ai_data_platform.governance.pii import normalize_email, normalize_phone

ID = "customer id"
EMAIL = "email"
PHONE = "phone"

ID_FIELDS = frozenset({"customer_id"})
EMAIL_FIELDS = frozenset({"email", "customer_email"})
PHONE_FIELDS = frozenset({"phone"})
FIELD_KINDS = {
    **dict.fromkeys(ID_FIELDS, ID), **dict.fromkeys(EMAIL_FIELDS, EMAIL), **dict.fromkeys(PHONE_FIELDS, PHONE)
}
MIN_PHONE_DIGITS = 6

MAX_FRAGMENT_TRIES = 64  # JSON fragments tried per line: a line of brackets stays cheap
_FRAGMENT_START = re.compile(r"[\[{]")
_QUOTED = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
_KEYED = re.compile(r'"(customer_id|email|customer_email|phone)"\s*:\s*(-?[0-9][0-9A-Za-z.+-]*|true|false)')


def as_bytes(text: str) -> bytes:
    """``text`` as the UTF-8 bytes a file would hold; a command-line argument's undecodable bytes
    (surrogate escapes) as they were typed, any other lone surrogate as itself."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def written_forms(value: str) -> set[str]:
    """How a value can appear in a file as written: as it is, escaped in a JSON string (``\\"``,
    ``\\\\``, control characters; ``\\/`` too) and with a CSV field's doubled quotes. A filter by
    substrings looks for every form (a ``\\u`` escape can spell anything: look for that too)."""
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    return {value, escaped, escaped.replace("/", "\\/"), value.replace('"', '""')}


def canonical_id(value: object) -> str | None:
    """A customer id as the warehouse compares it: text, surrounding spaces removed (``trim``)."""
    text = field_text(value)
    if text is None:
        return None
    return text.strip(" ") or None


def field_text(value: object) -> str | None:
    """A field's value as text, as the landing reader gives it (a JSON number ``42`` is ``"42"``)."""
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def _pairs(pairs: list[tuple[str, object]]) -> object:
    """A JSON object; one holding a key twice as a list of one-key objects, so every value is seen
    (Python would keep the last, DuckDB the first: a reader of either may have loaded any)."""
    record = dict(pairs)
    return record if len(record) == len(pairs) else [{key: value} for key, value in pairs]


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs)


def json_document(text: str) -> object | None:
    """``text`` parsed as JSON when it is a JSON object or array, else None (never raises). An
    object holding a key twice is a list of one-key objects (every value of the key judged)."""
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        return _DECODER.decode(stripped)
    except (ValueError, RecursionError):
        return None


def json_fragments(text: str) -> tuple[list[object], str]:
    """The complete JSON objects and arrays inside ``text`` (parsed), and the text without them."""
    decoder = _DECODER
    fragments: list[object] = []
    rest: list[str] = []
    kept_from = position = 0
    for _ in range(MAX_FRAGMENT_TRIES):
        match = _FRAGMENT_START.search(text, position)
        if match is None:
            break
        try:
            fragment, end = decoder.raw_decode(text, match.start())
        except (ValueError, RecursionError):
            position = match.start() + 1
            continue
        fragments.append(fragment)
        rest.append(text[kept_from:match.start()])
        kept_from = position = end
    rest.append(text[kept_from:])
    return fragments, "".join(rest)


def quoted_strings(text: str) -> Iterator[str]:
    """Every double-quoted JSON string in ``text``, escapes decoded (undecodable ones as written)."""
    for match in _QUOTED.finditer(text):
        body = match.group(1)
        if "\\" in body:
            try:
                body = json.loads(f'"{body}"')
            except ValueError:
                pass
        yield body


def keyed_values(text: str) -> Iterator[tuple[str, str]]:
    """``(identifier field, unquoted value)`` pairs of a JSON-like text (``"customer_id": 42``)."""
    for match in _KEYED.finditer(text):
        yield match.group(1), match.group(2)


def csv_fields(text: str) -> Iterator[str]:
    """The fields of every comma-separated record of ``text`` that has at least two."""
    if "," not in text:
        return
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error:  # a NUL byte or an unterminated quote: split on commas as written
        rows = [line.split(",") for line in text.splitlines()]
    for row in rows:
        if len(row) >= 2:
            yield from row


@dataclass(frozen=True)
class Identifiers:
    """A subject's identifiers, and which records they make theirs (see the module docstring)."""

    customer_ids: frozenset[str] = frozenset()  # canonical
    emails: frozenset[str] = frozenset()  # normalized
    phones: frozenset[str] = frozenset()  # normalized

    @classmethod
    def of(
        cls, customer_ids: Iterable[str | None] = (), emails: Iterable[str | None] = (), phones: Iterable[str | None] = ()
    ) -> Identifiers:
        """From identifiers as found: ids trimmed, emails and phones normalized, blanks dropped."""
        return cls(
            frozenset(i for i in map(canonical_id, customer_ids) if i),
            frozenset(e for e in map(normalize_email, emails) if e),
            frozenset(p for p in map(normalize_phone, phones) if p),
        )

    def __bool__(self) -> bool:
        return bool(self.customer_ids or self.emails or self.phones)

    def kind_of(self, kind: str, value: object) -> str | None:
        """``kind`` when ``value``, in a field of that kind, is one of the subject's identifiers."""
        text = field_text(value)
        if text is None:
            return None
        if kind == ID:
            return ID if canonical_id(text) in self.customer_ids else None
        if kind == EMAIL:
            return EMAIL if normalize_email(text) in self.emails else None
        if kind == PHONE:
            return PHONE if normalize_phone(text) in self.phones else None
        return None

    def field_kinds(self, fields: Mapping[object, object]) -> set[str]:
        """The kinds of identifier that make a parsed record theirs (identifier fields at any depth;
        a record holding a customer id decides by its ids alone)."""
        found: set[str] = set()
        has_id = False
        stack: list[object] = [fields]
        while stack:
            item = stack.pop()
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                for key, value in item.items():
                    if isinstance(value, (dict, list)):
                        stack.append(value)
                        continue
                    kind = FIELD_KINDS.get(key) if isinstance(key, str) else None
                    if kind == ID and canonical_id(value) is not None:
                        has_id = True
                    if kind and self.kind_of(kind, value):
                        found.add(kind)
        return found & {ID} if has_id else found

    def value_kinds(self, value: str) -> set[str]:
        """The kinds of identifier a whole value of a raw line is (quoted string, CSV field)."""
        found = set()
        if canonical_id(value) in self.customer_ids:
            found.add(ID)
        if "@" in value and normalize_email(value) in self.emails:
            found.add(EMAIL)
        phone = normalize_phone(value)
        if phone in self.phones and sum(ch.isdigit() for ch in phone) >= MIN_PHONE_DIGITS:
            found.add(PHONE)
        return found

    def line_kinds(self, text: str) -> set[str]:
        """The kinds of identifier a raw line holds: by its fields if it is JSON, else by the JSON
        fragments inside it and its whole quoted strings, keyed values and CSV fields."""
        document = json_document(text)
        if document is not None:
            return self.field_kinds({"": document})
        fragments, rest = json_fragments(text) if _FRAGMENT_START.search(text) else ([], text)
        return self.field_kinds({"": fragments}) | self.loose_kinds(rest)

    def loose_kinds(self, text: str) -> set[str]:
        """The kinds of identifier a text that is no JSON holds as whole quoted strings, keyed values
        and CSV fields."""
        found: set[str] = set()
        for value in quoted_strings(text):
            found |= self.value_kinds(value)
        for key, value in keyed_values(text):
            kind = self.kind_of(FIELD_KINDS[key], value)
            if kind:
                found.add(kind)
        for value in csv_fields(text):
            found |= self.value_kinds(value)
        return found

    def owns_fields(self, fields: Mapping[object, object]) -> bool:
        return bool(self.field_kinds(fields))

    def owns_line(self, text: str) -> bool:
        return bool(self.line_kinds(text))

    def owns_payload(self, payload: bytes) -> bool:
        """A stream payload (bytes as received): a JSON object by its fields, else as a raw line."""
        return self.owns_line(payload.decode("utf-8", "surrogateescape"))


@dataclass(frozen=True)
class LineKeys:
    """Every customer id and email a raw line could make it someone's by (the rule of the module
    docstring): ``Identifiers.owns_line`` holds for a subject exactly when their ids or emails
    meet these. What a filter holding only HMACs of ids and emails checks a line against."""

    customer_ids: frozenset[str]  # canonical
    emails: frozenset[str]  # normalized


def line_keys(text: str) -> LineKeys:
    """The :class:`LineKeys` of a raw line: its identifier fields if it is JSON, else those of its
    JSON fragments and its whole quoted strings, keyed values and CSV fields."""
    document = json_document(text)
    if document is not None:
        return _field_keys(document)
    fragments, rest = json_fragments(text) if _FRAGMENT_START.search(text) else ([], text)
    found = _field_keys(fragments)
    ids, emails = set(found.customer_ids), set(found.emails)
    for value in [*quoted_strings(rest), *csv_fields(rest)]:
        ids.add(canonical_id(value))
        if "@" in value:
            emails.add(normalize_email(value))
    for key, value in keyed_values(rest):
        if key in ID_FIELDS:
            ids.add(canonical_id(value))
        elif key in EMAIL_FIELDS:
            emails.add(normalize_email(value))
    return LineKeys(frozenset(ids - {None}), frozenset(emails - {None}))


def id_candidates(text: str) -> set[str]:
    """Every customer id a raw line could make it a customer's by (:func:`line_keys`)."""
    return set(line_keys(text).customer_ids)


def _field_keys(document: object) -> LineKeys:
    """The ids and emails the identifier fields of a parsed JSON value hold, at any depth (only its
    ids when it holds one: a record under a customer id is theirs alone)."""
    ids, emails = set(), set()
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, (dict, list)):
                    stack.append(value)
                elif key in ID_FIELDS:
                    ids.add(canonical_id(value))
                elif key in EMAIL_FIELDS:
                    emails.add(normalize_email(field_text(value)))
    ids.discard(None)
    return LineKeys(frozenset(ids), frozenset() if ids else frozenset(emails - {None}))


def lines(text: str) -> Iterator[str]:
    """Lines split on newline only, each with its newline (the last one may have none)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def csv_split(record: str) -> list[str]:
    """One CSV record's fields (a record with a NUL byte or a stray quote split as well as it goes)."""
    try:
        return next(csv.reader(io.StringIO(record)), [])
    except csv.Error:
        return record.rstrip("\r\n").split(",")
