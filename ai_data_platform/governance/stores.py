"""The regional personal data stores: one DuckDB database per region (EU, US, APAC).

A customer's region decides where their personal data lives. Each store holds, for the subjects
of its region only, the same tables::

    identity.customer_pii                 names, emails, phones with their HMAC join keys
    raw.customers_personal                the CRM rows' personal values (and unsplittable lines)
    raw.support_tickets_personal          tickets' email and free text (and unsplittable lines)
    quarantine.customers_personal         raw values / records of quarantined CRM rows
    quarantine.support_tickets_personal   the same for tickets

Every row carries ``_partition_date`` and ``_row_number`` (its record in the day's export: the row
key shared with ``raw``/``staging``/``quarantine`` in the main warehouse) and the subject keys
it is routed by: ``customer_id`` and/or ``email_hash``. Where each store lives is configured per
region in one place (``settings.region_store_paths``); assets get them from the
``regional_stores`` resource. The stores are ATTACHed to the warehouse connection, so moving data
between the warehouse and a store is SQL; DuckDB allows one written database per transaction, so
each store is written in a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ai_data_platform import settings, warehouse
from ai_data_platform.governance.personal_data import regional_columns
from ai_data_platform.private_files import make_private_dir, restrict_database
from ai_data_platform.sources.contracts import CUSTOMERS, REGIONS, SUPPORT_TICKETS, SourceTable

# Where a record whose region cannot be determined goes: the strictest regime.
DEFAULT_REGION = "EU"
STORE_SCHEMAS = ("identity", "raw", "quarantine")

LINEAGE = (("_partition_date", "DATE"), ("_file", "VARCHAR"), ("_row_number", "BIGINT"))


@dataclass(frozen=True)
class PersonalTable:
    """A table present in every regional store."""

    name: str  # schema.table, the same in every store
    columns: tuple[tuple[str, str], ...]
    pii: Mapping[str, str]  # column -> direct | indirect (others: none)
    source: SourceTable
    description: str
    customer_id: str | None = "customer_id"  # routing keys (None: the table has no such column)
    email_hash: str = "email_hash"

    @property
    def asset_path(self) -> list[str]:
        return self.name.split(".")

    def ddl(self, alias: str) -> str:
        cols = ", ".join(f"{warehouse.quote(n)} {t}" for n, t in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {alias}.{self.name} ({cols})"


def _raw_personal(t: SourceTable) -> PersonalTable:
    keys = [(t.key, "VARCHAR")] + ([("customer_id", "VARCHAR")] if t.key != "customer_id" and "customer_id" in t.column_names else [])
    values = [(c.name, "VARCHAR") for c in regional_columns(t)]
    cols = (*keys, ("email_hash", "VARCHAR"), *values, ("_raw_line", "VARCHAR"), *LINEAGE, ("_loaded_at", "TIMESTAMP"))
    pii = {c.name: c.pii for c in regional_columns(t)} | {"_raw_line": "direct", "email_hash": "indirect"}
    return PersonalTable(
        name=f"raw.{t.name}_personal",
        columns=cols,
        pii=pii,
        source=t,
        description=(
            f"The personal values of raw/{t.name} ({', '.join(c.name for c in regional_columns(t))}) and "
            "its unsplittable lines, kept in the store of the subject's region; the main warehouse holds "
            "the rest of each record with HMAC keys instead. Grain: one row per landed record "
            "(_partition_date, _row_number), like raw."
        ),
        customer_id="customer_id" if any(n == "customer_id" for n, _ in keys) else None,
    )


def _quarantine_personal(t: SourceTable) -> PersonalTable:
    subject = [("customer_id", "VARCHAR")] if t is CUSTOMERS else [(t.key, "VARCHAR")]
    cols = (
        *subject,
        ("email_hash", "VARCHAR"),
        ("rule", "VARCHAR"),
        ("column_name", "VARCHAR"),
        ("raw_value", "VARCHAR"),
        ("raw_record", "VARCHAR"),
        *LINEAGE,
    )
    return PersonalTable(
        name=f"quarantine.{t.name}_personal",
        columns=cols,
        pii={"raw_value": "direct", "raw_record": "direct", "email_hash": "indirect"},
        source=t,
        description=(
            f"Raw values and raw records of the quarantined rows of {t.name}, with their personal data, "
            f"in the store of the subject's region (quarantine/{t.name} in the main warehouse keeps file, "
            "row, rule and column). Grain: one row per rejected record."
        ),
        customer_id="customer_id" if t is CUSTOMERS else None,
    )


IDENTITY = PersonalTable(
    name="identity.customer_pii",
    columns=(
        ("customer_id", "VARCHAR"),
        ("name", "VARCHAR"),
        ("email", "VARCHAR"),
        ("phone", "VARCHAR"),
        ("email_hash", "VARCHAR"),
        ("phone_hash", "VARCHAR"),
        ("country", "VARCHAR"),
        ("region", "VARCHAR"),
        ("updated_at", "TIMESTAMP"),
        *LINEAGE,
    ),
    pii={"name": "direct", "email": "direct", "phone": "direct", "country": "indirect", "email_hash": "indirect", "phone_hash": "indirect"},
    source=CUSTOMERS,
    description=(
        "Restricted identity table: names, emails and phones with their HMAC join keys, in the store "
        "of each customer's region (one DuckDB database per region). Grain: one row per staged "
        "customer upsert."
    ),
)
RAW_PERSONAL = {t.name: _raw_personal(t) for t in (CUSTOMERS, SUPPORT_TICKETS)}
QUARANTINE_PERSONAL = {t.name: _quarantine_personal(t) for t in (CUSTOMERS, SUPPORT_TICKETS)}
PERSONAL_TABLES: tuple[PersonalTable, ...] = (IDENTITY, *RAW_PERSONAL.values(), *QUARANTINE_PERSONAL.values())
PERSONAL_TABLES_BY_NAME = {p.name: p for p in PERSONAL_TABLES}


def alias(region: str) -> str:
    """The name a region's store is attached under (``personal_eu``)."""
    return f"personal_{region.lower()}"


