"""The suppression list: erased subjects, as HMACs, filtered out at every raw load.

Erasure rewrites the landing files, but a source can export the subject again (a CRM database that
still has them, a re-delivered file) and a backfill re-reads whatever is there. So every erased
subject is recorded in ``meta.erased_subjects`` of the main warehouse, by keyed HMAC only (the
customer id's HMAC, which is also the audit log's ``subject_ref``, and the HMACs of their emails),
and ``raw_load`` drops any landed record matching one: by ``customer_id`` in every table that has
one, by email in the CRM tables, and a record that could not be split into fields (its
``_raw_line``) by ``attribution.py``'s raw-line rule, as erasure removes it and the stream drops it:
when one of its whole values (quoted string, keyed value, CSV field, identifier key of JSON) is an
erased id or email (``attribution_sql``: the line's candidates in Python, their HMACs in SQL). An
empty list costs nothing; a non-empty one costs one HMAC per landed record and the attribution of
each unsplittable one. The list holds no personal data and is the one place an erased subject's
keys may remain (the erasure verification skips it for those keys).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

import duckdb

from ai_data_platform import warehouse
from ai_data_platform.governance import attribution_sql
from ai_data_platform.governance.personal_data import SUBJECT_EMAIL_COLUMN, hash_column
from ai_data_platform.governance.pii import hmac_sql
from ai_data_platform.sources.contracts import SourceTable

TABLE = "meta.erased_subjects"
KIND_CUSTOMER_ID = attribution_sql.CUSTOMER_ID  # "customer_id"
KIND_EMAIL = attribution_sql.EMAIL  # "email"


def ddl() -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} (subject_ref VARCHAR, key_kind VARCHAR, key_hash VARCHAR, "
        "erased_at TIMESTAMP, PRIMARY KEY (key_kind, key_hash))"
    )


def active(con: duckdb.DuckDBPyConnection) -> bool:
    return warehouse.table_exists(con, TABLE) and con.execute(f"SELECT count(*) > 0 FROM {TABLE}").fetchone()[0]


def keep_condition(con: duckdb.DuckDBPyConnection, t: SourceTable, hmac_key: str, *, hashed: bool) -> str:
    """A SQL condition over landed rows of ``t`` (with ``_raw_line``), for statements on ``con``:
    true for rows of subjects not erased (see the module docstring).

    ``hashed``: the rows already carry the ``<email column>_hash`` (tables holding personal data)."""
    attribution_sql.register(con)
    line_hashes = attribution_sql.tagged_keys_sql("_raw_line", hmac_sql(con, hmac_key, "k.value"))
    erased = f"(SELECT list(key_kind || ':' || key_hash) FROM {TABLE})"
    checks = [f"_raw_line IS NOT NULL AND list_has_any({line_hashes}, {erased})"]
    if "customer_id" in t.column_names:
        id_hash = hmac_sql(con, hmac_key, "nullif(trim(customer_id), '')")
        checks.append(
            f"{id_hash} IN "
            f"(SELECT key_hash FROM {TABLE} WHERE key_kind = '{KIND_CUSTOMER_ID}')"
        )
    email = SUBJECT_EMAIL_COLUMN.get(t.name)
    if email and hashed:
        checks.append(f"{hash_column(email)} IN (SELECT key_hash FROM {TABLE} WHERE key_kind = '{KIND_EMAIL}')")
    return "NOT coalesce(" + " OR ".join(f"coalesce({c}, FALSE)" for c in checks) + ", FALSE)"


def record(
    con: duckdb.DuckDBPyConnection, subject_ref: str, customer_id_hash: str, email_hashes: Iterable[str]
) -> int:
    """Add a subject's keys (idempotent); returns how many keys were new."""
    con.execute(ddl())
    rows = [(KIND_CUSTOMER_ID, customer_id_hash)] + [(KIND_EMAIL, h) for h in sorted(set(email_hashes))]
    before = con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    now = datetime.now(timezone.utc).replace(tzinfo=None)  # UTC, like every timestamp in the warehouse
    for kind, key_hash in rows:
        con.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", [subject_ref, kind, key_hash, now])
    return con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] - before


def erased_at(con: duckdb.DuckDBPyConnection, customer_id_hash: str):
    """When the subject with this id HMAC was first erased, or None."""
    if not warehouse.table_exists(con, TABLE):
        return None
    return con.execute(
        f"SELECT min(erased_at) FROM {TABLE} WHERE key_kind = ? AND key_hash = ?", [KIND_CUSTOMER_ID, customer_id_hash]
    ).fetchone()[0]


def customer_id_hashes(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """The customer-id HMACs of every erased subject (what the stream filters by)."""
    if not warehouse.table_exists(con, TABLE):
        return frozenset()
    return frozenset(h for (h,) in con.execute(f"SELECT key_hash FROM {TABLE} WHERE key_kind = ?", [KIND_CUSTOMER_ID]).fetchall())


def keys(con: duckdb.DuckDBPyConnection, subject_ref: str) -> dict[str, list[str]]:
    """{key kind: [HMACs]} recorded for a subject."""
    if not warehouse.table_exists(con, TABLE):
        return {}
    out: dict[str, list[str]] = {}
    for kind, key_hash in con.execute(f"SELECT key_kind, key_hash FROM {TABLE} WHERE subject_ref = ? ORDER BY ALL", [subject_ref]).fetchall():
        out.setdefault(kind, []).append(key_hash)
    return out
