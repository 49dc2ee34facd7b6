"""PII classification: every column of every asset is ``direct``, ``indirect`` or ``none``.

The classification lives where Dagster shows it: the ``pii`` tag of each column in the asset's
``dagster/column_schema`` (built with :func:`ai_data_platform.metadata.column_schema`). Source
columns are classified once, in the source contracts; a column derived from others either
declares its own level (a keyed hash of an email is ``indirect``, a count is ``none``) or
inherits the highest level among its inputs (:func:`inherited_levels`, used for training sets
and models, whose columns pass features through).

- ``direct``: identifies a person on its own (name, email, phone, raw records holding them).
  Lives only in raw, quarantine and ``identity.customer_pii``; never in features, datasets or
  models (the blocking PII gates enforce it).
- ``indirect``: identifies a person combined with other data (country, device, IP country,
  free text, keyed hashes of direct identifiers).
- ``none``: neither.

:func:`definition_problems` walks an asset graph and reports every asset without a column
schema, every column without a valid level, and every pass-through column (same name, single
input) classified lower than its input. Pure functions over Dagster metadata objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg

from ai_data_platform.sources.contracts import PII_DIRECT, PII_INDIRECT, PII_NONE, SOURCE_TABLES, Column

PII_TAG = "pii"
LEVELS = (PII_DIRECT, PII_INDIRECT, PII_NONE)
_RANK = {PII_NONE: 0, PII_INDIRECT: 1, PII_DIRECT: 2}
SCHEMA_KEY = "dagster/column_schema"
LINEAGE_KEY = "dagster/column_lineage"


def highest(levels: Iterable[str]) -> str:
    """The most sensitive of ``levels`` (``none`` for none)."""
    return max(levels, key=_RANK.__getitem__, default=PII_NONE)


def highest_of_columns(columns: Iterable[Column]) -> str:
    """The level of a value that may hold any of ``columns`` (a raw line, a quarantined record)."""
    return highest(c.pii for c in columns)


def direct_pii_names() -> frozenset[str]:
    """Names of the columns the source contracts classify as direct identifiers.

    A column of one of these names reaching a feature, dataset or model is a leak whatever it
    is classified as there.
    """
    return frozenset(c.name for t in SOURCE_TABLES for c in t.raw_columns if c.pii == PII_DIRECT)


def _unwrap(value):
    """Definition metadata holds the object itself; event metadata wraps it in a MetadataValue."""
    return value.value if isinstance(value, dg.MetadataValue) else value


def schema_of(metadata: Mapping[str, object]) -> dg.TableSchema | None:
    """The ``dagster/column_schema`` of an asset's metadata, if any."""
    value = _unwrap(metadata.get(SCHEMA_KEY))
    return value if isinstance(value, dg.TableSchema) else None


def lineage_of(metadata: Mapping[str, object]) -> dg.TableColumnLineage | None:
    """The ``dagster/column_lineage`` of an asset's metadata, if any."""
    value = _unwrap(metadata.get(LINEAGE_KEY))
    return value if isinstance(value, dg.TableColumnLineage) else None


def levels(schema: dg.TableSchema) -> dict[str, str | None]:
    """``{column: level}``; None where a column carries no (or an invalid) ``pii`` tag."""
    out: dict[str, str | None] = {}
    for column in schema.columns:
        level = (column.tags or {}).get(PII_TAG)
        out[column.name] = level if level in LEVELS else None
    return out


def inherited_levels(
    lineage: Mapping[str, Iterable[tuple[dg.AssetKey, str]]],
    upstream_schemas: Mapping[dg.AssetKey, dg.TableSchema],
) -> dict[str, str]:
    """Each column's level as the highest level among the upstream columns it is computed from.

    Raises ``KeyError`` naming the column when an input is not classified upstream: inheriting
    from an unknown level would silently downgrade it.
    """
    known = {key: levels(schema) for key, schema in upstream_schemas.items()}
    out: dict[str, str] = {}
    for column, deps in lineage.items():
        found = []
        for key, source in deps:
            level = known.get(key, {}).get(source)
            if level is None:
                raise KeyError(f"column {column!r}: input {key.to_user_string()}.{source} has no PII classification")
            found.append(level)
        out[column] = highest(found)
    return out


def definition_problems(graph) -> list[str]:
    """Every classification problem in an asset graph (``Definitions.resolve_asset_graph()``).

    - an asset without ``dagster/column_schema`` (or with an empty one);
    - a column without a ``pii`` tag of ``direct``/``indirect``/``none``;
    - a pass-through column (its lineage is exactly one upstream column of the same name)
      classified lower than that column.
    """
    problems: list[str] = []
    schemas: dict[dg.AssetKey, dg.TableSchema] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        schema = schema_of(node.metadata)
        name = key.to_user_string()
        if schema is None or not schema.columns:
            problems.append(f"{name}: no dagster/column_schema")
            continue
        schemas[key] = schema
        for column, level in levels(schema).items():
            if level is None:
                problems.append(f"{name}.{column}: no pii classification (expected one of {', '.join(LEVELS)})")
    for key, schema in schemas.items():
        lineage = lineage_of(graph.get(key).metadata)
        if lineage is None:
            continue
        own = levels(schema)
        for column, deps in lineage.deps_by_column.items():
            if len(deps) != 1 or deps[0].column_name != column:
                continue
            upstream = levels(schemas.get(deps[0].asset_key, dg.TableSchema(columns=[]))).get(column)
            mine = own.get(column)
            if upstream and mine and _RANK[mine] < _RANK[upstream]:
                problems.append(
                    f"{key.to_user_string()}.{column} is classified {mine} but passes through "
                    f"{deps[0].asset_key.to_user_string()}.{column}, classified {upstream}"
                )
    return problems


__all__ = [
    "LEVELS",
    "PII_DIRECT",
    "PII_INDIRECT",
    "PII_NONE",
    "PII_TAG",
    "definition_problems",
    "direct_pii_names",
    "highest",
    "highest_of_columns",
    "inherited_levels",
    "levels",
    "lineage_of",
    "schema_of",
]
