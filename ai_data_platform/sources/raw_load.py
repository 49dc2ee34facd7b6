"""Load landing files into ``raw.<table>`` and judge their shape (schema drift, volume).

A table's day is every file :func:`landing.landing_files` names for it (one per region for the
CRM's tables, which land in each region's zone), read as one partition: ``_row_number`` continues
across the files in region order, ``_file`` names each record's own file, schema drift (missing,
unexpected and, for Parquet, wrongly typed columns) is judged file by file.

Before a day replaces its partition, ``landing_guard`` judges it against what the partition holds,
the trailing days and the other partitions' records: a re-load that would empty or shrink the day,
or fill it with another day's records, is refused (nothing is replaced), a first load that looks
cut short, far too small or of another day is loaded and reported for the raw asset's blocking
check, unless an operator forces it (see ``landing_guard``).

Two compliance rules apply to every load. Records of erased subjects (``governance/suppression.py``)
are dropped, so no re-run or backfill brings a subject back. Tables holding personal data
(``governance/personal_data.py``) are split: the warehouse gets the record with HMAC keys in place
of names, emails and phones (computed here, once, inside DuckDB), and the personal values go to
``raw.<table>_personal`` in the store of the subject's region (``governance/residency.py``); a CRM
load also moves the data of customers whose region changed. Plain functions over a DuckDB
connection, so they are testable without Dagster.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import duckdb
import pyarrow as pa

from ai_data_platform import warehouse
from ai_data_platform.governance import residency, residency_landing, suppression
from ai_data_platform.governance.personal_data import SUBJECT_EMAIL_COLUMN, hash_column, holds_personal_data, pseudonymized_select, regional_columns
from ai_data_platform.governance.stores import RAW_PERSONAL, PersonalData
from ai_data_platform.sources import crm_database
from ai_data_platform.sources import crm_postgres as crm
from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS, SOURCE_TABLES, SourceTable
from ai_data_platform.sources import landing_belonging, landing_guard
from ai_data_platform.sources.landing import LandedFile, LandingZones, read_landing_day
from ai_data_platform.sources.landing_guard import DayVerdict, FileIntake, LoadRefused
from ai_data_platform.sources.staging import check_layout, require_personal
from ai_data_platform.sources.staging_sql import raw_ddl, raw_table

VOLUME_HISTORY_DAYS = 14
VOLUME_MIN_HISTORY = 3


@dataclass(frozen=True)
class SchemaDrift:
    missing: tuple[str, ...]
    added: tuple[str, ...]
    observed: bool = True  # False when the file had no records to observe columns from
    by_file: tuple[tuple[str, SchemaDrift], ...] = ()  # of a day's files: each drifted file's own
    retyped: tuple[tuple[str, str, str], ...] = ()  # Parquet: (column, contract type, stored type) that disagree

    @property
    def drifted(self) -> bool:
        return bool(self.missing or self.added or self.retyped)

    @property
    def failing(self) -> bool:
        """Drift the day must not pass with: a missing column or one of the wrong type (extra ones warn)."""
        return bool(self.missing or self.retyped)

    def _parts(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"missing {list(self.missing)}")
        if self.added:
            parts.append(f"unexpected {list(self.added)}")
        parts += [f"column {c} has the wrong type: expected {expected}, found {found}"
                  for c, expected, found in self.retyped]
        return "; ".join(parts)

    def describe(self, t: SourceTable, day: date) -> str:
        if not self.drifted:
            return f"{t.source}/{t.name} {day}: columns match the contract"
        if self.by_file:
            return f"schema drift in {t.source}/{t.name} {day}: " + "; ".join(f"{f}: {d._parts()}" for f, d in self.by_file)
        return f"schema drift in {t.source}/{t.name} {day}: " + self._parts()


def day_drift(per_file: list[tuple[str, SchemaDrift]]) -> SchemaDrift:
    """The drift of a day's files: the union of theirs, naming each drifted file."""
    drifted = tuple((f, d) for f, d in per_file if d.drifted)
    missing = tuple(dict.fromkeys(c for _, d in drifted for c in d.missing))
    added = tuple(sorted({c for _, d in drifted for c in d.added}))
    retyped = tuple(dict.fromkeys(r for _, d in drifted for r in d.retyped))
    return SchemaDrift(missing, added, any(d.observed for _, d in per_file), drifted, retyped)


