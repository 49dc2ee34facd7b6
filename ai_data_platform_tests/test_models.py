"""Training, evaluation, persistence and scoring of the churn/fraud models, on small synthetic frames."""

import dataclasses
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from ai_data_platform.ml import models as m
from ai_data_platform_tests.waiting import bound

FEATURES = ["driver", "noise_a", "noise_b", "flag", "count"]
MANIFEST = {"name": "churn_training", "version": "2026-10-01", "content_hash": "sha256:abc123", "row_count": 3000}


def make_frame(n: int = 3000, *, seed: int = 0, learnable: bool = True, hourly: bool = False) -> pd.DataFrame:
    """Rows in random time order over 60 days; ``driver`` drives the label (logistic), the rest is noise."""
    rng = np.random.default_rng(seed)
    seconds = rng.integers(0, 60 * 86400, n)
    if hourly:  # many rows share a timestamp
        seconds = seconds // 3600 * 3600
    driver = rng.normal(size=n)
    logit = -1.5 + 2.5 * driver if learnable else np.full(n, -1.5)
    frame = pd.DataFrame(
        {
            "event_time": pd.Timestamp("2026-08-01", tz="UTC") + pd.to_timedelta(seconds, unit="s"),
            "driver": driver,
            "noise_a": rng.normal(size=n),
            "noise_b": rng.uniform(size=n),
            "flag": rng.random(n) < 0.5,
            "count": rng.integers(0, 10, n),
            "label": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )
    frame.loc[rng.random(n) < 0.05, "driver"] = np.nan
    frame.loc[rng.random(n) < 0.10, "noise_a"] = np.nan
    return frame


def train(frame: pd.DataFrame, version: str = "2026-10-01", **kw) -> m.TrainedModel:
    return m.train_model("churn", version, frame, features=FEATURES, label="label", time_column="event_time", **kw)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="module")
def trained(frame) -> m.TrainedModel:
    return train(frame)


def test_learnable_label_beats_the_baseline(trained):
    assert trained.metrics.roc_auc > 0.75
    passed, message = m.beats_baseline(trained, margin=0.05)
    assert passed, message
    # The baseline is the constant prior on the same test rows: ROC-AUC 0.5, PR-AUC = positive rate.
    base = trained.baseline_metrics
    assert base.roc_auc == pytest.approx(0.5)
    assert base.pr_auc == pytest.approx(base.positives / base.rows)
    assert (base.rows, base.positives) == (trained.metrics.rows, trained.metrics.positives)
    assert trained.metrics.rows == trained.test_rows
    assert trained.metrics.pr_auc > base.pr_auc + 0.05


def test_pure_noise_does_not_beat_the_baseline():
    noise = train(make_frame(seed=1, learnable=False))
    passed, message = m.beats_baseline(noise, margin=0.05)
    assert not passed
    for value in (noise.metrics.pr_auc, noise.baseline_metrics.pr_auc, noise.metrics.roc_auc, noise.baseline_metrics.roc_auc):
        assert f"{value:.3f}" in message
    assert "PR-AUC" in message and "ROC-AUC" in message and "baseline" in message


def test_gate_needs_both_metrics_above_the_margin(trained):
    m_, b = trained.metrics, trained.baseline_metrics
    just_pr = dataclasses.replace(trained, metrics=dataclasses.replace(m_, roc_auc=b.roc_auc + 0.04))
    assert m.beats_baseline(just_pr, margin=0.05)[0] is False
    just_roc = dataclasses.replace(trained, metrics=dataclasses.replace(m_, pr_auc=b.pr_auc + 0.04))
    assert m.beats_baseline(just_roc, margin=0.05)[0] is False
    exact = dataclasses.replace(trained, metrics=dataclasses.replace(m_, pr_auc=b.pr_auc + 0.25, roc_auc=b.roc_auc + 0.25))
    assert m.beats_baseline(exact, margin=0.25)[0] is True


def test_split_is_by_time_not_random(frame, trained):
    train_part, test_part, split_time = m.time_split(frame, "event_time", 0.25)
    assert train_part["event_time"].max() < test_part["event_time"].min()
    assert split_time == test_part["event_time"].min().isoformat()
    assert len(test_part) == 750 and len(train_part) + len(test_part) == len(frame)
    assert sorted(train_part.index.tolist() + test_part.index.tolist()) == list(range(len(frame)))
    # The trained model was evaluated on exactly the rows at/after its split time.
    newest = frame[frame["event_time"] >= pd.Timestamp(trained.split_time)]
    assert (trained.train_rows, trained.test_rows) == (len(frame) - len(newest), len(newest))
    assert trained.metrics.positives == int(newest["label"].sum())


