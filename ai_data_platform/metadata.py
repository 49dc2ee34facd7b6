"""Dagster metadata for warehouse tables: schema (with PII classification), lineage, row counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from ai_data_platform import warehouse

OWNERS = ["team:data-platform"]
# Where an asset's data lives when its key does not say it: "dataset:<name>" or "model:<name>".
STORAGE_KEY = "adp/storage"
STORAGE_KINDS = ("warehouse", "dataset", "model")


@dataclass(frozen=True)
class Storage:
    kind: str  # warehouse | dataset | model
    name: str  # schema.table | dataset name | model name


def specs_of(assets: Iterable) -> Iterable[dg.AssetSpec]:
    """Every ``AssetSpec`` among asset definitions (``AssetsDefinition``s and bare ``AssetSpec``s)."""
    for item in assets:
        yield from (item.specs if isinstance(item, dg.AssetsDefinition) else [item])


def asset_storage(asset) -> Storage:
    """Where an asset's data lives (an ``AssetSpec`` or an asset-graph node): its ``adp/storage``
    metadata, else, for a DuckDB asset keyed ``[schema, table]``, that warehouse table."""
    key = asset.key.to_user_string()
    declared = asset.metadata.get(STORAGE_KEY)
    if declared:
        kind, _, name = str(getattr(declared, "value", declared)).partition(":")
        if kind in STORAGE_KINDS and name:
            return Storage(kind, name)
        raise ValueError(f"{key}: {STORAGE_KEY} must be warehouse:|dataset:|model:<name>, got {declared!r}")
    if "duckdb" in (asset.kinds or set()) and len(asset.key.path) == 2:
        return Storage("warehouse", ".".join(asset.key.path))
    raise ValueError(
        f"{key}: storage unknown: add {STORAGE_KEY} metadata (warehouse:<schema.table>, dataset:<name> or model:<name>)"
    )


def column_schema(
    columns: Sequence[tuple[str, str]],
    descriptions: Mapping[str, str] | None = None,
    pii: Mapping[str, str] | None = None,
) -> dg.TableSchema:
    """A TableSchema whose columns carry their description and a ``pii`` tag (direct/indirect/none)."""
    descriptions = descriptions or {}
    pii = pii or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=dtype,
                description=descriptions.get(name),
                tags={"pii": pii.get(name, "none")},
            )
            for name, dtype in columns
        ]
    )


def column_lineage(mapping: Mapping[str, Iterable[tuple[dg.AssetKey, str]]]) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        deps_by_column={
            col: [dg.TableColumnDep(asset_key=key, column_name=src) for key, src in deps]
            for col, deps in mapping.items()
        }
    )


PROFILE_KEY = "adp/profile"


def partition_profile(con, table: str, days: Sequence) -> dict:
    """Rows and per-column null counts of each day of a partitioned table, in one query:
    ``{"rows": {day: n}, "nulls": {day: {column: n}}}`` (columns without nulls left out)."""
    columns = [name for name, _ in warehouse.table_columns(con, table)]
    nulls = ", ".join(f"count(*) - count({warehouse.quote(c)})" for c in columns)
    found = con.execute(
        f"SELECT CAST(_partition_date AS VARCHAR), count(*), {nulls} FROM {table} "
        "WHERE _partition_date BETWEEN ? AND ? GROUP BY 1",
        [min(days), max(days)],
    ).fetchall()
    rows = {str(d): 0 for d in days}
    per_day: dict[str, dict[str, int]] = {}
    for day, count, *column_nulls in found:
        rows[day] = int(count)
        per_day[day] = {c: int(n) for c, n in zip(columns, column_nulls) if n}
    return {"rows": rows, "nulls": per_day}


def table_metadata(
    *,
    row_count: int,
    schema: dg.TableSchema | None = None,
    lineage: dg.TableColumnLineage | None = None,
    table: str | None = None,
    extra: Mapping[str, object] | None = None,
) -> dict[str, object]:
    md: dict[str, object] = {"dagster/row_count": dg.MetadataValue.int(int(row_count))}
    if schema is not None:
        md["dagster/column_schema"] = schema
    if lineage is not None:
        md["dagster/column_lineage"] = lineage
    if table is not None:
        md["dagster/table_name"] = table
    for k, v in (extra or {}).items():
        md[k] = v
    return md