@dataclass
class RawLoad:
    day: date
    files: tuple[str, ...]
    rows: int
    malformed: int
    drift: SchemaDrift
    extra: dict = field(default_factory=dict)
    guard: DayVerdict | None = None  # the landing guard's verdict (None: extracted from a database)


# The Parquet types a contract type's values may be stored as; an all-null (null-typed) column fits any.
_PARQUET_TYPES: dict[str, tuple[Callable[[pa.DataType], bool], ...]] = {
    "VARCHAR": (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view),
    "DOUBLE": (pa.types.is_floating, pa.types.is_integer, pa.types.is_decimal),
    "TIMESTAMP": (pa.types.is_timestamp,),
    "BOOLEAN": (pa.types.is_boolean,),
}


def parquet_type_fits(dtype: str, stored: pa.DataType) -> bool:
    """Whether a Parquet column stored as ``stored`` holds values of the contract type ``dtype``."""
    if pa.types.is_dictionary(stored):
        stored = stored.value_type
    return pa.types.is_null(stored) or any(fits(stored) for fits in _PARQUET_TYPES[dtype])


def schema_drift(t: SourceTable, landed: LandedFile) -> SchemaDrift:
    well_formed = landed.table.column("_raw_line").null_count
    if t.file_format == "jsonl" and well_formed == 0:
        # JSON-lines has no header: with no well-formed record there are no columns to compare.
        return SchemaDrift((), (), observed=False)
    observed = set(landed.observed_columns)
    expected = set(t.column_names)
    types = landed.observed_types or {}
    return SchemaDrift(
        missing=tuple(c for c in t.column_names if c not in observed),
        added=tuple(sorted(observed - expected)),
        retyped=tuple(
            (c.name, c.dtype, str(types[c.name]))
            for c in t.columns
            if c.name in types and not parquet_type_fits(c.dtype, types[c.name])
        ),
    )


PERSONAL_ROWS = "_personal_rows"


