"""ML assets: versioned training sets, the models trained on them, and daily churn scores.

Thin wiring around ``training_sql`` (what a version contains), ``datasets`` (immutable versions on
disk) and ``models`` (training, gate, cards). A training-set partition is one immutable dataset
version; a model partition is the model trained on that version.
"""

from datetime import date

import dagster as dg
import pandas as pd

from ai_data_platform import warehouse as wh
from ai_data_platform.features.assets import KEY as CUSTOMER_DAILY_KEY
from ai_data_platform.features.assets import SCHEMA as CUSTOMER_DAILY_SCHEMA
from ai_data_platform.features.assets import TXN_KEY, TXN_SCHEMA
from ai_data_platform.features.registry import CUSTOMER, TRANSACTION, feature
from ai_data_platform.governance.classification import inherited_levels
from ai_data_platform.metadata import OWNERS, PROFILE_KEY, column_lineage, column_schema, partition_profile, table_metadata
from ai_data_platform.ml import datasets, models, training_sql
from ai_data_platform.ml.training_sql import CHURN, FRAUD, TrainingSetSpec
from ai_data_platform.partitions import daily_partitions, parse_day
from ai_data_platform.quality.gx_runner import ExpectationSpec, SuiteSpec, validate_dataframe
from ai_data_platform.quality.suites import columns_present
from ai_data_platform.resources import WarehouseResource
from ai_data_platform.sources.assets import CODE_VERSION, WAREHOUSE_POOL, staging_schema
from ai_data_platform.sources.contracts import TABLES_BY_NAME
from ai_data_platform.quality.gx_runner import prewarm as prewarm_gx

ML_CODE_VERSION = "1"
# A model must beat the trivial baseline by this much (PR-AUC and ROC-AUC) to be served.
MODEL_MARGIN = 0.02
SCORES_TABLE = "ml.churn_scores"


class TrainingSetConfig(dg.Config):
    force: bool = False  # rebuild a version even if its content would change (recorded)
    reason: str = ""


def dataset_key(spec: TrainingSetSpec) -> dg.AssetKey:
    return dg.AssetKey(["ml", f"{spec.name}_training_set"])


def model_key(spec: TrainingSetSpec) -> dg.AssetKey:
    return dg.AssetKey(["ml", f"{spec.name}_model"])


FEATURE_ASSETS = {CHURN.name: (CUSTOMER_DAILY_KEY, CUSTOMER_DAILY_SCHEMA), FRAUD.name: (TXN_KEY, TXN_SCHEMA)}
# The label is computed from these columns of the label source (see training_sql).
LABEL_INPUTS = {CHURN.name: ("customer_id", "cancelled_at", "_available_at"), FRAUD.name: ("transaction_id", "reported_at", "_available_at")}
# Dataset columns named differently from the feature column they carry.
RENAMED_FROM_FEATURES = {"snapshot_date": "_partition_date"}


def label_source_key(spec: TrainingSetSpec) -> dg.AssetKey:
    return dg.AssetKey(spec.label_source.split("."))


def training_set_columns(spec: TrainingSetSpec) -> list[tuple[str, str]]:
    """Name and type of every column of a dataset version: keys, features, label."""
    _, feature_schema = FEATURE_ASSETS[spec.name]
    types = {c.name: c.type for c in feature_schema.columns} | {"snapshot_date": "DATE"}
    names = [*spec.key_columns, *([] if spec is CHURN else ["customer_id", "transaction_time"]), *training_sql.feature_columns(spec)]
    return [(n, types[n]) for n in dict.fromkeys(names)] + [(spec.label, "INTEGER")]


def training_set_lineage(spec: TrainingSetSpec) -> dict[str, list[tuple[dg.AssetKey, str]]]:
    """Every dataset column back to the feature table (features, keys) or the label source (label)."""
    feature_key, _ = FEATURE_ASSETS[spec.name]
    mapping = {
        name: [(feature_key, RENAMED_FROM_FEATURES.get(name, name))]
        for name, _ in training_set_columns(spec)
        if name != spec.label
    }
    mapping[spec.label] = [(label_source_key(spec), c) for c in LABEL_INPUTS[spec.name]]
    return mapping


