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
  gzip or zlib file decompressed first: text line by line (a ``.csv`` file by its header), or,
  when it holds NUL bytes or is not UTF-8, the bytes.

**What counts as a trace** is ``search_rules.py``'s: what attribution (``attribution.py``) counts
as the subject's (identifier columns and JSON keys, raw records by whole values), and distinctive
values (emails, phones, HMACs, opaque-key ids, full names) as words anywhere; nothing a short id
merely resembles. So for the customer ``EUR`` a currency column, ``{"US": 10}`` in Dagster's
metadata or ``06:42:49`` is no trace, while ``called C0000001 back`` in a note is one. Binary bytes
are searched for words only. Each hit is a :class:`Trace` naming the file (and table and column)
and how many rows, lines or occurrences hold the value, never the value itself. ``allowed``
exempts a (place, label) pair: the one table that may keep an erased subject's keys, the
suppression list. Pure Python, no Dagster.
"""

from __future__ import annotations

import itertools
import sqlite3
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import duckdb

from ai_data_platform import warehouse
from ai_data_platform.governance.attribution import csv_records, csv_split, json_document
from ai_data_platform.governance.search_rules import (  # noqa: F401 - the labels, Needle, Trace, is_word: this module's API too
    EMAIL,
    EMAIL_HMAC,
    HMAC_LABELS,
    ID,
    NAME,
    PHONE,
    PHONE_HMAC,
    Matcher,
    Needle,
    Trace,
    column_kind,
    is_word,
    word_count,
)

_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
                  "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL")
_NON_TEXT_TYPES = (*_NUMERIC_TYPES, "DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "BOOLEAN", "INTERVAL", "UUID")
_CHUNK = 8 << 20
_WHOLE_TEXT_LIMIT = 256 << 20  # a text file up to this size is read whole (a JSON document, a CSV file)


Allowed = Callable[[str, str, str], bool]  # (file, location, label) -> the value may be there


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
            found[label] += sum(word_count(data, v, first, last) for v in values)

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
    matcher = needles if isinstance(needles, Matcher) else Matcher(needles)
    with _ParquetReader() as parquet:
        return _search_file(path, matcher, file, allowed, parquet)


def _search_file(path: Path, matcher: Matcher, file: str, allowed: Allowed, parquet: _ParquetReader) -> list[Trace]:
    counts = _Counts(file, allowed)
    try:
        if not matcher or not path.is_file() or path.stat().st_size == 0:
            return []
        kind = _kind(path)
    except OSError as exc:
        return [Trace(file, f"unreadable ({type(exc).__name__})", "file", 1)]
    searcher = {"duckdb": _search_duckdb, "sqlite": _search_sqlite, "parquet": parquet.search, "other": _search_other}[kind]
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
    with _ParquetReader() as parquet:
        for path, name in files_under(roots):
            traces += _search_file(path, matcher, name, allowed, parquet)
            searched += 1
    return traces, searched