class _RawWriter:
    """Inserts landed records of one table into ``raw.<t>``: suppression, pseudonymization, and the
    personal values collected in a temp table for the regional stores (see the module docstring)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, t: SourceTable, personal: PersonalData | None):
        require_personal(t, personal)
        check_layout(con, t)
        con.execute(raw_ddl(t))
        self.con, self.t, self.personal = con, t, personal
        self.regional = holds_personal_data(t)
        self.suppressing = suppression.active(con)
        if self.suppressing and personal is None:
            raise ValueError(f"erased subjects are suppressed at raw load: {t.name} needs the HMAC key (PersonalData)")
        self.keep = (suppression.keep_condition(con, t, personal.hmac_key, hashed=self.regional)
                     if self.suppressing else "TRUE")
        if self.regional:
            cols = ", ".join(f"{warehouse.quote(n)} {ty}" for n, ty in RAW_PERSONAL[t.name].columns)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {PERSONAL_ROWS} ({cols})")

    def insert(self, records: pa.Table, day: date, file: str) -> tuple[int, int]:
        """Insert one day's records; returns (rows kept, rows of erased subjects dropped)."""
        con, t = self.con, self.t
        landed = f"(SELECT *, {warehouse.sql_literal(day)} AS _partition_date, {warehouse.sql_literal(file)} AS _file FROM _landed)"
        source = pseudonymized_select(con, t, self.personal.hmac_key, landed) if self.regional else f"SELECT * FROM {landed}"
        kind = "TABLE" if self.regional else "VIEW"  # personal tables are small; a view avoids copying the others
        con.register("_landed", records)
        try:
            con.execute(f"CREATE OR REPLACE TEMP {kind} _landed_day AS SELECT * FROM ({source}) WHERE {self.keep}")
            if self.regional:
                personal = [warehouse.quote(c.name) for c in regional_columns(t)]
                exclude = ", ".join([*personal, "_raw_line", "_raw_line_digest"])
                con.execute(
                    f"INSERT INTO {raw_table(t)} BY NAME SELECT * EXCLUDE ({exclude}), _raw_line_digest AS _raw_line, "
                    "now()::TIMESTAMP AS _loaded_at FROM _landed_day"
                )
                keys = ", ".join(warehouse.quote(n) for n, _ in RAW_PERSONAL[t.name].columns if n in (t.key, "customer_id"))
                email_hash = warehouse.quote(hash_column(SUBJECT_EMAIL_COLUMN[t.name]))
                con.execute(
                    f"INSERT INTO {PERSONAL_ROWS} BY NAME SELECT {keys}, {email_hash} AS email_hash, {', '.join(personal)}, "
                    "_raw_line, _partition_date, _file, _row_number, now()::TIMESTAMP AS _loaded_at FROM _landed_day"
                )
            else:
                con.execute(f"INSERT INTO {raw_table(t)} BY NAME SELECT *, now()::TIMESTAMP AS _loaded_at FROM _landed_day")
            kept = con.execute("SELECT count(*) FROM _landed_day").fetchone()[0]
        finally:
            con.execute(f"DROP {kind} IF EXISTS _landed_day")
            con.unregister("_landed")
        return kept, records.num_rows - kept

    def insert_stream(self, day: date, first_row: int) -> tuple[int, int, int]:
        """Insert the event-stream records received on ``day`` (issue 5), numbered after the day's
        first ``first_row`` records, with the same suppression; returns (rows kept, rows of erased
        subjects dropped, unsplittable records kept)."""
        from ai_data_platform.streaming.warehouse_sink import load_into_raw

        return load_into_raw(self.con, raw_table(self.t), self.t.column_names, day, first_row, keep=self.keep)

    def route_personal(self, days: list[date], zones: LandingZones | None = None) -> dict:
        """After the warehouse commit: write the personal values to their regional stores (and,
        for a CRM load, move the data of customers whose region changed); compact the stores rows
        moved out of. Given the landing ``zones``, also move such customers' landing records into
        their region's zone (``residency_landing.relocate``: what it moved, and what it could not
        attribute to one region and left). Returns what went where, for metadata."""
        if not self.regional:
            return {}
        con = self.con
        with self.personal.stores.attached(con) as aliases:
            residency.build_region_map(con)
            written = residency.write_routed(con, aliases, RAW_PERSONAL[self.t.name], f"SELECT * FROM {PERSONAL_ROWS}", days)
            moved = residency.rebalance(con, aliases) if self.t is CUSTOMERS else {}
            relocated = (residency_landing.relocate(con, aliases, zones, SOURCE_TABLES, self.personal.hmac_key)
                         if zones is not None else residency_landing.Relocation())
        con.execute(f"DROP TABLE {PERSONAL_ROWS}")
        for region in residency.regions_left(moved):
            warehouse.compact(self.personal.stores.paths[region])
        return {**written.metadata(), "moved_between_regions": moved, **relocated.metadata()}