def training_set_schema(spec: TrainingSetSpec) -> dg.TableSchema:
    """The dataset's columns, each classified as the most sensitive column it comes from."""
    feature_key, feature_schema = FEATURE_ASSETS[spec.name]
    label_table = TABLES_BY_NAME[spec.label_source.split(".")[1]]
    pii = inherited_levels(
        training_set_lineage(spec),
        {feature_key: feature_schema, label_source_key(spec): staging_schema(label_table)},
    )
    descriptions = {f.name: f.description for f in feature_refs(spec)} | {spec.label: f"label: {spec.description}"}
    return column_schema(training_set_columns(spec), descriptions, pii)


def model_schema(spec: TrainingSetSpec) -> dg.TableSchema:
    """A model's inputs: the dataset's feature columns, with the dataset's classification."""
    dataset = {c.name: c for c in training_set_schema(spec).columns}
    features = training_sql.feature_columns(spec)
    return column_schema(
        [(n, dataset[n].type) for n in features],
        {n: dataset[n].description for n in features},
        {n: dataset[n].tags["pii"] for n in features},
    )


SCORES_SCHEMA = column_schema(
    [("customer_id", "VARCHAR"), ("churn_probability", "DOUBLE"), ("model_version", "VARCHAR"), ("_partition_date", "DATE")],
    {
        "customer_id": "CRM customer id",
        "churn_probability": "predicted probability of cancelling within 30 days",
        "model_version": "version (dataset partition) of the churn model used",
        "_partition_date": "day scored",
    },
)


def feature_refs(spec: TrainingSetSpec) -> list[datasets.FeatureRef]:
    entity = CUSTOMER if spec is CHURN else TRANSACTION
    return [
        datasets.FeatureRef(f.name, f.definition_hash, f.description)
        for f in (feature(name, entity) for name in training_sql.feature_columns(spec))
    ]


