"""Load landing files into ``raw.<table>`` and judge their shape (schema drift, volume).

Plain functions over a DuckDB connection, so they are testable without Dagster.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb

from ai_data_platform import warehouse
from ai_data_platform.sources import crm_database
from ai_data_platform.sources import crm_postgres as crm
from ai_data_platform.sources.contracts import CUSTOMERS, SourceTable
from ai_data_platform.sources.landing import LandedFile, read_landing_file
from ai_data_platform.sources.staging_sql import raw_ddl, raw_table

VOLUME_HISTORY_DAYS = 14
VOLUME_MIN_HISTORY = 3


@dataclass(frozen=True)
class SchemaDrift:
    missing: tuple[str, ...]
    added: tuple[str, ...]
    observed: bool = True  # False when the file had no records to observe columns from

    @property
    def drifted(self) -> bool:
        return bool(self.missing or self.added)

    def describe(self, t: SourceTable, day: date) -> str:
        if not self.drifted:
            return f"{t.source}/{t.name} {day}: columns match the contract"
        parts = []
        if self.missing:
            parts.append(f"missing {list(self.missing)}")
        if self.added:
            parts.append(f"unexpected {list(self.added)}")
        return f"schema drift in {t.source}/{t.name} {day}: " + "; ".join(parts)


@dataclass
class RawLoad:
    day: date
    file: str
    rows: int
    malformed: int
    drift: SchemaDrift
    extra: dict = field(default_factory=dict)


def schema_drift(t: SourceTable, landed: LandedFile) -> SchemaDrift:
    well_formed = landed.table.column("_raw_line").null_count
    if t.file_format == "jsonl" and well_formed == 0:
        # JSON-lines has no header: with no well-formed record there are no columns to compare.
        return SchemaDrift((), (), observed=False)
    observed = set(landed.observed_columns)
    expected = set(t.column_names)
    return SchemaDrift(
        missing=tuple(c for c in t.column_names if c not in observed),
        added=tuple(sorted(observed - expected)),
    )


def load_days(
    con: duckdb.DuckDBPyConnection, t: SourceTable, landing_root: Path, days: list[date]
) -> list[RawLoad]:
    """Replace ``raw.<table>`` for ``days`` with the landing files, one transaction for all."""
    con.execute(raw_ddl(t))
    loads: list[RawLoad] = []
    with warehouse.transaction(con):
        con.execute(
            f"DELETE FROM {raw_table(t)} WHERE _partition_date BETWEEN ? AND ?", [min(days), max(days)]
        )
        for day in days:
            path = t.landing_file(landing_root, day)
            landed = read_landing_file(t, path)
            relative = path.relative_to(landing_root).as_posix()
            con.register("_landed", landed.table)
            try:
                con.execute(
                    f"INSERT INTO {raw_table(t)} BY NAME SELECT *, ?::DATE AS _partition_date, "
                    "?::VARCHAR AS _file, now()::TIMESTAMP AS _loaded_at FROM _landed",
                    [day, relative],
                )
            finally:
                con.unregister("_landed")
            malformed = landed.rows - landed.table.column("_raw_line").null_count
            extra = {}
            if t.name == "events":  # the stream records received that day (issue 5): same rules, same conservation
                from ai_data_platform.streaming.warehouse_sink import load_into_raw

                extra["stream_records"] = load_into_raw(con, raw_table(t), t.column_names, day)
            loads.append(RawLoad(day, relative, landed.rows + extra.get("stream_records", 0), malformed, schema_drift(t, landed), extra))
    return loads


def load_crm_days(
    con: duckdb.DuckDBPyConnection, database_url: str, days: list[date], overlap: timedelta = crm.OVERLAP
) -> list[RawLoad]:
    """Replace ``raw.customers`` for ``days`` with versions extracted from the CRM database.

    Days are extracted in order, each from its window (see ``crm_postgres``), from one
    read-only database snapshot; the raw rows and ``meta.crm_watermark`` are written in one
    warehouse transaction, so a failure anywhere leaves both as they were.
    """
    t = CUSTOMERS
    con.execute(raw_ddl(t))
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
                con.register("_extracted", crm.raw_records(versions))
                try:
                    con.execute(
                        f"INSERT INTO {raw_table(t)} BY NAME SELECT *, ?::DATE AS _partition_date, "
                        "?::VARCHAR AS _file, now()::TIMESTAMP AS _loaded_at FROM _extracted",
                        [day, label],
                    )
                finally:
                    con.unregister("_extracted")
                con.execute(
                    f"INSERT INTO {crm.WATERMARK_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
                    [day, crm.advance_watermark(previous, versions), window.lower, window.upper, len(extracted), len(versions), label],
                )
                extra = {"window": window.describe(), "extracted": len(extracted)}
                loads.append(RawLoad(day, label, len(versions), 0, drift, extra))
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
