"""DuckDB warehouse helpers: schemas by layer, idempotent partition writes, table metadata.

The warehouse is one DuckDB file (``$ADP_DATA_DIR/warehouse.duckdb``) with a schema per layer:
``raw``, ``staging``, ``quarantine``, ``identity`` (restricted PII), ``marts``, ``features``,
``ml`` and ``meta``. Every time-partitioned table carries ``_partition_date`` and is written by deleting the
partition window and inserting it again inside one transaction, so re-materializing a partition
replaces it exactly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb

from ai_data_platform.private_files import make_private_dir, restrict_database
from ai_data_platform.sources.value_grammar import timestamp_text_sql

LAYER_SCHEMAS = ("raw", "staging", "quarantine", "identity", "marts", "features", "ml", "meta")

# DuckDB takes one writer per database file; another process holding it makes connect() raise an
# IOException mentioning the lock. We wait for it instead of failing the run.
_LOCK_RETRY_SECONDS = 120.0


def connect(path: Path | str, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse, waiting (with backoff) while another process holds the write lock.

    The file, its ``.wal`` and a folder created for it are owner-only (``private_files``)."""
    path = str(path)
    if path == ":memory:":
        return waiting_for_lock(lambda: duckdb.connect(path, read_only=read_only))
    make_private_dir(Path(path).parent)
    con = waiting_for_lock(lambda: duckdb.connect(path, read_only=read_only))
    restrict_database(path)
    return con


def waiting_for_lock(open_database):
    """Call ``open_database()`` (a connect or an ATTACH), retrying with backoff for up to
    ``_LOCK_RETRY_SECONDS`` while another process holds the database file's lock."""
    deadline = time.monotonic() + _LOCK_RETRY_SECONDS
    delay = 0.05
    while True:
        try:
            return open_database()
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def attach_read_only(con: duckdb.DuckDBPyConnection, path: Path | str, alias: str) -> None:
    """``ATTACH`` a database file read-only as ``alias``, waiting like :func:`connect` for a writer."""
    waiting_for_lock(lambda: con.execute(f"ATTACH {sql_literal(str(path))} AS {quote(alias)} (READ_ONLY)"))


def ensure_schemas(con: duckdb.DuckDBPyConnection) -> None:
    for schema in LAYER_SCHEMAS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# ISO 8601 text that ends in a UTC offset after a time of day: "...T10:00:00+02:00", "... 10:00-0530", "...+02"
_UTC_OFFSET_SUFFIX = r"\d[T ]\d{2}:\d{2}(:\d{2}(\.\d*)?)?[+-]\d{2}(:?\d{2})?$"


def timestamp_from_text(text_sql: str) -> str:
    """SQL turning ISO 8601 text into a naive UTC TIMESTAMP, NULL if unparseable.

    Only text of the form ``value_grammar.TIMESTAMP_PATTERN`` is read (DuckDB's cast alone also
    reads ``24:00:00``, ``+99:00`` or ``epoch``). A plain ``TRY_CAST(text AS TIMESTAMP)`` drops a
    UTC offset (``10:00+02:00`` becomes 10:00); text with an offset is read as TIMESTAMPTZ and
    converted to UTC instead. Text without one (or with ``Z``) is UTC as it stands. Independent of
    the session's time zone; the same reading as the stream's ``events.parse_timestamp``.
    """
    return (
        f"CASE WHEN NOT {timestamp_text_sql(text_sql)} THEN NULL "
        f"WHEN regexp_matches({text_sql}, '{_UTC_OFFSET_SUFFIX}') "
        f"THEN CAST(TRY_CAST({text_sql} AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS TIMESTAMP) "
        f"ELSE TRY_CAST({text_sql} AS TIMESTAMP) END"
    )


def sql_literal(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema, name = qualified.split(".")
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_catalog = current_database() "
            "AND table_schema = ? AND table_name = ?",
            [schema, name],
        ).fetchone()[0]
    )


