"""Versioned training sets, models, scores and their gates, through Dagster on 95 days of history."""

import json
import shutil
from datetime import timedelta

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ai_data_platform import warehouse
from ai_data_platform.definitions import defs
from ai_data_platform.ml import datasets, models
from ai_data_platform.ml.checks import dataset_problems, single_feature_auc
from ai_data_platform.ml.training_sql import CHURN, FRAUD, dataset_sql, feature_columns
from ai_data_platform.resources import build_resources

pytestmark = pytest.mark.slow
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@pytest.fixture(scope="module")
def ml_world(long_history, tmp_path_factory):
    """A private copy of the long-history world (these tests write datasets and models)."""
    paths, instance, first, end = long_history
    root = tmp_path_factory.mktemp("ml_world")
    shutil.copyfile(paths.warehouse, root / "warehouse.duckdb")
    from ai_data_platform.settings import Paths

    return Paths(root), instance, first, end


def run(job_name, paths, partition, instance, config=None):
    job = defs.resolve_job_def(job_name)
    run_config = dict(QUIET)
    if config:
        run_config["ops"] = config
    return job.execute_in_process(
        instance=instance, partition_key=partition, resources=build_resources(paths), run_config=run_config, raise_on_error=False
    )


def failure_messages(result):
    """Step failures and failed checks of a run, for assertion messages."""
    steps = [str(e.event_specific_data.error.message) for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    checks = [e.metadata["message"].text for e in result.get_asset_check_evaluations() if not e.passed and "message" in e.metadata]
    return steps + checks


@pytest.fixture()
def in_world(ml_world, monkeypatch):
    paths = ml_world[0]
    monkeypatch.setenv("ADP_DATA_DIR", str(paths.root))
    return ml_world


def test_churn_version_builds_trains_and_passes_its_gates(in_world):
    paths, instance, first, end = in_world
    version = (end - timedelta(days=35)).isoformat()
    result = run("churn_training", paths, version, instance)
    assert result.success, failure_messages(result)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"dataset_quality": True, "beats_baseline": True, "pii_gate": True}
    manifest = datasets.read_manifest("churn", version)
    frame = datasets.load_dataset("churn", version)
    assert len(frame) == manifest["row_count"] > 500
    assert set(frame["snapshot_date"].astype(str).str[:10]) == {
        (end - timedelta(days=35 + o)).isoformat() for o in (0, 7, 14, 21)
    }
    assert {f["name"] for f in manifest["features"]} == set(feature_columns(CHURN))
    assert all(f["definition_hash"].startswith("sha256:") for f in manifest["features"])
    assert manifest["upstream"]["features/customer_daily"]  # partitions and their data versions
    assert manifest["validation"]["success"] is True
    assert 0 < manifest["label_balance"]["positives"] < manifest["row_count"]
    _, card = models.load_model("churn", version)
    assert card["dataset"]["content_hash"] == manifest["content_hash"]
    assert card["metrics"]["roc_auc"] > card["baseline_metrics"]["roc_auc"] + 0.02


def test_labels_equal_a_plain_python_recount_of_what_was_loaded_by_each_window_end(in_world):
    """Churn: a cancellation in (S + 1 day, S + 31 days], loaded by the end of that window; fraud: a
    chargeback reported within 60 days of the transaction and loaded by then. Recounted here from
    the staged rows with datetime arithmetic, never with the training-set SQL."""
    paths, instance, first, end = in_world
    churn_version, fraud_version = end - timedelta(days=35), end - timedelta(days=61)
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        churn = con.sql(dataset_sql(CHURN, churn_version)).df()
        fraud = con.sql(dataset_sql(FRAUD, fraud_version)).df()
        cancels = con.execute(
            "SELECT customer_id, cancelled_at, _available_at FROM staging.subscriptions "
            "WHERE cancelled_at IS NOT NULL AND _partition_date <= ?", [CHURN.last_label_day(churn_version)]
        ).fetchall()
        chargebacks = con.execute(
            "SELECT transaction_id, reported_at, _available_at FROM staging.chargebacks WHERE _partition_date <= ?",
            [FRAUD.last_label_day(fraud_version)],
        ).fetchall()
    finally:
        con.close()
    by_customer, by_txn = {}, {}
    for customer, cancelled, available in cancels:
        by_customer.setdefault(customer, []).append((cancelled, available))
    for txn, reported, available in chargebacks:
        by_txn.setdefault(txn, []).append((reported, available))

    def churned(row):
        start = pd.Timestamp(row.snapshot_date).to_pydatetime() + timedelta(days=1)
        stop = start + timedelta(days=30)
        return int(any(start <= c < stop and a <= stop for c, a in by_customer.get(row.customer_id, [])))

    def charged_back(row):
        stop = row.transaction_time.to_pydatetime() + timedelta(days=60)
        return int(any(r < stop and a <= stop for r, a in by_txn.get(row.transaction_id, [])))

    expected_churn = [churned(r) for r in churn.itertuples()]
    expected_fraud = [charged_back(r) for r in fraud.itertuples()]
    assert churn[CHURN.label].tolist() == expected_churn and 0 < sum(expected_churn) < len(churn)
    assert fraud[FRAUD.label].tolist() == expected_fraud and 0 < sum(expected_fraud) < len(fraud)
    assert len(churn) == len(churn[["snapshot_date", "customer_id"]].drop_duplicates())


