"""Governance assets.

- ``meta/role_views``: the access policy applied after every batch: each role's database
  (``governance/role_databases.py``) rebuilt from the warehouse, and the catalog of what each role
  sees. Built from the asset definitions (:func:`build_role_views_asset`): every warehouse table of
  a layer some role may read is a relation, classified by its own ``dagster/column_schema``, so a
  table added later gets its role relations (and its masking) without touching this module.
- ``meta/audit_log``: the audit trail, an external asset (written by the audit sensor and the
  erasure and retention jobs, not materialized). Every append records the chain's head on it as
  an observation (``governance/audit_anchor.py``), so the head also lives in Dagster's storage,
  where the audit writer cannot rewrite it; ``adp audit verify`` checks the file against it.
"""

import dagster as dg
import pandas as pd

from ai_data_platform import warehouse as wh
from ai_data_platform.governance import access, classification, role_databases
from ai_data_platform.governance.audit import CHAIN_FIELDS, RECORD_FIELDS
from ai_data_platform.governance.audit_sensor import AUDIT_LOG_KEY
from ai_data_platform.metadata import OWNERS, asset_storage, column_schema, specs_of, table_metadata
from ai_data_platform.partitions import days_in
from ai_data_platform.resources import WarehouseResource
from ai_data_platform.sources.assets import daily_sql_table

ROLE_VIEWS_KEY = dg.AssetKey(["meta", "role_views"])
CATALOG_COLUMNS = [
    ("role", "VARCHAR"),
    ("relation", "VARCHAR"),
    ("view", "VARCHAR"),
    ("column_name", "VARCHAR"),
    ("pii", "VARCHAR"),
    ("treatment", "VARCHAR"),
    ("_partition_date", "DATE"),
]
CATALOG_SCHEMA = column_schema(
    CATALOG_COLUMNS,
    {
        "role": "access role (analyst, data_scientist, compliance)",
        "relation": "the warehouse table, schema.table",
        "view": "where the role reads it: <role>.<schema>.<table>, in $ADP_DATA_DIR/roles/<role>.duckdb",
        "column_name": "a column of the table",
        "pii": "its classification: direct, indirect, none or unclassified",
        "treatment": "what the role sees: show, pseudonymize, redact or omit",
        "_partition_date": "day of the refresh",
    },
)
AUDIT_LOG = dg.AssetSpec(
    AUDIT_LOG_KEY,
    group_name="governance",
    description=(
        "The audit trail: $ADP_DATA_DIR/audit/audit.jsonl, append-only, hash-chained and MACed (governance/audit.py). "
        "Holds no personal data (subjects appear as keyed hashes). Observed with its head (seq, hash, MAC) "
        "at every append. Grain: one record per materialization, check result, failed "
        "run or step, erasure or retention action."
    ),
    kinds={"json"},
    owners=OWNERS,
    tags={"layer": "governance"},
    metadata={"dagster/column_schema": column_schema([(f, "JSON" if f in ("row_counts", "input_data_versions", "details") else "VARCHAR") for f in (*RECORD_FIELDS, *CHAIN_FIELDS)])},
)
_WAREHOUSE_LAYERS = frozenset(layer for role in access.ROLES.values() for layer in role.layers)


def policy_relations(assets) -> list[access.Relation]:
    """Every warehouse table of the given assets in a layer some role may read."""
    relations = []
    for spec in specs_of(assets):
        try:
            storage = asset_storage(spec)
        except ValueError:
            continue  # not stored in the warehouse (a file-based asset)
        schema = classification.schema_of(spec.metadata)
        if storage.kind == "warehouse" and storage.name.split(".")[0] in _WAREHOUSE_LAYERS and schema is not None:
            relations.append(access.Relation(storage.name, classification.levels(schema)))
    return relations


def build_role_views_asset(assets) -> dg.AssetsDefinition:
    relations = policy_relations(assets)
    catalog_relation = access.Relation(access.CATALOG_TABLE, classification.levels(CATALOG_SCHEMA))

    @dg.asset(
        key=ROLE_VIEWS_KEY,
        group_name="governance",
        description=(
            "Role databases: for every access role (governance/access.py) a DuckDB database "
            "$ADP_DATA_DIR/roles/<role>.duckdb holding each warehouse table it may read, direct PII omitted "
            "and indirect PII redacted (analyst) or pseudonymized (data_scientist), or everything "
            "(compliance), rebuilt from the warehouse; `adp query --role` reads that database only. The "
            "table lists what each role sees. Grain: one row per role, relation and column, per refresh day."
        ),
        deps=[dg.AssetKey(r.name.split(".")) for r in relations],
        **daily_sql_table(),
        tags={"layer": "governance"},
        metadata={"partition_expr": "_partition_date", "dagster/column_schema": CATALOG_SCHEMA},
    )
    def role_views(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        days = days_in(context)
        columns = ", ".join(f"{wh.quote(n)} {t}" for n, t in CATALOG_COLUMNS)
        with warehouse.get_connection() as con:
            con.execute(f"CREATE TABLE IF NOT EXISTS {access.CATALOG_TABLE} ({columns})")
            catalog = role_databases.catalog_rows(con, [*relations, catalog_relation])
            frame = pd.DataFrame(catalog, columns=[n for n, _ in CATALOG_COLUMNS if n != "_partition_date"])
            con.register("_role_views", frame)
            try:
                counts = wh.replace_partitions(
                    con, access.CATALOG_TABLE, days,
                    lambda d: f"SELECT *, {wh.sql_literal(d)} AS _partition_date FROM _role_views",
                )
            finally:
                con.unregister("_role_views")
            built = role_databases.refresh_role_views(con, [*relations, catalog_relation], warehouse.database)
        return dg.MaterializeResult(
            metadata=table_metadata(
                row_count=sum(counts.values()),
                schema=CATALOG_SCHEMA,
                table=access.CATALOG_TABLE,
                extra={
                    "relations_by_role": {r: len(names) for r, names in built.items()},
                    "rows_by_day": {str(d): n for d, n in counts.items()},
                },
            )
        )

    return role_views
