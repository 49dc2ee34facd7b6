"""Search every file of a data directory for given values: the proof behind "erased everywhere".

Nothing is assumed about where data lives: every file under the searched roots is opened by what
its bytes are, not by its name.

* **DuckDB databases** (``DUCK`` at byte 8): every table, every column that is not a number, date
  or boolean (cast to text), matched in SQL; then the file's bytes, for deleted rows a missing
  compaction left behind.
* **SQLite databases** (Dagster's run and event storage, an online store): every table and column
  (``LIKE`` prefilter, exact check in Python); then the bytes, as for DuckDB.
* **Parquet** (``PAR1``): read through DuckDB, every column, as for a table.
* **Everything else** (CSV, JSON lines, JSON manifests, logs, model artifacts): the bytes.

A value matches as a whole token (not inside a longer id or number), case-insensitively. Each hit
is a :class:`Trace` naming the file (and table and column) and how many rows or occurrences hold
the value, never the value itself. ``allowed`` exempts a (place, needle) pair: the one table that
may keep an erased subject's keys, the suppression list. Pure Python, no Dagster.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ai_data_platform import warehouse

_BOUNDARY = "A-Za-z0-9"
_NON_TEXT_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
                   "FLOAT", "DOUBLE", "DATE", "TIME", "TIMESTAMP", "BOOLEAN", "INTERVAL", "UUID")
_CHUNK = 8 << 20
_RE2_SPECIAL = set("\\.^$|?*+()[]{}")


@dataclass(frozen=True)
class Needle:
    """A value to look for, with what it is (the label is what reports show, never the value)."""

    label: str  # e.g. "customer id", "email", "email HMAC"
    value: str

    @property
    def python_pattern(self) -> re.Pattern:
        return re.compile(rf"(?<![{_BOUNDARY}]){re.escape(self.value)}(?![{_BOUNDARY}])", re.IGNORECASE)

    @property
    def bytes_pattern(self) -> re.Pattern:
        return re.compile(rf"(?<![{_BOUNDARY}])".encode() + re.escape(self.value.encode()) + rf"(?![{_BOUNDARY}])".encode(), re.IGNORECASE)

    @property
    def re2_literal(self) -> str:
        return "".join("\\" + ch if ch in _RE2_SPECIAL else ch for ch in self.value)


@dataclass(frozen=True)
class Trace:
    """Where a value remains: file (relative to the searched root), table.column if any, how often."""

    file: str
    location: str  # "schema.table.column", "bytes on disk" or "text"
    needle: str  # the needle's label
    count: int

    def describe(self) -> str:
        return f"{self.file}: {self.location}: {self.count} x {self.needle}"


Allowed = Callable[[str, str, Needle], bool]  # (file, location, needle) -> the value may be there


def any_token_re2(needles: list[Needle]) -> str:
    """An RE2 pattern (DuckDB's ``regexp_matches``) matching any needle as a whole token, any case."""
    body = "|".join(n.re2_literal for n in needles)
    return f"(?i)(^|[^{_BOUNDARY}])({body})([^{_BOUNDARY}]|$)"


def any_token_bytes(needles: list[Needle]) -> re.Pattern:
    """One Python pattern matching any needle as a whole token, any case, in bytes."""
    body = b"|".join(re.escape(n.value.encode()) for n in needles)
    return re.compile(rf"(?<![{_BOUNDARY}])(?:".encode() + body + rf")(?![{_BOUNDARY}])".encode(), re.IGNORECASE)


def search_texts(name: str, items: Iterable[tuple[str, str]], needles: list[Needle]) -> list[Trace]:
    """Traces in storage that is not a file (a Redis server): ``items`` are (place, text), the
    place naming a table or key family (never a value); a Trace per place and needle, counting
    the items holding it."""
    counts: dict[tuple[str, str], int] = {}
    patterns = [(n, n.python_pattern) for n in needles]
    for place, text in items:
        for label in {needle.label for needle, pattern in patterns if pattern.search(text)}:
            counts[(place, label)] = counts.get((place, label), 0) + 1
    return [Trace(name, place, label, n) for (place, label), n in sorted(counts.items())]


def _kind(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[8:12] == b"DUCK":
        return "duckdb"
    if head.startswith(b"SQLite format 3\x00"):
        return "sqlite"
    if head.startswith(b"PAR1"):
        return "parquet"
    return "bytes"


def _duckdb_relations(con: duckdb.DuckDBPyConnection, database: str) -> Iterator[tuple[str, str, list[str]]]:
    """(qualified name, schema.table, text-like columns) of every base table (views show tables' data)."""
    for table, columns in warehouse.base_table_columns(con, database).items():
        texts = [c for c, dtype in columns if dtype.split("(")[0] not in _NON_TEXT_TYPES]
        if texts:
            schema, name = table.split(".", 1)
            yield f"{warehouse.quote(database)}.{warehouse.quote(schema)}.{warehouse.quote(name)}", table, texts


def _search_relation(con, qualified: str, name: str, columns: list[str], needles: list[Needle], file: str, allowed: Allowed) -> list[Trace]:
    """Traces in one DuckDB relation: one scan for all needles per column, then one per hit column and needle."""
    texts = [f"CAST({warehouse.quote(c)} AS VARCHAR)" for c in columns]
    pattern = warehouse.sql_literal(any_token_re2(needles))
    hits = con.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE regexp_matches({t}, {pattern}))" for t in texts) + f" FROM {qualified}"
    ).fetchone()
    traces = []
    for column, text, n in zip(columns, texts, hits):
        if not n:
            continue
        for needle in needles:
            location = f"{name}.{column}"
            if allowed(file, location, needle):
                continue
            count = con.execute(
                f"SELECT count(*) FROM {qualified} WHERE regexp_matches({text}, {warehouse.sql_literal(any_token_re2([needle]))})"
            ).fetchone()[0]
            if count:
                traces.append(Trace(file, location, needle.label, count))
    return traces


