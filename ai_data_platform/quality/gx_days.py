"""Validate many daily partitions in one Great Expectations pass, each day judged on its own.

A single-run backfill of N days used to validate each day separately, and GX's fixed cost per
validation (it builds a metric graph for every expectation: ~0.3 s for a 76-expectation suite
however small the frame) made most of a backfill's time. Here the days' frames are concatenated
and GX evaluates every expectation once over all of them, with ``COMPLETE`` results, whose
unexpected rows (by index) are attributed back to their day. Each day's outcome is then GX's own
verdict for that day's rows:

* row-wise column-map expectations (:data:`ROW_WISE`): the day's unexpected count, its non-null
  (or, for ``not_be_null``, total) row count, GX's ``mostly`` rule and percentages, and the first
  :data:`~gx_runner.SAMPLE_LIMIT` unexpected values in row order;
* uniqueness: evaluated by GX as the compound key (column, day), so only duplicates *within* a day
  count, with the same per-day arithmetic;
* ``expect_column_to_exist`` and ``expect_table_columns_to_match_set`` without ``exact_match``: the
  frames come from one query, so GX's answer holds for every day (the day marker column is left
  out of the observed columns; an exact match is validated day by day);
* ``expect_table_row_count_to_be_between``: the day's row count against the bounds.

Days are validated separately, exactly as before, whenever the shortcut does not apply: frames
with different columns, an expectation kind not listed here, per-day suites that differ in more
than ``mostly``, or any exception inside GX. ``test_gx_days.py`` checks that the outcomes equal
per-day validation, expectation by expectation, on randomly dirtied frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from ai_data_platform.quality import gx_runner
from ai_data_platform.quality.gx_runner import (
    SAMPLE_LIMIT,
    ExpectationOutcome,
    ExpectationSpec,
    SuiteSpec,
    ValidationReport,
    validate_dataframe,
)

DAY_COLUMN = "__adp_day"
ROW_WISE = frozenset(
    {
        "ExpectColumnValuesToNotBeNull",
        "ExpectColumnValuesToBeNull",
        "ExpectColumnValuesToBeInSet",
        "ExpectColumnValuesToNotBeInSet",
        "ExpectColumnValuesToBeBetween",
        "ExpectColumnValuesToMatchRegex",
        "ExpectColumnValuesToNotMatchRegex",
    }
)
UNIQUE = "ExpectColumnValuesToBeUnique"
COLUMNS_PRESENT = "ExpectTableColumnsToMatchSet"  # with exact_match=False: the listed columns exist
UNIFORM = frozenset({"ExpectColumnToExist", COLUMNS_PRESENT})
ROW_COUNT = "ExpectTableRowCountToBeBetween"
SUPPORTED = ROW_WISE | UNIFORM | {UNIQUE, ROW_COUNT}
# Expectations whose rows-considered count includes nulls (GX: total rows, not non-null rows).
COUNTS_NULLS = frozenset({"ExpectColumnValuesToNotBeNull", "ExpectColumnValuesToBeNull"})
# Rows per GX pass: bounds the memory of one concatenated frame.
MAX_ROWS_PER_PASS = 2_000_000
_COMPLETE = {"result_format": "COMPLETE"}

SuiteForDay = Callable[[date, pd.DataFrame], SuiteSpec]


def validate_days(
    days: Sequence[date], load: Callable[[date], pd.DataFrame], suite: SuiteSpec | SuiteForDay
) -> dict[date, ValidationReport]:
    """Per-day reports for ``days``, as if each day's frame were validated alone.

    ``load(day)`` reads a day's frame; days are read in order and validated in passes of at most
    :data:`MAX_ROWS_PER_PASS` rows, so memory stays bounded however long the range. ``suite`` is
    one suite for every day, or a function giving each day's suite (staging suites tolerate more
    dirt in small partitions); per-day suites may differ only in ``mostly``.
    """
    reports: dict[date, ValidationReport] = {}
    frames: dict[date, pd.DataFrame] = {}
    rows = 0
    for day in sorted(days):
        frame = load(day)
        if frames and rows + len(frame) > MAX_ROWS_PER_PASS:
            reports.update(_validate_chunk(frames, _suites(frames, suite)))
            frames, rows = {}, 0
        frames[day] = frame
        rows += len(frame)
    if frames:
        reports.update(_validate_chunk(frames, _suites(frames, suite)))
    return reports


def _suites(frames: Mapping[date, pd.DataFrame], suite: SuiteSpec | SuiteForDay) -> dict[date, SuiteSpec]:
    return {day: suite(day, frame) if callable(suite) else suite for day, frame in frames.items()}


def _one_by_one(frames: Mapping[date, pd.DataFrame], suites: Mapping[date, SuiteSpec]) -> dict[date, ValidationReport]:
    return {day: validate_dataframe(frame, suites[day]) for day, frame in frames.items()}


def _shortcut_applies(frames: Mapping[date, pd.DataFrame], suites: Mapping[date, SuiteSpec]) -> bool:
    if len(frames) < 2:
        return False
    columns = {tuple(frame.columns) for frame in frames.values()}
    if len(columns) != 1 or DAY_COLUMN in next(iter(columns)):
        return False
    shapes = {tuple((e.kind, _without_mostly(e.kwargs)) for e in s.expectations) for s in suites.values()}
    if len(shapes) != 1 or len({s.name for s in suites.values()}) != 1:
        return False
    return all(
        e.kind in SUPPORTED and not (e.kind == COLUMNS_PRESENT and e.kwargs.get("exact_match", True))
        for e in next(iter(suites.values())).expectations
    )


def _without_mostly(kwargs: Mapping[str, Any]) -> str:
    return repr(sorted((k, v) for k, v in kwargs.items() if k != "mostly"))


def _range_suite(template: SuiteSpec) -> SuiteSpec:
    """The suite GX runs once over the concatenated frame: no ``mostly`` (only the unexpected rows
    are used), uniqueness within a day as the compound key (column, day)."""
    exps = []
    for e in template.expectations:
        kwargs = {k: v for k, v in e.kwargs.items() if k != "mostly"}
        if e.kind == UNIQUE:
            exps.append(
                ExpectationSpec(
                    "ExpectCompoundColumnsToBeUnique",
                    {"column_list": [kwargs["column"], DAY_COLUMN], "ignore_row_if": "any_value_is_missing"},
                )
            )
        else:
            exps.append(ExpectationSpec(e.kind, kwargs))
    return SuiteSpec(name=f"{template.name} [days]", expectations=tuple(exps))


def _validate_chunk(frames: Mapping[date, pd.DataFrame], suites: Mapping[date, SuiteSpec]) -> dict[date, ValidationReport]:
    if not _shortcut_applies(frames, suites):
        return _one_by_one(frames, suites)
    days = list(frames)
    combined = pd.concat([frames[d] for d in days], ignore_index=True)
    lengths = np.array([len(frames[d]) for d in days])
    day_of_row = np.repeat(np.arange(len(days)), lengths)
    combined[DAY_COLUMN] = day_of_row
    template = suites[days[0]]
    results = gx_runner.run_raw(combined, _range_suite(template), _COMPLETE)
    if results is None or any(_raised(r) for r in results):
        return _one_by_one(frames, suites)
    per_day_outcomes: list[list[ExpectationOutcome]] = [[] for _ in days]
    for position, (template_spec, result) in enumerate(zip(template.expectations, results)):
        column = template_spec.kwargs.get("column")
        unexpected_by_day = _unexpected_by_day(result, day_of_row, len(days))
        for i, day in enumerate(days):
            spec = suites[day].expectations[position]
            frame = frames[day]
            per_day_outcomes[i].append(_day_outcome(spec, result, frame, column, unexpected_by_day[i]))
    reports = {}
    for i, day in enumerate(days):
        outcomes = per_day_outcomes[i]
        failed = sum(1 for o in outcomes if not o.success)
        reports[day] = ValidationReport(
            suite=suites[day].name, success=failed == 0, evaluated=len(outcomes), failed=failed, outcomes=tuple(outcomes)
        )
    return reports


def _raised(result: Any) -> bool:
    return isinstance(result, str) or gx_runner.exception_of(result) is not None


def _unexpected_by_day(result: Any, day_of_row: np.ndarray, days: int) -> list[tuple[np.ndarray, list]]:
    """Per day: (row positions within the combined frame, unexpected values), in row order."""
    body = result.result or {}
    index = body.get("unexpected_index_list")
    values = body.get("unexpected_list")
    if index is None:
        return [(np.array([], dtype=np.int64), []) for _ in range(days)]
    positions = np.array([_row_position(i) for i in index], dtype=np.int64)
    values = [_scalar_value(v) for v in (values or [])]
    order = np.argsort(positions, kind="stable")
    positions = positions[order]
    values = [values[j] for j in order] if len(values) == len(order) else []
    owner = day_of_row[positions] if len(positions) else np.array([], dtype=np.int64)
    out = []
    for i in range(days):
        mask = owner == i
        out.append((positions[mask], [v for v, m in zip(values, mask) if m] if values else []))
    return out


def _row_position(entry: Any) -> int:
    """GX reports an unexpected row's index as an int, or as a dict of index columns."""
    if isinstance(entry, Mapping):
        entry = next(iter(entry.values()))
    return int(entry)