def test_rows_sharing_the_boundary_time_all_go_to_test():
    days = pd.DataFrame({"day": np.repeat(pd.date_range("2026-08-01", periods=60).date, 50), "x": 1.0})
    train_part, test_part, split_time = m.time_split(days, "day", 0.26)  # 780 rows: mid-day boundary
    assert set(train_part["day"]).isdisjoint(set(test_part["day"]))
    assert len(test_part) == 800  # the boundary day moved whole into test
    assert split_time == test_part["day"].min().isoformat()


def test_ties_are_ordered_by_index_not_by_arrival():
    frame = make_frame(hourly=True)
    shuffled = frame.sample(frac=1.0, random_state=7)
    a_train, a_test, _ = m.time_split(frame, "event_time", 0.25)
    b_train, b_test, _ = m.time_split(shuffled, "event_time", 0.25)
    assert a_train.index.equals(b_train.index) and a_test.index.equals(b_test.index)


def test_training_is_deterministic(frame, trained):
    again = train(frame.sample(frac=1.0, random_state=3))  # same rows, different arrival order
    assert np.array_equal(m.score(trained.estimator, frame, FEATURES), m.score(again.estimator, frame, FEATURES))
    assert again.metrics == trained.metrics
    assert again.feature_importances == trained.feature_importances


def test_importances_rank_the_driving_feature_first(trained):
    names = [f for f, _ in trained.feature_importances]
    values = [v for _, v in trained.feature_importances]
    assert names[0] == "driver"
    assert values == sorted(values, reverse=True)
    assert set(names) == set(FEATURES) and len(names) <= 10
    assert values[0] > 5 * max(abs(v) for v in values[1:])


def test_score_returns_positive_class_probabilities(frame, trained):
    p = m.score(trained.estimator, frame, FEATURES)
    assert p.shape == (len(frame),) and ((p >= 0) & (p <= 1)).all()
    high = frame["driver"] > 1
    assert p[high.to_numpy()].mean() > p[(frame["driver"] < -1).to_numpy()].mean()
    assert m.score(trained.estimator, frame.iloc[:0], FEATURES).shape == (0,)


def test_save_load_round_trip(tmp_path, frame, trained):
    directory = m.save_model(trained, dataset_manifest=MANIFEST, gate_passed=True, margin=0.05, root=tmp_path)
    assert directory == tmp_path / "churn" / "2026-10-01"
    estimator, card = m.load_model("churn", "2026-10-01", root=tmp_path)
    assert np.array_equal(m.score(estimator, frame, FEATURES), m.score(trained.estimator, frame, FEATURES))

    raw = (directory / "model_card.json").read_text()
    assert raw == json.dumps(card, sort_keys=True, indent=2) + "\n"
    assert card["dataset"] == {"name": "churn_training", "version": "2026-10-01", "content_hash": "sha256:abc123", "row_count": 3000}
    assert card["gate_passed"] is True and card["margin"] == 0.05
    assert card["metrics"] == dataclasses.asdict(trained.metrics)
    assert card["baseline_metrics"] == dataclasses.asdict(trained.baseline_metrics)
    assert card["features"] == FEATURES and card["label"] == "label"
    assert card["feature_importances"][0][0] == "driver"
    assert card["split_time"] == trained.split_time
    assert card["train_rows"] + card["test_rows"] == 3000
    assert card["model_sha256"] == hashlib.sha256((directory / "model.joblib").read_bytes()).hexdigest()
    assert card["trained_at"].endswith("+00:00") and card["sklearn_version"]


def test_saving_again_replaces_the_version(tmp_path, trained):
    m.save_model(trained, dataset_manifest=MANIFEST, gate_passed=True, margin=0.05, root=tmp_path)
    m.save_model(trained, dataset_manifest=MANIFEST, gate_passed=False, margin=0.2, root=tmp_path)
    _, card = m.load_model("churn", "2026-10-01", root=tmp_path)
    assert card["gate_passed"] is False and card["margin"] == 0.2
    assert [p.name for p in (tmp_path / "churn").iterdir()] == ["2026-10-01"]  # no temp/retired dirs left


def test_manifest_must_match_the_trained_version(tmp_path, trained):
    with pytest.raises(ValueError, match="content_hash"):
        m.save_model(trained, dataset_manifest={"version": "2026-10-01"}, gate_passed=True, margin=0.05, root=tmp_path)
    with pytest.raises(ValueError, match="2026-09-01"):
        m.save_model(trained, dataset_manifest=MANIFEST | {"version": "2026-09-01"}, gate_passed=True, margin=0.05, root=tmp_path)
    assert not (tmp_path / "churn" / "2026-10-01").exists()


