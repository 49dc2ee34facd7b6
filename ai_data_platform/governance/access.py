"""Access levels: who may read what, as role views in the warehouse and an enforcing query path.

The policy is :data:`ROLES`, declared once here. A role names the warehouse layers it may read
and how each PII level reaches it:

- ``show``: the value as stored;
- ``pseudonymize``: a keyed HMAC of the value with a key derived for the role (joins and counts
  work inside the role, values cannot be linked to other roles or looked up);
- ``redact``: NULL in its column (the column stays, so queries keep working);
- ``omit``: the column is not in the view.

``overrides`` set the treatment of single columns (free text that cannot be pseudonymized
usefully). A column the asset's column schema does not classify is omitted for every role but
compliance: nobody decided it is safe.

**Role views** (:func:`refresh_role_views`, run by the ``meta/role_views`` asset after every
batch): for each role and each readable table, ``CREATE OR REPLACE VIEW <role>_<layer>.<table>``
applying the treatments, e.g. ``analyst_marts.customer_360``. Views of tables a role may no
longer read are dropped. ``meta.role_views`` lists every (role, relation, column, treatment).

**Queries** (:func:`run_query`, ``adp query --role ROLE "SQL"``): the warehouse is opened
read-only; the role's views are exposed under their plain names (``marts.customer_360``) in an
in-memory catalog; the statement must be one SELECT whose every table reference is one of those
names (or a CTE) and whose table functions are only ``range``/``generate_series``/``unnest``
(DuckDB's own parser lists them: ``json_serialize_sql``); file access is disabled and the
configuration locked before the query runs, so ``read_parquet`` or ``ATTACH`` cannot bypass it.
Anything else is refused with :class:`AccessDenied` naming the role, the relation and what the
role may read.

**Where identity lives** is :func:`identity_stores`, the one function the compliance role's
``identity.customer_pii`` follows (today the warehouse; with data residency, one store per region).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ai_data_platform import settings, warehouse
from ai_data_platform.governance import pii
from ai_data_platform.governance.classification import PII_DIRECT, PII_INDIRECT, PII_NONE
from ai_data_platform.governance.stores import IDENTITY, RegionalStores

SHOW, PSEUDONYMIZE, REDACT, OMIT = "show", "pseudonymize", "redact", "omit"
TREATMENTS = (SHOW, PSEUDONYMIZE, REDACT, OMIT)
IDENTITY_RELATION = "identity.customer_pii"
QUERY_CATALOG = "adp_role"
WAREHOUSE_ALIAS = "warehouse"
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
CATALOG_TABLE = "meta.role_views"


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    layers: tuple[str, ...]
    treatment: Mapping[str, str]  # PII level -> treatment
    overrides: Mapping[str, str] = field(default_factory=dict)  # "schema.table.column" -> treatment
    unclassified: str = OMIT

    def treat(self, relation: str, column: str, level: str | None) -> str:
        if f"{relation}.{column}" in self.overrides:
            return self.overrides[f"{relation}.{column}"]
        return self.treatment[level] if level is not None else self.unclassified


ROLES: dict[str, Role] = {
    role.name: role
    for role in (
        Role(
            "analyst",
            "Reporting on marts, features and scores: no direct PII, indirect PII redacted.",
            layers=("marts", "features", "ml", "meta"),
            treatment={PII_DIRECT: OMIT, PII_INDIRECT: REDACT, PII_NONE: SHOW},
        ),
        Role(
            "data_scientist",
            "Modelling on staging, marts, features and scores: no direct PII, indirect PII pseudonymized.",
            layers=("staging", "marts", "features", "ml", "meta"),
            treatment={PII_DIRECT: OMIT, PII_INDIRECT: PSEUDONYMIZE, PII_NONE: SHOW},
            overrides={"staging.support_tickets.body": OMIT},  # free text: a pseudonym of it is useless
        ),
        Role(
            "compliance",
            "Erasure, residency and audits: every layer including the identity table, unmasked.",
            layers=("raw", "staging", "quarantine", "identity", "marts", "features", "ml", "meta"),
            treatment={PII_DIRECT: SHOW, PII_INDIRECT: SHOW, PII_NONE: SHOW},
            unclassified=SHOW,
        ),
    )
}


class AccessDenied(PermissionError):
    """A role asked for something its policy does not grant."""


@dataclass(frozen=True)
class Relation:
    """A warehouse table the policy knows: ``layer.table`` and its columns' PII levels."""

    name: str  # schema.table
    levels: Mapping[str, str | None]

    @property
    def layer(self) -> str:
        return self.name.split(".")[0]

    @property
    def table(self) -> str:
        return self.name.split(".")[1]


@dataclass(frozen=True)
class IdentityStore:
    database: Path
    table: str  # schema.table inside that database