def load_days(
    con: duckdb.DuckDBPyConnection,
    t: SourceTable,
    zones: LandingZones,
    days: list[date],
    personal: PersonalData | None = None,
    force: Callable[[DayVerdict], None] | None = None,
) -> list[RawLoad]:
    """Replace ``raw.<table>`` for ``days`` with their landing files (every zone's), one transaction for all.

    ``personal`` (HMAC key and regional stores) is required for tables holding personal data and
    whenever subjects have been erased; the regional stores are written after the warehouse commit.

    Each day is judged by ``landing_guard`` before its rows go in: a refused re-load raises
    :class:`LoadRefused` and nothing is replaced; a first load's findings are in ``RawLoad.guard``.
    Given ``force`` (an operator's override), a day the guard would stop is loaded anyway, after
    ``force`` was called with its verdict (the audit record; if it raises, nothing is replaced).
    """
    writer = _RawWriter(con, t, personal)
    loaded = loaded_counts(con, t, min(days), max(days))  # what the partitions hold before they are replaced
    loads: list[RawLoad] = []
    with warehouse.transaction(con):
        con.execute(
            f"DELETE FROM {raw_table(t)} WHERE _partition_date BETWEEN ? AND ?", [min(days), max(days)]
        )
        for day in days:
            landed_files = read_landing_day(t, zones.files(t, day))
            names = [zones.name(landed.path) for landed in landed_files]
            verdict = judge_day(con, t, day, list(zip(names, landed_files)), loaded.get(day, {}))
            if verdict.stopped and force is not None:
                verdict = landing_guard.forced(verdict)
                force(verdict)
            elif verdict.refusal:
                raise LoadRefused(verdict.refusal)
            kept = suppressed = malformed = records = 0
            drifts = []
            for name, landed in zip(names, landed_files):
                rows_kept, rows_suppressed = writer.insert(landed.table, day, name)
                kept, suppressed, records = kept + rows_kept, suppressed + rows_suppressed, records + landed.rows
                malformed += landed.rows - landed.well_formed
                drifts.append((name, schema_drift(t, landed)))
            extra = {}
            if t is EVENTS:  # the stream records received that day (issue 5): same rules, same conservation
                streamed, stream_suppressed, stream_malformed = writer.insert_stream(day, records)
                kept, suppressed, malformed = kept + streamed, suppressed + stream_suppressed, malformed + stream_malformed
                extra["stream_records"] = streamed
            if suppressed:
                extra["erased_subject_rows_dropped"] = suppressed
            loads.append(RawLoad(day, tuple(names), kept, malformed, day_drift(drifts), extra, verdict))
    placed = writer.route_personal(days, zones)
    for load in loads:
        if placed:
            load.extra["residency"] = placed
    return loads


# Rows the event stream put into raw.events carry ``_file = 'stream:<transport>/<segment>'``
# (``streaming/warehouse_sink``): they are not landing records and are not counted by the guard.
_LANDED_ROWS = "_file NOT LIKE 'stream:%'"


def loaded_counts(
    con: duckdb.DuckDBPyConnection, t: SourceTable, lo: date, hi: date
) -> dict[date, dict[str, tuple[int, int]]]:
    """Per day in [lo, hi] and per ``_file``: (rows, well-formed rows) that ``raw.<table>`` holds."""
    rows = con.execute(
        f"SELECT _partition_date, _file, count(*), count(*) FILTER (WHERE _raw_line IS NULL) FROM {raw_table(t)} "
        "WHERE _partition_date BETWEEN ? AND ? GROUP BY ALL",
        [lo, hi],
    ).fetchall()
    out: dict[date, dict[str, tuple[int, int]]] = {}
    for day, file, total, well_formed in rows:
        out.setdefault(day, {})[file] = (total, well_formed)
    return out


def trailing_counts(con: duckdb.DuckDBPyConnection, t: SourceTable, day: date) -> list[int]:
    """Well-formed landing rows of each loaded day among the ``VOLUME_HISTORY_DAYS`` before ``day``,
    oldest first, leaving out the table's first partition (an initial full export for some sources)."""
    table = raw_table(t)
    rows = con.execute(
        f"SELECT _partition_date, count(*) FILTER (WHERE _raw_line IS NULL) FROM {table} "
        f"WHERE _partition_date BETWEEN ? AND ? AND {_LANDED_ROWS} "
        f"AND _partition_date > (SELECT min(_partition_date) FROM {table}) GROUP BY 1 ORDER BY 1",
        [day - timedelta(days=landing_guard.VOLUME_HISTORY_DAYS), day - timedelta(days=1)],
    ).fetchall()
    return [n for _, n in rows]


def judge_day(
    con: duckdb.DuckDBPyConnection,
    t: SourceTable,
    day: date,
    landed: list[tuple[str, LandedFile]],
    loaded: dict[str, tuple[int, int]],
) -> DayVerdict:
    """The guard's verdict on ``day``'s named landing files, given what its partition held from
    each file (``loaded``, from :func:`loaded_counts`), the trailing days in ``raw.<table>`` and
    whether the files' records belong to the day (``landing_belonging``: when they are timed, and
    which of them other partitions of ``raw.<table>`` already hold)."""
    facts = landing_belonging.file_facts(con, t, day, [f for _, f in landed])
    intakes = [
        FileIntake(name, f.rows, f.well_formed, f.incomplete, *loaded.get(name, (0, 0)), times=timed, repeats=repeated)
        for (name, f), (timed, repeated) in zip(landed, facts)
    ]
    rule = landing_belonging.day_rule(con, t, day)
    return landing_guard.judge(raw_table(t), day, intakes, trailing_counts(con, t, day), rule)


