"""The CRM read from PostgreSQL instead of the daily export: windows, watermarks, de-duplication.

When ``CRM_DATABASE_URL`` is set, ``raw/customers`` is extracted from the CRM's ``customers``
table (one row per customer version: the contract's columns, ``updated_at`` and the soft-delete
column ``deleted_at``) instead of the landing file. Pure logic only; the database I/O is in
``crm_database`` and the load into the warehouse in ``raw_load.load_crm_days``.

Semantics, for the partition of day D:

* **Window.** Rows with ``updated_at`` in ``[lower, end of D)``. ``lower`` is the high-water
  mark of the partitions before D minus ``OVERLAP``; with no earlier watermark (the first load)
  there is no lower bound, as the first file export is a full export.
* **Watermark.** ``meta.crm_watermark`` holds, per partition, the newest ``updated_at`` loaded up
  to and including it. It is written in the same warehouse transaction as the raw rows, so a
  failed or retried run neither advances it nor loses rows.
* **Late updates.** A version committed after its neighbours were extracted, with an
  ``updated_at`` at or just below the watermark, falls inside the next window's overlap.
* **De-duplication.** A version (``customer_id``, ``updated_at``) already in raw is not loaded
  again, so the overlap never duplicates a row; a window holds each customer once, its latest
  version, as a daily export does.
* **Deletes.** A soft delete is a version with ``deleted_at`` set; it is loaded like any other
  and the feature spine and Customer 360 drop the customer from then on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import pyarrow as pa
from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict

from ai_data_platform.sources.contracts import CUSTOMERS
from ai_data_platform.warehouse import quote, timestamp_from_text

TABLE = "customers"
WATERMARK_TABLE = "meta.crm_watermark"
OVERLAP = timedelta(hours=1)
KEY_COLUMNS = ("customer_id", "updated_at")  # a customer version
TIMESTAMP_COLUMNS = tuple(c.name for c in CUSTOMERS.raw_columns if c.dtype == "TIMESTAMP")
BOOLEAN_COLUMNS = tuple(c.name for c in CUSTOMERS.raw_columns if c.dtype == "BOOLEAN")
POSTGRES_TYPES = {"VARCHAR": "text", "TIMESTAMP": "timestamptz", "BOOLEAN": "boolean"}

Version = Mapping[str, object]  # one database row: column name -> Python value


# ---------------------------------------------------------------- connection strings


def source_label(database_url: str) -> str:
    """``postgresql://host:port/dbname/customers``: where raw rows came from, without credentials."""
    params = _conninfo(database_url)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or ""
    return f"postgresql://{host}:{port}/{dbname}/{TABLE}"


def _conninfo(database_url: str) -> dict:
    try:
        return conninfo_to_dict(database_url)
    except ProgrammingError as exc:
        raise ValueError(f"CRM_DATABASE_URL is not a valid PostgreSQL connection string: {exc}") from None


# ---------------------------------------------------------------- the database table


def table_ddl() -> str:
    """The CRM table the seeder creates: one row per customer version."""
    cols = []
    for c in CUSTOMERS.raw_columns:
        not_null = " NOT NULL" if c.name in KEY_COLUMNS else ""
        cols.append(f"{quote(c.name)} {POSTGRES_TYPES[c.dtype]}{not_null}")
    keys = ", ".join(quote(k) for k in KEY_COLUMNS)
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} ({', '.join(cols)}, PRIMARY KEY ({keys})); "
        f"CREATE INDEX IF NOT EXISTS {TABLE}_updated_at_idx ON {TABLE} (updated_at)"
    )


