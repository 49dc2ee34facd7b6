"""Whether a day's landing records belong to the day: the facts ``landing_guard`` judges, computed in
DuckDB over the records as they landed, before anything of the day is replaced. :func:`file_facts`
registers a day's files once and gives, per file:

* :func:`record_times`: per file, how many well-formed records have a valid event time, how many of
  them are timed on the day, and how many within the contract's lateness before it. Times are read
  exactly as staging reads them (trimmed, ``warehouse.timestamp_from_text``, valid in
  ``[2000-01-01, day + 2 days)``, staging's ``invalid_timestamp`` range).
* :func:`key_repeats`: per file, how many distinct records (the contract's ``identity``: the key, and
  the version time for a table whose key recurs; trimmed as staging trims ids) other partitions of
  ``raw.<table>`` already hold, and which partitions. Inside a load's transaction the partitions
  being replaced are already deleted, so a day is never compared with itself.

:func:`day_rule` gives the contract's rule for the day: a table whose first file may be an initial
full export is not judged by time on its first partition (no earlier partition loaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import duckdb
import pyarrow as pa

from ai_data_platform.sources.contracts import EARLIEST_VALID_TIME, SourceTable
from ai_data_platform.sources.landing import LandedFile
from ai_data_platform.sources.landing_guard import DayRule, KeyRepeats, RecordTimes
from ai_data_platform.sources.staging_sql import raw_table
from ai_data_platform.warehouse import quote, timestamp_from_text

RECORDS = "_guard_records"  # the day's records (identity and time columns), registered for the queries
OTHER_DAYS_NAMED = 3  # partitions named in a finding, those holding most of the repeated records first


def day_rule(con: duckdb.DuckDBPyConnection, t: SourceTable, day: date) -> DayRule:
    """What ``t``'s ``day`` may hold, by its contract (see the module docstring)."""
    full_export = t.first_export_full and not con.execute(
        f"SELECT EXISTS (SELECT 1 FROM {raw_table(t)} WHERE _partition_date < ?)", [day]
    ).fetchall()[0][0]
    return DayRule(t.time_column, t.late_days, full_export, t.identity)


def _time(column_sql: str) -> str:
    return timestamp_from_text(f"nullif(trim({column_sql}), '')")


def _identity(t: SourceTable, alias: str) -> list[str]:
    """SQL of each identity column of ``alias``'s rows, as staging types it."""
    return [
        _time(f"{alias}.{quote(c)}") if c == t.time_column else f"nullif(trim({alias}.{quote(c)}), '')"
        for c in t.identity
    ]


def file_facts(
    con: duckdb.DuckDBPyConnection, t: SourceTable, day: date, landed: Sequence[LandedFile]
) -> list[tuple[RecordTimes, KeyRepeats]]:
    """Per file of ``landed`` (one day's files, in order): when its well-formed records are timed
    (:func:`record_times`) and how many of them other partitions hold (:func:`key_repeats`)."""
    if not any(f.well_formed for f in landed):
        return [(RecordTimes(0, 0, 0), KeyRepeats(0)) for _ in landed]
    columns = list(dict.fromkeys([*t.identity, t.time_column, "_raw_line"]))
    parts = [
        f.table.select(columns).append_column("_file_index", pa.array([i] * f.rows, pa.int32()))
        for i, f in enumerate(landed)
    ]
    con.register(RECORDS, pa.concat_tables(parts))
    try:
        return list(zip(record_times(con, t, day, len(landed)), key_repeats(con, t, day, len(landed))))
    finally:
        con.unregister(RECORDS)


def record_times(con: duckdb.DuckDBPyConnection, t: SourceTable, day: date, files: int) -> list[RecordTimes]:
    """Per file of the day's records registered as :data:`RECORDS` (``_file_index`` 0 .. ``files`` - 1):
    how many well-formed records have a valid time, are timed on ``day``, and within the lateness before it."""
    start, end, late = day, day + timedelta(days=1), day - timedelta(days=t.late_days)
    on_day = "ts >= CAST($start AS TIMESTAMP) AND ts < CAST($end AS TIMESTAMP)"
    rows = con.execute(
        f"""
        WITH timed AS (
            SELECT _file_index, {_time(quote(t.time_column))} AS ts FROM {RECORDS} WHERE _raw_line IS NULL
        )
        SELECT _file_index, count(*), count(*) FILTER (WHERE {on_day}),
               count(*) FILTER (WHERE ts >= CAST($late AS TIMESTAMP) AND ts < CAST($start AS TIMESTAMP)),
               min(ts) FILTER (WHERE NOT ({on_day})), max(ts) FILTER (WHERE NOT ({on_day}))
        FROM timed
        WHERE ts >= TIMESTAMP '{EARLIEST_VALID_TIME}' AND ts < CAST($start AS TIMESTAMP) + INTERVAL 2 DAY
        GROUP BY 1
        """,
        {"start": start, "end": end, "late": late},
    ).fetchall()
    by_file = {i: RecordTimes(judged, on, late_n, earliest, latest) for i, judged, on, late_n, earliest, latest in rows}
    return [by_file.get(i, RecordTimes(0, 0, 0)) for i in range(files)]


def key_repeats(con: duckdb.DuckDBPyConnection, t: SourceTable, day: date, files: int) -> list[KeyRepeats]:
    """Per file of the day's records registered as :data:`RECORDS`: its distinct records, and how
    many of them partitions of ``raw.<t>`` other than ``day`` hold (those partitions, most first)."""
    names = [f"k{i}" for i in range(len(t.identity))]
    mine = ", ".join(f"{expr} AS {n}" for expr, n in zip(_identity(t, "m"), names))
    present = " AND ".join(f"{n} IS NOT NULL" for n in names)
    match = " AND ".join(f"{expr} = mine.{n}" for expr, n in zip(_identity(t, "r"), names))
    keys = ", ".join(f"mine.{n}" for n in names)
    rows = con.execute(
        f"""
        WITH mine AS (
            SELECT DISTINCT * FROM (SELECT _file_index, {mine} FROM {RECORDS} m WHERE _raw_line IS NULL)
            WHERE {present}
        ),
        hits AS (
            SELECT DISTINCT mine._file_index, {keys}, r._partition_date AS d
            FROM {raw_table(t)} r JOIN mine ON {match} WHERE r._partition_date <> $day
        ),
        repeated AS (SELECT _file_index, count(*) AS n FROM (SELECT DISTINCT * EXCLUDE (d) FROM hits) GROUP BY 1),
        per_day AS (SELECT _file_index, d, count(*) AS n FROM hits GROUP BY ALL),
        counted AS (SELECT _file_index, count(*) AS n FROM mine GROUP BY 1)
        SELECT counted._file_index, counted.n, coalesce(repeated.n, 0),
               (SELECT list([strftime(p.d, '%Y-%m-%d'), CAST(p.n AS VARCHAR)] ORDER BY p.n DESC, p.d)
                FROM per_day p WHERE p._file_index = counted._file_index)
        FROM counted LEFT JOIN repeated USING (_file_index)
        """,
        {"day": day},
    ).fetchall()
    by_file = {
        i: KeyRepeats(n, repeated, tuple((date.fromisoformat(d), int(c)) for d, c in (days or [])[:OTHER_DAYS_NAMED]))
        for i, n, repeated, days in rows
    }
    return [by_file.get(i, KeyRepeats(0)) for i in range(files)]
