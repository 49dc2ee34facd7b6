"""Stage days of a source table: parse, validate, deduplicate, quarantine, pseudonymize.

Plain functions over a DuckDB connection (the SQL comes from ``staging_sql``), testable without
Dagster. Staging a window deletes and rewrites that window in ``staging`` and ``quarantine`` inside
one transaction. For the tables holding personal data it then writes the regional outputs, each
row in the store of its subject's region (``governance/residency.py``): ``identity.customer_pii``
for customers and ``quarantine.<table>_personal`` (one transaction per store).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date

import duckdb
import pandas as pd

from ai_data_platform import warehouse
from ai_data_platform.governance import residency
from ai_data_platform.governance.personal_data import holds_personal_data, is_regional, warehouse_raw_columns
from ai_data_platform.governance.stores import IDENTITY, QUARANTINE_PERSONAL, RAW_PERSONAL, PersonalData, union_sql
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
    residency: dict = field(default_factory=dict)  # the window's regional writes (tables holding personal data)

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


class LegacyPersonalLayout(RuntimeError):
    """The warehouse was built before personal data moved to the regional stores."""


def check_layout(con: duckdb.DuckDBPyConnection, t: SourceTable) -> None:
    """Refuse a ``raw.<t>`` created before residency (it holds personal columns in the warehouse)."""
    if not holds_personal_data(t) or not warehouse.table_exists(con, sql.raw_table(t)):
        return
    present = {c for c, _ in warehouse.table_columns(con, sql.raw_table(t))}
    personal = sorted(c.name for c in t.columns if is_regional(t, c.name) and c.name in present)
    if personal or not set(warehouse_raw_columns(t)) <= present:
        raise LegacyPersonalLayout(
            f"{sql.raw_table(t)} was created by an earlier version that kept personal data ({', '.join(personal) or 'unhashed columns'}) "
            "in the main warehouse. Personal data now lives in the regional stores: rebuild the CRM tables from the "
            "landing files (delete the warehouse file, or drop raw/staging/quarantine customers and support_tickets "
            "and identity.customer_pii) and re-materialize."
        )


def ensure_tables(con: duckdb.DuckDBPyConnection, t: SourceTable) -> None:
    check_layout(con, t)
    con.execute(sql.raw_ddl(t))
    con.execute(sql.staging_ddl(t))
    con.execute(sql.quarantine_ddl(t))


def require_personal(t: SourceTable, personal: PersonalData | None) -> None:
    if holds_personal_data(t) and personal is None:
        raise ValueError(
            f"{t.source}/{t.name} holds personal data: pass the regional stores (PersonalData) so it is stored "
            "in its subjects' regions, never in the main warehouse"
        )


def ensure_all_tables(con: duckdb.DuckDBPyConnection, tables) -> None:
    for t in tables:
        ensure_tables(con, t)


def stage_days(
    con: duckdb.DuckDBPyConnection, t: SourceTable, days: list[date], personal: PersonalData | None = None
) -> list[StagedDay]:
    require_personal(t, personal)
    ensure_tables(con, CUSTOMERS)
    ensure_tables(con, t)
    targets = [sql.staging_table(t), sql.quarantine_table(t)]
    regional = holds_personal_data(t)
    results: list[StagedDay] = []
    attached = personal.stores.attached(con) if regional else nullcontext({})
    with attached as aliases:
        outputs = []  # (regional table, temp table collecting its rows, SELECT for a day)
        if regional:
            outputs.append((QUARANTINE_PERSONAL[t.name], "_quarantine_personal_rows", sql.quarantine_personal_select))
            if t is CUSTOMERS:
                outputs.append((IDENTITY, "_identity_rows", lambda _t, rows: sql.identity_select(rows)))
        with warehouse.transaction(con):
            for target in targets:
                con.execute(f"DELETE FROM {target} WHERE _partition_date BETWEEN ? AND ?", [min(days), max(days)])
            for day in days:
                con.execute(f"CREATE OR REPLACE TEMP TABLE {sql.JUDGED_TEMP} AS {sql.judged_sql(t, day)}")
                staged = con.execute(f"INSERT INTO {sql.staging_table(t)} BY NAME {sql.staged_select(t)}").fetchone()[0]
                quarantined = con.execute(
                    f"INSERT INTO {sql.quarantine_table(t)} BY NAME {sql.quarantine_select(t)}"
                ).fetchone()[0]
                if regional:
                    day_rows = (
                        f"SELECT * FROM ({union_sql(RAW_PERSONAL[t.name], aliases)}) "
                        f"WHERE _partition_date = {warehouse.sql_literal(day)}"
                    )
                    for _, temp, select in outputs:
                        verb = "INSERT INTO" if day != days[0] else "CREATE OR REPLACE TEMP TABLE"
                        con.execute(f"{verb} {temp} {'AS ' if day == days[0] else ''}{select(t, day_rows)}")
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
        if regional:
            residency.build_region_map(con)
            written = {}
            for table, temp, _ in outputs:
                written[table.name] = residency.write_routed(con, aliases, table, f"SELECT * FROM {temp}", days).metadata()
                con.execute(f"DROP TABLE {temp}")
            for r in results:
                r.residency = written
    return results


def conservation(con: duckdb.DuckDBPyConnection, t: SourceTable, lo: date, hi: date) -> list[Conservation]:
    """Row conservation per day, recounted from the stored raw, staging and quarantine tables."""
    rows = con.execute(sql.conservation_sql(t, lo, hi)).fetchall()
    return [Conservation(r[0], r[1], r[2], r[3], r[4]) for r in rows]


@dataclass(frozen=True)
class RepeatedKeys:
    """A staged day's distinct records (``SourceTable.identity``) and how many other partitions also hold."""

    day: date
    keys: int
    repeated: int
    elsewhere: tuple[tuple[date, int], ...]  # the other partitions holding them, most first

    def describe(self, t: SourceTable) -> str:
        where = ", ".join(f"{d} ({n})" for d, n in self.elsewhere[:REPEATS_NAMED])
        more = f" and {len(self.elsewhere) - REPEATS_NAMED} more day(s)" if len(self.elsewhere) > REPEATS_NAMED else ""
        return (
            f"{sql.staging_table(t)} partition {self.day}: {self.repeated} of {self.keys} distinct record(s) "
            f"({' + '.join(t.identity)}) are also staged on {where}{more}"
        )