def _scalar_value(value: Any) -> Any:
    """Compound-key results carry dicts of (column, day): keep the column's value."""
    if isinstance(value, Mapping):
        return next((v for k, v in value.items() if k != DAY_COLUMN), None)
    if isinstance(value, tuple) and len(value) == 2:
        return value[0]
    return value


def _day_outcome(spec: ExpectationSpec, result: Any, frame: pd.DataFrame, column: str | None, unexpected: tuple) -> ExpectationOutcome:
    expectation = gx_runner.expectation_type(spec.kind)
    if spec.kind in UNIFORM:
        outcome = gx_runner.outcome_from_result(spec, result).to_dict()
        if isinstance(outcome["observed_value"], list):  # the frame's columns: not the day marker
            outcome["observed_value"] = [c for c in outcome["observed_value"] if c != DAY_COLUMN]
        return ExpectationOutcome(**{**outcome, "expectation": expectation})
    if spec.kind == ROW_COUNT:
        rows = len(frame)
        lo, hi = spec.kwargs.get("min_value"), spec.kwargs.get("max_value")
        success = (lo is None or rows >= lo) and (hi is None or rows <= hi)
        return ExpectationOutcome(expectation, None, gx_runner.to_json_safe(spec.kwargs), bool(success), None, None, None, [], rows, None)
    positions, values = unexpected
    total = len(frame)
    unexpected_count = int(len(positions))
    considered = total if spec.kind in COUNTS_NULLS else int(frame[column].notna().sum())
    mostly = spec.kwargs.get("mostly", 1.0)
    success = True if total == 0 or considered == 0 else (considered - unexpected_count) / considered >= mostly
    percent = unexpected_count / considered * 100 if considered > 0 and total > 0 else None
    samples = gx_runner.to_json_safe(values[:SAMPLE_LIMIT])
    return ExpectationOutcome(
        expectation=expectation,
        column=None if column is None else str(column),
        kwargs=gx_runner.to_json_safe(spec.kwargs),
        success=bool(success),
        element_count=total,
        unexpected_count=unexpected_count,
        unexpected_percent=None if percent is None or math.isnan(percent) else float(percent),
        sample_unexpected=samples,
        observed_value=None,
        exception=None,
    )
