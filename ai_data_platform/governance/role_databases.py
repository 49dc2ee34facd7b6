"""Role databases: each role's relations, as the role may see them, in a DuckDB database of its own.

``roles/<role>.duckdb`` beside the warehouse (``$ADP_DATA_DIR/roles``; the directory owner-only,
0700, its files 0600) holds, for every warehouse table the role may read (``access.ROLES``), a
table of the same ``schema.table`` name with the role's treatments applied: omitted columns are
absent, redacted ones NULL, pseudonymized ones the HMAC of the value with the role's key. The
HMACs are computed here, with the key's pads bound as statement parameters: no view, macro or
stored SQL holds a key, so nothing a role can read does.

:func:`refresh_role_views` (the ``meta/role_views`` asset, after every batch) builds each database
anew from the warehouse, into a file beside it that then replaces it (``os.replace``): a query
opens the old database or the new one, whole, and a relation the policy no longer grants is
simply not in the new one (a role the policy no longer has loses its database). It also drops the
``<role>_<layer>`` views older versions of the platform kept in the warehouse (their SQL held the
keys), and records the relations it built from (``relations.json``: names and PII levels) so that
:func:`rebuild` can do the same after an erasure or a retention run deleted rows from the warehouse.
The role databases are derived from the warehouse alone, so a rebuild removes from them exactly
what was removed there; :func:`erasure_targets` makes every erasure do it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import duckdb

from ai_data_platform import file_lock, settings, warehouse
from ai_data_platform.governance import access

MANIFEST = "relations.json"
LOCK = ".lock"
BUILD_ALIAS = "adp_role_build"
ERASURE_TARGET = "role databases"
_ROLE_FILES = ("duckdb", "duckdb.wal", "duckdb.building", "duckdb.building.wal")  # <role>.<these> are ours


def _private_directory(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _selects(
    con: duckdb.DuckDBPyConnection, role_name: str, relations: Sequence[access.Relation]
) -> list[tuple[access.Relation, access.RelationSelect]]:
    """The role's SELECT of every relation it may read that exists in the warehouse (``con``'s
    current database) and keeps a column for it."""
    database = warehouse.quote(con.execute("SELECT current_database()").fetchall()[0][0])
    out = []
    for relation in access.readable(role_name, relations):
        if not warehouse.table_exists(con, relation.name):
            continue
        source = f"{database}.{warehouse.quote(relation.layer)}.{warehouse.quote(relation.table)}"
        select = access.relation_select(role_name, relation, warehouse.table_columns(con, relation.name), source)
        if select.sql is not None:
            out.append((relation, select))
    return out


def catalog_rows(con: duckdb.DuckDBPyConnection, relations: Sequence[access.Relation]) -> list[dict]:
    """``meta.role_views``: (role, relation, view, column, pii, treatment) of every relation each
    role gets; ``view`` names it in the role's database (``analyst.marts.customer_360``)."""
    rows = []
    for role_name in access.ROLES:
        for relation, select in _selects(con, role_name, relations):
            rows += [
                {"role": role_name, "relation": relation.name, "view": f"{role_name}.{relation.name}",
                 "column_name": column, "pii": level or "unclassified", "treatment": treatment}
                for column, level, treatment in select.plan
            ]
    return rows


def _build(
    con: duckdb.DuckDBPyConnection, role_name: str, relations: Sequence[access.Relation], directory: Path
) -> list[str]:
    """Build the role's database from the warehouse (``con``) and move it into place; the
    relations it holds."""
    target = directory / f"{role_name}.duckdb"
    building = directory / f"{role_name}.duckdb.building"
    for leftover in (building, Path(f"{building}.wal")):
        leftover.unlink(missing_ok=True)  # a build a crash interrupted
    built = []
    con.execute(f"ATTACH {warehouse.sql_literal(str(building))} AS {BUILD_ALIAS}")
    try:
        with warehouse.transaction(con):
            for relation, select in _selects(con, role_name, relations):
                schema = f"{BUILD_ALIAS}.{warehouse.quote(relation.layer)}"
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                table = f"{schema}.{warehouse.quote(relation.table)}"
                con.execute(f"CREATE TABLE {table} AS {select.sql}", select.parameters or None)
                built.append(relation.name)
    finally:
        con.execute(f"DETACH {BUILD_ALIAS}")
    if Path(f"{building}.wal").exists():
        raise RuntimeError(f"{building}: DuckDB left a write-ahead log after DETACH; the role database was kept")
    os.chmod(building, 0o600)
    os.replace(building, target)
    return built


