"""Search every file of a data directory for a data subject: the proof behind "erased everywhere".

Nothing is assumed about where data lives: every file under the searched roots is opened by what
its bytes are, not by its name, and no file stops the search (one that cannot be read as what it
looks like is searched as bytes and reported).

* **DuckDB databases** (``DUCK`` at byte 8): every table, every column (a cheap SQL filter on
  substrings, then the rules in Python); then the file's bytes, for deleted rows a
  missing compaction left behind.
* **SQLite databases** (Dagster's run and event storage, an online store): every table, column
  and row; a blob is decompressed (zlib, gzip: Dagster compresses its snapshots) and read as
  text, or searched as bytes; then the file's bytes, as for DuckDB.
* **Parquet** (``PAR1``): read through DuckDB, every column, as for a table.
* **Everything else** (CSV, JSON lines, JSON documents, segment files, logs, model artifacts), a
  gzip or zlib file decompressed first: text (a UTF-8 byte order mark skipped, as the loader skips
  it): a ``.csv`` file by its header, its records cut where the loader cuts them
  (``landing.csv_record_texts``: LF, CRLF or a lone CR outside a quoted field, a quote opening a
  field only at its start); a ``.jsonl`` file line by line (LF or CRLF), each JSON object a record;
  any other text line by line; when it holds NUL bytes or is not UTF-8, the bytes.

**What counts as a trace** is ``search_rules.py``'s: what attribution (``attribution.py``) counts
as the subject's (identifier columns and JSON keys, raw records by whole values), and distinctive
values (emails, phones, HMACs, opaque-key ids, full names) as words anywhere; nothing a short id
merely resembles, and a customer id only as it is written (case counts: ``c0000001`` is another
customer). So for the customer ``EUR`` a currency column, ``{"US": 10}`` in Dagster's metadata or
``06:42:49`` is no trace, while ``called C0000001 back`` in a note is one. Binary bytes are
searched for words only. Each hit is a :class:`Trace` naming the file (and table and column) and
how many rows, lines or occurrences hold the value, never the value itself. ``allowed`` exempts a
(place, label) pair: the one table that may keep an erased subject's keys, the suppression list.

**Whose record a hit is in.** With ``attribute``, a hit inside a *record* is judged by whose the
record is, by its identifier fields (``search_rules.record_owner``: its ``customer_id``; without
one, its email or email HMAC): a database or Parquet row (one without such fields by the JSON
object it keeps as received: a stream payload, a quarantined record), a CSV record split by its
header, a JSON object line of a ``.jsonl`` file, a stream segment's line. A hit in a record of the
subject, or in anything that is no such record (a log line, a JSON document, a blob, bytes, an
unsplittable line) is a trace; a hit in a record of another owner is returned apart
(:class:`Mention`, with the owner) for the caller to decide whether that owner is a known
customer. Pure Python, no Dagster.
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
from typing import NamedTuple

import duckdb

from ai_data_platform import warehouse
from ai_data_platform.governance.attribution import EMAIL_FIELDS, ID_FIELDS, csv_split, json_document
from ai_data_platform.governance.search_rules import (  # noqa: F401 - the labels, Needle, Trace, is_word: this module's API too
    EMAIL,
    EMAIL_HASH_FIELDS,
    EMAIL_HMAC,
    HMAC_LABELS,
    ID,
    NAME,
    PHONE,
    PHONE_HMAC,
    RECEIVED_RECORD_COLUMNS,
    Matcher,
    Needle,
    Owner,
    Trace,
    column_kind,
    exact_case,
    is_word,
    record_owner,
    word_count,
)
from ai_data_platform.sources.landing import csv_record_texts

_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
                  "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL")
_NON_TEXT_TYPES = (*_NUMERIC_TYPES, "DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "BOOLEAN", "INTERVAL", "UUID")
_CHUNK = 8 << 20
_WHOLE_TEXT_LIMIT = 256 << 20  # a text file up to this size is read whole (a JSON document, a CSV file)


Allowed = Callable[[str, str, str], bool]  # (file, location, label) -> the value may be there
OWNER_FIELDS = ID_FIELDS | EMAIL_FIELDS | EMAIL_HASH_FIELDS | set(RECEIVED_RECORD_COLUMNS)  # what says whose a row is
_SEGMENT_LINE = re.compile(r"[0-9]{10,}\t(?=\{)")  # a stream segment's line: its receipt stamp, a tab, the payload
_JSON_LINES_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")


@dataclass(frozen=True)
class Mention:
    """Hits in records attributed to an owner that is not the subject (a trace's place, label and
    count, and the owner): the caller decides whether the owner is a known customer."""

    trace: Trace
    owner: Owner


class Found(NamedTuple):
    """What :func:`search` found: ``traces`` (in the subject's records and in places attributed to
    no one), how many files it searched, and ``in_others_records`` (hits inside records attributed
    to someone else, with ``attribute``; else these are traces too)."""

    traces: list[Trace]
    files_searched: int
    in_others_records: list[Mention]


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
    """Hits per (location, label) in one file, skipping what ``allowed`` exempts. With ``attribute``,
    hits in a record whose :class:`Owner` is not the subject are counted apart, per owner."""

    def __init__(self, file: str, allowed: Allowed, matcher: Matcher, attribute: bool = False):
        self.file, self.allowed, self.matcher, self.attribute = file, allowed, matcher, attribute
        self.counts: Counter = Counter()
        self.owned: Counter = Counter()  # (location, label, owner) -> hits

    def add(self, location: str, labels: Iterable[str], n: int = 1, owner: Owner | None = None) -> None:
        others = self.attribute and owner is not None and not self.matcher.owns(owner)
        for label in labels:
            if self.allowed(self.file, location, label):
                continue
            if others:
                self.owned[(location, label, owner)] += n
            else:
                self.counts[(location, label)] += n

    def add_record(self, location_labels: dict[str, set[str]], fields: Callable[[], dict]) -> None:
        """One record's hits ({location: labels}); ``fields()`` gives its fields, read only when
        there is a hit, to know whose record it is."""
        if not any(location_labels.values()):
            return
        owner = record_owner(fields()) if self.attribute else None
        for location, labels in location_labels.items():
            self.add(location, labels, owner=owner)

    def labels_seen(self) -> set[str]:
        return {label for (_, label) in self.counts} | {label for (_, label, _) in self.owned}

    def traces(self) -> list[Trace]:
        return [Trace(self.file, location, label, n) for (location, label), n in sorted(self.counts.items()) if n]

    def mentions(self) -> list[Mention]:
        ordered = sorted(self.owned.items(), key=lambda item: item[0][:2])
        return [Mention(Trace(self.file, location, label, n), owner) for (location, label, owner), n in ordered if n]


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
    blob (decompressed, or its bytes). A row's owner columns are read with it (whose record it is)."""
    searched, blobs = [], []
    owners = [column for column, _ in columns if column.lower() in OWNER_FIELDS]
    owner_sql = "".join(f", CAST({warehouse.quote(c)} AS VARCHAR) AS o{i}" for i, c in enumerate(owners))
    owner_names = "".join(f", o{i}" for i in range(len(owners)))
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
        quoted = warehouse.quote(column)
        cursor = con.execute(f"SELECT {quoted}{owner_sql} FROM {qualified} WHERE {quoted} IS NOT NULL")
        while rows := cursor.fetchmany(1000):
            for value, *owner_values in rows:
                counts.add_record({f"{name}.{column}": _blob_labels(matcher, value, column)},
                                  lambda v=owner_values: dict(zip(owners, v)))
    if not searched:
        return
    params_sql, params = _needle_params(matcher)
    texts = ", ".join(f"{text} AS t{i}, lower({text}) AS l{i}" for i, (_, _, text) in enumerate(searched))
    picks = ", ".join(f"CASE WHEN {_prefilter(matcher, f't{i}', f'l{i}', kind)} THEN t{i} END AS v{i}"
                      for i, (_, kind, _) in enumerate(searched))
    hit = " OR ".join(f"v{i} IS NOT NULL" for i in range(len(searched)))
    cursor = con.execute(
        f"SELECT * FROM (SELECT {picks}{owner_names} FROM (SELECT {texts}{owner_sql} FROM {qualified}), {params_sql}) "
        f"WHERE {hit}", params
    )
    while rows := cursor.fetchmany(10_000):
        for row in rows:
            hits = {f"{name}.{column}": matcher.in_value(value, column)
                    for (column, _, _), value in zip(searched, row) if value is not None}
            counts.add_record(hits, lambda r=row: dict(zip(owners, r[len(searched):])))


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


