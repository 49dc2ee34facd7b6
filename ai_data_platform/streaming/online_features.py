"""The online path of the feature registry: an interpreter of the ``Feature`` declarations.

The offline path compiles each declaration to DuckDB SQL (``features/compile.py``); this module
evaluates the *same* declarations over a customer's source rows in Python, so no feature is
written twice. Filters, aggregated columns and row / derived expressions are the declarations'
SQL text compiled once (at import) by ``sql_expr``; windows, TTLs, defaults and dtypes are read
from the declarations. Semantics, identical to the compiled SQL:

* as of ``T``: a source row counts iff its time is in ``[T - lookback, T)`` and its
  ``_available_at <= T``; for a transaction, the transaction's own event is excluded;
* ``last`` is the value of the latest row by ``(time, _available_at, key)`` whose value is not
  NULL; ``seconds_since_last`` / ``days_since_last`` count whole-second boundaries like DuckDB's
  ``date_diff('second', ...)``;
* an aggregate over no rows is NULL, then ``coalesce(value, default)`` and ``CAST(... AS dtype)``;
  ``row`` features read the transaction context (``_txn_*``), ``derived`` ones the base values.

Equivalence with the compiled SQL on the same rows is proved by
``ai_data_platform_tests/test_online_features.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ai_data_platform.features.registry import (
    ROW_AGGS,
    SOURCES,
    TRANSACTION_FEATURES,
    TTL_AGGS,
    Feature,
    duration_seconds,
    published,
)
from ai_data_platform.streaming import sql_expr

# Context columns the online store itself knows for a customer (not part of a transaction).
STORE_CONTEXT = frozenset({"_txn_home_country"})
_ONE_SECOND = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1)


def _whole_seconds(t: datetime) -> int:
    return (t - _EPOCH) // _ONE_SECOND


@dataclass(frozen=True)
class CompiledFeature:
    feature: Feature
    filter: sql_expr.Evaluator | None
    row_filter: sql_expr.Evaluator | None  # the filter's conjuncts that read no _txn_ column
    column: sql_expr.Evaluator | None
    expression: sql_expr.Evaluator | None
    context: frozenset[str]  # _txn_* columns it reads (derived: through its inputs)
    row_columns: frozenset[str]  # source columns its filter and column read

    @property
    def name(self) -> str:
        return self.feature.name

    lookback: timedelta | None  # the window, or the TTL

    @property
    def online_ttl(self) -> timedelta | None:
        """A value is current while its source data is complete within this: the TTL, or the window."""
        return self.lookback


def _context(sql: str | None) -> set[str]:
    return {c for c in sql_expr.columns(sql) if c.startswith(sql_expr.CONTEXT_PREFIX)} if sql else set()


def _row_columns(sql: str | None) -> set[str]:
    return {c for c in sql_expr.columns(sql) if not c.startswith(sql_expr.CONTEXT_PREFIX)} if sql else set()


def _compile_feature(f: Feature) -> CompiledFeature:
    row_filter = None
    if f.filter:
        free = [c for c in sql_expr.conjuncts(f.filter) if not _context(c)]
        row_filter = sql_expr.compile_sql(" AND ".join(f"({c})" for c in free)) if free else None
    if f.agg == "profile":
        raise sql_expr.UnsupportedExpression(f"{f.name}: profile features are batch-only (CRM/billing state)")
    return CompiledFeature(
        feature=f,
        filter=sql_expr.compile_sql(f.filter) if f.filter else None,
        row_filter=row_filter,
        column=sql_expr.compile_sql(f.column) if f.column else None,
        expression=sql_expr.compile_sql(f.expression) if f.expression else None,
        context=frozenset(_context(f.filter) | _context(f.column) | _context(f.expression)),
        row_columns=frozenset(_row_columns(f.filter) | _row_columns(f.column)),
        lookback=timedelta(seconds=duration_seconds(f.lookback)) if f.lookback else None,
    )


def _fmean(values: list[float]) -> float:
    return sum(values) / len(values)


def _stddev_samp(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    m = _fmean(values)
    # ``(v - m) ** 2`` raises OverflowError past 1e154; a product gives inf, as DuckDB's does
    return math.sqrt(sum((v - m) * (v - m) for v in values) / (len(values) - 1))


class FeatureInterpreter:
    """Evaluates a set of feature declarations over in-memory source rows.

    ``rows[source]`` is a sequence of dicts holding the source's time column, key,
    ``_available_at`` and the columns the declarations read (``needed_columns``).
    """

    def __init__(self, features: Sequence[Feature] = TRANSACTION_FEATURES):
        self.features = tuple(features)
        self.compiled = {f.name: _compile_feature(f) for f in self.features}
        base = [c for c in self.compiled.values() if c.feature.agg not in ROW_AGGS]
        self.by_source: dict[str, list[CompiledFeature]] = {}
        for c in base:
            self.by_source.setdefault(c.feature.source, []).append(c)
        # a derived feature reads the context of the features it is computed from
        contexts = {n: set(c.context) for n, c in self.compiled.items()}
        for c in self.compiled.values():
            if c.feature.agg == "derived":
                for dep in sql_expr.columns(c.feature.expression):
                    contexts[c.name] |= contexts.get(dep, set())
        self.contexts = {n: frozenset(v) for n, v in contexts.items()}
        # per source: the columns a state row keeps, and (row filter, lookback) longest first
        self._needed = {s: self._needed_columns(s) for s in self.by_source}
        self._row_rules = {
            s: sorted(((c.row_filter, c.lookback) for c in fs), key=lambda rule: rule[1], reverse=True)
            for s, fs in self.by_source.items()
        }
        self.inputs = {
            c.name: (
                {d for d in sql_expr.columns(c.feature.expression) if d in self.compiled}
                if c.feature.agg == "derived" else set()
            )
            for c in self.compiled.values()
        }

    # ------------------------------------------------------------ what the state must hold

    @property
    def sources(self) -> list[str]:
        return sorted(self.by_source)

    def needed_columns(self, source: str) -> list[str]:
        return self._needed[source]

    def _needed_columns(self, source: str) -> list[str]:
        spec = SOURCES[source]
        cols = {spec["key"], spec["time"], "_available_at"}
        for c in self.by_source[source]:
            cols |= c.row_columns
        return sorted(cols)

    def widest_lookback(self, source: str) -> timedelta:
        return max(c.lookback for c in self.by_source[source])

    def row_lookback(self, source: str, row: Mapping[str, Any]) -> timedelta | None:
        """How long after its event time a row can still count for some feature (None: never)."""
        for row_filter, lookback in self._row_rules[source]:
            if row_filter is None or row_filter(row, {}) is True:
                return lookback
        return None

    def customer_level(self, names: Iterable[str] | None = None) -> list[str]:
        """Published features computable without a transaction (only store-known context)."""
        wanted = set(names) if names is not None else None
        return [
            f.name for f in published(self.features)
            if self.contexts[f.name] <= STORE_CONTEXT and (wanted is None or f.name in wanted)
        ]

    def sources_of(self, name: str) -> set[str]:
        c = self.compiled[name]
        if c.feature.agg == "derived":
            return set().union(*(self.sources_of(d) for d in self.inputs[name])) if self.inputs[name] else set()
        return {c.feature.source} if c.feature.source else set()

    def expired(self, name: str, as_of: datetime, complete_as_of: Mapping[str, datetime | None]) -> bool:
        """True when a source the feature reads is not known complete within the feature's TTL."""
        c = self.compiled[name]
        if c.feature.agg == "derived":
            return any(self.expired(d, as_of, complete_as_of) for d in self.inputs[name])
        if c.feature.agg in ROW_AGGS:
            return False
        done = complete_as_of.get(c.feature.source)
        return done is None or as_of - done > c.online_ttl

    # ------------------------------------------------------------ evaluation

    def evaluate(
        self,
        rows: Mapping[str, Sequence[Mapping[str, Any]]],
        as_of: datetime,
        ctx: Mapping[str, Any] | None = None,
        exclude_event: str | None = None,
    ) -> dict[str, Any]:
        """Every feature (published and intermediate) as of ``as_of`` with transaction ``ctx``."""
        ctx = ctx or {}
        values: dict[str, Any] = {}
        for source, feats in self.by_source.items():
            spec = SOURCES[source]
            tcol, kcol = spec["time"], spec["key"]
            start = as_of - self.widest_lookback(source)
            skip = exclude_event if source == "events" else None
            visible = sorted(  # one order whatever the storage: sums are bitwise reproducible
                (r for r in rows.get(source, ())
                 if start <= r[tcol] < as_of and r["_available_at"] <= as_of and (skip is None or r[kcol] != skip)),
                key=lambda r: (r[tcol], r["_available_at"], r[kcol]),
            )
            masks: dict[str | None, list[bool]] = {None: [True] * len(visible)}
            for c in feats:
                if c.feature.filter not in masks:
                    masks[c.feature.filter] = [c.filter(r, ctx) is True for r in visible]
                lo = as_of - c.lookback
                selected = [r for r, keep in zip(visible, masks[c.feature.filter]) if keep and r[tcol] >= lo]
                values[c.name] = self._aggregate(c, selected, as_of, tcol, kcol, ctx)
        for c in self.compiled.values():
            f = c.feature
            if f.agg not in ROW_AGGS:
                v = values[c.name]
                values[c.name] = sql_expr.cast_value(f.default if v is None and f.default is not None else v, f.dtype)
            elif f.agg == "row":
                values[c.name] = sql_expr.cast_value(c.expression({}, ctx), f.dtype)
        for c in self.compiled.values():
            f = c.feature
            if f.agg == "derived":
                v = c.expression(values, ctx)
                values[c.name] = sql_expr.cast_value(f.default if v is None and f.default is not None else v, f.dtype)
        return values

    @staticmethod
    def _aggregate(c: CompiledFeature, selected: list, as_of: datetime, tcol: str, kcol: str, ctx) -> Any:
        agg = c.feature.agg
        if agg == "count":
            return len(selected)
        vals = [c.column(r, ctx) for r in selected]
        present = [v for v in vals if v is not None]
        if agg == "last":
            best = max(
                ((r[tcol], r["_available_at"], r[kcol]), v) for r, v in zip(selected, vals) if v is not None
            ) if present else None
            return None if best is None else best[1]
        if not present:
            return None
        if agg == "sum":
            return sum(present)
        if agg == "avg":
            return _fmean(present)
        if agg == "stddev":
            return _stddev_samp(present)
        if agg == "max":
            return max(present)
        if agg == "count_distinct":
            return len(set(present))
        if agg == "active_days":
            return len({v.date() for v in present})
        if agg in TTL_AGGS:
            seconds = _whole_seconds(as_of) - _whole_seconds(max(present))
            return seconds / 86400.0 if agg == "days_since_last" else seconds
        raise sql_expr.UnsupportedExpression(f"{c.name}: aggregation {agg!r} is not supported online")


# The online feature set: the fraud (transaction) features, compiled once at import.
ONLINE = FeatureInterpreter(TRANSACTION_FEATURES)