def identity_stores() -> list[IdentityStore]:
    """Where ``identity.customer_pii`` lives: THE place the compliance role follows.

    One table in each region's personal data store (data residency: ``governance/stores.py``);
    ``adp query --role compliance`` attaches each existing store read-only and reads their union
    as ``identity.customer_pii``.
    """
    return [IdentityStore(path, IDENTITY.name) for path in RegionalStores.from_settings().existing().values()]


def role(name: str) -> Role:
    try:
        return ROLES[name]
    except KeyError:
        raise AccessDenied(f"unknown role {name!r}; roles: {', '.join(ROLES)}") from None


def view_name(role_name: str, relation: Relation) -> str:
    return f"{role_name}_{relation.layer}.{relation.table}"


def role_key(role_name: str) -> str:
    """The role's pseudonymization key, derived from the platform's PII key."""
    return pii.hmac_hex(settings.pii_hmac_key(), f"role:{role_name}")


def column_sql(role_name: str, treatment: str, column: str, dtype: str) -> str | None:
    """The SELECT item for one column under one treatment (None: omitted)."""
    quoted = warehouse.quote(column)
    if treatment == SHOW:
        return quoted
    if treatment == REDACT:
        return f"CAST(NULL AS {dtype}) AS {quoted}"
    if treatment == PSEUDONYMIZE:
        return f"{pii.hmac_sql(role_key(role_name), f'CAST({quoted} AS VARCHAR)')} AS {quoted}"
    if treatment == OMIT:
        return None
    raise ValueError(f"unknown treatment {treatment!r}; expected one of {TREATMENTS}")


def view_select(role_name: str, relation: Relation, columns: Sequence[tuple[str, str]], source: str) -> tuple[str | None, list[tuple[str, str | None, str]]]:
    """``SELECT`` of a role's view over ``source`` and, per column, (column, level, treatment).
    None when every column is omitted."""
    policy = role(role_name)
    plan = [(c, relation.levels.get(c), policy.treat(relation.name, c, relation.levels.get(c))) for c, _ in columns]
    items = [column_sql(role_name, t, c, dtype) for (c, _, t), (_, dtype) in zip(plan, columns)]
    items = [i for i in items if i is not None]
    return (f"SELECT {', '.join(items)} FROM {source}" if items else None), plan


def readable(role_name: str, relations: Iterable[Relation]) -> list[Relation]:
    layers = role(role_name).layers
    return [r for r in relations if r.layer in layers]


# -- the pipeline side: role views in the warehouse -------------------------------------------------


def refresh_role_views(con: duckdb.DuckDBPyConnection, relations: Sequence[Relation]) -> list[dict]:
    """(Re)create every role's views over the tables that exist, drop stale ones, and return the
    catalog rows (role, relation, view, column, pii, treatment). Runs in one transaction."""
    catalog: list[dict] = []
    wanted: set[tuple[str, str]] = set()
    with warehouse.transaction(con):
        for role_name in ROLES:
            for relation in readable(role_name, relations):
                if not warehouse.table_exists(con, relation.name):
                    continue
                columns = warehouse.table_columns(con, relation.name)
                select, plan = view_select(role_name, relation, columns, relation.name)
                if select is None:
                    continue
                schema, view = view_name(role_name, relation).split(".")
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {warehouse.quote(schema)}")
                con.execute(f"CREATE OR REPLACE VIEW {warehouse.quote(schema)}.{warehouse.quote(view)} AS {select}")
                wanted.add((schema, view))
                catalog += [
                    {"role": role_name, "relation": relation.name, "view": f"{schema}.{view}", "column_name": c, "pii": level or "unclassified", "treatment": t}
                    for c, level, t in plan
                ]
        prefixes = tuple(f"{r}_" for r in ROLES)
        for schema, view in con.execute("SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal AND database_name = current_database()").fetchall():
            if schema.startswith(prefixes) and (schema, view) not in wanted:
                con.execute(f"DROP VIEW {warehouse.quote(schema)}.{warehouse.quote(view)}")
    return catalog


# -- the query side ---------------------------------------------------------------------------------