class _ParquetReader:
    """One in-memory DuckDB connection reading a search's Parquet files (opening one costs), opened
    at the first file."""

    def __init__(self):
        self._con: duckdb.DuckDBPyConnection | None = None

    def __enter__(self) -> _ParquetReader:
        return self

    def __exit__(self, *exc) -> None:
        if self._con is not None:
            self._con.close()

    def search(self, path: Path, matcher: Matcher, counts: _Counts) -> None:
        if self._con is None:
            self._con = duckdb.connect()
        con = self._con
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
                    hits = {f"{table}.{column}": _sqlite_value(matcher, value, column)
                            for column, value in zip(columns, row)}
                    counts.add_record(hits, lambda r=row: dict(zip(columns, r)))
    finally:
        con.close()


def _search_binary(chunks: Iterable[bytes], matcher: Matcher, counts: _Counts, location: str, skip: set[str]) -> None:
    """Word needles in a byte stream read in chunks (a match may straddle two chunks): a customer
    id as it is, anything else in any case."""
    wanted = {label: values for label, values in matcher.word_bytes.items()
              if label not in skip and not counts.allowed(counts.file, location, label)}
    if not wanted:
        return
    overlap = matcher.longest_word + 2
    found: Counter = Counter()
    carried, context = b"", False  # the unsearched end of what was read; whether it starts with a byte of context

    def count(data: bytes, first: int, last: int) -> None:
        lowered = data.lower()  # ASCII only: the same length
        for label, values in wanted.items():
            found[label] += sum(word_count(data if exact_case(label) else lowered, v, first, last) for v in values)

    for chunk in chunks:
        data = carried + chunk
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
    """The lines of a text read in chunks, each without its line end (LF or CRLF): the lines a
    JSON-lines reader reads."""
    carried = b""
    for chunk in chunks:
        data = carried + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            carried = data
            continue
        yield from _lines(data[: cut + 1].decode("utf-8", "surrogateescape"))
        carried = data[cut + 1:]
    if carried:
        yield from _lines(carried.decode("utf-8", "surrogateescape"))


