"""Data residency: which region's store a personal record belongs in, writing it there, moving it
when its subject moves, and proving from the data that nothing is stored outside its region.

**Region of a subject.** A customer's region is the ``region`` of their latest CRM row (by
``updated_at``, then export day and row) whose region and ``updated_at`` are valid, over every
loaded ``raw.customers`` partition: a customer who moves has one current region, and all their
personal data follows it. A support ticket belongs to the customer whose latest CRM row carries
its email (through the email HMAC). A record whose region cannot be determined (no customer id
and no known email, an unsplittable line, a customer never seen with a valid region) goes to the
default store, ``stores.DEFAULT_REGION`` (EU, the strictest regime), and is counted and listed
(by file and row, never by value) in the writing asset's metadata.

**Moves.** ``rebalance`` moves every personal row whose subject's current region differs from the
store holding it into the right store: copied first (idempotently, by row key), then deleted from
the old store, each store in its own transaction; the stores rows left are compacted afterwards
(``warehouse.compact``) so the old bytes are gone too.

**The check** (``violations``): (1) placement: every row of every personal table in store R
belongs to a subject of region R; (2) the main warehouse holds none of the direct identifiers
(names, emails, phones) found in any store, in any text column of any table; (3) any other table
of a regional store holds no identifier (customer id, name, email, phone, email HMAC) of a subject
of another region; (4) no landing file of a region's zone holds another region's subjects' names,
emails or phones, and no file of the shared zone any (``residency_landing.py``). Each finding
names the store (or zone), its file, the table (and column) and the count.
Pure DuckDB over one connection with the stores attached; no Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from ai_data_platform import warehouse
from ai_data_platform.governance.stores import DEFAULT_REGION, PERSONAL_TABLES, PersonalTable
from ai_data_platform.sources.contracts import REGIONS
from ai_data_platform.sources.landing import LandingZones

SUBJECT_REGION = "_subject_region"
EMAIL_REGION = "_email_region"
_VALID = ", ".join(warehouse.sql_literal(r) for r in REGIONS)
_LISTED_DEFAULTS = 20
_FREE_FORM = {"raw_value", "raw_record", "_raw_line"}
_TEXT_TYPES = ("VARCHAR", "JSON")


def valid_crm_rows_sql() -> str:
    """``raw.customers`` rows that can place a subject: a customer id, a valid region and
    ``updated_at`` (with ``_order``, their order in the CRM's history)."""
    updated_at = warehouse.timestamp_from_text("trim(updated_at)")
    return (
        "SELECT nullif(trim(customer_id), '') AS customer_id, trim(region) AS region, email_hash, "
        f"({updated_at}, _partition_date, _row_number) AS _order FROM raw.customers "
        f"WHERE trim(region) IN ({_VALID}) AND nullif(trim(customer_id), '') IS NOT NULL "
        f"AND ({updated_at}) IS NOT NULL"
    )


def build_region_map(con: duckdb.DuckDBPyConnection) -> None:
    """Temp tables: ``_subject_region`` (customer_id -> region) and ``_email_region``
    (email_hash -> region of the customer whose latest CRM row carries it), from ``raw.customers``."""
    if not warehouse.table_exists(con, "raw.customers"):
        con.execute(f"CREATE OR REPLACE TEMP TABLE {SUBJECT_REGION} (customer_id VARCHAR, region VARCHAR)")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {EMAIL_REGION} (email_hash VARCHAR, region VARCHAR)")
        return
    valid_rows = valid_crm_rows_sql()
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {SUBJECT_REGION} AS SELECT customer_id, arg_max(region, _order) AS region "
        f"FROM ({valid_rows}) GROUP BY customer_id"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {EMAIL_REGION} AS SELECT e.email_hash, s.region FROM ("
        f"SELECT email_hash, arg_max(customer_id, _order) AS customer_id FROM ({valid_rows}) "
        f"WHERE email_hash IS NOT NULL GROUP BY email_hash) e JOIN {SUBJECT_REGION} s USING (customer_id)"
    )


def routed_sql(relation: str, table: PersonalTable) -> str:
    """``relation``'s rows with ``_region`` (where they belong) and ``_defaulted`` (no region found).
    Needs :func:`build_region_map` first."""
    cid = f"nullif(trim(CAST(p.{table.customer_id} AS VARCHAR)), '')" if table.customer_id else "NULL"
    return (
        f"SELECT p.*, coalesce(sr.region, er.region, '{DEFAULT_REGION}') AS _region, "
        "(sr.region IS NULL AND er.region IS NULL) AS _defaulted "
        f"FROM ({relation}) p LEFT JOIN {SUBJECT_REGION} sr ON sr.customer_id = {cid} "
        f"LEFT JOIN {EMAIL_REGION} er ON er.email_hash = p.{table.email_hash}"
    )


@dataclass
class RoutedWrite:
    """What one write of personal rows put where."""

    table: str
    rows_by_region: dict[str, int]
    defaulted: int = 0
    defaulted_records: list[str] = field(default_factory=list)  # "file#row", never values

    def metadata(self) -> dict:
        return {
            "rows_by_region": self.rows_by_region,
            "default_region": DEFAULT_REGION,
            "rows_in_default_region_unresolved": self.defaulted,
            "unresolved_records": self.defaulted_records,
        }


def _columns(table: PersonalTable) -> str:
    return ", ".join(warehouse.quote(n) for n, _ in table.columns)


def write_routed(
    con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], table: PersonalTable, relation: str, days: list[date]
) -> RoutedWrite:
    """Replace ``days`` of ``table`` in every store with ``relation``'s rows, each in its region's store."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _routed AS {routed_sql(relation, table)}")
    counts: dict[str, int] = {}
    for region, a in aliases.items():
        with warehouse.transaction(con):
            con.execute(f"DELETE FROM {a}.{table.name} WHERE _partition_date BETWEEN ? AND ?", [min(days), max(days)])
            counts[region] = con.execute(
                f"INSERT INTO {a}.{table.name} BY NAME SELECT {_columns(table)} FROM _routed WHERE _region = ?", [region]
            ).fetchone()[0]
    defaulted = con.execute(
        "SELECT count(*), list(_file || '#' || _row_number ORDER BY _partition_date, _row_number) FROM _routed WHERE _defaulted"
    ).fetchone()
    con.execute("DROP TABLE _routed")
    return RoutedWrite(table.name, counts, defaulted[0], list(defaulted[1] or [])[:_LISTED_DEFAULTS])


def rebalance(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str]) -> dict[str, int]:
    """Move every personal row whose subject's region is not its store's into the right store.

    Returns ``{"<table> <FROM>-><TO>": rows}``. Copy first (skipping rows the target already has,
    so a retry after a crash between the two steps is safe), then delete from the old store.
    Needs :func:`build_region_map` first.
    """
    moved: dict[str, int] = {}
    for table in PERSONAL_TABLES:
        for src_region, src in aliases.items():
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _moving AS SELECT * FROM ({routed_sql(f'SELECT * FROM {src}.{table.name}', table)}) "
                "WHERE _region <> ?",
                [src_region],
            )
            by_target = con.execute("SELECT _region, count(*) FROM _moving GROUP BY 1 ORDER BY 1").fetchall()
            for dst_region, n in by_target:
                dst = aliases[dst_region]
                with warehouse.transaction(con):
                    con.execute(
                        f"INSERT INTO {dst}.{table.name} BY NAME SELECT {_columns(table)} FROM _moving m WHERE _region = ? "
                        f"AND NOT EXISTS (SELECT 1 FROM {dst}.{table.name} d WHERE d._partition_date = m._partition_date "
                        "AND d._row_number = m._row_number)",
                        [dst_region],
                    )
                moved[f"{table.name} {src_region}->{dst_region}"] = n
            if by_target:
                with warehouse.transaction(con):
                    con.execute(
                        f"DELETE FROM {src}.{table.name} s WHERE EXISTS (SELECT 1 FROM _moving m "
                        "WHERE m._partition_date = s._partition_date AND m._row_number = s._row_number)"
                    )
    con.execute("DROP TABLE IF EXISTS _moving")
    return moved


def regions_left(moved: Mapping[str, int]) -> set[str]:
    """The regions whose stores rows were moved out of (to compact)."""
    return {key.split(" ")[1].split("->")[0] for key, n in moved.items() if n}


# ---------------------------------------------------------------- the check


LANDING_ZONE = "landing:"  # Violation.store of a landing zone: "landing:<REGION>" or "landing:shared"


@dataclass(frozen=True)
class Violation:
    store: str  # a region, "main" for the cross-region warehouse, or LANDING_ZONE + a zone
    path: str
    table: str  # schema.table (or schema.table.column); for a landing zone, the file's name
    rows: int
    subjects_region: str
    what: str
    personal_table: str  # the personal table the misplaced rows or the matched values belong to

    def describe(self) -> str:
        if self.store.startswith(LANDING_ZONE):
            return f"{self.store.removeprefix(LANDING_ZONE)} landing zone: {self.table}: {self.rows} record(s) {self.what}"
        where = "main warehouse" if self.store == "main" else f"{self.store} store"
        return f"{where} ({self.path}): {self.table}: {self.rows} row(s) {self.what}"


def _identifiers_sql(aliases: Mapping[str, str], kinds: str) -> str:
    """Every identifier value found in any store with the region of its subject and its table.
    ``kinds``: "direct" (names, emails, phones) or "all" (also customer ids and email HMACs)."""
    parts = []
    for table in PERSONAL_TABLES:
        cols = [n for n, _ in table.columns if table.pii.get(n) == "direct" and n not in _FREE_FORM]
        if kinds == "all":
            cols += [c for c in (table.customer_id, table.email_hash) if c]
        for region, a in aliases.items():
            routed = routed_sql(f"SELECT * FROM {a}.{table.name}", table)
            for c in cols:
                parts.append(
                    f"SELECT CAST({warehouse.quote(c)} AS VARCHAR) AS value, _region AS region, '{table.name}' AS personal_table "
                    f"FROM ({routed}) WHERE nullif(trim(CAST({warehouse.quote(c)} AS VARCHAR)), '') IS NOT NULL"
                )
    return " UNION ".join(parts)


def _text_columns(con: duckdb.DuckDBPyConnection, database: str, days: list[date] | None = None) -> dict[str, tuple[list[str], str]]:
    """{table: (its text columns, the row filter to search)}: with ``days``, a table partitioned by
    ``_partition_date`` is searched in those days only."""
    out = {}
    for table, cols in warehouse.base_table_columns(con, database).items():
        texts = [c for c, ty in cols if ty in _TEXT_TYPES]
        partitioned = days and any(c == "_partition_date" for c, _ in cols)
        where = f"_partition_date BETWEEN {warehouse.sql_literal(min(days))} AND {warehouse.sql_literal(max(days))}" if partitioned else "TRUE"
        if texts:
            out[table] = (texts, where)
    return out


def _search(con, database: str, table: str, columns: list[str], where: str, values: str) -> dict[str, list[tuple[str, str, int]]]:
    """{column: [(region, personal_table, rows)]} for the columns of ``database.table`` holding a
    value of temp table ``values`` (rows matching ``where``)."""
    qualified = f"{warehouse.quote(database)}.{table}"
    counts = con.execute(
        "SELECT " + ", ".join(f"count(*) FILTER (WHERE {warehouse.quote(c)} IN (SELECT value FROM {values}))" for c in columns)
        + f" FROM {qualified} WHERE {where}"
    ).fetchone()
    hits = {}
    for column, n in zip(columns, counts):
        if n:
            hits[column] = con.execute(
                f"SELECT v.region, min(v.personal_table), count(DISTINCT t.rowid) FROM {qualified} t "
                f"JOIN {values} v ON t.{warehouse.quote(column)} = v.value WHERE {where} GROUP BY 1 ORDER BY 1"
            ).fetchall()
    return hits


def violations(
    con: duckdb.DuckDBPyConnection,
    aliases: Mapping[str, str],
    store_paths: Mapping[str, Path],
    warehouse_path: Path | str,
    days: list[date] | None = None,
    zones: LandingZones | None = None,
) -> list[Violation]:
    """Everything stored outside its region, searched in the data (see the module docstring), and,
    given ``zones``, every landing file holding another region's subjects' names, emails or phones
    (``residency_landing.landing_violations``).

    ``days`` limits the search of the main warehouse's partitioned tables, and of the landing files,
    to those days (what a run wrote or read; unpartitioned tables, files not named by a day and the
    regional stores are always searched whole)."""
    build_region_map(con)
    found: list[Violation] = []
    for table in PERSONAL_TABLES:
        for region, a in aliases.items():
            rows = con.execute(
                f"SELECT _region, count(*) FROM ({routed_sql(f'SELECT * FROM {a}.{table.name}', table)}) "
                "WHERE _region <> ? GROUP BY 1 ORDER BY 1",
                [region],
            ).fetchall()
            for other, n in rows:
                found.append(Violation(region, str(store_paths[region]), table.name, n, other, f"of {other} subjects (they belong in the {other} store)", table.name))

    main_db = con.execute("SELECT current_database()").fetchone()[0]
    con.execute(f"CREATE OR REPLACE TEMP TABLE _direct_ids AS {_identifiers_sql(aliases, 'direct')}")
    for table, (columns, where) in _text_columns(con, main_db, days).items():
        for column, hits in _search(con, main_db, table, columns, where, "_direct_ids").items():
            for region, personal, n in hits:
                found.append(Violation("main", str(warehouse_path), f"{table}.{column}", n, region, f"holding direct identifiers (names, emails, phones) of {region} subjects", personal))

    personal_names = {t.name for t in PERSONAL_TABLES}
    con.execute(f"CREATE OR REPLACE TEMP TABLE _all_ids AS {_identifiers_sql(aliases, 'all')}")
    for region, a in aliases.items():
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _foreign_ids AS SELECT * FROM _all_ids WHERE region <> ? "
            "AND value NOT IN (SELECT value FROM _all_ids WHERE region = ?)",
            [region, region],
        )
        for table, (columns, where) in _text_columns(con, a).items():
            if table in personal_names:
                continue  # placement covers them
            for column, hits in _search(con, a, table, columns, where, "_foreign_ids").items():
                for other, personal, n in hits:
                    found.append(Violation(region, str(store_paths[region]), f"{table}.{column}", n, other, f"holding identifiers of {other} subjects", personal))
    if zones is not None:
        from ai_data_platform.governance.residency_landing import landing_violations

        found += landing_violations(con, zones, "_direct_ids", days)
    con.execute("DROP TABLE IF EXISTS _direct_ids; DROP TABLE IF EXISTS _all_ids; DROP TABLE IF EXISTS _foreign_ids")
    return found
