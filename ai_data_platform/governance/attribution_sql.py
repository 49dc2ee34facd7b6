"""``attribution.py``'s rule for a raw line, as a DuckDB function for filters that run in SQL.

``adp_line_keys(line)`` is ``attribution.line_keys(line)`` as a list of ``STRUCT(kind VARCHAR,
value VARCHAR)``: every canonical customer id (kind :data:`CUSTOMER_ID`) and normalized email
(kind :data:`EMAIL`) the line could make it someone's by (whole quoted strings, keyed values, CSV
fields, identifier keys of JSON). DuckDB does not call it for a NULL line, so a column of parsed
records' ``_raw_line`` costs nothing. Registered on a connection by :func:`register`; the Python
behind it is the rule erasure and the stream apply.
"""

from __future__ import annotations

import duckdb
from duckdb.sqltypes import VARCHAR

from ai_data_platform.governance.attribution import line_keys

LINE_KEYS = "adp_line_keys"
CUSTOMER_ID = "customer_id"
EMAIL = "email"
_RETURNS = duckdb.list_type(duckdb.struct_type({"kind": VARCHAR, "value": VARCHAR}))


def _line_keys(line: str) -> list[dict[str, str]]:
    keys = line_keys(line)
    return ([{"kind": CUSTOMER_ID, "value": v} for v in sorted(keys.customer_ids)]
            + [{"kind": EMAIL, "value": v} for v in sorted(keys.emails)])


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Make ``adp_line_keys`` callable on ``con`` (once per connection)."""
    listed = con.execute("SELECT count(*) FROM duckdb_functions() WHERE function_name = ?", [LINE_KEYS]).fetchall()
    if not listed[0][0]:
        con.create_function(LINE_KEYS, _line_keys, [VARCHAR], _RETURNS)


def tagged_keys_sql(line: str, value: str = "k.value") -> str:
    """SQL: the list of ``'<kind>:' || <value>`` for every key of the line ``line`` (an SQL
    expression), ``value`` an expression of ``k.value`` (the key itself by default; a hash of it to
    compare with stored hashes). Call :func:`register` on the connection first."""
    return f"list_transform({LINE_KEYS}({line}), lambda k: k.kind || ':' || ({value}))"


def tagged(kind: str, value: str) -> str:
    """A key as :func:`tagged_keys_sql` lists it."""
    return f"{kind}:{value}"