def replace_partitions(
    con: duckdb.DuckDBPyConnection,
    qualified: str,
    days: Sequence[date],
    select_sql_for_day,
    *,
    create_sql: str | None = None,
) -> dict[date, int]:
    """Delete the given days from ``qualified`` and insert ``select_sql_for_day(day)`` for each.

    Runs as one transaction: either the whole window is replaced or nothing changes. When the
    table does not exist yet it is created from ``create_sql`` (a CREATE TABLE statement) or,
    failing that, from the first day's SELECT. Returns rows inserted per day.
    """
    counts: dict[date, int] = {}
    with transaction(con):
        if not table_exists(con, qualified):
            if create_sql:
                con.execute(create_sql)
            else:
                con.execute(f"CREATE TABLE {qualified} AS {select_sql_for_day(days[0])} LIMIT 0")
        add_missing_columns(con, qualified, select_sql_for_day(days[0]))
        lo, hi = min(days), max(days)
        con.execute(
            f"DELETE FROM {qualified} WHERE _partition_date BETWEEN ? AND ?", [lo, hi]
        )
        for day in days:
            inserted = con.execute(f"INSERT INTO {qualified} BY NAME {select_sql_for_day(day)}")
            counts[day] = inserted.fetchone()[0]
    return counts


def add_missing_columns(con: duckdb.DuckDBPyConnection, qualified: str, select_sql: str) -> list[str]:
    """Additive schema evolution: add the columns a new SELECT produces that the table lacks
    (a feature added to the registry, say). Columns are never dropped: older partitions keep
    their values and new partitions leave retired columns NULL."""
    existing = {name for name, _ in table_columns(con, qualified)}
    produced = con.execute(f"DESCRIBE SELECT * FROM ({select_sql}) LIMIT 0").fetchall()
    added = []
    for name, dtype, *_ in produced:
        if name not in existing:
            con.execute(f"ALTER TABLE {qualified} ADD COLUMN {quote(name)} {dtype}")
            added.append(name)
    return added


def partition_counts(
    con: duckdb.DuckDBPyConnection, qualified: str, lo: date, hi: date
) -> dict[date, int]:
    if not table_exists(con, qualified):
        return {}
    rows = con.execute(
        f"SELECT _partition_date, count(*) FROM {qualified} "
        "WHERE _partition_date BETWEEN ? AND ? GROUP BY 1",
        [lo, hi],
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def table_columns(con: duckdb.DuckDBPyConnection, qualified: str) -> list[tuple[str, str]]:
    schema, name = qualified.split(".")
    return con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = current_database() "
        "AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [schema, name],
    ).fetchall()


def base_table_columns(con: duckdb.DuckDBPyConnection, database: str | None = None) -> dict[str, list[tuple[str, str]]]:
    """{"schema.table": [(column, type)]} of every base table (no views) of an attached database
    (default: the current one), columns in order."""
    rows = con.execute(
        "SELECT c.schema_name || '.' || c.table_name, c.column_name, c.data_type FROM duckdb_columns() c "
        "JOIN duckdb_tables() t ON t.database_name = c.database_name AND t.schema_name = c.schema_name "
        "AND t.table_name = c.table_name WHERE c.database_name = coalesce(?, current_database()) AND NOT c.internal "
        "ORDER BY 1, c.column_index",
        [database],
    ).fetchall()
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in rows:
        out.setdefault(table, []).append((column, dtype))
    return out


def compact(path: Path | str) -> tuple[int, int]:
    """Rewrite the database file so the bytes of deleted rows are gone; returns (bytes before, after).

    DuckDB marks deleted rows and reuses their blocks later, so after a DELETE (an erasure, a
    retention run) the old values can stay in the file. ``COPY FROM DATABASE`` into a fresh file
    writes only live rows (schemas, tables, views, macros and sequences included); the copy is
    fsynced and renamed over the original while this process holds the single-writer lock, so a
    reader sees either the old or the compacted file, never a half-written one.
    """
    path = Path(path)
    before = path.stat().st_size
    target = path.with_name(f".{path.name}.compacting")
    target.unlink(missing_ok=True)
    con = connect(path)
    try:
        con.execute("CHECKPOINT")
        database = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"ATTACH {sql_literal(str(target))} AS _compacted")
        restrict_database(target)
        try:
            con.execute(f"COPY FROM DATABASE {quote(database)} TO _compacted")
        finally:
            con.execute("DETACH _compacted")
        with open(target, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(target, path)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    return before, path.stat().st_size
