"""Stage days of a source table: parse, validate, deduplicate, quarantine, pseudonymize.

Plain functions over a DuckDB connection (the SQL comes from ``staging_sql``), testable without
Dagster. Staging a window deletes and rewrites that window in ``staging``, ``quarantine`` (and,
for customers, ``identity``) inside one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import duckdb
import pandas as pd

from ai_data_platform import warehouse
from ai_data_platform.sources import staging_sql as sql
from ai_data_platform.sources.contracts import CUSTOMERS, PII_DIRECT, SourceTable


@dataclass
class StagedDay:
    day: date
    raw: int
    staged: int
    quarantined: int
    duplicates: int
    rules: dict[str, int] = field(default_factory=dict)

    @property
    def conserved(self) -> bool:
        return self.raw == self.staged + self.quarantined + self.duplicates


@dataclass(frozen=True)
class Conservation:
    day: date
    raw: int
    distinct: int
    staged: int
    quarantined: int

    @property
    def duplicates(self) -> int:
        return self.raw - self.distinct

    @property
    def holds(self) -> bool:
        return self.raw == self.staged + self.quarantined + self.duplicates

    def describe(self, table: str) -> str:
        return (
            f"{table} {self.day}: raw {self.raw} = staged {self.staged} + quarantined "
            f"{self.quarantined} + duplicates {self.duplicates}"
            + ("" if self.holds else f"  -> {self.raw - self.staged - self.quarantined - self.duplicates} rows unaccounted for")
        )


def ensure_tables(con: duckdb.DuckDBPyConnection, t: SourceTable) -> None:
    con.execute(sql.raw_ddl(t))
    con.execute(sql.staging_ddl(t))
    con.execute(sql.quarantine_ddl(t))
    if t is CUSTOMERS:
        con.execute(sql.identity_ddl())


def ensure_all_tables(con: duckdb.DuckDBPyConnection, tables) -> None:
    for t in tables:
        ensure_tables(con, t)


def stage_days(
    con: duckdb.DuckDBPyConnection, t: SourceTable, days: list[date], hmac_key: str
) -> list[StagedDay]:
    ensure_tables(con, CUSTOMERS)
    ensure_tables(con, t)
    targets = [sql.staging_table(t), sql.quarantine_table(t)]
    if t is CUSTOMERS:
        targets.append(sql.IDENTITY_TABLE)
    results: list[StagedDay] = []
    with warehouse.transaction(con):
        for target in targets:
            con.execute(
                f"DELETE FROM {target} WHERE _partition_date BETWEEN ? AND ?", [min(days), max(days)]
            )
        for day in days:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {sql.JUDGED_TEMP} AS {sql.judged_sql(t, day, hmac_key)}")
            staged = con.execute(
                f"INSERT INTO {sql.staging_table(t)} BY NAME {sql.staged_select(t, hmac_key)}"
            ).fetchone()[0]
            quarantined = con.execute(
                f"INSERT INTO {sql.quarantine_table(t)} BY NAME {sql.quarantine_select(t)}"
            ).fetchone()[0]
            if t is CUSTOMERS:
                con.execute(f"INSERT INTO {sql.IDENTITY_TABLE} BY NAME {sql.identity_select(hmac_key)}")
            raw = con.execute(f"SELECT count(*) FROM {sql.JUDGED_TEMP}").fetchone()[0]
            duplicates = con.execute(sql.duplicate_count_sql()).fetchone()[0]
            rules = dict(
                con.execute(
                    f"SELECT _violation.rule, count(*) FROM {sql.JUDGED_TEMP} "
                    "WHERE _copy = 1 AND _violation IS NOT NULL GROUP BY 1 ORDER BY 1"
                ).fetchall()
            )
            results.append(StagedDay(day, raw, staged, quarantined, duplicates, rules))
        con.execute(f"DROP TABLE IF EXISTS {sql.JUDGED_TEMP}")
    return results


def conservation(con: duckdb.DuckDBPyConnection, t: SourceTable, lo: date, hi: date) -> list[Conservation]:
    """Row conservation per day, recounted from the stored raw, staging and quarantine tables."""
    rows = con.execute(sql.conservation_sql(t, lo, hi)).fetchall()
    return [Conservation(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def candidate_rows(
    con: duckdb.DuckDBPyConnection,
    t: SourceTable,
    day: date,
    hmac_key: str,
    columns: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The day's de-duplicated rows parsed to their contract types, before any rule removes them.

    This is what the quality gate validates: a Great Expectations suite with ``mostly``
    thresholds sees the bad values themselves (and can show them), not just their absence.
    ``columns`` narrows the frame to what the suite reads (plus ``malformed``; and
    ``customer_known`` where the table references customers). Direct-PII columns are never
    included: a gate's sample of offending values must not leak them.
    """
    wanted = set(columns) if columns is not None else None
    cols = [
        f"{sql.typed(c.name)} AS {warehouse.quote(c.name)}"
        for c in t.columns
        if c.pii != PII_DIRECT and (wanted is None or c.name in wanted)
    ]
    if t.customer_ref is not None and (wanted is None or "customer_known" in wanted):
        cols.append("(_violation IS NULL OR _violation.rule <> 'known_customer') AS customer_known")
    cols.append("_raw_line IS NOT NULL AS malformed")
    query = (
        f"WITH j AS ({sql.judged_sql(t, day, hmac_key)}) "
        f"SELECT {', '.join(cols)} FROM j WHERE _copy = 1 ORDER BY _row_number"
    )
    return con.execute(query).df()
