"""Reading the online store: features of a customer now, and features + fraud score of a transaction.

The HTTP API (``serve.py``) and Python callers go through the same functions:

* ``get_online_features(customer_ids, features)``: each customer's customer-level online
  features (those needing no transaction context) evaluated from the store's state as of now,
  each with an ``expired`` flag (its source is not known complete within its online TTL), and
  ``known``/``defaults`` flags for a customer the store has never seen (explicit defaults, not
  an error).
* ``transaction_features(txn)``: every transaction feature as of just before the transaction,
  with its ``_txn_*`` context, excluding the transaction itself.
* ``Scorer``: the latest passing fraud model (``ml.models.latest_passing_model``) applied to
  them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ai_data_platform.errors import shown
from ai_data_platform.features.registry import published
from ai_data_platform.streaming.online_features import ONLINE, FeatureInterpreter
from ai_data_platform.streaming.online_store import OnlineStore


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _plain(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


class UnknownFeature(ValueError):
    pass


def _names(features: Sequence[str] | None, interpreter: FeatureInterpreter) -> list[str]:
    available = interpreter.customer_level()
    if features is None:
        return available
    unknown = [f for f in features if f not in available]
    if unknown:
        raise UnknownFeature(f"unknown online feature(s) {shown(unknown)}; available: {available}")
    return list(features)


def _freshness(names, as_of, coverage, interpreter) -> dict[str, dict]:
    out = {}
    for n in names:
        sources = sorted(interpreter.sources_of(n))
        ages = [(as_of - coverage[s]).total_seconds() if s in coverage else None for s in sources]
        out[n] = {
            "expired": interpreter.expired(n, as_of, coverage),
            "sources": sources,
            "complete_as_of": {s: coverage[s].isoformat() + "Z" if s in coverage else None for s in sources},
            "age_seconds": None if not ages or None in ages else round(max(ages), 3),
        }
    return out


def get_online_features(
    customer_ids: Sequence[str],
    features: Sequence[str] | None = None,
    *,
    store: OnlineStore | None = None,
    interpreter: FeatureInterpreter = ONLINE,
    now: datetime | None = None,
) -> dict[str, dict]:
    """``{customer_id: {"features", "expired", "as_of", "known", "defaults"}}`` as of now."""
    if store is None:
        from ai_data_platform.streaming.backends import online_store

        store = online_store()
    names = _names(features, interpreter)
    as_of = now or utc_now()
    coverage = store.coverage()
    states = store.states(list(customer_ids))
    fresh = _freshness(names, as_of, coverage, interpreter)
    out = {}
    for cid in customer_ids:
        state = states[cid]
        has_rows = any(state.rows.values())
        values = interpreter.evaluate(state.rows, as_of, {"_txn_home_country": state.home_country})
        out[cid] = {
            "customer_id": cid,
            "as_of": as_of.isoformat() + "Z",
            "known": state.known or has_rows,
            "defaults": not has_rows,  # no row in any window: every value is its declared default
            "features": {n: _plain(values[n]) for n in names},
            "expired": {n: fresh[n]["expired"] for n in names},
            "freshness": fresh,
        }
    return out


@dataclass(frozen=True)
class Transaction:
    customer_id: str
    amount: float
    device_id: str | None = None
    ip_country: str | None = None
    event_time: datetime | None = None
    transaction_id: str | None = None


def transaction_features(txn: Transaction, store: OnlineStore, interpreter: FeatureInterpreter = ONLINE,
                         now: datetime | None = None) -> tuple[dict[str, Any], dict[str, dict], datetime, dict]:
    """(every feature, freshness of the published ones, as_of, customer flags) just before ``txn``."""
    as_of = txn.event_time or now or utc_now()
    state = store.states([txn.customer_id])[txn.customer_id]
    ctx = {"_txn_amount": txn.amount, "_txn_device_id": txn.device_id, "_txn_ip_country": txn.ip_country,
           "_txn_home_country": state.home_country}
    values = interpreter.evaluate(state.rows, as_of, ctx, exclude_event=txn.transaction_id)
    names = [f.name for f in published(interpreter.features)]
    flags = {"known": state.known or any(state.rows.values()), "defaults": not any(state.rows.values()),
             "home_country": state.home_country}
    return values, _freshness(names, as_of, store.coverage(), interpreter), as_of, flags


class NoPassingModel(RuntimeError):
    pass


_openmp_limited = False


def predict_one(estimator, values: list[float], compiled=None) -> float:
    """P(label=1) of one row of float feature values (NaN: missing), as ``ml.models.score``
    computes it: through ``compiled`` (``ml.tree_scorer``, bit-identical and ~10x faster on one
    row) when the model could be compiled, else through scikit-learn.

    ``models.score`` enters threadpoolctl's OpenMP limit on every call, which costs ~4 ms; a
    serving process sets the same limit (``models.OPENMP_THREADS``) once for itself instead.
    ``test_serve`` checks the result equals ``models.score``.
    """
    if compiled is not None:
        return compiled.predict_one(values)
    global _openmp_limited
    if not _openmp_limited:
        from ai_data_platform.ml.models import single_threaded

        single_threaded()  # entered once for the process, never left
        _openmp_limited = True
    import pandas as pd

    frame = pd.DataFrame([values], columns=list(estimator.feature_names_in_), dtype="float64")
    column = list(estimator.classes_).index(1)
    return float(estimator.predict_proba(frame)[0, column])


class Scorer:
    """The latest passing fraud model, re-checked at most every ``recheck_seconds``."""

    def __init__(self, name: str = "fraud", recheck_seconds: float = 60.0):
        self.name, self.recheck_seconds = name, recheck_seconds
        self._model: tuple[str, object, dict] | None = None
        self._compiled: dict[str, object] = {}  # model version -> ml.tree_scorer.CompiledBooster | None
        self._checked = -math.inf
        self._lock = threading.Lock()

    def model(self) -> tuple[str, object, dict]:
        with self._lock:
            if time.monotonic() - self._checked >= self.recheck_seconds:
                from ai_data_platform.ml.models import latest_passing_model

                self._model = latest_passing_model(self.name)
                self._checked = time.monotonic()
            if self._model is None:
                raise NoPassingModel(
                    f"no {self.name} model has passed its gate yet: materialize ml/{self.name}_model "
                    f"(a model whose card says gate_passed) before scoring"
                )
            return self._model

    def compiled(self, version: str, estimator):
        """The model's trees compiled for one-row scoring (once per version), or None."""
        if version not in self._compiled:
            from ai_data_platform.ml.tree_scorer import compile_booster

            self._compiled[version] = compile_booster(estimator)
        return self._compiled[version]

    def score(self, txn: Transaction, store: OnlineStore, interpreter: FeatureInterpreter = ONLINE) -> dict:
        version, estimator, card = self.model()
        values, freshness, as_of, flags = transaction_features(txn, store, interpreter)
        used = list(card["features"])
        missing = [f for f in used if f not in values]
        if missing:
            raise NoPassingModel(f"{self.name}@{version} uses features the online path does not compute: {missing}")
        row = [math.nan if values[f] is None else float(values[f]) for f in used]
        probability = predict_one(estimator, row, self.compiled(version, estimator))
        return {
            "customer_id": txn.customer_id,
            "transaction_id": txn.transaction_id,
            "fraud_probability": probability,
            "model": {"name": self.name, "version": version},
            "as_of": as_of.isoformat() + "Z",
            **flags,
            "features": {f: _plain(values[f]) for f in used},
            "freshness": {f: freshness[f] for f in used if f in freshness},
        }
