"""Train, evaluate, persist and score the churn and fraud models. Pure Python: no Dagster.

One call of :func:`train_model` per dataset version:

* **Time-based split.** Rows are ordered by the time column (ties by the frame's index, so the
  order never depends on how the rows arrived) and the newest ``test_fraction`` of them form the
  test set. Rows that share the boundary timestamp all go to the test set, so every test time is
  strictly later than every train time (no same-instant leakage). Never a random split.
* **Model.** A scikit-learn ``Pipeline``: cast features to float, then a
  ``HistGradientBoostingClassifier`` (NaN handled natively, fixed seed, no early stopping), so
  the same data always gives the same model.
* **Evaluation.** ROC-AUC and PR-AUC (average precision) on the test split, next to a trivial
  baseline (``DummyClassifier(strategy="prior")`` fitted on the train split) evaluated on the same
  rows; :func:`beats_baseline` is the promotion gate. Permutation importances on (a bounded,
  deterministic sample of) the test split.
* **Persistence.** ``<root>/<name>/<version>/model.joblib`` plus ``model_card.json``, written to a
  temp dir and moved into place. The card records the model file's sha256, and
  :func:`load_model` refuses to unpickle a file whose hash does not match. This catches
  corruption and naive tampering, not an attacker who can rewrite the card too.

Training and scoring run with OpenMP limited to ``OPENMP_THREADS`` (1): on a small machine shared
with other runs, the booster's spinning OpenMP threads made a 3,000-row training take ~40 s
instead of ~0.6 s; single-threaded it is fast, predictable, and identical in result.

``root`` defaults to ``$ADP_DATA_DIR/models``, read at call time. scikit-learn and joblib are
imported where they are used: every Dagster run process loads the code location, and importing
scikit-learn (scipy.stats) up front would add over a second to each of them.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits  # a hard dependency of scikit-learn

from ai_data_platform import settings
from ai_data_platform.private_files import make_private_dir, new_private_dir, open_private

MODEL_FILE = "model.joblib"
CARD_FILE = "model_card.json"
MAX_ITER = 200
IMPORTANCE_MAX_ROWS = 20_000
IMPORTANCE_REPEATS = 3
TOP_FEATURES = 10
OPENMP_THREADS = 1


@dataclass(frozen=True)
class Metrics:
    """Ranking quality on one split; the AUCs are None when the split has a single class."""

    roc_auc: float | None
    pr_auc: float | None
    positives: int
    rows: int


@dataclass
class TrainedModel:
    name: str  # "churn" | "fraud"
    version: str  # dataset version it was trained on, e.g. "2026-10-01"
    estimator: object  # fitted sklearn Pipeline
    features: list[str]
    label: str
    metrics: Metrics  # on the time-based test split
    baseline_metrics: Metrics  # trivial baseline on the same split
    feature_importances: list[tuple[str, float]]  # top features, descending
    train_rows: int
    test_rows: int
    split_time: str  # ISO boundary: test rows have time >= split_time, train rows < split_time
    training_seconds: float  # wall time of the estimator fit


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def _check_columns(frame: pd.DataFrame, features: Sequence[str]) -> list[str]:
    """The feature list, validated: present, unique, and numeric or boolean."""
    features = [str(f) for f in features]
    if not features:
        raise ValueError("no features given")
    duplicates = sorted({f for f in features if features.count(f) > 1})
    if duplicates:
        raise ValueError(f"duplicate feature columns: {duplicates}")
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"feature columns missing from the frame: {missing}")
    non_numeric = [f for f in features if not pd.api.types.is_numeric_dtype(frame[f])]
    if non_numeric:
        kinds = {f: str(frame[f].dtype) for f in non_numeric}
        raise ValueError(f"non-numeric feature columns (encode them first): {kinds}")
    return features


def _as_float(X: pd.DataFrame) -> pd.DataFrame:
    """Cast every column (bool, int, nullable Int64/boolean, float) to float64; NA becomes NaN."""
    return pd.DataFrame(
        {c: X[c].to_numpy(dtype="float64", na_value=np.nan) for c in X.columns}, index=X.index
    )


def _check_label(frame: pd.DataFrame, label: str) -> None:
    if label not in frame.columns:
        raise ValueError(f"label column {label!r} missing from the frame")
    y = frame[label]
    if y.isna().any():
        raise ValueError(f"label column {label!r} has {int(y.isna().sum())} missing values")
    values = set(pd.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"label column {label!r} must be binary 0/1 or bool, got values {sorted(map(str, values))[:5]}")


def _labels(frame: pd.DataFrame, label: str) -> np.ndarray:
    return frame[label].astype("int64").to_numpy()


# --------------------------------------------------------------------------------------------
# Time-based split
# --------------------------------------------------------------------------------------------


def _iso(value: object) -> str:
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    if isinstance(value, np.datetime64):
        return pd.Timestamp(value).isoformat()
    return str(value)


def _time_order(frame: pd.DataFrame, time_column: str) -> np.ndarray:
    """Row positions sorted by time, ties broken by the frame's index (then original position)."""
    keys = pd.DataFrame(
        {"t": frame[time_column].to_numpy(), "i": frame.index.to_numpy()}, index=pd.RangeIndex(len(frame))
    )
    return keys.sort_values(["t", "i"], kind="stable").index.to_numpy()


