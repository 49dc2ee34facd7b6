"""What a search for a data subject counts as a trace: the rules of ``search.py``, on one value.

A :class:`Needle` is a value to look for with what it is (its label); a :class:`Matcher` says
which labels a value, a raw record, a JSON document or binary data holds:

* an identifier column or JSON key (``customer_id``, ``email``, ``phone``, ``name``, ``*_hash``)
  whose whole value is one of the subject's (:func:`column_kind`);
* a raw record (a line of a text file, a ``_raw_line``/``raw_record``/``raw_value``/``_payload``
  value) holding one as a whole quoted JSON string, keyed value or CSV field (``attribution.py``);
* a JSON document or fragment by its keys, recursively;
* a **word** anywhere, for values distinctive enough (:func:`is_word`): emails, phones of at least
  seven digits, HMACs, ids shaped like opaque keys (``C0000001``, a UUID starting with a letter)
  and full names; a short or common value (``42``, ``EUR``, ``login``) never is one.

Each kind of value is compared as the platform compares it: a customer id exactly, case counting
(ids are case-sensitive identifiers: ``c0000001`` is another customer than ``C0000001``), in an
identifier column, a raw record, free text or bytes alike; an email in any case (normalized to
lower case); a phone by its normalized form (``pii.normalize_phone``) in a phone column and as
written or as digits elsewhere; a name trimmed and case-folded; an HMAC in any case.

**Whose record a hit is in** (:func:`record_owner`): a record (a database or Parquet row, a CSV
record, a JSON-lines record) is attributed by its identifier fields alone, as erasure attributes
it: its ``customer_id``, else (none, or blank) its email or email HMAC. A :class:`Matcher` says
whether that owner is the subject (:meth:`Matcher.owns`); ``search.py`` lets its caller decide
whether another owner is a known customer.

Pure Python, no files: ``search.py`` reads the stores and asks the :class:`Matcher`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


from ai_data_platform.governance.attribution import (
    EMAIL,
    EMAIL_FIELDS,
    ID,
    ID_FIELDS,
    PHONE,
    Identifiers,
    as_bytes,
    canonical_id,
    field_text,
    json_document,
    json_fragments,
    written_forms,
)
from ai_data_platform.governance.pii import normalize_email, normalize_phone

NAME = "name"
EMAIL_HMAC = "email HMAC"
PHONE_HMAC = "phone HMAC"
HMAC_LABELS = (EMAIL_HMAC, PHONE_HMAC)
LABELS = (ID, EMAIL, PHONE, NAME, *HMAC_LABELS)

_BOUNDARY = "A-Za-z0-9"
_EMAIL_CHARS = "A-Za-z0-9._%+\\-"  # what may stand before an address, making it part of a longer one
RAW_RECORD_COLUMNS = frozenset({"_raw_line", "raw_record", "raw_value", "_payload"})
_NAME_COLUMNS = frozenset({"name", "full_name", "customer_name"})
_OPAQUE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]{5,}")
_FULL_NAME = re.compile(r"[^\W\d_]{2,}(?:[ '-][^\W\d_]{2,})+")
_EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Needle:
    """A value to look for. The label says what it is (``customer id``, ``email``, ``phone``,
    ``name``, ``email HMAC``, ``phone HMAC``; any other label: a value searched as a word) and is
    what reports show, never the value."""

    label: str
    value: str


EMAIL_HASH_FIELDS = frozenset({"email_hash", "customer_email_hash"})


@dataclass(frozen=True)
class Owner:
    """Whose a record is, by its identifier fields: its customer ids (canonical) when it has any,
    else its emails (normalized) and email HMACs (lower-cased)."""

    customer_ids: frozenset[str] = frozenset()
    emails: frozenset[str] = frozenset()
    email_hashes: frozenset[str] = frozenset()


RECEIVED_RECORD_COLUMNS = ("_payload", "raw_record", "_raw_line")  # a record kept as received


def record_owner(fields: Mapping[str, object]) -> Owner | None:
    """The :class:`Owner` of a record by its top-level fields (``customer_id``; else ``email`` /
    ``customer_email`` and their ``*_hash``; names compared in any case), or None: it has none. A
    row with none that keeps a record as received (:data:`RECEIVED_RECORD_COLUMNS`: a stream
    payload, a quarantined record) is that record's, when it is a JSON object: by its top-level
    fields."""
    owner = _fields_owner(fields)
    if owner is not None:
        return owner
    for column in RECEIVED_RECORD_COLUMNS:
        received = fields.get(column)
        document = json_document(received) if isinstance(received, str) else None
        if isinstance(document, dict):
            return _fields_owner(document)
    return None


def _fields_owner(fields: Mapping[str, object]) -> Owner | None:
    ids, emails, hashes = set(), set(), set()
    for key, value in fields.items():
        name = key.lower() if isinstance(key, str) else None
        if name is None or isinstance(value, (dict, list, bytes)):
            continue
        text = field_text(value)
        if name in ID_FIELDS:
            ids.add(canonical_id(text))
        elif name in EMAIL_FIELDS:
            emails.add(normalize_email(text))
        elif name in EMAIL_HASH_FIELDS and text and text.strip():
            hashes.add(text.strip().lower())
    ids.discard(None)
    if ids:
        return Owner(frozenset(ids))
    emails.discard(None)
    return Owner(frozenset(), frozenset(emails), frozenset(hashes)) if emails or hashes else None


@dataclass(frozen=True)
class Trace:
    """Where a value remains: file (relative to the searched root), table.column if any, how often."""

    file: str
    location: str  # "schema.table.column", "bytes on disk", "text", or why the file was not readable
    needle: str  # the needle's label
    count: int

    def describe(self) -> str:
        return f"{self.file}: {self.location}: {self.count} x {self.needle}"


def is_word(needle: Needle) -> bool:
    """Whether a value is distinctive enough to be searched as a word anywhere (see the module
    docstring): a short or common one (``42``, ``EUR``, ``login``, ``2026-11-20``) is not."""
    value = needle.value.strip()
    if not value or any(ord(ch) < 32 for ch in value):
        return False
    if needle.label == ID:
        return bool(_OPAQUE_KEY.fullmatch(value)) and any(ch.isdigit() for ch in value)
    if needle.label == NAME:
        return len(value) >= 8 and bool(_FULL_NAME.fullmatch(value))
    if needle.label == EMAIL:
        return bool(_EMAIL_SHAPE.fullmatch(value))
    if needle.label == PHONE:
        return sum(ch.isdigit() for ch in value) >= 7
    return len(value) >= 6  # HMACs (64 hex) and values of other labels


def column_kind(column: str | None) -> str | None:
    """The identifier a column (or JSON key) of that name holds, if any."""
    if not column:
        return None
    name = column.lower()
    if name == "customer_id" or name.endswith("_customer_id"):
        return ID
    if name in ("email", "customer_email") or name.endswith("_email"):
        return EMAIL
    if name == "phone" or name.endswith("_phone"):
        return PHONE
    if name in _NAME_COLUMNS:
        return NAME
    if name.endswith("_hash"):
        return EMAIL_HMAC
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def exact_case(label: str) -> bool:
    """Whether values of ``label`` are compared case counting: customer ids (case-sensitive
    identifiers); every other label in any case."""
    return label == ID


def _word_pattern(values: Iterable[str], label: str) -> re.Pattern | None:
    """Any of ``values`` as a word (a customer id exactly, anything else in any case): no letter or
    digit next to it; for an email, nothing that would make it part of a longer address
    (``jo.ann@x.org``, ``ann@x.org.uk``) either."""
    body = "|".join(re.escape(v) for v in sorted(set(values), key=len, reverse=True))
    if not body:
        return None
    flags = 0 if exact_case(label) else re.IGNORECASE
    if label == EMAIL:
        after = rf"(?![{_BOUNDARY}_%+\-@]|\.[{_BOUNDARY}])"  # a dot may end a sentence, not a domain
        return re.compile(rf"(?<![{_EMAIL_CHARS}])(?:{body}){after}", flags)
    return re.compile(rf"(?<![{_BOUNDARY}])(?:{body})(?![{_BOUNDARY}])", flags)


class Matcher:
    """Which labels a value, a raw record or a document holds (the rules of the module docstring).
    Built once per search: the needles' patterns are compiled here."""

    def __init__(self, needles: Iterable[Needle]):
        self.needles = [n for n in needles if n.value and n.value.strip()]
        by = {label: [n.value for n in self.needles if n.label == label] for label in LABELS}
        self.identifiers = Identifiers.of(by[ID], by[EMAIL], by[PHONE])
        self.names = frozenset(v.strip().casefold() for v in by[NAME])
        self.hmacs = {v.strip().lower(): label for label in HMAC_LABELS for v in by[label]}
        self.words: dict[str, re.Pattern] = {}
        # per label, the bytes to find: a customer id's as they are (found in the data as it is),
        # any other's lower-cased (found in the lower-cased data)
        self.word_bytes: dict[str, list[bytes]] = {}
        word_values = []
        for label in dict.fromkeys(n.label for n in self.needles):
            values = [n.value.strip() for n in self.needles if n.label == label and is_word(n)]
            if label == PHONE:
                values += [p for p in (normalize_phone(v) for v in values) if p]
            pattern = _word_pattern(values, label)
            if pattern is not None:
                self.words[label] = pattern
                self.word_bytes[label] = sorted({as_bytes(v) if exact_case(label) else as_bytes(v).lower()
                                                 for v in values})
                word_values += [(label, v) for v in values]
        self.longest_word = max((len(as_bytes(v)) for _, v in word_values), default=0)
        # Substrings every match contains (a cheap filter before the rules), in every written form
        # (JSON and CSV escapes): ids as they are, the rest lower-cased; a backslash-u JSON escape
        # may spell any of them.
        lowered = {*self.identifiers.emails, *self.names, *self.hmacs,
                   *(v.lower() for label, v in word_values if not exact_case(label)),
                   *(v.strip() for v in by[PHONE]), *self.identifiers.phones} - {""}
        exact = {*self.identifiers.customer_ids, *(v for label, v in word_values if exact_case(label))}
        self.exact_substrings = sorted({form for i in exact for form in written_forms(i)})
        self.lower_substrings = sorted({form for v in lowered for form in written_forms(v)})
        parts = [re.escape(s) for s in self.exact_substrings] + [f"(?i:{re.escape(s)})" for s in self.lower_substrings]
        self._candidate = re.compile("|".join([*parts, r"\\u"]))
        # A database holds UTF-8 text only: a needle that is none (an argument's undecodable bytes) is in none
        self.sql_exact = [s for s in self.exact_substrings if _is_utf8(s)]
        self.sql_lower = [s for s in self.lower_substrings if _is_utf8(s)]
        self.subject_email_hashes = frozenset(h for h, label in self.hmacs.items() if label == EMAIL_HMAC)

    def __bool__(self) -> bool:
        return bool(self.needles)

    def may_hold(self, text: str) -> bool:
        """False when ``text`` certainly holds nothing (no needle's substring, no JSON escape)."""
        return self._candidate.search(text) is not None

    def exact(self, kind: str | None, value: object) -> set[str]:
        """The label ``value`` is, as the whole value of a column or key of ``kind``."""
        if kind is None or value is None or isinstance(value, (dict, list, bytes)):
            return set()
        if kind in (ID, EMAIL, PHONE):
            found = self.identifiers.kind_of(kind, value)
            return {found} if found else set()
        text = value if isinstance(value, str) else str(value)
        if kind == NAME:
            return {NAME} if text.strip().casefold() in self.names else set()
        label = self.hmacs.get(text.strip().lower())
        return {label} if label else set()

    def in_words(self, text: str) -> set[str]:
        return {label for label, pattern in self.words.items() if pattern.search(text)}

    def in_document(self, document: object) -> set[str]:
        """Labels a parsed JSON document holds under identifier keys, or as words or nested JSON in
        its strings (walked without recursion: a document may be nested arbitrarily deep)."""
        found: set[str] = set()
        stack = [document]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                for key, value in item.items():
                    if isinstance(key, str):
                        found |= self.exact(column_kind(key), value)
                    stack.append(value)
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, str) and item and self.may_hold(item):
                found |= self.in_words(item)
                nested = json_document(item)
                if nested is not None:
                    stack.append(nested)
        return found

    def in_value(self, text: str, column: str | None = None, *, raw_record: bool | None = None) -> set[str]:
        """Labels one value holds: as an identifier column's whole value, as words, as a JSON
        document or by the JSON fragments inside it (a segment or log line) and, for a raw record
        (``raw_record``; by default: a column named like one), by the raw-line rules."""
        kind = column_kind(column)
        if kind not in (PHONE, NAME) and not self.may_hold(text):
            return set()
        found = self.exact(kind, text) | self.in_words(text)
        document = json_document(text)
        if document is not None:
            return found | self.in_document(document)
        fragments, rest = json_fragments(text) if "{" in text or "[" in text else ([], text)
        for fragment in fragments:
            found |= self.in_document(fragment)
        if raw_record if raw_record is not None else column in RAW_RECORD_COLUMNS:
            found |= self.identifiers.loose_kinds(rest)
        return found

    def in_bytes(self, data: bytes) -> set[str]:
        """The labels of the word needles binary data holds."""
        lowered = data.lower()
        return {label for label, values in self.word_bytes.items()
                if any(word_count(data if exact_case(label) else lowered, v, 0, len(data)) for v in values)}

    def owns(self, owner: Owner) -> bool:
        """Whether a record of this owner is the subject's (``attribution.py``'s rule: the customer
        id decides; a record without one by its email or email HMAC)."""
        if owner.customer_ids:
            return bool(owner.customer_ids & self.identifiers.customer_ids)
        return bool(owner.emails & self.identifiers.emails or owner.email_hashes & self.subject_email_hashes)


_WORD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_EMAIL_BYTES = _WORD_BYTES | frozenset(b"._%+-")


def word_count(data: bytes, value: bytes, first: int, last: int) -> int:
    """Occurrences of ``value`` in ``data`` as a word starting in ``[first, last)``, with the
    boundaries of :func:`_word_pattern` (an email's if ``value`` has an ``@``); ``bytes.find``, which
    is far faster than a case-insensitive pattern."""
    email = b"@" in value
    before = _EMAIL_BYTES if email else _WORD_BYTES
    n, start = 0, first
    while (i := data.find(value, start, last + len(value) - 1 if last < len(data) else len(data))) >= 0:
        end = i + len(value)
        if (i == 0 or data[i - 1] not in before) and not _continues(data, end, email):
            n += 1
        start = i + 1
    return n


def _continues(data: bytes, end: int, email: bool) -> bool:
    if end >= len(data):
        return False
    if not email:
        return data[end] in _WORD_BYTES
    return data[end] in _EMAIL_BYTES - {ord(".")} or data[end] == ord("@") or (
        data[end] == ord(".") and end + 1 < len(data) and data[end + 1] in _WORD_BYTES
    )