def test_rebuilding_a_version_gives_the_same_bytes_and_changes_are_refused_unless_forced(in_world):
    paths, instance, first, end = in_world
    version = (end - timedelta(days=40)).isoformat()
    first_build = run("churn_training", paths, version, instance)
    assert first_build.success, failure_messages(first_build)
    path = datasets.datasets_root() / "churn" / version
    data_bytes = (path / "data.parquet").read_bytes()
    manifest_bytes = (path / "manifest.json").read_bytes()
    assert run("churn_training", paths, version, instance).success
    assert (path / "data.parquet").read_bytes() == data_bytes  # same inputs, same bytes
    assert (path / "manifest.json").read_bytes() == manifest_bytes

    con = warehouse.connect(paths.warehouse)  # the upstream feature partition changes
    con.execute("UPDATE features.customer_daily SET logins_30d = logins_30d + 1 WHERE _partition_date = ?", [version])
    con.close()
    refused = run("churn_training", paths, version, instance)
    assert not refused.success
    assert any("already exists with different content" in m and "force" in m for m in failure_messages(refused))
    assert (path / "data.parquet").read_bytes() == data_bytes  # the version is untouched

    forced = run("churn_training", paths, version, instance,
                 config={"ml__churn_training_set": {"config": {"force": True, "reason": "backfilled logins"}}})
    assert forced.success, failure_messages(forced)
    history = json.loads((path / "manifest.json").read_text())["history"]
    assert history[-1]["event"] == "forced_rebuild" and history[-1]["reason"] == "backfilled logins"
    assert history[-1]["previous_content_hash"] == json.loads(manifest_bytes)["content_hash"]


def test_a_version_whose_label_window_is_open_is_not_buildable(in_world):
    paths, instance, first, end = in_world
    version = (end - timedelta(days=10)).isoformat()
    result = run("churn_training", paths, version, instance)
    assert not result.success
    assert any("not buildable yet" in m and "label window" in m for m in failure_messages(result))
    assert not (datasets.datasets_root() / "churn" / version).exists()


def test_fraud_version_and_model(in_world):
    paths, instance, first, end = in_world
    version = (end - timedelta(days=62)).isoformat()
    result = run("fraud_training", paths, version, instance)
    assert result.success, failure_messages(result)
    frame = datasets.load_dataset("fraud", version)
    assert frame["chargeback_60d"].sum() > 0
    assert frame["transaction_id"].is_unique
    _, card = models.load_model("fraud", version)
    assert card["gate_passed"] is True


