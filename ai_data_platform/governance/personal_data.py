"""Which source columns are personal data that must live in a region's store, and how the
warehouse refers to them instead.

A source table *holds personal data* when a column of its contract is direct PII (name, email,
phone) or free text written by the customer (a support ticket's body). Those columns never enter
the main (cross-region) warehouse: ``raw.<table>`` keeps the other columns and, in their place,

* ``<column>_hash`` for each direct-PII column: ``HMAC-SHA256(ADP_PII_HMAC_KEY, normalized value)``
  (the join keys staging used to compute itself; NULL exactly when the value is missing or blank,
  so ``not_null`` is judged on the hash);
* ``_pii_digest``: one HMAC over the exact landed personal values, so "exact duplicate" still means
  every landed value equal;
* ``_raw_line``: for a record that could not be split into fields, an HMAC digest of the line
  (``hmac:<hex>``) instead of the line; the line itself is in the regional store.

The values themselves go to ``raw.<table>_personal`` in the store of the subject's region
(``governance/stores.py``). Pure functions returning SQL; nothing here opens a connection.
"""

from __future__ import annotations

import duckdb

from ai_data_platform.governance.pii import hmac_sql, normalize_email_sql, normalize_phone_sql
from ai_data_platform.warehouse import quote
from ai_data_platform.sources.contracts import CUSTOMERS, PII_DIRECT, SUPPORT_TICKETS, Column, SourceTable

# Free-text columns written by the data subject: personal data whatever they say.
FREE_TEXT_COLUMNS = {(SUPPORT_TICKETS.name, "body")}

# Per table holding personal data: the column that identifies the customer and the one holding their
# email (the key a ticket is linked to its customer by).
SUBJECT_ID_COLUMN = {CUSTOMERS.name: "customer_id", SUPPORT_TICKETS.name: None}
SUBJECT_EMAIL_COLUMN = {CUSTOMERS.name: "email", SUPPORT_TICKETS.name: "customer_email"}

# Columns whose values identify a data subject. Quality-check samples of these columns are masked
# before they reach Dagster's event log (which cannot be edited afterwards, e.g. on erasure).
SUBJECT_IDENTIFIER_COLUMNS = frozenset(
    {"customer_id", "email", "customer_email", "phone", "name", "email_hash", "phone_hash", "name_hash", "customer_email_hash"}
)

PII_DIGEST = "_pii_digest"
RAW_LINE_DIGEST_PREFIX = "hmac:"


def regional_columns(t: SourceTable) -> tuple[Column, ...]:
    """The contract columns of ``t`` stored only in a regional store."""
    return tuple(c for c in t.columns if c.pii == PII_DIRECT or (t.name, c.name) in FREE_TEXT_COLUMNS)


def holds_personal_data(t: SourceTable) -> bool:
    return bool(regional_columns(t))


def is_regional(t: SourceTable, column: str) -> bool:
    return any(c.name == column for c in regional_columns(t))


def hash_column(column: str) -> str:
    """The warehouse column standing in for a direct-PII column (``email`` -> ``email_hash``)."""
    return f"{column}_hash"


def hashed_columns(t: SourceTable) -> tuple[Column, ...]:
    """The direct-PII columns of ``t``: each has a ``<column>_hash`` in the warehouse."""
    return tuple(c for c in regional_columns(t) if c.pii == PII_DIRECT)


def normalized_sql(column: str, expr: str) -> str:
    """The normalization a column's value gets before hashing (email, phone, or trimmed text)."""
    if column in ("email", "customer_email"):
        return normalize_email_sql(expr)
    if column == "phone":
        return normalize_phone_sql(expr)
    return f"nullif(trim({expr}), '')"


def warehouse_raw_columns(t: SourceTable) -> tuple[str, ...]:
    """Every value column of ``raw.<t>`` in the main warehouse (lineage columns aside)."""
    if not holds_personal_data(t):
        return t.raw_column_names
    regional = {c.name for c in regional_columns(t)}
    kept = tuple(c.name for c in t.raw_columns if c.name not in regional)
    return kept + tuple(hash_column(c.name) for c in hashed_columns(t)) + (PII_DIGEST,)


def pseudonymized_select(con: duckdb.DuckDBPyConnection, t: SourceTable, hmac_key: str, source: str) -> str:
    """``SELECT`` over ``source`` (landed rows: contract columns as text, ``_row_number``,
    ``_raw_line``, ...) giving the warehouse's raw columns for a table holding personal data:
    its non-personal columns, the hash columns, the digest and the digested raw line, plus every
    other column of ``source`` (``_partition_date``, ``_file`` ...) and the personal columns
    themselves, which the caller routes to the regional store and never inserts into the warehouse.
    For statements on ``con``, which holds the key (``pii.bind_key``): the SQL holds none.
    """
    q = quote
    hashes = [f"{hmac_sql(con, hmac_key, normalized_sql(c.name, q(c.name)))} AS {q(hash_column(c.name))}" for c in hashed_columns(t)]
    personal = ", ".join(q(c.name) for c in regional_columns(t))
    digest = f"{hmac_sql(con, hmac_key, f'CAST(to_json([{personal}, _raw_line]) AS VARCHAR)')} AS {PII_DIGEST}"
    line = f"CASE WHEN _raw_line IS NULL THEN NULL ELSE '{RAW_LINE_DIGEST_PREFIX}' || {hmac_sql(con, hmac_key, '_raw_line')} END AS _raw_line_digest"
    return f"SELECT *, {', '.join(hashes)}, {digest}, {line} FROM {source}"
