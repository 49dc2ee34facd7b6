"""Pseudonymization of direct identifiers with a keyed HMAC.

Staging never holds a raw email, phone or name outside the restricted identity table; systems
join on ``HMAC-SHA256(key, normalized value)`` instead. The same function exists twice on
purpose and is tested to agree: in Python (for tests, the CLI and small lookups) and compiled to
DuckDB SQL (so hashing a whole partition runs inside the warehouse, never row by row in Python).
The key comes from ``ADP_PII_HMAC_KEY``; the built-in demo key is public and not for production.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import duckdb

_BLOCK_SIZE = 64  # SHA-256 block size in bytes (RFC 2104)


def normalize_email(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    return value or None


def normalize_phone(value: str | None) -> str | None:
    """Keep a leading + and the digits: ``+49 151-123`` and ``+49151123`` hash the same."""
    if value is None:
        return None
    digits = re.sub(r"[^0-9]", "", value)
    if not digits:
        return None
    return ("+" if value.strip().startswith("+") else "") + digits


def hmac_hex(key: str, value: str | None) -> str | None:
    if value is None:
        return None
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()


def _padded_key(key: str) -> bytes:
    raw = key.encode()
    if len(raw) > _BLOCK_SIZE:
        raw = hashlib.sha256(raw).digest()
    return raw.ljust(_BLOCK_SIZE, b"\x00")


def hmac_pads(key: str) -> tuple[bytes, bytes]:
    """``(K ^ ipad, K ^ opad)`` of RFC 2104: what :func:`hmac_sql_with` hashes the value with."""
    padded = _padded_key(key)
    return bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)


def hmac_sql_with(expr: str, ipad_sql: str, opad_sql: str) -> str:
    """A DuckDB expression computing the HMAC of ``expr`` from the key's two pads given as SQL:
    BLOB literals, or parameters (``$ipad``) so that the key never enters the statement's text.

    HMAC(K, m) = H((K ^ opad) || H((K ^ ipad) || m)); DuckDB's sha256 accepts BLOBs and returns
    hex, and ``unhex`` turns it back into bytes for the outer hash. NULL stays NULL.
    """
    inner = f"sha256({ipad_sql} || encode({expr}))"
    return f"CASE WHEN ({expr}) IS NULL THEN NULL ELSE sha256({opad_sql} || unhex({inner})) END"


def bind_key(con: duckdb.DuckDBPyConnection, key: str) -> tuple[str, str]:
    """Bind ``key``'s two HMAC pads to session variables of ``con`` (set as statement parameters,
    so the key never enters any SQL text); returns the SQL reading them, for :func:`hmac_sql_with`.

    The variables live as long as the connection and only in it. They are named by a fingerprint of
    the key, so several keys can be bound to one connection; SQL run on a connection the key is not
    bound to fails instead of hashing with a NULL key."""
    name = "adp_hmac_" + hashlib.sha256(b"adp hmac session variable\0" + key.encode()).hexdigest()[:16]
    ipad, opad = hmac_pads(key)
    con.execute(f"SET VARIABLE {name}_ipad = ?::BLOB", [ipad])
    con.execute(f"SET VARIABLE {name}_opad = ?::BLOB", [opad])
    missing = "error('the HMAC key is not bound to this DuckDB connection')"
    return (f"coalesce(getvariable('{name}_ipad')::BLOB, {missing})",
            f"coalesce(getvariable('{name}_opad')::BLOB, {missing})")


def hmac_sql(con: duckdb.DuckDBPyConnection, key: str, expr: str) -> str:
    """A DuckDB expression computing ``hmac_hex(key, expr)``, for statements run on ``con``: the key
    is bound to the connection (:func:`bind_key`), never written into the SQL."""
    ipad_sql, opad_sql = bind_key(con, key)
    return hmac_sql_with(expr, ipad_sql, opad_sql)


def normalize_email_sql(expr: str) -> str:
    return f"nullif(lower(trim({expr})), '')"


def normalize_phone_sql(expr: str) -> str:
    digits = f"regexp_replace({expr}, '[^0-9]', '', 'g')"
    return (
        f"CASE WHEN {digits} = '' OR {expr} IS NULL THEN NULL "
        f"ELSE (CASE WHEN starts_with(trim({expr}), '+') THEN '+' ELSE '' END) || {digits} END"
    )
