"""Access levels: who may read what, as one DuckDB database per role and a sandboxed query path.

The policy is :data:`ROLES`, declared once here. A role names the warehouse layers it may read
and how each PII level reaches it:

- ``show``: the value as stored;
- ``pseudonymize``: a keyed HMAC of the value with a key derived for the role (joins and counts
  work inside the role, values cannot be linked to other roles or looked up);
- ``redact``: NULL in its column (the column stays, so queries keep working);
- ``omit``: the column is not in the role's relation.

``overrides`` set the treatment of single columns (free text that cannot be pseudonymized
usefully). A column the asset's column schema does not classify is omitted for every role but
compliance: nobody decided it is safe.

**Role databases** (``role_databases.py``; the ``meta/role_views`` asset rebuilds them after every
batch, erasure and retention rebuild them after deleting): ``$ADP_DATA_DIR/roles/<role>.duckdb``
holds, for each table the role may read, a table of the same name (``marts.customer_360``) with the
treatments applied. Pseudonyms are computed when it is built, the role's key bound as a statement
parameter (:func:`relation_select`), so no SQL text stored anywhere holds a key.
``meta.role_views`` lists every (role, relation, column, treatment).

**Queries** (:func:`run_query`, ``adp query --role ROLE "SQL"``) run in the role sandbox
(``role_sandbox.py``): a child process in which DuckDB has the role's database open read-only and
nothing else, file access off, configuration locked, memory, threads, time and result size bounded.
The statement is judged first by DuckDB's own parser (``role_sql.py``: one SELECT reading only the
role's relations); the sandbox holds on its own, whatever a statement names. A statement refused
before it runs is :class:`AccessDenied` (naming the role, the relation and what the role may read);
one that fails as it runs (a SQL error, a limit) is :class:`QueryError`.

**Where identity lives** is :func:`identity_stores`, the one function the compliance role's
``identity.customer_pii`` follows (with data residency, one table per region's store). It is read
at query time, in this process, from every store, and handed to the sandbox as data: no store is
attached to the sandbox, and identity is never copied out of its region onto disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ai_data_platform import settings, warehouse
from ai_data_platform.governance import pii, role_sandbox
from ai_data_platform.governance.classification import PII_DIRECT, PII_INDIRECT, PII_NONE
from ai_data_platform.governance.role_sql import AccessDenied, QueryError
from ai_data_platform.governance.stores import IDENTITY, RegionalStores

SHOW, PSEUDONYMIZE, REDACT, OMIT = "show", "pseudonymize", "redact", "omit"
TREATMENTS = (SHOW, PSEUDONYMIZE, REDACT, OMIT)
IDENTITY_RELATION = "identity.customer_pii"
CATALOG_TABLE = "meta.role_views"
ROLES_DIRECTORY = "roles"  # beside the warehouse ($ADP_DATA_DIR/roles): one database per role
KEY_PARAMETERS = ("role_ipad", "role_opad")  # the role key's HMAC pads, bound to a statement, never in its text


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
    ``adp query --role compliance`` reads each existing store read-only and queries their union
    as ``identity.customer_pii``.
    """
    return [IdentityStore(path, IDENTITY.name) for path in RegionalStores.from_settings().existing().values()]


def role(name: str) -> Role:
    try:
        return ROLES[name]
    except KeyError:
        raise AccessDenied(f"unknown role {name!r}; roles: {', '.join(ROLES)}") from None


def roles_directory(warehouse_path: Path | str) -> Path:
    """Where the role databases of the warehouse at ``warehouse_path`` live: beside it."""
    return Path(warehouse_path).parent / ROLES_DIRECTORY


def role_database(role_name: str, warehouse_path: Path | str | None = None) -> Path:
    """The role's database: only its relations, as it may see them."""
    role(role_name)
    return roles_directory(warehouse_path or settings.paths().warehouse) / f"{role_name}.duckdb"


def role_key(role_name: str) -> str:
    """The role's pseudonymization key, derived from the platform's PII key."""
    return pii.hmac_hex(settings.pii_hmac_key(), f"role:{role_name}")


