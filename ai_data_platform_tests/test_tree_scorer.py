"""The compiled booster gives exactly scikit-learn's probability, row by row."""

import numpy as np
import pandas as pd
import pytest

from ai_data_platform.ml import models
from ai_data_platform.ml.tree_scorer import compile_booster

FEATURES = [f"f{i}" for i in range(6)]


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(11)
    n = 4000
    frame = pd.DataFrame({f: rng.normal(size=n) for f in FEATURES})
    frame.loc[rng.random(n) < 0.15, "f1"] = np.nan  # the booster learns where missing values go
    frame.loc[rng.random(n) < 0.05, "f3"] = np.nan
    signal = frame["f0"] * 1.5 - frame["f2"] + np.where(frame["f1"].isna(), 1.0, frame["f1"].fillna(0) * 0.5)
    frame["label"] = (signal + rng.normal(size=n) > 1.8).astype(int)
    frame["t"] = pd.date_range("2026-01-01", periods=n, freq="min")
    return models.train_model("fraud", "v", frame, features=FEATURES, label="label", time_column="t")


def test_probabilities_are_identical_to_scikit_learn_including_missing_values_and_threshold_ties(trained):
    compiled = compile_booster(trained.estimator)
    assert compiled is not None
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(300, len(FEATURES)))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    # values exactly on split thresholds: `<=` goes left in scikit-learn
    booster = trained.estimator.steps[-1][1]
    splits = np.concatenate([p[0].nodes[p[0].nodes["is_leaf"] == 0][["feature_idx", "num_threshold"]] for p in booster._predictors])
    for i, (feature, threshold) in enumerate(splits[:200]):
        rows[i % len(rows), feature] = threshold
    frame = pd.DataFrame(rows, columns=FEATURES)
    expected = models.score(trained.estimator, frame, FEATURES)
    got = np.array([compiled.predict_one(r) for r in rows])
    assert np.array_equal(got, expected)  # bit for bit, not approximately
    assert expected.min() < 0.05 and expected.max() > 0.5  # the rows exercise the whole range


def test_other_models_are_not_compiled_and_bad_rows_are_refused(trained):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    assert compile_booster(LogisticRegression()) is None
    booster = trained.estimator.steps[-1][1]
    assert compile_booster(Pipeline([("scale", StandardScaler()), ("model", booster)])) is None
    assert compile_booster(booster) is not None
    with pytest.raises(ValueError, match="expected 6 feature values"):
        compile_booster(booster).predict_one([1.0, 2.0])