def _lines(text: str) -> Iterator[str]:
    """``text``'s lines split on LF, a CR before it removed."""
    for line in text.split("\n"):
        yield line.removesuffix("\r")


def _search_csv(text: str, matcher: Matcher, counts: _Counts) -> None:
    """A CSV file by its header, its records cut where the loader cuts them (``landing.csv_record_texts``:
    LF, CRLF or CR outside a quoted field; a blank line no record): each field as its column's value,
    the record attributed by its identifier fields; a record that does not split into the header's
    fields as a raw record (attributed to no one)."""
    header: list[str] | None = None
    for raw in csv_record_texts(text):
        record = raw.removesuffix("\n").removesuffix("\r")
        if not record:
            continue
        if header is None:
            header = csv_split(record)
            continue
        if not matcher.may_hold(record):
            continue
        fields = csv_split(record)
        if len(fields) == len(header):
            labels = [matcher.in_value(value, column, raw_record=False) for column, value in zip(header, fields)]
            hits = {"text": set().union(*labels)}
            counts.add_record(hits, lambda f=fields: _first_of_each(header, f))
        else:
            counts.add("text", matcher.in_value(record, raw_record=True))


def _first_of_each(header: list[str], values: list[str]) -> dict[str, str]:
    """A CSV record's fields by name; a name the header repeats names its first column, as for the loader."""
    fields: dict[str, str] = {}
    for name, value in zip(header, values):
        fields.setdefault(name, value)
    return fields


def _search_text(text: str, shape: str, matcher: Matcher, counts: _Counts) -> None:
    """A whole text file: a CSV file by its header, a JSON-lines file by its records, a JSON
    document by its keys, else line by line."""
    text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark, as the loader skips it
    if not matcher.may_hold(text):
        return
    if shape == "csv":
        _search_csv(text, matcher, counts)
        return
    if shape == "jsonl":
        _search_lines(_lines(text), matcher, counts, json_records=True)
        return
    document = json_document(text)
    if document is not None:
        counts.add("text", matcher.in_document(document) | matcher.in_words(text))
    else:
        _search_lines(text.splitlines(), matcher, counts)


