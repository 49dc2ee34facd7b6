"""What SQL a role may run, judged by DuckDB's own parser: one SELECT over the role's relations.

Defence in depth for ``adp query``: the role sandbox (``role_sandbox.py``) already sees nothing but
the role's database, and :func:`check` refuses a statement before it runs unless

- it is one statement of type SELECT (``DESCRIBE``/``SUMMARIZE`` of a relation or a query pass:
  DuckDB parses them as a SELECT over a ``SHOW_REF`` holding that query, checked like any other;
  the catalog listings ``SHOW TABLES``, ``SHOW ALL TABLES``, ``SHOW DATABASES`` ... do not);
- every table it reads is one of the role's relations (``schema.table``, or
  ``<role catalog>.schema.table``), or a bare name naming a CTE *in scope where it is read*: DuckDB's
  ``json_serialize_sql`` lists every table reference, in subqueries, CTEs, joins, set operations
  and pivots, and a CTE is in scope in the query declaring it and the queries nested in it, in the
  CTEs declared after it, and in the recursive half of its own body when it is recursive. (A
  subquery's CTE does not make a name readable outside that subquery, and a CTE's body that names
  the CTE itself reads the catalog's relation of that name: DuckDB binds it so.)
- its only table functions are :data:`ALLOWED_TABLE_FUNCTIONS`, and every FROM item is of a kind in
  :data:`TABLE_REFS`.

:class:`AccessDenied` refuses a statement before it runs: unparsable, longer than
:data:`MAX_SQL_CHARS`, nested too deeply to check, or breaking a rule above (naming the role, the
relation and what the role may read). :class:`QueryError` is a statement that failed as it ran (a
SQL error, a limit of the sandbox). Both messages are one line. Only ``duckdb`` is imported: the
sandbox's process runs this.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import duckdb

ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
TABLE_REFS = frozenset(
    {"BASE_TABLE", "JOIN", "SUBQUERY", "EXPRESSION_LIST", "EMPTY", "PIVOT", "TABLE_FUNCTION", "SHOW_REF"}
)
MAX_SQL_CHARS = 100_000
_NAME_CHARS = 80
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class AccessDenied(PermissionError):
    """A role asked for something its policy does not grant."""


class QueryError(RuntimeError):
    """A role query that failed as it ran: a SQL error, or past a limit of the sandbox."""


def fold(name: str) -> str:
    """``name`` as DuckDB compares identifiers: ASCII letters case-insensitive, nothing else folded
    (Python's ``lower`` would turn the Kelvin sign into ``k`` and match names DuckDB keeps apart)."""
    return name.translate(_ASCII_LOWER)


def one_line(text: str, limit: int = 500) -> str:
    """An error text as one bounded, printable line: its first paragraph (DuckDB adds the query and
    a caret marker, or a list of hints, after a blank line), whitespace collapsed, any other
    unprintable character escaped (a name from the query may hold terminal control codes)."""
    first = str(text).strip().split("\n\n")[0]
    flat = "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(first.split()))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _name(text: str) -> str:
    """A name from the query as a message may show it: as written when short and printable."""
    if len(text) <= _NAME_CHARS and text.isprintable():
        return text
    shown = repr(text)
    return shown if len(shown) <= _NAME_CHARS else shown[: _NAME_CHARS - 3] + "..."


def _is_table_ref(node: dict) -> bool:
    """A FROM item (DuckDB's TableRef): typed, with alias and sample, neither expression nor query."""
    typed = isinstance(node.get("type"), str) and "alias" in node and "sample" in node
    return typed and "class" not in node and "modifiers" not in node


def _ctes(node: dict) -> list[tuple[str, object]]:
    """(name, body) of the CTEs a query node declares, in order."""
    cte_map = node.get("cte_map")
    entries = cte_map.get("map") if isinstance(cte_map, dict) else None
    return [(fold(str(e.get("key", ""))), e.get("value")) for e in entries or [] if isinstance(e, dict)]


def table_refs(tree: object) -> Iterator[tuple[dict, frozenset[str]]]:
    """Every FROM item of a parsed statement, with the CTE names in scope where it is."""
    stack: list[tuple[object, frozenset[str]]] = [(tree, frozenset())]
    while stack:
        item, visible = stack.pop()
        if isinstance(item, list):
            stack.extend((x, visible) for x in item)
            continue
        if not isinstance(item, dict):
            continue
        ctes = _ctes(item)
        names = [name for name, _ in ctes]
        stack.extend((body, visible | frozenset(names[:i])) for i, (_, body) in enumerate(ctes))
        inner = visible | frozenset(names)
        if _is_table_ref(item):
            yield item, inner
        recursive = item.get("type") == "RECURSIVE_CTE_NODE" and "class" not in item
        for key, value in item.items():
            if key == "cte_map":
                continue
            if recursive and key == "right":  # the recursive half reads the CTE being defined
                stack.append((value, inner | {fold(str(item.get("cte_name", "")))}))
            else:
                stack.append((value, inner))


def parse(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    """DuckDB's parse tree of one SELECT statement, as ``json_serialize_sql`` gives it."""
    text = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()[0][0]
    try:
        tree = json.loads(text)
    except RecursionError:
        raise AccessDenied("the query nests too deeply to be checked; role queries are judged before they run") \
            from None
    if tree.get("error"):
        raise AccessDenied(one_line(f"cannot parse the query: {tree.get('error_message')}"))
    return tree


def check(con: duckdb.DuckDBPyConnection, role_name: str, sql: str, readable: Iterable[str], catalog: str) -> None:
    """Raise :class:`AccessDenied` unless ``sql`` is one SELECT reading only ``readable`` relations
    (``schema.table``; ``catalog`` is the role database's name, which may qualify them)."""
    readable = {fold(r): r for r in readable}
    allowed = ", ".join(sorted(readable.values())) or "nothing yet (meta/role_views builds the role databases)"
    may_read = f"{role_name} may read: {allowed}"
    if not isinstance(sql, str) or not sql.strip():
        raise AccessDenied(f"role {role_name} may run one SELECT statement, got nothing")
    if len(sql) > MAX_SQL_CHARS:
        raise AccessDenied(f"the query is {len(sql)} characters long; role queries are limited to {MAX_SQL_CHARS}")
    if "\x00" in sql:
        raise AccessDenied("the query holds a NUL character")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise AccessDenied(one_line(f"cannot parse the query: {exc}")) from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        kinds = ", ".join(s.type.name for s in statements[:5]) + (", ..." if len(statements) > 5 else "")
        raise AccessDenied(f"role {role_name} may run one SELECT statement, got {kinds or 'nothing'}")
    for ref, ctes in table_refs(parse(con, sql)):
        kind = ref["type"]
        if kind not in TABLE_REFS:
            raise AccessDenied(f"role {role_name} may not read from {_name(kind)}; {may_read}")
        if kind == "TABLE_FUNCTION":
            function = ref.get("function") if isinstance(ref.get("function"), dict) else {}
            name = fold(str(function.get("function_name", "")))
            if name not in ALLOWED_TABLE_FUNCTIONS or function.get("schema") or function.get("catalog"):
                raise AccessDenied(f"role {role_name} may not call table function {_name(name)}(); {may_read}")
        elif kind == "SHOW_REF" and not ref.get("query"):
            raise AccessDenied(f"role {role_name} may not list the catalog (SHOW TABLES, ...); {may_read}")
        elif kind == "BASE_TABLE":
            cat, schema, table = (str(ref.get(k) or "") for k in ("catalog_name", "schema_name", "table_name"))
            name = f"{schema}.{table}" if schema else table
            if not cat and not schema and fold(table) in ctes:
                continue
            if fold(cat) in ("", fold(catalog)) and schema and fold(name) in readable:
                continue
            shown = f"{cat}.{name}" if cat else name
            raise AccessDenied(f"role {role_name} may not read {_name(shown)}; {may_read}")