def _tree(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    if tree.get("error"):
        raise AccessDenied(f"cannot parse the query: {tree.get('error_message')}")
    return tree


def referenced(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[set[tuple[str, str, str]], set[str], set[str]]:
    """(table references as (catalog, schema, table), CTE names, table functions) of one query."""
    tables: set[tuple[str, str, str]] = set()
    ctes: set[str] = set()
    functions: set[str] = set()
    stack: list = [_tree(con, sql)]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            kind = item.get("type")
            if kind == "BASE_TABLE":
                tables.add((item.get("catalog_name") or "", item.get("schema_name") or "", item.get("table_name") or ""))
            elif kind == "TABLE_FUNCTION":
                functions.add(str((item.get("function") or {}).get("function_name", "")).lower())
            cte_map = item.get("cte_map")
            if isinstance(cte_map, dict):
                ctes.update(str(entry.get("key", "")).lower() for entry in cte_map.get("map", []))
            stack.extend(item.values())
    return tables, ctes, functions


def check_query(con: duckdb.DuckDBPyConnection, role_name: str, sql: str, exposed: Iterable[str]) -> None:
    """Raise :class:`AccessDenied` unless ``sql`` is one SELECT reading only ``exposed`` relations."""
    exposed = set(exposed)
    allowed = ", ".join(sorted(exposed)) or "nothing yet (run the pipeline: meta/role_views creates the views)"
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise AccessDenied(f"cannot parse the query: {exc}") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise AccessDenied(f"role {role_name} may run one SELECT statement, got {', '.join(s.type.name for s in statements) or 'nothing'}")
    tables, ctes, functions = referenced(con, sql)
    forbidden = sorted(functions - ALLOWED_TABLE_FUNCTIONS)
    if forbidden:
        raise AccessDenied(f"role {role_name} may not call table function {forbidden[0]}(); {role_name} may read: {allowed}")
    for catalog, schema, table in sorted(tables):
        name = f"{schema}.{table}" if schema else table
        if catalog in ("", QUERY_CATALOG) and ((not schema and table.lower() in ctes) or name in exposed):
            continue
        shown = f"{catalog}.{name}" if catalog else name
        raise AccessDenied(f"role {role_name} may not read {shown}; {role_name} may read: {allowed}")


def _exposed_views(con: duckdb.DuckDBPyConnection, role_name: str, database: str) -> dict[str, str]:
    """``{layer.table: source}`` of the role's views in the warehouse."""
    rows = con.execute(
        "SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = ? AND NOT internal", [database]
    ).fetchall()
    prefix = f"{role_name}_"
    return {
        f"{schema[len(prefix):]}.{view}": f"{warehouse.quote(database)}.{warehouse.quote(schema)}.{warehouse.quote(view)}"
        for schema, view in rows
        if schema.startswith(prefix) and schema[len(prefix):] in role(role_name).layers
    }


def _identity_source(con: duckdb.DuckDBPyConnection, role_name: str, database: str, levels: Mapping[str, str | None]) -> str | None:
    """The role's view of identity, read from every store :func:`identity_stores` names."""
    if "identity" not in role(role_name).layers:
        return None
    selects = []
    for i, store in enumerate(identity_stores()):
        if Path(store.database).resolve() == settings.paths().warehouse.resolve():
            catalog = database
        else:
            catalog = f"identity_store_{i}"
            warehouse.attach_read_only(con, store.database, catalog)
        source = f"{warehouse.quote(catalog)}.{store.table}"
        schema, table = store.table.split(".")
        exists = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
            [catalog, schema, table],
        ).fetchone()[0]
        if not exists:
            continue
        columns = [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        select, _ = view_select(role_name, Relation(IDENTITY_RELATION, levels), columns, source)
        if select:
            selects.append(select)
    return "(" + " UNION ALL BY NAME ".join(selects) + ")" if selects else None


def open_role_connection(role_name: str, identity_levels: Mapping[str, str | None]) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A connection exposing only the role's relations under their plain names, file access off
    and configuration locked; and the names exposed."""
    role(role_name)
    path = settings.paths().warehouse
    if not path.exists():
        raise AccessDenied(f"no warehouse at {path}: run the pipeline first")
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"ATTACH ':memory:' AS {QUERY_CATALOG}")
        database = WAREHOUSE_ALIAS
        warehouse.attach_read_only(con, path, database)
        sources = _exposed_views(con, role_name, database)
        identity = _identity_source(con, role_name, database, identity_levels)
        if identity is not None:
            sources[IDENTITY_RELATION] = identity
        con.execute(f"USE {QUERY_CATALOG}")
        for name, source in sorted(sources.items()):
            schema, table = name.split(".")
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {warehouse.quote(schema)}")
            con.execute(f"CREATE VIEW {warehouse.quote(schema)}.{warehouse.quote(table)} AS SELECT * FROM {source}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con, sorted(sources)


def run_query(role_name: str, sql: str, identity_levels: Mapping[str, str | None]) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` as ``role_name``: (column names, rows), or :class:`AccessDenied`."""
    con, exposed = open_role_connection(role_name, identity_levels)
    try:
        check_query(con, role_name, sql, exposed)
        cursor = con.execute(sql)
        return [d[0] for d in cursor.description], cursor.fetchall()
    finally:
        con.close()