def column_drift(observed: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(missing, unexpected) columns of the database table against the contract + ``deleted_at``.

    Raises when a key column is missing: without it there is nothing to extract by.
    """
    observed = list(observed)
    if not observed:
        raise LookupError(f"the CRM database has no table {TABLE!r} (seed it with `adp generate --crm-database-url URL`)")
    expected = CUSTOMERS.raw_column_names
    missing = tuple(c for c in expected if c not in observed)
    lost_keys = [k for k in KEY_COLUMNS if k in missing]
    if lost_keys:
        raise LookupError(f"the CRM table {TABLE!r} has no column {lost_keys}: cannot extract customer versions")
    return missing, tuple(sorted(set(observed) - set(expected)))


# ---------------------------------------------------------------- windows and watermarks


@dataclass(frozen=True)
class ExtractWindow:
    """The ``updated_at`` range one partition extracts: ``[lower, upper)``, ``lower`` None = no bound."""

    day: date
    lower: datetime | None
    upper: datetime

    def describe(self) -> str:
        low = self.lower.isoformat() if self.lower else "the beginning"
        return f"updated_at in [{low}, {self.upper.isoformat()})"


def day_start(day: date) -> datetime:
    """Midnight UTC starting ``day``, as a naive UTC datetime (the warehouse's TIMESTAMP)."""
    return datetime.combine(day, time())


def extract_window(day: date, previous_watermark: datetime | None, overlap: timedelta = OVERLAP) -> ExtractWindow:
    """The window of day ``day``'s partition given the watermark of the partitions before it.

    The upper bound is the end of the day, so the partition holds the day's changes as a daily
    export would; the lower bound reaches ``overlap`` below the watermark to catch versions that
    committed late. No watermark yet means the first load: everything up to the end of the day.
    """
    if overlap < timedelta(0):
        raise ValueError(f"the overlap must not be negative, got {overlap}")
    upper = day_start(day + timedelta(days=1))
    lower = None if previous_watermark is None else previous_watermark - overlap
    return ExtractWindow(day, lower, upper)


def advance_watermark(previous: datetime | None, loaded: Sequence[Version]) -> datetime | None:
    """The high-water mark after loading ``loaded``: never moves backwards."""
    times = [utc_naive(v["updated_at"]) for v in loaded]
    if previous is not None:
        times.append(previous)
    return max(times, default=None)


def utc_naive(value: datetime) -> datetime:
    """An aware datetime as naive UTC (how DuckDB TIMESTAMPs compare); naive ones are taken as UTC."""
    return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value


def watermark_ddl() -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {WATERMARK_TABLE} (_partition_date DATE, watermark TIMESTAMP, "
        "window_lower TIMESTAMP, window_upper TIMESTAMP, extracted BIGINT, loaded BIGINT, "
        "source VARCHAR, _loaded_at TIMESTAMP)"
    )


def previous_watermark_sql() -> str:
    """The watermark before a partition (parameter: the day): the newest of the earlier partitions."""
    return f"SELECT max(watermark) FROM {WATERMARK_TABLE} WHERE _partition_date < ?"


def extract_sql(present: Iterable[str], window: ExtractWindow) -> tuple[str, list[datetime]]:
    """The PostgreSQL query (and its parameters) for a window's versions, oldest first.

    Contract columns the table lacks are selected as NULL so the raw shape never changes (the
    schema-drift check reports them).
    """
    present = set(present)
    cols = ", ".join(
        quote(c.name) if c.name in present else f"NULL::{POSTGRES_TYPES[c.dtype]} AS {quote(c.name)}"
        for c in CUSTOMERS.raw_columns
    )
    upper = window.upper.replace(tzinfo=timezone.utc)
    where, params = "updated_at < %s", [upper]
    if window.lower is not None:
        where, params = "updated_at >= %s AND updated_at < %s", [window.lower.replace(tzinfo=timezone.utc), upper]
    return f"SELECT {cols} FROM {TABLE} WHERE {where} ORDER BY updated_at, customer_id", params


def loaded_versions_sql(window: ExtractWindow) -> tuple[str, list[datetime]]:
    """The warehouse query for the versions already in raw within a window: (customer_id, updated_at)."""
    ts = timestamp_from_text("updated_at")
    where, params = f"{ts} < ?", [window.upper]
    if window.lower is not None:
        where, params = f"{ts} >= ? AND {ts} < ?", [window.lower, window.upper]
    return f"SELECT customer_id, {ts} FROM raw.{TABLE} WHERE {where}", params


# ---------------------------------------------------------------- de-duplication


def new_versions(extracted: Sequence[Version], loaded: Iterable[tuple[str, datetime]]) -> list[Version]:
    """The versions to load: not already in raw, the latest per customer, oldest first.

    ``loaded`` holds the (customer_id, updated_at) pairs raw already has (naive UTC); a version
    the overlap extracts again is among them. Within the window, a customer's older version is
    superseded by the newer one, as a daily export lists each customer once.
    """
    seen = set(loaded)
    latest: dict[str, Version] = {}
    for version in extracted:
        key = (version["customer_id"], utc_naive(version["updated_at"]))
        if key in seen:
            continue
        current = latest.get(key[0])
        if current is None or utc_naive(current["updated_at"]) < key[1]:
            latest[key[0]] = version
    return sorted(latest.values(), key=lambda v: (utc_naive(v["updated_at"]), v["customer_id"]))


# ---------------------------------------------------------------- raw rendering


def render_timestamp(value: datetime) -> str:
    """A timestamp as the file exports write it: ``YYYY-MM-DDTHH:MM:SSZ`` (UTC; microseconds if any)."""
    text = utc_naive(value).isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text + "Z"


def render_value(name: str, value: object) -> str | None:
    """A database value as the text a raw column holds (the landing file's rendering)."""
    if value is None:
        return None
    if name in TIMESTAMP_COLUMNS:
        return render_timestamp(value)
    if name in BOOLEAN_COLUMNS:
        return "true" if value else "false"
    return str(value)


def raw_records(versions: Sequence[Version]) -> pa.Table:
    """Versions as raw rows: every raw column as text, ``_row_number`` 1.. in load order, no ``_raw_line``."""
    n = len(versions)
    arrays = [pa.array([render_value(name, v[name]) for v in versions], pa.string()) for name in CUSTOMERS.raw_column_names]
    arrays += [pa.array(range(1, n + 1), pa.int64()), pa.nulls(n, pa.string())]
    return pa.Table.from_arrays(arrays, names=[*CUSTOMERS.raw_column_names, "_row_number", "_raw_line"])


# ---------------------------------------------------------------- seeding from the landing files


@dataclass
class SeedRows:
    """The landed CRM records a typed table can hold, and how many were left out, by reason."""

    versions: list[dict]
    skipped: dict[str, int]


def parse_timestamp(text: str) -> datetime:
    """Parse a landed timestamp (``...Z`` or with an offset) to an aware UTC datetime."""
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _typed(name: str, text: str | None) -> object:
    if text is None or text.strip() == "":
        return None
    if name in TIMESTAMP_COLUMNS:
        return parse_timestamp(text)
    if name in BOOLEAN_COLUMNS:
        lowered = text.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError(f"{name}: not a boolean: {text!r}")
        return lowered == "true"
    return text


def seed_rows(landed: pa.Table) -> SeedRows:
    """The records of landed CRM exports as database versions (the file exports' dirt left out).

    A database holds what a file cannot guarantee: every record whole, typed and once. So a
    malformed record, one without a parseable ``updated_at`` or with a value its column type
    cannot hold, and a repeated version are skipped and counted. Records with a missing required
    value are kept (the columns are nullable), so staging quarantines them as it does from files.
    """
    skipped = {"malformed": 0, "invalid_updated_at": 0, "invalid_value": 0, "duplicate_version": 0}
    names = list(CUSTOMERS.column_names)
    columns = {name: landed.column(name).to_pylist() for name in (*names, "_raw_line")}
    versions: list[dict] = []
    seen: set[tuple[str, datetime]] = set()
    for i in range(landed.num_rows):
        if columns["_raw_line"][i] is not None:
            skipped["malformed"] += 1
            continue
        try:
            updated_at = _typed("updated_at", columns["updated_at"][i])
        except ValueError:
            updated_at = None
        if updated_at is None:
            skipped["invalid_updated_at"] += 1
            continue
        try:
            version = {name: _typed(name, columns[name][i]) for name in names}
        except ValueError:
            skipped["invalid_value"] += 1
            continue
        if version["customer_id"] is None:
            skipped["invalid_value"] += 1
            continue
        version["deleted_at"] = None
        key = (version["customer_id"], updated_at)
        if key in seen:
            skipped["duplicate_version"] += 1
            continue
        seen.add(key)
        versions.append(version)
    return SeedRows(versions, skipped)