def test_tampered_model_file_is_never_unpickled(tmp_path, trained, monkeypatch):
    directory = m.save_model(trained, dataset_manifest=MANIFEST, gate_passed=True, margin=0.05, root=tmp_path)
    blob = bytearray((directory / "model.joblib").read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    (directory / "model.joblib").write_bytes(bytes(blob))

    def refuse(*args, **kwargs):
        raise AssertionError("unpickled an unverified file")

    import joblib

    monkeypatch.setattr(joblib, "load", refuse)
    with pytest.raises(ValueError, match="sha256"):
        m.load_model("churn", "2026-10-01", root=tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        m.latest_passing_model("churn", root=tmp_path)


def test_latest_passing_model_skips_failing_newer_versions(tmp_path, trained):
    assert m.latest_passing_model("churn", root=tmp_path) is None
    for version, passed in [("2026-08-01", True), ("2026-09-01", True), ("2026-10-01", False)]:
        v = dataclasses.replace(trained, version=version)
        m.save_model(v, dataset_manifest=MANIFEST | {"version": version}, gate_passed=passed, margin=0.05, root=tmp_path)
    version, estimator, card = m.latest_passing_model("churn", root=tmp_path)
    assert version == "2026-09-01" and card["version"] == "2026-09-01" and card["gate_passed"] is True
    assert hasattr(estimator, "predict_proba")
    assert m.latest_passing_model("fraud", root=tmp_path) is None

    only_failing = tmp_path / "only_failing"
    m.save_model(trained, dataset_manifest=MANIFEST, gate_passed=False, margin=0.05, root=only_failing)
    assert m.latest_passing_model("churn", root=only_failing) is None


def test_models_root_follows_adp_data_dir(data_dir, trained):
    assert m.models_root() == data_dir / "models"
    directory = m.save_model(trained, dataset_manifest=MANIFEST, gate_passed=True, margin=0.05)
    assert directory == data_dir / "models" / "churn" / "2026-10-01"
    assert m.latest_passing_model("churn")[0] == "2026-10-01"


def test_non_numeric_feature_is_rejected(frame, trained):
    bad = frame.assign(plan=np.where(frame["driver"] > 0, "pro", "free"))
    with pytest.raises(ValueError, match="plan"):
        m.train_model("churn", "v", bad, features=FEATURES + ["plan"], label="label", time_column="event_time")
    with pytest.raises(ValueError, match="plan"):
        m.score(trained.estimator, bad, FEATURES + ["plan"])
    with pytest.raises(ValueError, match="missing_col"):
        m.train_model("churn", "v", frame, features=["missing_col"], label="label", time_column="event_time")


def test_one_class_train_split_is_rejected(frame):
    late = frame["event_time"] >= frame["event_time"].quantile(0.8)
    only_recent_positives = frame.assign(label=late.astype(int))
    with pytest.raises(ValueError, match="train split .* only one class"):
        train(only_recent_positives)


def test_one_class_test_split_fails_the_gate(frame):
    early = frame["event_time"] < frame["event_time"].quantile(0.3)
    only_old_positives = frame.assign(label=(early & (frame["driver"] > 0)).astype(int))
    trained = train(only_old_positives)
    assert trained.metrics.roc_auc is None and trained.metrics.pr_auc is None
    assert trained.metrics.positives == 0 and trained.feature_importances == []
    passed, message = m.beats_baseline(trained, margin=0.05)
    assert not passed and "single class" in message


def test_empty_splits_are_rejected(frame):
    with pytest.raises(ValueError, match="test split is empty"):
        m.time_split(frame.iloc[:1], "event_time", 0.25)
    same_time = frame.assign(event_time=frame["event_time"].iloc[0])
    with pytest.raises(ValueError, match="train split is empty"):
        train(same_time)


def test_training_and_scoring_limit_the_boosters_openmp_threads_in_a_fresh_process():
    """scikit-learn is imported lazily: the OpenMP limit must still reach the booster's runtime
    (threadpoolctl only limits runtimes already loaded when the limit is entered)."""
    import subprocess
    import sys

    code = (
        "from threadpoolctl import threadpool_info\n"
        "from ai_data_platform.ml import models\n"
        "with models.single_threaded():\n"
        "    openmp = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'openmp']\n"
        "print(openmp)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=bound(600),
                         check=True).stdout
    threads = eval(out.strip().splitlines()[-1])  # noqa: S307 - our own output: a list of ints
    assert threads and set(threads) == {m.OPENMP_THREADS}
