"""Gates before anything a model learns from or serves: dataset quality, model versus baseline,
and feature drift between the newest features and what the served model was trained on."""

import math

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ai_data_platform.features.assets import KEY as CUSTOMER_DAILY_KEY
from ai_data_platform.ml import datasets, models, training_sql
from ai_data_platform.ml.assets import dataset_key, model_key
from ai_data_platform.ml.training_sql import CHURN, FRAUD, TrainingSetSpec
from ai_data_platform.partitions import daily_partitions, days_in
from ai_data_platform.resources import WarehouseResource

# Positive-label rate a training set must have to be worth training on.
CLASS_BALANCE_BOUNDS = {"churn": (0.002, 0.6), "fraud": (0.0005, 0.5)}
# A single feature separating the label this well is a leak, not a signal.
LEAKAGE_AUC = 0.99
PSI_WARN, PSI_ERROR = 0.1, 0.25


def single_feature_auc(values: pd.Series, label: pd.Series) -> float | None:
    """ROC-AUC of ranking by one feature (either direction), or None when undefined.

    Exact Mann-Whitney AUC with ties counted half, computed from per-value label counts (one
    hash group-by instead of a full rank sort: most features are small counts with many ties).
    """
    mask = values.notna()
    y = label[mask].to_numpy()
    if mask.sum() < 2 or y.min() == y.max():
        return None
    counts = pd.DataFrame({"v": values[mask].to_numpy(), "y": y}).groupby("v", sort=True)["y"].agg(["sum", "count"])
    pos = counts["sum"].to_numpy(dtype=float)
    neg = counts["count"].to_numpy(dtype=float) - pos
    neg_below = np.cumsum(neg) - neg
    auc = float((pos * (neg_below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))
    return max(auc, 1 - auc)


def dataset_problems(frame: pd.DataFrame, spec: TrainingSetSpec) -> list[str]:
    """Everything that makes a dataset unfit to train on, each as a sentence."""
    problems: list[str] = []
    label = frame[spec.label]
    rate = float(label.mean()) if len(frame) else 0.0
    lo, hi = CLASS_BALANCE_BOUNDS[spec.name]
    if not lo <= rate <= hi:
        problems.append(f"positive rate {rate:.4f} ({int(label.sum())} of {len(frame)}) is outside [{lo}, {hi}]")
    for name in training_sql.feature_columns(spec):
        col = frame[name]
        if col.isna().all():
            problems.append(f"feature {name} is all null")
            continue
        if col.nunique(dropna=True) <= 1 and not col.isna().any():
            problems.append(f"feature {name} is constant ({col.dropna().iloc[0]!r})")
            continue
        if pd.api.types.is_numeric_dtype(col):
            if col.astype(float).equals(label.astype(float)):
                problems.append(f"feature {name} equals the label {spec.label}")
                continue
            auc = single_feature_auc(col.astype(float), label)
            if auc is not None and auc >= LEAKAGE_AUC:
                problems.append(f"feature {name} alone separates the label (ROC-AUC {auc:.3f}): label leakage")
    return problems


def non_finite_problems(table: pa.Table, spec: TrainingSetSpec) -> list[str]:
    """A sentence per floating-point feature column holding NaN or an infinity (read from Arrow,
    where NaN is a value and null is missing; pandas cannot tell them apart)."""
    problems = []
    for name in training_sql.feature_columns(spec):
        if name not in table.column_names or not pa.types.is_floating(table.schema.field(name).type):
            continue
        values = table.column(name)
        infinite = pc.sum(pc.is_inf(values)).as_py() or 0
        nan = pc.sum(pc.is_nan(values)).as_py() or 0
        if infinite or nan:
            problems.append(
                f"feature {name} holds {infinite} infinite and {nan} NaN value(s): every value must be finite or null"
            )
    return problems


def build_dataset_check(spec: TrainingSetSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dataset_key(spec),
        name="dataset_quality",
        blocking=True,
        partitions_def=daily_partitions,
        description=(
            "Blocks training on a dataset version with a leaked label (a feature that alone "
            f"separates it, ROC-AUC >= {LEAKAGE_AUC}), a constant or all-null feature, a NaN or infinite "
            "feature value, or a positive "
            f"rate outside {CLASS_BALANCE_BOUNDS[spec.name]}; verifies the file's content hash."
        ),
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        version = context.partition_key
        table = datasets.load_dataset_table(spec.name, version)  # verifies the content hash
        frame = table.to_pandas()
        problems = non_finite_problems(table, spec) + dataset_problems(frame, spec)
        message = (
            f"{spec.name} version {version}: " + "; ".join(problems)
            if problems
            else f"{spec.name} version {version}: {len(frame)} rows fit to train on"
        )
        return dg.AssetCheckResult(
            passed=not problems,
            description=message[:2000],
            metadata={"message": message, "problems": problems, "rows": len(frame), "positive_rate": float(frame[spec.label].mean()) if len(frame) else 0.0},
        )

    return _check


def build_model_gate(spec: TrainingSetSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=model_key(spec),
        name="beats_baseline",
        blocking=True,
        partitions_def=daily_partitions,
        description="Blocks a model that does not beat the trivial baseline by the configured margin (PR-AUC and ROC-AUC) on the time-based test split.",
    )
    def _gate(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        _, card = models.load_model(spec.name, context.partition_key)
        m, b = card["metrics"], card["baseline_metrics"]
        message = (
            f"{spec.name} model {context.partition_key}: PR-AUC {m['pr_auc']} vs baseline {b['pr_auc']}, "
            f"ROC-AUC {m['roc_auc']} vs baseline {b['roc_auc']}, margin {card['margin']}"
        )
        return dg.AssetCheckResult(passed=bool(card["gate_passed"]), description=message, metadata={"message": message})

    return _gate


@dg.asset_check(
    asset=CUSTOMER_DAILY_KEY,
    name="feature_drift",
    partitions_def=daily_partitions,
    description=(
        "Population stability index of every feature in this partition against the training set of "
        f"the served churn model: WARN above {PSI_WARN}, ERROR above {PSI_ERROR}."
    ),
)
def feature_drift(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    latest = models.latest_passing_model(CHURN.name)
    if latest is None:
        return dg.AssetCheckResult(passed=True, description="no served churn model yet: nothing to compare with", metadata={"message": "no served churn model"})
    version, _, card = latest
    day = max(days_in(context))  # the newest partition of the run
    trained_on = datasets.load_dataset(CHURN.name, card["dataset"]["version"])
    with warehouse.get_connection() as con:
        current = con.execute("SELECT * FROM features.customer_daily WHERE _partition_date = ?", [day]).df()
    psi: dict[str, float] = {}
    for name in card["features"]:
        expected = trained_on[name].astype(float).to_numpy()
        actual = current[name].astype(float).to_numpy() if name in current else np.array([])
        if len(expected) and len(actual):
            value = datasets.population_stability_index(expected, actual)
            if value is not None and not math.isnan(value):
                psi[name] = round(float(value), 4)
    worst = max(psi.values(), default=0.0)
    drifted = {k: v for k, v in psi.items() if v > PSI_WARN}
    severity = dg.AssetCheckSeverity.ERROR if worst > PSI_ERROR else dg.AssetCheckSeverity.WARN
    message = (
        f"features.customer_daily {day} vs churn model {version}'s training set: "
        + (", ".join(f"{k} PSI {v}" for k, v in sorted(drifted.items(), key=lambda kv: -kv[1])) if drifted else f"max PSI {worst}")
    )
    return dg.AssetCheckResult(
        passed=not drifted,
        severity=severity,
        description=message[:2000],
        metadata={"message": message, "psi": psi, "max_psi": worst, "model_version": version},
    )


ml_checks = [
    build_dataset_check(CHURN),
    build_dataset_check(FRAUD),
    build_model_gate(CHURN),
    build_model_gate(FRAUD),
    feature_drift,
]
