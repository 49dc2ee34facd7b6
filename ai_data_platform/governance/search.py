"""Search every file of a data directory for a data subject: the proof behind "erased everywhere".

Nothing is assumed about where data lives: every file under the searched roots is opened by what
its bytes are, not by its name, and no file stops the search (one that cannot be read as what it
looks like is searched as bytes and reported).

* **DuckDB databases** (``DUCK`` at byte 8): every table, every column (a cheap SQL filter on
  substrings, then the exact rules below in Python); then the file's bytes, for deleted rows a
  missing compaction left behind.
* **SQLite databases** (Dagster's run and event storage, an online store): every table, column
  and row; a blob is decompressed (zlib, gzip: Dagster compresses its snapshots) and read as
  text, or searched as bytes; then the file's bytes, as for DuckDB.
* **Parquet** (``PAR1``): read through DuckDB, every column, as for a table.
* **Everything else** (CSV, JSON lines, JSON documents, segment files, logs, model artifacts), a
  gzip or zlib file decompressed first: text line by line (a ``.csv`` file by its header), or,
  when it holds NUL bytes or is not UTF-8, the bytes.

**What counts as a trace** is what attribution (``attribution.py``) counts as the subject's, and
what a reader would recognize as them, and nothing a short id merely resembles:

* an identifier column or JSON key (``customer_id``, ``email``, ``phone``, ``name``, ``*_hash``)
  whose whole value is one of theirs;
* a raw record (a line of a text file, a ``_raw_line``/``raw_record``/``raw_value``/``_payload``
  value) holding one as a whole quoted JSON string, keyed value or CSV field;
* a JSON document (a cell, a line, a file, a string inside one) by its keys, recursively;
* a **word** anywhere, case-insensitively, for values distinctive enough to be searched as words
  (:func:`is_word`): emails, phones of at least seven digits, HMACs, ids and names shaped like
  opaque keys or full names (``C0000001``, a UUID starting with a letter, ``Ann Lee``).

So for the customer ``EUR`` a currency column, ``{"US": 10}`` in Dagster's metadata or ``06:42:49``
is no trace, while ``called C0000001 back`` in a note is one. Binary bytes are searched for words
only. Each hit is a :class:`Trace` naming the file (and table and column) and how many rows, lines
or occurrences hold the value, never the value itself. ``allowed`` exempts a (place, label) pair:
the one table that may keep an erased subject's keys, the suppression list. Pure Python, no Dagster.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ai_data_platform import warehouse
from ai_data_platform.governance.attribution import (
    EMAIL,
    ID,
    PHONE,
    Identifiers,
    as_bytes,
    csv_records,
    csv_split,
    json_document,
    json_fragments,
    written_forms,
)
from ai_data_platform.governance.pii import normalize_phone

NAME = "name"
EMAIL_HMAC = "email HMAC"
PHONE_HMAC = "phone HMAC"
HMAC_LABELS = (EMAIL_HMAC, PHONE_HMAC)

_BOUNDARY = "A-Za-z0-9"
_RE2_SPECIAL = set("\\.^$|?*+()[]{}")
_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
                  "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL")
_NON_TEXT_TYPES = (*_NUMERIC_TYPES, "DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "BOOLEAN", "INTERVAL", "UUID")
_CHUNK = 8 << 20
_WHOLE_TEXT_LIMIT = 256 << 20  # a text file up to this size is read whole (a JSON document, a CSV file)
_RAW_RECORD_COLUMNS = frozenset({"_raw_line", "raw_record", "raw_value", "_payload"})
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

    @property
    def re2_literal(self) -> str:
        return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in self.value)


@dataclass(frozen=True)
class Trace:
    """Where a value remains: file (relative to the searched root), table.column if any, how often."""

    file: str
    location: str  # "schema.table.column", "bytes on disk", "text", or why the file was not readable
    needle: str  # the needle's label
    count: int

    def describe(self) -> str:
        return f"{self.file}: {self.location}: {self.count} x {self.needle}"


Allowed = Callable[[str, str, str], bool]  # (file, location, label) -> the value may be there


def any_token_re2(needles: list[Needle]) -> str:
    """An RE2 pattern (DuckDB's ``regexp_matches``) matching any needle as a whole token, any case
    (a pre-filter for callers that judge each hit; erasure attributes exactly, never by it)."""
    body = "|".join(n.re2_literal for n in needles)
    return f"(?i)(^|[^{_BOUNDARY}])({body})([^{_BOUNDARY}]|$)"


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


def _word_pattern(values: Iterable[str]) -> re.Pattern | None:
    body = "|".join(re.escape(v) for v in sorted(set(values), key=len, reverse=True))
    return re.compile(rf"(?<![{_BOUNDARY}])(?:{body})(?![{_BOUNDARY}])", re.IGNORECASE) if body else None


class Matcher:
    """Which labels a value, a raw record or a document holds (the rules of the module docstring).
    Built once per search: the needles' patterns are compiled here."""

    def __init__(self, needles: Iterable[Needle]):
        self.needles = [n for n in needles if n.value and n.value.strip()]
        labels = (ID, EMAIL, PHONE, NAME, *HMAC_LABELS)
        by = {label: [n.value for n in self.needles if n.label == label] for label in labels}
        self.identifiers = Identifiers.of(by[ID], by[EMAIL], by[PHONE])
        self.names = frozenset(v.strip().casefold() for v in by[NAME])
        self.hmacs = {v.strip().lower(): label for label in HMAC_LABELS for v in by[label]}
        self.words: dict[str, re.Pattern] = {}
        self.word_bytes: dict[str, list[bytes]] = {}  # lower-cased, to find in lower-cased bytes
        word_values = []
        for label in dict.fromkeys(n.label for n in self.needles):
            values = [n.value.strip() for n in self.needles if n.label == label and is_word(n)]
            if label == PHONE:
                values += [p for p in (normalize_phone(v) for v in values) if p]
            pattern = _word_pattern(values)
            if pattern is not None:
                self.words[label] = pattern
                self.word_bytes[label] = sorted({as_bytes(v).lower() for v in values})
                word_values += values
        self.longest_word = max((len(as_bytes(v)) for v in word_values), default=0)
        # Substrings every match contains (a cheap filter before the rules), in every written form
        # (JSON and CSV escapes): ids as they are, the rest lower-cased; a backslash-u JSON escape
        # may spell any of them.
        lowered = {*self.identifiers.emails, *self.names, *self.hmacs, *(v.lower() for v in word_values),
                   *(v.strip() for v in by[PHONE]), *self.identifiers.phones} - {""}
        self.exact_substrings = sorted({form for i in self.identifiers.customer_ids for form in written_forms(i)})
        self.lower_substrings = sorted({form for v in lowered for form in written_forms(v)})
        parts = [re.escape(s) for s in self.exact_substrings] + [f"(?i:{re.escape(s)})" for s in self.lower_substrings]
        self._candidate = re.compile("|".join([*parts, r"\\u"]))
        # A database holds UTF-8 text only: a needle that is none (an argument's undecodable bytes) is in none
        self.sql_exact = [s for s in self.exact_substrings if _is_utf8(s)]
        self.sql_lower = [s for s in self.lower_substrings if _is_utf8(s)]

        self._parquet_reader: duckdb.DuckDBPyConnection | None = None

    def __bool__(self) -> bool:
        return bool(self.needles)

    def parquet_reader(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection reading this search's Parquet files (one: opening costs)."""
        if self._parquet_reader is None:
            self._parquet_reader = duckdb.connect()
        return self._parquet_reader

    def close(self) -> None:
        if self._parquet_reader is not None:
            self._parquet_reader.close()
            self._parquet_reader = None

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
        if raw_record if raw_record is not None else column in _RAW_RECORD_COLUMNS:
            found |= self.identifiers.loose_kinds(rest)
        return found

    def in_bytes(self, data: bytes) -> set[str]:
        """The labels of the word needles binary data holds."""
        lowered = data.lower()
        return {label for label, values in self.word_bytes.items()
                if any(_word_count(lowered, v, 0, len(lowered)) for v in values)}


_WORD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


def _word_count(data: bytes, value: bytes, first: int, last: int) -> int:
    """Occurrences of ``value`` in ``data`` as a word (no letter or digit either side) starting in
    ``[first, last)``; ``bytes.find``, which is far faster than a case-insensitive pattern."""
    n, start = 0, first
    while (i := data.find(value, start, last + len(value) - 1 if last < len(data) else len(data))) >= 0:
        end = i + len(value)
        if (i == 0 or data[i - 1] not in _WORD_BYTES) and (end >= len(data) or data[end] not in _WORD_BYTES):
            n += 1
        start = i + 1
    return n


def search_texts(name: str, items: Iterable[tuple[str, str]], needles: list[Needle]) -> list[Trace]:
    """Traces in storage that is not a file (a Redis server): ``items`` are (place, text), each
    text a raw record (a stream entry, a key or a stored value), the place naming a table or key
    family (never a value); a Trace per place and label, counting the items holding it."""
    matcher = Matcher(needles)
    counts: Counter = Counter()
    for place, text in items:
        for label in matcher.in_value(text, raw_record=True):
            counts[(place, label)] += 1
    return [Trace(name, place, label, n) for (place, label), n in sorted(counts.items())]


# ---------------------------------------------------------------- files by kind


def _kind(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[8:12] == b"DUCK":
        return "duckdb"
    if head.startswith(b"SQLite format 3\x00"):
        return "sqlite"
    if head.startswith(b"PAR1"):
        return "parquet"
    return "other"


def _is_zlib(head: bytes) -> bool:
    return len(head) >= 2 and head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0


def _decompressed(data: bytes) -> bytes:
    """A zlib or gzip blob's content (Dagster stores snapshots zlib-compressed; at most
    ``_WHOLE_TEXT_LIMIT`` bytes of it), else ``data`` itself."""
    wbits = 16 + zlib.MAX_WBITS if data[:2] == b"\x1f\x8b" else zlib.MAX_WBITS if _is_zlib(data) else None
    if wbits is None:
        return data
    try:
        return zlib.decompressobj(wbits).decompress(data, _WHOLE_TEXT_LIMIT)
    except zlib.error:
        return data


def _as_text(data: bytes) -> str | None:
    """Text a blob holds (UTF-8 without NUL bytes), else None: binary."""
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class _Counts:
    """Hits per (location, label) in one file, skipping what ``allowed`` exempts."""

    def __init__(self, file: str, allowed: Allowed):
        self.file, self.allowed = file, allowed
        self.counts: Counter = Counter()

    def add(self, location: str, labels: Iterable[str], n: int = 1) -> None:
        for label in labels:
            if not self.allowed(self.file, location, label):
                self.counts[(location, label)] += n

    def traces(self) -> list[Trace]:
        return [Trace(self.file, location, label, n) for (location, label), n in sorted(self.counts.items()) if n]


def _prefilter(matcher: Matcher, text: str, lowered: str, kind: str | None) -> str:
    """A DuckDB condition true for every value ``matcher`` may find anything in: ``text`` and
    ``lowered`` are the value as text and lower-cased, the needles the parameters ``p.n_exact0``,
    ``p.n_lower0``, ... of :func:`_needle_params`."""
    if kind in (PHONE, NAME):  # compared after normalizing: any value of such a column
        return f"{text} IS NOT NULL"
    conds = [f"contains({text}, p.n_exact{i})" for i in range(len(matcher.sql_exact))]
    conds += [f"contains({lowered}, p.n_lower{i})" for i in range(len(matcher.sql_lower))]
    conds.append(f"contains({text}, '\\u')")
    return "(" + " OR ".join(conds) + ")"


def _needle_params(matcher: Matcher) -> tuple[str, list[str]]:
    names = [f"n_exact{i}" for i in range(len(matcher.sql_exact))]
    names += [f"n_lower{i}" for i in range(len(matcher.sql_lower))]
    values = [*matcher.sql_exact, *matcher.sql_lower]
    columns = ", ".join(f"?::VARCHAR AS {n}" for n in names) or "NULL AS n_none"
    return f"(SELECT {columns}) p", values


def _search_relation(
    con, qualified: str, name: str, columns: list[tuple[str, str]], matcher: Matcher, counts: _Counts
) -> None:
    """Every value of one DuckDB relation's columns that may hold a needle (one scan, a substring
    filter in SQL), judged in Python; a nested value (struct, map, list) as its JSON; a BLOB as a
    blob (decompressed, or its bytes)."""
    searched, blobs = [], []
    for column, dtype in columns:
        base = dtype.split("(")[0].upper()
        kind = column_kind(column)
        quoted = warehouse.quote(column)
        if base == "BLOB":
            blobs.append(column)
        elif base in ("STRUCT", "MAP", "UNION") or dtype.endswith("]"):
            searched.append((column, kind, f"CAST(to_json({quoted}) AS VARCHAR)"))
        elif base not in _NON_TEXT_TYPES or (kind and base in _NUMERIC_TYPES):
            searched.append((column, kind, f"CAST({quoted} AS VARCHAR)"))
    if not matcher.needles:
        return
    for column in blobs:
        cursor = con.execute(f"SELECT {warehouse.quote(column)} FROM {qualified} WHERE {warehouse.quote(column)} IS NOT NULL")
        while rows := cursor.fetchmany(1000):
            for (value,) in rows:
                counts.add(f"{name}.{column}", _blob_labels(matcher, value, column))
    if not searched:
        return
    params_sql, params = _needle_params(matcher)
    texts = ", ".join(f"{text} AS t{i}, lower({text}) AS l{i}" for i, (_, _, text) in enumerate(searched))
    picks = ", ".join(f"CASE WHEN {_prefilter(matcher, f't{i}', f'l{i}', kind)} THEN t{i} END AS v{i}"
                      for i, (_, kind, _) in enumerate(searched))
    hit = " OR ".join(f"v{i} IS NOT NULL" for i in range(len(searched)))
    cursor = con.execute(
        f"SELECT * FROM (SELECT {picks} FROM (SELECT {texts} FROM {qualified}), {params_sql}) WHERE {hit}", params
    )
    while rows := cursor.fetchmany(10_000):
        for row in rows:
            for (column, _, _), value in zip(searched, row):
                if value is not None:
                    counts.add(f"{name}.{column}", matcher.in_value(value, column))


def _search_duckdb(path: Path, matcher: Matcher, counts: _Counts) -> None:
    con = warehouse.connect(path, read_only=True)
    try:
        database = con.execute("SELECT current_database()").fetchone()[0]
        for table, columns in warehouse.base_table_columns(con, database).items():
            schema, name = table.split(".", 1)
            qualified = f"{warehouse.quote(database)}.{warehouse.quote(schema)}.{warehouse.quote(name)}"
            try:
                _search_relation(con, qualified, table, columns, matcher, counts)
            except duckdb.Error as exc:  # one table that cannot be read: said, and the others searched
                counts.counts[(f"{table}: unreadable ({type(exc).__name__}): searched as bytes only", "table")] += 1
    finally:
        con.close()


def _search_parquet(path: Path, matcher: Matcher, counts: _Counts) -> None:
    con = matcher.parquet_reader()
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW data AS SELECT * FROM read_parquet({warehouse.sql_literal(str(path))})")
        columns = [(c, t) for c, t, *_ in con.execute("DESCRIBE data").fetchall()]
        _search_relation(con, "data", "data", columns, matcher, counts)
    finally:
        con.execute("DROP VIEW IF EXISTS data")


def _blob_labels(matcher: Matcher, value: bytes, column: str) -> set[str]:
    """A blob: decompressed if it is zlib or gzip, then judged as text if it is text, else its bytes."""
    data = _decompressed(bytes(value))
    text = _as_text(data)
    return matcher.in_value(text, column) if text is not None else matcher.in_bytes(data)


def _sqlite_value(matcher: Matcher, value: object, column: str) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, str):
        return matcher.in_value(value, column)
    if isinstance(value, bytes):
        return _blob_labels(matcher, value, column)
    return matcher.exact(column_kind(column), value)  # a number: only as an identifier column's value


def _search_sqlite(path: Path, matcher: Matcher, counts: _Counts) -> None:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    con.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
        for table in tables:
            quoted = '"' + table.replace('"', '""') + '"'
            cursor = con.execute(f"SELECT * FROM {quoted}")
            columns = [d[0] for d in cursor.description]
            while rows := cursor.fetchmany(1000):
                for row in rows:
                    for column, value in zip(columns, row):
                        counts.add(f"{table}.{column}", _sqlite_value(matcher, value, column))
    finally:
        con.close()


def _search_binary(chunks: Iterable[bytes], matcher: Matcher, counts: _Counts, location: str, skip: set[str]) -> None:
    """Word needles in a byte stream read in chunks, any case (a match may straddle two chunks)."""
    wanted = {label: values for label, values in matcher.word_bytes.items()
              if label not in skip and not counts.allowed(counts.file, location, label)}
    if not wanted:
        return
    overlap = matcher.longest_word + 2
    found: Counter = Counter()
    carried, context = b"", False  # the unsearched end of what was read; whether it starts with a byte of context

    def count(data: bytes, first: int, last: int) -> None:
        for label, values in wanted.items():
            found[label] += sum(_word_count(data, v, first, last) for v in values)

    for chunk in chunks:
        data = carried + chunk.lower()
        first, last = int(context), len(data) - overlap  # a match starting at or after ``last`` may go on
        if last <= first:
            carried = data
            continue
        count(data, first, last)
        carried, context = data[last - 1:], True
    count(carried, int(context), len(carried))
    for label, n in found.items():
        if n:
            counts.add(location, [label], n)


def _raw_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _inflated_chunks(path: Path, wbits: int) -> Iterator[bytes]:
    """A gzip or zlib file's content in chunks of at most ``_CHUNK`` bytes (a bomb never in memory)."""
    inflater = zlib.decompressobj(wbits)
    for data in _raw_chunks(path):
        while data and not inflater.eof:
            out = inflater.decompress(data, _CHUNK)
            if out:
                yield out
            data = inflater.unconsumed_tail
    rest = inflater.flush()
    if rest:
        yield rest


def _file_chunks(path: Path) -> Iterator[bytes]:
    """The file's content in chunks: decompressed when it is a gzip or zlib file, else its bytes."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    wbits = 16 + zlib.MAX_WBITS if head == b"\x1f\x8b" else zlib.MAX_WBITS if _is_zlib(head) else None
    if wbits is not None:
        try:
            next(_inflated_chunks(path, wbits), None)  # it is compressed: the first chunk inflates
        except zlib.error:
            wbits = None
    if wbits is None:
        yield from _raw_chunks(path)
        return
    try:
        yield from _inflated_chunks(path, wbits)
    except zlib.error:  # corrupt further on: what inflated was searched, the bytes are searched too
        yield from _raw_chunks(path)


def _looks_binary(head: bytes) -> bool:
    """NUL bytes, or more than 1% of the bytes not UTF-8 (a chunk may end inside a character)."""
    return b"\x00" in head or head.decode("utf-8", "replace").count("\ufffd") > len(head) // 100 + 1


def _text_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    carried = b""
    for chunk in chunks:
        data = carried + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            carried = data
            continue
        yield from data[: cut + 1].decode("utf-8", "surrogateescape").splitlines()
        carried = data[cut + 1:]
    if carried:
        yield from carried.decode("utf-8", "surrogateescape").splitlines()


def _search_csv(text: str, matcher: Matcher, counts: _Counts) -> None:
    """A CSV file by its header: each field as its column's value; a record that does not split
    into the header's fields as a raw record."""
    records = csv_records(text)
    header = csv_split(next(records, ""))
    for raw in records:
        if not matcher.may_hold(raw):
            continue
        fields = csv_split(raw)
        if len(fields) == len(header):
            found: set[str] = set()
            for column, value in zip(header, fields):
                found |= matcher.in_value(value, column, raw_record=False)
        else:
            found = matcher.in_value(raw, raw_record=True)
        counts.add("text", found)


def _search_text(text: str, csv_file: bool, matcher: Matcher, counts: _Counts) -> None:
    """A whole text file: a JSON document by its keys, a CSV file by its header, else line by line."""
    if not matcher.may_hold(text):
        return
    document = json_document(text)
    if document is not None:
        counts.add("text", matcher.in_document(document) | matcher.in_words(text))
    elif csv_file:
        _search_csv(text, matcher, counts)
    else:
        _search_lines(text.splitlines(), matcher, counts)


def _search_lines(lines: Iterable[str], matcher: Matcher, counts: _Counts) -> None:
    for line in lines:
        if line and matcher.may_hold(line):
            counts.add("text", matcher.in_value(line, raw_record=True))


def _search_other(path: Path, matcher: Matcher, counts: _Counts) -> None:
    """A file that is no database: text (whole, up to ``_WHOLE_TEXT_LIMIT``, else line by line), or binary."""
    chunks = _file_chunks(path)
    first = next(chunks, b"")
    if _looks_binary(first):
        _search_binary(itertools.chain([first], chunks), matcher, counts, "bytes", set())
        return
    buffered, size = [first], len(first)
    for chunk in chunks:
        buffered.append(chunk)
        size += len(chunk)
        if size > _WHOLE_TEXT_LIMIT:
            _search_lines(_text_lines(itertools.chain(buffered, chunks)), matcher, counts)
            return
    csv_file = path.name.lower().endswith((".csv", ".csv.gz"))
    _search_text(b"".join(buffered).decode("utf-8", "surrogateescape"), csv_file, matcher, counts)


def search_file(path: Path, needles: list[Needle] | Matcher, *, file: str, allowed: Allowed) -> list[Trace]:
    """Every trace of ``needles`` in one file (see the module docstring). A file that cannot be
    read as what it looks like (locked, corrupt) is searched as bytes and reported as a trace."""
    if not isinstance(needles, Matcher):
        matcher = Matcher(needles)
        try:
            return search_file(path, matcher, file=file, allowed=allowed)
        finally:
            matcher.close()
    matcher = needles
    counts = _Counts(file, allowed)
    try:
        if not matcher or not path.is_file() or path.stat().st_size == 0:
            return []
        kind = _kind(path)
    except OSError as exc:
        return [Trace(file, f"unreadable ({type(exc).__name__})", "file", 1)]
    searcher = {"duckdb": _search_duckdb, "sqlite": _search_sqlite, "parquet": _search_parquet, "other": _search_other}
    searcher = searcher[kind]
    try:
        searcher(path, matcher, counts)
    except Exception as exc:  # noqa: BLE001 - whatever a file holds, the search goes on and says so
        counts.counts[(f"unreadable as {kind} ({type(exc).__name__}): searched as bytes only", "file")] += 1
        kind = "unreadable"
    if kind in ("duckdb", "sqlite", "unreadable"):
        # Values no table shows but the file still holds: deleted rows a compaction has not removed.
        seen = {label for (_, label) in counts.counts}
        try:
            _search_binary(_raw_chunks(path), matcher, counts, "bytes on disk", seen)
        except OSError as exc:
            counts.counts[(f"unreadable ({type(exc).__name__})", "file")] += 1
    return counts.traces()


def files_under(roots: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    """(file, name to report) for every regular file below the roots (a root may be a file)."""
    seen: set[Path] = set()
    for root in roots:
        root = Path(root)
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
        for path in candidates:
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            base = root.parent if root.is_file() else root
            yield path, (path.relative_to(base).as_posix() if root.is_dir() else str(path))


def search(roots: Iterable[Path], needles: list[Needle], *, allowed: Allowed | None = None) -> tuple[list[Trace], int]:
    """Every trace of ``needles`` in every file below ``roots``, and how many files were searched."""
    allowed = allowed or (lambda file, location, label: False)
    traces: list[Trace] = []
    searched = 0
    matcher = Matcher(needles)
    try:
        for path, name in files_under(roots):
            traces += search_file(path, matcher, file=name, allowed=allowed)
            searched += 1
    finally:
        matcher.close()
    return traces, searched