def _search_lines(lines: Iterable[str], matcher: Matcher, counts: _Counts, *, json_records: bool = False) -> None:
    """Lines as raw records; a record attributed by its identifier fields: with ``json_records`` (a
    JSON-lines file) a line that is a JSON object, as the loader reads it, and in any file a stream
    segment's line whose payload is one (``<receipt stamp>\\t<payload>``, as the consumer reads it)."""
    for line in lines:
        if not line or not matcher.may_hold(line):
            continue
        labels = matcher.in_value(line, raw_record=True)
        record = None
        if labels and json_records:
            record = json_document(line)
        elif labels and (segment := _SEGMENT_LINE.match(line)):
            record = json_document(line[segment.end():])
        if isinstance(record, dict):
            counts.add_record({"text": labels}, lambda r=record: r)
        else:
            counts.add("text", labels)


def _shape(path: Path) -> str:
    """How a text file's records are cut, by its name: ``csv``, ``jsonl`` or ``text``."""
    name = path.name.lower()
    return "csv" if name.endswith((".csv", ".csv.gz")) else "jsonl" if name.endswith(_JSON_LINES_SUFFIXES) else "text"


def _search_other(path: Path, matcher: Matcher, counts: _Counts) -> None:
    """A file that is no database: text (whole, up to ``_WHOLE_TEXT_LIMIT``, else line by line), or binary."""
    chunks = _file_chunks(path)
    first = next(chunks, b"")
    if _looks_binary(first):
        _search_binary(itertools.chain([first], chunks), matcher, counts, "bytes", set())
        return
    buffered, size = [first], len(first)
    shape = _shape(path)
    for chunk in chunks:
        buffered.append(chunk)
        size += len(chunk)
        if size > _WHOLE_TEXT_LIMIT:
            lines = _text_lines(itertools.chain(buffered, chunks))
            _search_lines(lines, matcher, counts, json_records=shape == "jsonl")
            return
    _search_text(b"".join(buffered).decode("utf-8", "surrogateescape"), shape, matcher, counts)


def search_file(path: Path, needles: list[Needle] | Matcher, *, file: str, allowed: Allowed) -> list[Trace]:
    """Every trace of ``needles`` in one file (see the module docstring), whoever's record holds it.
    A file that cannot be read as what it looks like (locked, corrupt) is searched as bytes and
    reported as a trace."""
    matcher = needles if isinstance(needles, Matcher) else Matcher(needles)
    with _ParquetReader() as parquet:
        return _search_file(path, matcher, file, allowed, parquet, attribute=False).traces()


def _search_file(path: Path, matcher: Matcher, file: str, allowed: Allowed, parquet: _ParquetReader, *,
                 attribute: bool) -> _Counts:
    counts = _Counts(file, allowed, matcher, attribute)
    try:
        if not matcher or not path.is_file() or path.stat().st_size == 0:
            return counts
        kind = _kind(path)
    except OSError as exc:
        counts.counts[(f"unreadable ({type(exc).__name__})", "file")] += 1
        return counts
    searcher = {"duckdb": _search_duckdb, "sqlite": _search_sqlite, "parquet": parquet.search, "other": _search_other}[kind]
    try:
        searcher(path, matcher, counts)
    except Exception as exc:  # noqa: BLE001 - whatever a file holds, the search goes on and says so
        counts.counts[(f"unreadable as {kind} ({type(exc).__name__}): searched as bytes only", "file")] += 1
        kind = "unreadable"
    if kind in ("duckdb", "sqlite", "unreadable"):
        # Values no table shows but the file still holds: deleted rows a compaction has not removed.
        # A label a table shows (in anyone's record) is not searched for again in the bytes: a
        # caller that keeps hits in others' records compacts such a file first (``erasure.py``).
        try:
            _search_binary(_raw_chunks(path), matcher, counts, "bytes on disk", counts.labels_seen())
        except OSError as exc:
            counts.counts[(f"unreadable ({type(exc).__name__})", "file")] += 1
    return counts


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


def search(
    roots: Iterable[Path], needles: list[Needle], *, allowed: Allowed | None = None, attribute: bool = False
) -> Found:
    """Every trace of ``needles`` in every file below ``roots``, and how many files were searched.
    With ``attribute``, hits inside records attributed to an owner that is not the subject are
    returned apart (:attr:`Found.in_others_records`), for the caller to judge."""
    allowed = allowed or (lambda file, location, label: False)
    traces: list[Trace] = []
    mentions: list[Mention] = []
    searched = 0
    matcher = Matcher(needles)
    with _ParquetReader() as parquet:
        for path, name in files_under(roots):
            counts = _search_file(path, matcher, name, allowed, parquet, attribute=attribute)
            traces += counts.traces()
            mentions += counts.mentions()
            searched += 1
    return Found(traces, searched, mentions)