def drop_warehouse_role_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Drop the ``<role>_<layer>.<table>`` views (and then empty schemas) older versions kept in
    the warehouse: a pseudonymizing view's SQL held the role's key."""
    prefixes = tuple(f"{r}_" for r in access.ROLES)
    views = [
        (schema, view)
        for schema, view in con.execute(
            "SELECT schema_name, view_name FROM duckdb_views() "
            "WHERE NOT internal AND database_name = current_database()"
        ).fetchall()
        if schema.startswith(prefixes)
    ]
    if not views:
        return []
    with warehouse.transaction(con):
        for schema, view in views:
            con.execute(f"DROP VIEW {warehouse.quote(schema)}.{warehouse.quote(view)}")
        for schema in sorted({s for s, _ in views}):
            left = con.execute(
                "SELECT (SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = $s) + (SELECT count(*) FROM duckdb_views() WHERE NOT internal "
                "AND database_name = current_database() AND schema_name = $s)",
                {"s": schema},
            ).fetchall()[0][0]
            if not left:
                con.execute(f"DROP SCHEMA {warehouse.quote(schema)}")
    return [f"{s}.{v}" for s, v in views]


def _write_manifest(directory: Path, relations: Sequence[access.Relation]) -> None:
    data = {"relations": [{"name": r.name, "levels": dict(r.levels)} for r in relations]}
    partial = directory / f"{MANIFEST}.partial"
    partial.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.chmod(partial, 0o600)
    os.replace(partial, directory / MANIFEST)


def _read_manifest(directory: Path) -> list[access.Relation] | None:
    try:
        data = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    return [access.Relation(r["name"], r["levels"]) for r in data["relations"]]


def _drop_retired(directory: Path) -> list[str]:
    """Remove the databases (and their leftovers) of roles the policy no longer has."""
    gone = []
    for path in sorted(directory.iterdir()):
        role_name, dot, rest = path.name.partition(".")
        if dot and rest in _ROLE_FILES and role_name not in access.ROLES:
            path.unlink()
            gone.append(path.name)
    return gone


def refresh_role_views(
    con: duckdb.DuckDBPyConnection, relations: Sequence[access.Relation], warehouse_path: Path | str
) -> dict[str, list[str]]:
    """Build every role's database from the warehouse open on ``con`` (stored at
    ``warehouse_path``) and drop the warehouse's old role views: ``{role: relations built}``."""
    directory = _private_directory(access.roles_directory(warehouse_path))
    with file_lock.locked(directory / LOCK):
        drop_warehouse_role_views(con)
        _drop_retired(directory)
        built = {role_name: _build(con, role_name, relations, directory) for role_name in access.ROLES}
        _write_manifest(directory, relations)
    return built


def _rows(database: Path) -> int:
    if not database.is_file():
        return 0
    con = duckdb.connect(str(database), read_only=True)
    try:
        tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT internal").fetchall()
        relations = [f"{warehouse.quote(s)}.{warehouse.quote(t)}" for s, t in tables]
        return sum(con.execute(f"SELECT count(*) FROM {r}").fetchall()[0][0] for r in relations)
    finally:
        con.close()


def rebuild(paths: settings.Paths | None = None) -> dict[str, int]:
    """Rebuild the role databases from the warehouse as it is now, with the relations of the last
    refresh (nothing to do before the first one): ``{role database: rows it lost}``."""
    paths = paths or settings.paths()
    directory = access.roles_directory(paths.warehouse)
    relations = _read_manifest(directory)
    if relations is None or not paths.warehouse.exists():
        return {}
    with file_lock.locked(directory / LOCK):
        databases = {r: access.role_database(r, paths.warehouse) for r in access.ROLES}
        before = {r: _rows(d) for r, d in databases.items()}
        con = warehouse.connect(paths.warehouse)
        try:
            for role_name in access.ROLES:
                _build(con, role_name, relations, directory)
        finally:
            con.close()
        lost = {f"{databases[r].name}": before[r] - _rows(d) for r, d in databases.items()}
    return {name: n for name, n in lost.items() if n > 0}


def erasure_targets():
    """The erasure target ``governance/erasure.py`` runs after the warehouse: rebuild the role
    databases, so the subject's rows, gone from the warehouse, are gone from every role's."""
    from ai_data_platform.governance.erasure import ErasureTarget

    return [ErasureTarget(ERASURE_TARGET, erase=lambda subject: rebuild())]