def dataset_suite(spec: TrainingSetSpec) -> SuiteSpec:
    exps = [ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": c}) for c in spec.key_columns]
    if len(spec.key_columns) > 1:
        exps.append(ExpectationSpec("ExpectCompoundColumnsToBeUnique", {"column_list": list(spec.key_columns)}))
    else:
        exps.append(ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": spec.key_columns[0]}))
    exps.append(ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": spec.label, "value_set": [0, 1]}))
    exps.append(ExpectationSpec("ExpectTableRowCountToBeBetween", {"min_value": 1}))
    exps.append(columns_present(training_sql.feature_columns(spec)))
    return SuiteSpec(name=f"ml.{spec.name}_training_set", expectations=tuple(exps))


def _upstream_versions(instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str]) -> dict:
    """{partition: data version} of the materializations a dataset version was built from."""
    if not partitions:
        return {}
    records = instance.fetch_materializations(  # newest first: one query for every partition
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=10_000
    ).records
    out: dict[str, str | None] = {}
    for r in records:
        if r.partition_key not in out:
            tags = r.asset_materialization.tags or {}
            out[r.partition_key] = tags.get("dagster/data_version") or r.run_id
    return dict(sorted(out.items()))


class LabelWindowOpen(Exception):
    pass


def one_partition(context: dg.AssetExecutionContext) -> str:
    """Dataset versions, models and scores are built one partition per run."""
    if not context.has_partition_key:
        raise dg.Failure(
            description=f"{context.asset_key.to_user_string()} builds one partition per run; launch one run "
            "per partition (e.g. `dagster asset materialize --partition DAY` or a multi-run backfill)"
        )
    return context.partition_key


def build_training_frame(con, spec: TrainingSetSpec, version: date, loaded_days: set[str]) -> pd.DataFrame:
    """The version's rows, once every export day of its label window is loaded."""
    missing = training_sql.missing_label_days(spec, version, loaded_days)
    if missing:
        raise LabelWindowOpen(
            f"{spec.name} version {version} is not buildable yet: its label window runs through "
            f"export day {spec.last_label_day(version)} and {len(missing)} of its {spec.label_days} "
            f"export days of {spec.label_source} are not loaded (first missing: {missing[0]})"
        )
    return con.sql(training_sql.dataset_sql(spec, version)).df()


def build_training_set_asset(spec: TrainingSetSpec, feature_key: dg.AssetKey) -> dg.AssetsDefinition:
    @dg.asset(
        key=dataset_key(spec),
        group_name="ml",
        description=(
            f"Versioned training set '{spec.name}': {spec.description} One partition = one immutable "
            f"version under $ADP_DATA_DIR/datasets/{spec.name}/<version>/ (Parquet + manifest). "
            f"Grain: one row per {', '.join(spec.key_columns)}."
        ),
        deps=[feature_key, label_source_key(spec)],
        partitions_def=daily_partitions,
        kinds={"duckdb", "parquet"},
        owners=OWNERS,
        code_version=ML_CODE_VERSION,
        pool=WAREHOUSE_POOL,
        tags={"layer": "ml"},
        metadata={
            "dagster/column_schema": training_set_schema(spec),
            "dagster/column_lineage": column_lineage(training_set_lineage(spec)),
            "adp/storage": f"dataset:{spec.name}",
        },
    )
    def _training_set(context: dg.AssetExecutionContext, config: TrainingSetConfig, warehouse: WarehouseResource):
        prewarm_gx()  # GX imports on another thread while DuckDB works; the gate finds it ready
        version = parse_day(one_partition(context))
        loaded = context.instance.get_materialized_partitions(dg.AssetKey(spec.label_source.split(".")))
        with warehouse.get_connection() as con:
            try:
                frame = build_training_frame(con, spec, version, set(loaded))
            except LabelWindowOpen as exc:
                raise dg.Failure(description=str(exc)) from exc
            lookback = max(training_sql.CHURN_SNAPSHOT_OFFSETS) if spec is CHURN else training_sql.FRAUD_LOOKBACK_DAYS - 1
            rows = con.execute(
                f"SELECT DISTINCT _partition_date FROM {spec.feature_table} "
                "WHERE _partition_date BETWEEN ? - to_days(?) AND ? ORDER BY 1",
                [version, lookback, version],
            ).fetchall()
            feature_days = [r[0].isoformat() for r in rows]
        # encode first: pyarrow releases the GIL, so this overlaps the GX import of prewarm_gx
        encoded = datasets.encode_version(
            frame, key_columns=list(spec.key_columns), label=spec.label, features=feature_refs(spec)
        )
        report = validate_dataframe(frame, dataset_suite(spec))
        upstream = {
            feature_key.to_user_string(): _upstream_versions(context.instance, feature_key, feature_days),
        }
        try:
            manifest = datasets.write_version(
                spec.name,
                version.isoformat(),
                encoded,
                key_columns=list(spec.key_columns),
                label=spec.label,
                features=feature_refs(spec),
                code_version=f"{CODE_VERSION}.{ML_CODE_VERSION}",
                upstream=upstream,
                validation=report.to_dict() | {"summary": report.summary()},
                force=config.force,
                reason=config.reason or None,
            )
        except datasets.DatasetImmutableError as exc:
            raise dg.Failure(description=str(exc)) from exc
        return dg.MaterializeResult(
            metadata=table_metadata(
                row_count=manifest["row_count"],
                schema=training_set_schema(spec),
                lineage=column_lineage(training_set_lineage(spec)),
                extra={
                    "version": version.isoformat(),
                    "content_hash": manifest["content_hash"],
                    "label_balance": manifest["label_balance"],
                    "path": str(datasets.datasets_root() / spec.name / version.isoformat()),
                    "gx_success": report.success,
                    PROFILE_KEY: {
                        "rows": {version.isoformat(): len(frame)},
                        "nulls": {version.isoformat(): {c: int(n) for c, n in frame.isna().sum().items() if n}},
                    },
                    "forced_rebuilds": sum(1 for h in manifest.get("history", []) if h.get("event") == "forced_rebuild"),
                },
            ),
            data_version=dg.DataVersion(manifest["content_hash"]),
        )

    return _training_set


def build_model_asset(spec: TrainingSetSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=model_key(spec),
        group_name="ml",
        description=(
            f"The {spec.name} model trained (scikit-learn, time-based split on {spec.time_column}) on "
            f"the {spec.name} training set version of the same partition; artifact and model card under "
            f"$ADP_DATA_DIR/models/{spec.name}/<version>/. Grain: one model per dataset version."
        ),
        deps=[dataset_key(spec)],
        partitions_def=daily_partitions,
        kinds={"scikitlearn"},
        owners=OWNERS,
        code_version=ML_CODE_VERSION,
        tags={"layer": "ml"},
        metadata={
            "dagster/column_schema": model_schema(spec),
            "dagster/column_lineage": column_lineage({f: [(dataset_key(spec), f)] for f in training_sql.feature_columns(spec)}),
            "adp/storage": f"model:{spec.name}",
        },
    )
    def _model(context: dg.AssetExecutionContext):
        version = one_partition(context)
        frame = datasets.load_dataset(spec.name, version)
        manifest = datasets.read_manifest(spec.name, version)
        trained = models.train_model(
            spec.name,
            version,
            frame,
            features=training_sql.feature_columns(spec),
            label=spec.label,
            time_column=spec.time_column,
        )
        passed, message = models.beats_baseline(trained, margin=MODEL_MARGIN)
        path = models.save_model(trained, dataset_manifest=manifest, gate_passed=passed, margin=MODEL_MARGIN)
        context.log.info(message)
        m, b = trained.metrics, trained.baseline_metrics
        return dg.MaterializeResult(
            metadata={
                "roc_auc": m.roc_auc if m.roc_auc is not None else float("nan"),
                "pr_auc": m.pr_auc if m.pr_auc is not None else float("nan"),
                "baseline_roc_auc": b.roc_auc if b.roc_auc is not None else float("nan"),
                "baseline_pr_auc": b.pr_auc if b.pr_auc is not None else float("nan"),
                "beats_baseline": passed,
                "gate_message": message,
                "top_features": dg.MetadataValue.json([[n, round(v, 5)] for n, v in trained.feature_importances]),
                "dataset_content_hash": manifest["content_hash"],
                "train_rows": trained.train_rows,
                "test_rows": trained.test_rows,
                "path": str(path),
            }
        )

    return _model


@dg.asset(
    key=dg.AssetKey(["ml", "churn_scores"]),
    group_name="ml",
    description=(
        "Daily churn probability for every active customer from the latest model that passed its "
        "gate, with the model version used. Grain: one row per active customer per day."
    ),
    deps=[CUSTOMER_DAILY_KEY, model_key(CHURN)],
    partitions_def=daily_partitions,
    kinds={"duckdb", "scikitlearn"},
    owners=OWNERS,
    code_version=ML_CODE_VERSION,
    pool=WAREHOUSE_POOL,
    tags={"layer": "ml"},
    metadata={
        "dagster/column_schema": SCORES_SCHEMA,
        "dagster/column_lineage": column_lineage(
            {
                "customer_id": [(CUSTOMER_DAILY_KEY, "customer_id")],
                "_partition_date": [(CUSTOMER_DAILY_KEY, "_partition_date")],
                "churn_probability": [(model_key(CHURN), f) for f in training_sql.feature_columns(CHURN)],
            }
        ),
    },
)
def churn_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    day = parse_day(one_partition(context))
    latest = models.latest_passing_model(CHURN.name)
    if latest is None:
        raise dg.Failure(description="no churn model has passed its gate yet: nothing to score with")
    version, estimator, card = latest
    with warehouse.get_connection() as con:
        frame = con.execute("SELECT * FROM features.customer_daily WHERE _partition_date = ?", [day]).df()
        scored = pd.DataFrame(
            {
                "customer_id": frame["customer_id"],
                "churn_probability": models.score(estimator, frame, card["features"]),
                "model_version": version,
                "_partition_date": day,
            }
        )
        con.register("_scores", scored)
        try:
            wh.replace_partitions(
                con,
                SCORES_TABLE,
                [day],
                lambda d: "SELECT customer_id, churn_probability, model_version, CAST(_partition_date AS DATE) AS _partition_date FROM _scores",
                create_sql=f"CREATE TABLE IF NOT EXISTS {SCORES_TABLE} (customer_id VARCHAR, churn_probability DOUBLE, model_version VARCHAR, _partition_date DATE)",
            )
        finally:
            con.unregister("_scores")
        profile = partition_profile(con, SCORES_TABLE, [day])
    return dg.MaterializeResult(
        metadata=table_metadata(
            row_count=len(scored),
            schema=SCORES_SCHEMA,
            table=SCORES_TABLE,
            extra={PROFILE_KEY: profile, "model_version": version, "mean_probability": float(scored["churn_probability"].mean()) if len(scored) else 0.0},
        )
    )


churn_training_set = build_training_set_asset(CHURN, CUSTOMER_DAILY_KEY)
fraud_training_set = build_training_set_asset(FRAUD, TXN_KEY)
churn_model = build_model_asset(CHURN)
fraud_model = build_model_asset(FRAUD)
ml_assets = [churn_training_set, fraud_training_set, churn_model, fraud_model, churn_scores]
