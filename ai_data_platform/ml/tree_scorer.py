"""Score one row with a trained gradient-boosting model in a fraction of scikit-learn's time.

``POST /score`` predicts one transaction at a time. scikit-learn's ``predict_proba`` on one row of
the served ``HistGradientBoostingClassifier`` spends ~2 ms in input validation, the pipeline's
float cast and one Cython call per tree (200 trees). :class:`CompiledBooster` reads the fitted
trees once into flat arrays and walks all of them at once, one tree level per numpy step, then
adds the leaf values to the baseline in tree order and applies the logistic function — the same
IEEE operations in the same order as scikit-learn, so the probability is identical, not close
(``test_tree_scorer.py`` compares them bit for bit, NaNs and threshold ties included).

Only what the platform trains is compiled: a ``Pipeline`` whose last step is a binary
``HistGradientBoostingClassifier`` on numeric features, preceded by steps that only cast to
float. :func:`compile_booster` returns None for anything else, and callers use scikit-learn.
"""

from __future__ import annotations

import numpy as np

_CASTING_STEPS = {"as_float"}  # models._new_pipeline: FunctionTransformer(_as_float)


class CompiledBooster:
    """The trees of a binary HistGradientBoostingClassifier as flat arrays (see the module docstring)."""

    def __init__(self, estimator) -> None:
        self.n_features = int(estimator.n_features_in_)
        self.baseline = float(estimator._baseline_prediction[0, 0])
        trees = [predictors[0].nodes for predictors in estimator._predictors]
        offsets = np.cumsum([0] + [len(nodes) for nodes in trees[:-1]])
        nodes = np.concatenate(trees)
        repeat = np.repeat(offsets, [len(n) for n in trees])
        self.roots = offsets.astype(np.int64)
        self.feature = nodes["feature_idx"].astype(np.int64)
        self.threshold = nodes["num_threshold"].astype(np.float64)
        self.missing_left = nodes["missing_go_to_left"].astype(bool)
        self.left = nodes["left"].astype(np.int64) + repeat
        self.right = nodes["right"].astype(np.int64) + repeat
        self.leaf = nodes["is_leaf"].astype(bool)
        self.value = nodes["value"].astype(np.float64)
        self.depth = int(nodes["depth"].max()) + 1

    def raw(self, x: np.ndarray) -> float:
        """The raw score (log-odds) of one row ``x`` (float64, NaN for missing)."""
        current = self.roots
        for _ in range(self.depth):
            leaf = self.leaf[current]
            if leaf.all():
                break
            values = x[self.feature[current]]
            go_left = np.where(np.isnan(values), self.missing_left[current], values <= self.threshold[current])
            current = np.where(leaf, current, np.where(go_left, self.left[current], self.right[current]))
        total = 0.0
        total += self.baseline  # scikit-learn: zeros, += baseline, then += each tree in order
        for v in self.value[current].tolist():
            total += v
        return total

    def predict_one(self, x) -> float:
        """P(label = 1) of one row, as ``predict_proba(...)[0, 1]`` computes it."""
        from scipy.special import expit

        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n_features,):
            raise ValueError(f"expected {self.n_features} feature values, got shape {x.shape}")
        return float(expit(np.float64(self.raw(x))))


def compile_booster(model) -> CompiledBooster | None:
    """A :class:`CompiledBooster` for a platform-trained model, or None when it is anything else."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    steps = model.steps if isinstance(model, Pipeline) else [("model", model)]
    *before, (_, booster) = steps
    if any(name not in _CASTING_STEPS for name, _ in before):
        return None
    if not isinstance(booster, HistGradientBoostingClassifier) or list(booster.classes_) != [0, 1]:
        return None
    if booster.n_trees_per_iteration_ != 1 or getattr(booster, "is_categorical_", None) is not None:
        return None
    if any(p[0].nodes["is_categorical"].any() for p in booster._predictors):
        return None
    return CompiledBooster(booster)