@dataclass(frozen=True)
class RegionalStores:
    """Where each region's store lives."""

    paths: Mapping[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [r for r in REGIONS if r not in self.paths]
        unknown = [r for r in self.paths if r not in REGIONS]
        if missing or unknown:
            raise ValueError(f"regional stores must be configured for exactly {list(REGIONS)}: missing {missing}, unknown {unknown}")
        object.__setattr__(self, "paths", {r: Path(self.paths[r]) for r in REGIONS})

    @classmethod
    def from_settings(cls, p: settings.Paths | None = None) -> RegionalStores:
        return cls(settings.region_store_paths(p))

    def describe(self) -> dict[str, str]:
        return {r: str(path) for r, path in self.paths.items()}

    @contextmanager
    def attached(self, con: duckdb.DuckDBPyConnection, *, read_only: bool = False) -> Iterator[dict[str, str]]:
        """ATTACH every store to ``con`` (creating the schemas and tables); yields {region: alias}."""
        aliases: dict[str, str] = {}
        try:
            for region, path in self.paths.items():
                name = alias(region)
                if read_only and not path.exists():
                    # Nothing was ever stored for this region: an empty in-memory stand-in keeps
                    # every query uniform without creating the file.
                    con.execute(f"ATTACH ':memory:' AS {name}")
                else:
                    _attach_waiting(con, path, name, read_only)
                aliases[region] = name
                if not read_only or not path.exists():
                    for schema in STORE_SCHEMAS:
                        con.execute(f"CREATE SCHEMA IF NOT EXISTS {name}.{schema}")
                    for table in PERSONAL_TABLES:
                        con.execute(table.ddl(name))
            yield aliases
        finally:
            for name in aliases.values():
                con.execute(f"DETACH {name}")

    def existing(self) -> dict[str, Path]:
        return {r: p for r, p in self.paths.items() if p.exists()}


def _attach_waiting(con: duckdb.DuckDBPyConnection, path: Path, name: str, read_only: bool) -> None:
    """ATTACH a store, waiting (with backoff) while another process holds its write lock; the
    store's file, its ``.wal`` and a folder created for it are owner-only."""
    make_private_dir(path.parent)
    mode = " (READ_ONLY)" if read_only else ""
    warehouse.waiting_for_lock(lambda: con.execute(f"ATTACH {warehouse.sql_literal(str(path))} AS {name}{mode}"))
    restrict_database(path)


def union_sql(table: PersonalTable, aliases: Mapping[str, str], columns: str = "*") -> str:
    """Every store's rows of ``table`` as one relation, with ``_store`` naming the region."""
    return " UNION ALL ".join(
        f"SELECT {columns}, '{region}' AS _store FROM {a}.{table.name}" for region, a in aliases.items()
    )


@dataclass(frozen=True)
class PersonalData:
    """What the source layer needs to keep personal data where it belongs: the HMAC key the
    warehouse's pseudonyms are made with, and the regional stores the values go to."""

    hmac_key: str
    stores: RegionalStores

    @classmethod
    def from_settings(cls, p: settings.Paths | None = None) -> PersonalData:
        return cls(settings.pii_hmac_key(), RegionalStores.from_settings(p))
