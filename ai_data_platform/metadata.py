"""Dagster metadata for warehouse tables: schema (with PII classification), lineage, row counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import dagster as dg

OWNERS = ["team:data-platform"]


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
