"""Blocking PII gates: one ``pii_gate`` asset check on every feature, dataset and model asset.

Built structurally by :func:`pii_gates` from the asset definitions: every asset tagged
``layer: features`` or ``layer: ml`` gets a gate, including any added later. The gate reads the
asset's own ``dagster/column_schema`` (its PII classification) and scans what the run wrote:

- a warehouse table (``metadata.asset_storage``: the asset key as ``schema.table``): the run's
  partitions, in DuckDB;
- a dataset version (``adp/storage`` = ``dataset:<name>``): its ``data.parquet`` through
  ``read_parquet`` in DuckDB;
- a model (``adp/storage`` = ``model:<name>``): the model card (every string in it, its feature
  list) and the feature names the artifact itself was fitted on.

It fails (ERROR, blocking: nothing downstream runs) on any finding of
:mod:`~ai_data_platform.governance.pii_scan`, naming asset, partition, column, rule and a masked
sample. The scanning logic lives there; this module is the Dagster wiring.
"""


from collections.abc import Iterable

import dagster as dg
import duckdb

from ai_data_platform.governance import classification, pii_scan
from ai_data_platform.metadata import asset_storage, specs_of
from ai_data_platform.ml import datasets, models
from ai_data_platform.partitions import days_in
from ai_data_platform.resources import WarehouseResource
from ai_data_platform.warehouse import sql_literal

GATE_NAME = "pii_gate"
GATED_LAYERS = ("features", "ml")


def declared_levels(spec: dg.AssetSpec) -> dict[str, str | None]:
    schema = classification.schema_of(spec.metadata)
    if schema is None:
        raise ValueError(f"{spec.key.to_user_string()} has no dagster/column_schema to classify its columns")
    return classification.levels(schema)


def scan_warehouse(con: duckdb.DuckDBPyConnection, asset: str, table: str, days, declared) -> list[pii_scan.Finding]:
    """The days of a warehouse table a run wrote (all of it for an unpartitioned table)."""
    if days:
        lo, hi = min(days), max(days)
        return pii_scan.scan_relation(
            con, asset, table, declared,
            partition_column="_partition_date",
            where=f"_partition_date BETWEEN {sql_literal(lo)} AND {sql_literal(hi)}",
            partitions=[d.isoformat() for d in days],
        )
    return pii_scan.scan_relation(con, asset, table, declared)


def scan_dataset(asset: str, name: str, version: str, declared) -> list[pii_scan.Finding]:
    """A dataset version's Parquet file, scanned by DuckDB where it lies."""
    path = datasets.datasets_root() / name / version / datasets.DATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{asset} version {version}: {path} does not exist")
    con = duckdb.connect()
    try:
        return pii_scan.scan_relation(con, asset, f"read_parquet({sql_literal(str(path))})", declared, partition=version)
    finally:
        con.close()


def scan_model(asset: str, name: str, version: str, declared) -> list[pii_scan.Finding]:
    """A model's card and the feature names its artifact was fitted on."""
    estimator, card = models.load_model(name, version)
    fitted = [str(n) for n in getattr(estimator, "feature_names_in_", ())]
    names = list(dict.fromkeys([*card.get("features", []), *fitted]))
    found = pii_scan.column_findings(asset, version, names, declared)
    found += pii_scan.text_findings(asset, version, {"model_card": card, "fitted_feature_names": fitted})
    return found


def pii_gate(spec: dg.AssetSpec) -> dg.AssetChecksDefinition:
    """The blocking ``pii_gate`` check of one asset."""
    storage = asset_storage(spec)
    declared = declared_levels(spec)
    asset = spec.key.to_user_string()
    scanned = {
        "warehouse": f"every column and text value of {storage.name} in the run's partitions",
        "dataset": f"every column and text value of the {storage.name} dataset version's Parquet file",
        "model": f"the {storage.name} model card and the artifact's fitted feature names",
    }[storage.kind]

    @dg.asset_check(
        asset=spec.key,
        name=GATE_NAME,
        blocking=True,
        partitions_def=spec.partitions_def,
        description=(
            f"Blocks on PII: fails if a direct-PII or unclassified column, or a text value that looks "
            f"like an email address or a phone number, is in {scanned}."
        ),
    )
    def _gate(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        if storage.kind == "warehouse":
            days = days_in(context) if spec.partitions_def is not None else []
            with warehouse.get_connection() as con:
                findings = scan_warehouse(con, asset, storage.name, days, declared)
            where = ", ".join(d.isoformat() for d in days) or "all rows"
        elif storage.kind == "dataset":
            findings = scan_dataset(asset, storage.name, context.partition_key, declared)
            where = context.partition_key
        else:
            findings = scan_model(asset, storage.name, context.partition_key, declared)
            where = context.partition_key
        return gate_result(findings, f"{asset} ({where}): {scanned}")

    return _gate


def gate_result(findings: list[pii_scan.Finding], scanned: str) -> dg.AssetCheckResult:
    message = pii_scan.summarize(findings, scanned)
    return dg.AssetCheckResult(
        passed=not findings,
        severity=dg.AssetCheckSeverity.ERROR,
        description=message[:2000],
        metadata={
            "message": message,
            "findings": [f.to_dict() for f in findings],
            "rules_broken": sorted({f.rule for f in findings}),
        },
    )


def pii_gates(assets: Iterable) -> list[dg.AssetChecksDefinition]:
    """A ``pii_gate`` for every asset in a gated layer (``layer`` tag ``features`` or ``ml``)."""
    return [pii_gate(spec) for spec in specs_of(assets) if spec.tags.get("layer") in GATED_LAYERS]