def time_split(
    frame: pd.DataFrame, time_column: str, test_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """``(train, test, split_time)``: the newest ``test_fraction`` of rows by time are the test set.

    The boundary is the time of the first test row; rows at exactly that time all join the test
    set, so ``max(train time) < split_time <= min(test time)``.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if time_column not in frame.columns:
        raise ValueError(f"time column {time_column!r} missing from the frame")
    if frame[time_column].isna().any():
        raise ValueError(f"time column {time_column!r} has {int(frame[time_column].isna().sum())} missing values")
    ordered = frame.iloc[_time_order(frame, time_column)]
    n_test = int(round(len(ordered) * test_fraction))
    if n_test == 0:
        raise ValueError(f"test split is empty ({len(ordered)} rows x test_fraction {test_fraction})")
    boundary = ordered[time_column].iloc[len(ordered) - n_test]
    n_train = int((ordered[time_column] < boundary).sum())
    if n_train == 0:
        raise ValueError(
            f"train split is empty: all {len(ordered)} rows are at or after the boundary {_iso(boundary)}"
        )
    return ordered.iloc[:n_train], ordered.iloc[n_train:], _iso(boundary)


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------


def single_threaded():
    """threadpoolctl's limit of OpenMP to ``OPENMP_THREADS``, as a context manager.

    threadpoolctl limits the OpenMP runtimes already loaded, so scikit-learn's compiled booster
    (which loads libgomp) is imported first: scikit-learn is imported lazily here, and a limit
    entered before that import would not apply to the booster's threads.
    """
    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime the limit must reach

    return threadpool_limits(limits=OPENMP_THREADS, user_api="openmp")


def _new_pipeline(seed: int) -> Pipeline:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    return Pipeline(
        [
            ("as_float", FunctionTransformer(_as_float, feature_names_out="one-to-one")),
            (
                "classifier",
                HistGradientBoostingClassifier(max_iter=MAX_ITER, early_stopping=False, random_state=seed),
            ),
        ]
    )


def _positive_proba(estimator, X: pd.DataFrame) -> np.ndarray:
    column = list(estimator.classes_).index(1)
    return np.asarray(estimator.predict_proba(X)[:, column], dtype="float64")


def _metrics(y: np.ndarray, p: np.ndarray) -> Metrics:
    from sklearn.metrics import average_precision_score, roc_auc_score

    positives, rows = int(y.sum()), int(len(y))
    if positives in (0, rows):
        return Metrics(roc_auc=None, pr_auc=None, positives=positives, rows=rows)
    return Metrics(
        roc_auc=float(roc_auc_score(y, p)),
        pr_auc=float(average_precision_score(y, p)),
        positives=positives,
        rows=rows,
    )


def _baseline_metrics(X_train, y_train, X_test, y_test) -> Metrics:
    from sklearn.dummy import DummyClassifier

    dummy = DummyClassifier(strategy="prior").fit(X_train, y_train)
    return _metrics(y_test, _positive_proba(dummy, X_test))


def _importance_sample(X: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """At most ``IMPORTANCE_MAX_ROWS`` rows, chosen by a seeded generator (deterministic)."""
    if len(X) <= IMPORTANCE_MAX_ROWS:
        return X, y
    rows = np.sort(np.random.default_rng(seed).choice(len(X), IMPORTANCE_MAX_ROWS, replace=False))
    return X.iloc[rows], y[rows]


def _importances(estimator, X: pd.DataFrame, y: np.ndarray, seed: int) -> list[tuple[str, float]]:
    """Top permutation importances (drop in average precision), descending; [] if one class."""
    from sklearn.inspection import permutation_importance

    X, y = _importance_sample(X, y, seed)
    if len(np.unique(y)) < 2:
        return []
    result = permutation_importance(
        estimator, X, y, scoring="average_precision", n_repeats=IMPORTANCE_REPEATS, random_state=seed
    )
    ranked = sorted(zip(X.columns, result.importances_mean), key=lambda kv: (-kv[1], kv[0]))
    return [(str(f), float(v)) for f, v in ranked[:TOP_FEATURES]]


def train_model(
    name: str,
    version: str,
    frame: pd.DataFrame,
    *,
    features: Sequence[str],
    label: str,
    time_column: str,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> TrainedModel:
    """Fit on the older rows, evaluate on the newest ``test_fraction`` of rows by time."""
    with single_threaded():
        return _train(name, version, frame, list(features), label, time_column, test_fraction, seed)


def _train(
    name: str,
    version: str,
    frame: pd.DataFrame,
    features: list[str],
    label: str,
    time_column: str,
    test_fraction: float,
    seed: int,
) -> TrainedModel:
    features = _check_columns(frame, features)
    _check_label(frame, label)
    leaking = sorted({label, time_column} & set(features))
    if leaking:
        raise ValueError(f"label/time column used as a feature: {leaking}")
    train, test, split_time = time_split(frame, time_column, test_fraction)
    y_train, y_test = _labels(train, label), _labels(test, label)
    if len(np.unique(y_train)) < 2:
        raise ValueError(
            f"cannot train {name}@{version}: the train split ({len(train)} rows before {split_time}) "
            f"has only one class ({label}={int(y_train[0])})"
        )
    X_train, X_test = _as_float(train[features]), _as_float(test[features])

    estimator = _new_pipeline(seed)
    started = time.perf_counter()
    estimator.fit(X_train, y_train)
    training_seconds = time.perf_counter() - started

    return TrainedModel(
        name=name,
        version=version,
        estimator=estimator,
        features=features,
        label=label,
        metrics=_metrics(y_test, _positive_proba(estimator, X_test)),
        baseline_metrics=_baseline_metrics(X_train, y_train, X_test, y_test),
        feature_importances=_importances(estimator, X_test, y_test, seed),
        train_rows=len(train),
        test_rows=len(test),
        split_time=split_time,
        training_seconds=round(training_seconds, 3),
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def beats_baseline(trained: TrainedModel, *, margin: float) -> tuple[bool, str]:
    """Pass when model PR-AUC and ROC-AUC each beat the baseline's by at least ``margin``."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    m, b = trained.metrics, trained.baseline_metrics
    who = f"{trained.name}@{trained.version}"
    if None in (m.pr_auc, m.roc_auc, b.pr_auc, b.roc_auc):
        return False, (
            f"{who} failed: the test split has a single class ({m.rows} rows, {m.positives} positives), "
            f"so the metrics are undefined (PR-AUC {_fmt(m.pr_auc)} vs baseline PR-AUC {_fmt(b.pr_auc)}; "
            f"ROC-AUC {_fmt(m.roc_auc)} vs baseline ROC-AUC {_fmt(b.roc_auc)})"
        )
    passed = m.pr_auc >= b.pr_auc + margin and m.roc_auc >= b.roc_auc + margin
    return passed, (
        f"{who} {'passed' if passed else 'failed'} (margin {margin}): "
        f"PR-AUC {_fmt(m.pr_auc)} vs baseline PR-AUC {_fmt(b.pr_auc)} (needs >= {_fmt(b.pr_auc + margin)}); "
        f"ROC-AUC {_fmt(m.roc_auc)} vs baseline ROC-AUC {_fmt(b.roc_auc)} (needs >= {_fmt(b.roc_auc + margin)})"
    )


def score(estimator, frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """P(label=1) for every row of ``frame``, in order."""
    features = _check_columns(frame, features)
    if len(frame) == 0:
        return np.empty(0, dtype="float64")
    with single_threaded():
        return _positive_proba(estimator, _as_float(frame[features]))


# --------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------


def models_root() -> Path:
    """``$ADP_DATA_DIR/models``, resolved at call time."""
    return settings.data_dir() / "models"


def _path_part(value: str, what: str) -> str:
    """A name or version usable as one directory name (no separators, not hidden, not ``..``)."""
    if not value or value.startswith(".") or "/" in value or "\\" in value or "\x00" in value:
        raise ValueError(f"invalid model {what} {value!r}")
    return value


def _version_dir(root: Path | None, name: str, version: str) -> Path:
    return (root or models_root()) / _path_part(name, "name") / _path_part(version, "version")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_file(path: Path, data: bytes) -> None:
    with open_private(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _dataset_entry(trained: TrainedModel, manifest: Mapping) -> dict:
    if "content_hash" not in manifest:
        raise ValueError("dataset_manifest has no 'content_hash'")
    version = manifest.get("version", trained.version)
    if str(version) != trained.version:
        raise ValueError(f"dataset_manifest is for version {version!r}, the model was trained on {trained.version!r}")
    return {
        "name": manifest.get("name"),
        "version": trained.version,
        "content_hash": manifest["content_hash"],
        "row_count": int(manifest.get("row_count", trained.train_rows + trained.test_rows)),
    }


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def model_card(
    trained: TrainedModel, *, dataset_manifest: Mapping, gate_passed: bool, margin: float, model_sha256: str
) -> dict:
    """The JSON-ready description of one trained model version."""
    return {
        "name": trained.name,
        "version": trained.version,
        "dataset": _dataset_entry(trained, dataset_manifest),
        "features": list(trained.features),
        "label": trained.label,
        "metrics": asdict(trained.metrics),
        "baseline_metrics": asdict(trained.baseline_metrics),
        "margin": float(margin),
        "gate_passed": bool(gate_passed),
        "feature_importances": [[f, float(v)] for f, v in trained.feature_importances],
        "train_rows": int(trained.train_rows),
        "test_rows": int(trained.test_rows),
        "split_time": trained.split_time,
        "training_seconds": float(trained.training_seconds),
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sklearn_version": _sklearn_version(),
        "model_sha256": model_sha256,
    }


def _publish(staged: Path, target: Path) -> None:
    """Move ``staged`` to ``target``, replacing an existing version (restored if the move fails)."""
    if not target.exists():
        os.replace(staged, target)
        return
    retired = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
    os.replace(target, retired)
    try:
        os.replace(staged, target)
    except BaseException:
        os.replace(retired, target)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def save_model(
    trained: TrainedModel,
    *,
    dataset_manifest: Mapping,
    gate_passed: bool,
    margin: float,
    root: Path | None = None,
) -> Path:
    """Write ``<root>/<name>/<version>/{model.joblib, model_card.json}``; return the version dir.

    Files are written into a hidden temp dir next to the target and moved into place, so readers
    see either the old version or the new one, never a half-written one. Saving a version again
    replaces it: models are derived from the (immutable) dataset version.
    """
    target = _version_dir(root, trained.name, trained.version)
    make_private_dir(target.parent)
    staged = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    new_private_dir(staged)
    try:
        import joblib

        buffer = io.BytesIO()
        joblib.dump(trained.estimator, buffer)
        blob = buffer.getvalue()
        card = model_card(
            trained, dataset_manifest=dataset_manifest, gate_passed=gate_passed, margin=margin, model_sha256=_sha256(blob)
        )
        _write_file(staged / MODEL_FILE, blob)
        _write_file(staged / CARD_FILE, (json.dumps(card, sort_keys=True, indent=2, allow_nan=False) + "\n").encode())
        _publish(staged, target)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
    return target


def _read_card(directory: Path) -> dict | None:
    path = directory / CARD_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def load_model(name: str, version: str, *, root: Path | None = None) -> tuple[object, dict]:
    """``(estimator, model card)``; the model file is unpickled only if its sha256 matches the card."""
    directory = _version_dir(root, name, version)
    card = _read_card(directory)
    if card is None:
        from ai_data_platform.ml.datasets import read_tombstone

        deleted = read_tombstone(directory.parent, version)
        if deleted is not None:
            raise FileNotFoundError(
                f"model {name}@{version} was deleted on {deleted.get('deleted_at')} by {deleted.get('by')} ({deleted.get('reason')})"
            )
        raise FileNotFoundError(f"no model card for {name}@{version} in {directory}")
    if card.get("name") != name or card.get("version") != version:
        raise ValueError(f"model card in {directory} is for {card.get('name')}@{card.get('version')}")
    blob = (directory / MODEL_FILE).read_bytes()
    expected = card.get("model_sha256")
    if not isinstance(expected, str) or not hmac.compare_digest(_sha256(blob), expected):
        raise ValueError(f"{directory / MODEL_FILE}: sha256 does not match the model card; refusing to load it")
    import joblib

    return joblib.load(io.BytesIO(blob)), card


def latest_passing_model(name: str, *, root: Path | None = None) -> tuple[str, object, dict] | None:
    """``(version, estimator, card)`` of the newest version whose card says ``gate_passed``, or None.

    Versions sort as strings (ISO dates sort chronologically). A passing version whose model file
    fails verification raises rather than silently falling back to an older model.
    """
    base = (root or models_root()) / _path_part(name, "name")
    if not base.is_dir():
        return None
    versions = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    for version in reversed(versions):
        card = _read_card(base / version)
        if card is not None and card.get("gate_passed") is True:
            estimator, card = load_model(name, version, root=root)
            return version, estimator, card
    return None