REPEATS_NAMED = 5  # other partitions a message names


def repeated_keys(con: duckdb.DuckDBPyConnection, t: SourceTable, lo: date, hi: date) -> list[RepeatedKeys]:
    """Per staged day in [lo, hi]: its records that other partitions of ``staging.<t>`` also hold
    (a record is ``t.identity``; a day re-staged replaces its own partition, so it never repeats itself)."""
    rows = con.execute(sql.repeated_keys_sql(t, lo, hi)).fetchall()
    return [
        RepeatedKeys(d, n, repeated, tuple((date.fromisoformat(o), int(c)) for o, c in (others or [])))
        for d, n, repeated, others in rows
    ]


def candidate_rows(
    con: duckdb.DuckDBPyConnection,
    t: SourceTable,
    day: date,
    columns: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The day's de-duplicated rows parsed to their contract types, before any rule removes them.

    This is what the quality gate validates: a Great Expectations suite with ``mostly``
    thresholds sees the bad values themselves (and can show them), not just their absence.
    ``columns`` narrows the frame to what the suite reads (plus ``malformed``; and
    ``customer_known`` where the table references customers). Direct-PII columns are never
    included (nor are personal free-text columns, which are not in the warehouse at all): a gate's
    sample of offending values must not leak them.
    """
    wanted = set(columns) if columns is not None else None
    cols = [
        f"{sql.typed(c.name)} AS {warehouse.quote(c.name)}"
        for c in t.columns
        if c.pii != PII_DIRECT and not is_regional(t, c.name) and (wanted is None or c.name in wanted)
    ]
    if t.customer_ref is not None and (wanted is None or "customer_known" in wanted):
        cols.append("(_violation IS NULL OR _violation.rule <> 'known_customer') AS customer_known")
    cols.append("_raw_line IS NOT NULL AS malformed")
    query = (
        f"WITH j AS ({sql.judged_sql(t, day)}) "
        f"SELECT {', '.join(cols)} FROM j WHERE _copy = 1 ORDER BY _row_number"
    )
    return con.execute(query).df()