def test_scores_use_the_latest_passing_model_and_drift_is_measured(in_world):
    paths, instance, first, end = in_world
    version = (end - timedelta(days=35)).isoformat()
    if models.latest_passing_model("churn") is None:
        assert run("churn_training", paths, version, instance).success
    result = run("churn_scoring", paths, end.isoformat(), instance)
    assert result.success, failure_messages(result)
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        scores = con.execute("SELECT count(*), min(churn_probability), max(churn_probability), any_value(model_version) FROM ml.churn_scores WHERE _partition_date = ?", [end]).fetchone()
        active = con.execute("SELECT count(*) FROM features.customer_daily WHERE _partition_date = ?", [end]).fetchone()[0]
    finally:
        con.close()
    assert scores[0] == active and 0 <= scores[1] <= scores[2] <= 1
    assert scores[3] == models.latest_passing_model("churn")[0]

    from ai_data_platform.features.assets import customer_daily
    from ai_data_platform.ml.checks import feature_drift

    drift = dg.materialize(
        [customer_daily, feature_drift], partition_key=end.isoformat(), resources=build_resources(paths),
        instance=instance, raise_on_error=False,
    )
    (evaluation,) = [e for e in drift.get_asset_check_evaluations() if e.check_name == "feature_drift"]
    psi = evaluation.metadata["psi"].value
    assert set(psi) <= set(feature_columns(CHURN)) and len(psi) > 10
    assert all(v >= 0 for v in psi.values())


def _frame(n=400, rate=0.1, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.normal(size=n) for c in feature_columns(CHURN)})
    frame["churned_30d"] = (rng.random(n) < rate).astype(int)
    return frame


def test_dataset_gate_catches_leakage_constant_features_and_balance():
    assert dataset_problems(_frame(), CHURN) == []
    leaked = _frame()
    leaked["logins_30d"] = leaked["churned_30d"] * 5 + 1
    assert any("logins_30d" in p and "leak" in p for p in dataset_problems(leaked, CHURN))
    constant = _frame()
    constant["mrr"] = 19.0
    assert any("mrr is constant" in p for p in dataset_problems(constant, CHURN))
    empty = _frame()
    empty["tenure_days"] = np.nan
    assert any("tenure_days is all null" in p for p in dataset_problems(empty, CHURN))
    no_positives = _frame(rate=0.0)
    assert any("positive rate 0.0000" in p for p in dataset_problems(no_positives, CHURN))


def test_dataset_gate_fails_on_nan_or_infinite_feature_values_but_not_on_nulls():
    import pyarrow as pa

    from ai_data_platform.ml.checks import non_finite_problems

    frame = _frame()
    frame.loc[3, "mrr"] = None  # a missing value: null in Arrow, allowed
    assert non_finite_problems(pa.Table.from_pandas(frame), CHURN) == []
    table = pa.Table.from_pandas(_frame())
    for name, values in (("mrr", [np.inf, -np.inf]), ("logins_30d", [np.nan])):
        column = table.column(name).to_numpy().copy()
        column[: len(values)] = values
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(column))
    problems = non_finite_problems(table, CHURN)
    assert problems == [
        f"feature {name} holds {inf} infinite and {nan} NaN value(s): every value must be finite or null"
        for name, inf, nan in sorted([("mrr", 2, 0), ("logins_30d", 0, 1)], key=lambda p: feature_columns(CHURN).index(p[0]))
    ]


def test_single_feature_auc_equals_roc_auc_with_ties_in_either_direction():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    label = pd.Series((rng.random(5000) < 0.2).astype(int))
    counts = pd.Series(rng.poisson(2 + label * 0.7))  # many ties
    amounts = pd.Series(rng.normal(size=5000) - label * 0.4)  # no ties, inverse direction
    assert single_feature_auc(counts.astype(float), label) == pytest.approx(roc_auc_score(label, counts))
    assert single_feature_auc(amounts, label) == pytest.approx(1 - roc_auc_score(label, amounts))
    with_nulls = counts.astype(float).where(rng.random(5000) > 0.3)
    kept = with_nulls.notna()
    assert single_feature_auc(with_nulls, label) == pytest.approx(roc_auc_score(label[kept], with_nulls[kept]))
    assert single_feature_auc(counts.astype(float), pd.Series(np.zeros(5000, dtype=int))) is None


def test_data_scientists_load_a_version_by_name(in_world):
    from ai_data_platform.datasets import load_dataset

    paths, instance, first, end = in_world
    version = (end - timedelta(days=35)).isoformat()
    if not (datasets.datasets_root() / "churn" / version).exists():
        assert run("churn_training", paths, version, instance).success
    frame = load_dataset("churn", version)
    assert isinstance(frame, pd.DataFrame) and "churned_30d" in frame
    with pytest.raises(datasets.DatasetNotFound, match=version):
        load_dataset("churn", "2001-01-01")