def _search_duckdb(path: Path, needles: list[Needle], file: str, allowed: Allowed) -> list[Trace]:
    con = warehouse.connect(path, read_only=True)
    try:
        database = con.execute("SELECT current_database()").fetchone()[0]
        traces = []
        for qualified, name, columns in _duckdb_relations(con, database):
            traces += _search_relation(con, qualified, name, columns, needles, file, allowed)
        return traces
    finally:
        con.close()


def _search_parquet(path: Path, needles: list[Needle], file: str, allowed: Allowed) -> list[Trace]:
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW data AS SELECT * FROM read_parquet({warehouse.sql_literal(str(path))})")
        columns = [c for c, t, *_ in con.execute("DESCRIBE data").fetchall() if t.split("(")[0] not in _NON_TEXT_TYPES]
        return _search_relation(con, "data", "data", columns, needles, file, allowed) if columns else []
    finally:
        con.close()


def _search_sqlite(path: Path, needles: list[Needle], file: str, allowed: Allowed) -> list[Trace]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    traces = []
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()]
        for table in tables:
            quoted = '"' + table.replace('"', '""') + '"'
            columns = [r[1] for r in con.execute(f"PRAGMA table_info({quoted})").fetchall()]
            for column in columns:
                qc = '"' + column.replace('"', '""') + '"'
                for needle in needles:
                    location = f"{table}.{column}"
                    if allowed(file, location, needle):
                        continue
                    rows = con.execute(
                        f"SELECT CAST({qc} AS TEXT) FROM {quoted} WHERE CAST({qc} AS TEXT) LIKE ? ESCAPE '\\'",
                        ["%" + needle.value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"],
                    ).fetchall()
                    count = sum(1 for (text,) in rows if text and needle.python_pattern.search(text))
                    if count:
                        traces.append(Trace(file, location, needle.label, count))
    finally:
        con.close()
    return traces


def _search_bytes(path: Path, needles: list[Needle], file: str, allowed: Allowed, location: str) -> list[Trace]:
    wanted = [n for n in needles if not allowed(file, location, n)]
    if not wanted:
        return []
    counts = dict.fromkeys(wanted, 0)
    overlap = max(len(n.value.encode()) for n in wanted) + 2
    with open(path, "rb") as fh:
        carried = b""  # the end of the previous chunk: a match may straddle two chunks
        while True:
            chunk = fh.read(_CHUNK)
            final = len(chunk) < _CHUNK
            data = carried + chunk
            # Count matches starting in [first, last): the rest are seen again with the next chunk,
            # with one byte of context before them for the token boundary.
            first = 1 if carried else 0
            last = len(data) if final else max(len(data) - overlap, first)
            for n in wanted:
                counts[n] += sum(1 for m in n.bytes_pattern.finditer(data) if first <= m.start() < last)
            if final:
                break
            carried = data[last - 1 :]
    return [Trace(file, location, n.label, c) for n, c in counts.items() if c]


def search_file(path: Path, needles: list[Needle], *, file: str, allowed: Allowed) -> list[Trace]:
    """Every trace of ``needles`` in one file (see the module docstring)."""
    if not needles or not path.is_file() or path.stat().st_size == 0:
        return []
    kind = _kind(path)
    if kind == "bytes":
        return _search_bytes(path, needles, file, allowed, "text")
    searcher = {"duckdb": _search_duckdb, "sqlite": _search_sqlite, "parquet": _search_parquet}[kind]
    traces = searcher(path, needles, file, allowed)
    if kind == "parquet":
        return traces
    seen = {t.needle for t in traces}
    # Values no table shows but the file still holds: deleted rows a compaction has not removed.
    return traces + [t for t in _search_bytes(path, needles, file, allowed, "bytes on disk") if t.needle not in seen]


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
    allowed = allowed or (lambda file, location, needle: False)
    traces: list[Trace] = []
    searched = 0
    for path, name in files_under(roots):
        traces += search_file(path, needles, file=name, allowed=allowed)
        searched += 1
    return traces, searched