def key_parameters(role_name: str) -> dict[str, bytes]:
    """The statement parameters :func:`column_sql` pseudonymizes with: the role key's pads."""
    return dict(zip(KEY_PARAMETERS, pii.hmac_pads(role_key(role_name))))


def column_sql(treatment: str, column: str, dtype: str) -> str | None:
    """The SELECT item for one column under one treatment (None: omitted). A pseudonym reads the
    role's key from the parameters :func:`key_parameters` gives."""
    quoted = warehouse.quote(column)
    if treatment == SHOW:
        return quoted
    if treatment == REDACT:
        return f"CAST(NULL AS {dtype}) AS {quoted}"
    if treatment == PSEUDONYMIZE:
        ipad, opad = (f"${p}" for p in KEY_PARAMETERS)
        return f"{pii.hmac_sql_with(f'CAST({quoted} AS VARCHAR)', ipad, opad)} AS {quoted}"
    if treatment == OMIT:
        return None
    raise ValueError(f"unknown treatment {treatment!r}; expected one of {TREATMENTS}")


@dataclass(frozen=True)
class RelationSelect:
    """What a role gets of one relation: the SELECT (None when every column is omitted), its
    parameters (the role key's pads when a column is pseudonymized) and, per column, (column,
    PII level, treatment)."""

    sql: str | None
    parameters: dict[str, bytes]
    plan: list[tuple[str, str | None, str]]


def relation_select(
    role_name: str, relation: Relation, columns: Sequence[tuple[str, str]], source: str
) -> RelationSelect:
    """The role's treatments of ``relation`` (its ``columns``: (name, type)) read from ``source``."""
    policy = role(role_name)
    plan = [(c, relation.levels.get(c), policy.treat(relation.name, c, relation.levels.get(c))) for c, _ in columns]
    items = [column_sql(t, c, dtype) for (c, _, t), (_, dtype) in zip(plan, columns)]
    items = [i for i in items if i is not None]
    parameters = key_parameters(role_name) if any(t == PSEUDONYMIZE for _, _, t in plan) else {}
    return RelationSelect(f"SELECT {', '.join(items)} FROM {source}" if items else None, parameters, plan)


def readable(role_name: str, relations: Iterable[Relation]) -> list[Relation]:
    layers = role(role_name).layers
    return [r for r in relations if r.layer in layers]


# -- the query side ---------------------------------------------------------------------------------


def identity_table(role_name: str, levels: Mapping[str, str | None]):
    """The role's view of identity, as a pyarrow Table read from every store
    :func:`identity_stores` names (None: the role may not read it, or no store holds it)."""
    if "identity" not in role(role_name).layers:
        return None
    con = duckdb.connect()
    try:
        selects, parameters = [], {}
        for i, store in enumerate(dict.fromkeys(identity_stores())):
            catalog = f"identity_store_{i}"
            warehouse.attach_read_only(con, store.database, catalog)
            schema, table = store.table.split(".")
            exists = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
                [catalog, schema, table],
            ).fetchall()[0][0]
            if not exists:
                continue
            source = f"{warehouse.quote(catalog)}.{warehouse.quote(schema)}.{warehouse.quote(table)}"
            columns = [(r[0], r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
            select = relation_select(role_name, Relation(IDENTITY_RELATION, levels), columns, source)
            if select.sql:
                selects.append(select.sql)
                parameters |= select.parameters
        if not selects:
            return None
        return con.sql(" UNION ALL BY NAME ".join(selects), params=parameters or None).to_arrow_table()
    finally:
        con.close()


def run_query(role_name: str, sql: str, identity_levels: Mapping[str, str | None], *,
              limits: role_sandbox.Limits | None = None) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` as ``role_name`` in the role sandbox: (column names, rows), or
    :class:`AccessDenied` / :class:`QueryError`."""
    database = role_database(role_name)
    if not database.is_file():
        raise QueryError(f"no role database for {role_name} at {database}: materialize meta/role_views first")
    identity = identity_table(role_name, identity_levels)
    extras = {IDENTITY_RELATION: identity} if identity is not None else {}
    answer = role_sandbox.run(database, sql, role=role_name, extras=extras, limits=limits or role_sandbox.Limits())
    return answer.columns, answer.rows
