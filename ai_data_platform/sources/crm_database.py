"""The CRM's PostgreSQL database: seed it from the landing exports, read customer versions from it.

Database I/O only (psycopg); table shape, windows, SQL text and de-duplication come from
``crm_postgres``. Connection strings are never echoed with their credentials.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

import psycopg
import pyarrow as pa
from psycopg.rows import dict_row

from ai_data_platform.sources import crm_postgres as crm
from ai_data_platform.sources.contracts import CUSTOMERS
from ai_data_platform.sources.landing import LandingZones, read_landing_day

CONNECT_TIMEOUT_SECONDS = 10


def connect(database_url: str) -> psycopg.Connection:
    """Open the CRM database, naming it (without credentials) when it cannot be reached."""
    label = crm.source_label(database_url)  # raises a clear error for a malformed URL
    try:
        return psycopg.connect(database_url, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    except psycopg.OperationalError as exc:
        raise ConnectionError(f"cannot connect to the CRM database {label} (CRM_DATABASE_URL): {exc}".strip()) from None


def table_columns(conn: psycopg.Connection) -> tuple[str, ...]:
    """The columns of the CRM table in the connection's current schema (empty: no such table)."""
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        [crm.TABLE],
    ).fetchall()
    return tuple(r[0] for r in rows)


# ---------------------------------------------------------------- seeding


@dataclass(frozen=True)
class SeedReport:
    source: str
    versions: int
    skipped: dict[str, int]


def seed(database_url: str, zones: LandingZones, days: Sequence[date]) -> SeedReport:
    """Replace the CRM table's rows with the customer versions of the landed exports of ``days``
    (every region's: the embedded default keeps one CRM database for all regions; a per-region
    CRM database, each read by that region's platform, is the production analogue of the regional
    exports).

    Creates the table if needed; an existing table must have the contract's columns.
    """
    landed = pa.concat_tables(
        [landed.table for day in days for landed in read_landing_day(CUSTOMERS, zones.files(CUSTOMERS, day))]
    )
    rows = crm.seed_rows(landed)
    names = CUSTOMERS.raw_column_names
    columns = ", ".join(f'"{n}"' for n in names)
    with connect(database_url) as conn:
        conn.execute(crm.table_ddl())
        missing, _ = crm.column_drift(table_columns(conn))
        if missing:
            raise LookupError(f"the existing CRM table {crm.TABLE!r} lacks the columns {list(missing)}")
        conn.execute(f"TRUNCATE {crm.TABLE}")
        with conn.cursor().copy(f"COPY {crm.TABLE} ({columns}) FROM STDIN") as copy:
            for version in rows.versions:
                copy.write_row([version[n] for n in names])
    return SeedReport(crm.source_label(database_url), len(rows.versions), rows.skipped)


# ---------------------------------------------------------------- extraction


@contextmanager
def snapshot(database_url: str) -> Iterator[psycopg.Connection]:
    """A read-only, repeatable-read transaction: every window of one load sees the same data."""
    conn = connect(database_url)
    try:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            yield conn
    finally:
        conn.close()


def fetch_versions(conn: psycopg.Connection, window: crm.ExtractWindow, present: Sequence[str]) -> list[dict]:
    """The customer versions in ``window``, oldest first, as column -> value dicts."""
    query, params = crm.extract_sql(present, window)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()