def load_crm_days(
    con: duckdb.DuckDBPyConnection,
    database_url: str,
    days: list[date],
    overlap: timedelta = crm.OVERLAP,
    personal: PersonalData | None = None,
) -> list[RawLoad]:
    """Replace ``raw.customers`` for ``days`` with versions extracted from the CRM database.

    Days are extracted in order, each from its window (see ``crm_postgres``), from one
    read-only database snapshot; the raw rows and ``meta.crm_watermark`` are written in one
    warehouse transaction, so a failure anywhere leaves both as they were. Personal values go
    to the regional stores afterwards, as for files.
    """
    t = CUSTOMERS
    writer = _RawWriter(con, t, personal)
    con.execute(crm.watermark_ddl())
    label = crm.source_label(database_url)
    loads: list[RawLoad] = []
    with crm_database.snapshot(database_url) as pg:
        present = crm_database.table_columns(pg)
        missing, added = crm.column_drift(present)
        drift = SchemaDrift(missing, added)
        with warehouse.transaction(con):
            for table in (raw_table(t), crm.WATERMARK_TABLE):
                con.execute(f"DELETE FROM {table} WHERE _partition_date BETWEEN ? AND ?", [min(days), max(days)])
            for day in sorted(days):
                previous = con.execute(crm.previous_watermark_sql(), [day]).fetchone()[0]
                window = crm.extract_window(day, previous, overlap)
                extracted = crm_database.fetch_versions(pg, window, present)
                loaded = con.execute(*crm.loaded_versions_sql(window)).fetchall()
                versions = crm.new_versions(extracted, loaded)
                kept, suppressed = writer.insert(crm.raw_records(versions), day, label)
                con.execute(
                    f"INSERT INTO {crm.WATERMARK_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
                    [day, crm.advance_watermark(previous, versions), window.lower, window.upper, len(extracted), len(versions), label],
                )
                extra = {"window": window.describe(), "extracted": len(extracted)}
                if suppressed:
                    extra["erased_subject_rows_dropped"] = suppressed
                loads.append(RawLoad(day, (label,), kept, 0, drift, extra))
    placed = writer.route_personal(days)
    for load in loads:
        if placed:
            load.extra["residency"] = placed
    return loads


@dataclass(frozen=True)
class VolumeVerdict:
    day: date
    rows: int
    median: float | None
    low: float | None
    high: float | None
    history: int

    @property
    def anomalous(self) -> bool:
        return self.median is not None and not (self.low <= self.rows <= self.high)

    def describe(self, table: str) -> str:
        if self.median is None:
            return f"{table} {self.day}: {self.rows} rows; only {self.history} earlier partitions, no baseline yet"
        verdict = "outside" if self.anomalous else "within"
        return (
            f"{table} {self.day}: {self.rows} rows, {verdict} the expected band "
            f"[{self.low:.0f}, {self.high:.0f}] (median of the trailing {self.history} partitions {self.median:.0f})"
        )


def volume_band(history: list[int]) -> tuple[float, float, float]:
    """Median of the trailing counts and a band around it wide enough for small-count noise."""
    med = statistics.median(history)
    slack = 3 * math.sqrt(med) + 5
    return med, max(0.0, 0.5 * med - slack), 2.0 * med + slack


def volume_verdict(con: duckdb.DuckDBPyConnection, qualified: str, day: date) -> VolumeVerdict:
    lo = day - timedelta(days=VOLUME_HISTORY_DAYS)
    counts = warehouse.partition_counts(con, qualified, lo, day)
    rows = counts.pop(day, 0)
    # The first partition is an initial full export for some sources: not a baseline for a day.
    history = [counts[d] for d in sorted(counts) if d < day]
    if len(history) < VOLUME_MIN_HISTORY:
        return VolumeVerdict(day, rows, None, None, None, len(history))
    med, low, high = volume_band(history)
    return VolumeVerdict(day, rows, med, low, high, len(history))
