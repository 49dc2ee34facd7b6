"""Run Great Expectations 1.x suites, defined in code, against pandas DataFrames.

This module is deliberately free of Dagster: callers describe a suite with plain
dataclasses (:class:`SuiteSpec` / :class:`ExpectationSpec`), hand over a DataFrame and
get back a :class:`ValidationReport` with one JSON-safe :class:`ExpectationOutcome`
per configured expectation::

    suite = SuiteSpec(
        name="staging.payments",
        expectations=(
            ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "payment_id"}),
            ExpectationSpec(
                "ExpectColumnValuesToBeBetween",
                {"column": "amount", "min_value": 0, "mostly": 0.95},
            ),
        ),
    )
    report = validate_dataframe(payments_df, suite)
    if not report.success:
        print(report.summary())

How it uses GX (1.x fluent API only):

* ``great_expectations`` is imported lazily (it takes seconds) on the first validation, with
  ``scipy.stats`` and ``altair`` — which GX imports for expectations the platform does not use —
  deferred until something reads them (``deferred_imports``): ~2 s of CPU less per process.
  One process-wide *ephemeral* context holds a pandas data source, one dataframe
  asset and one whole-dataframe batch definition; every call validates the DataFrame
  it is given through ``batch_parameters={"dataframe": df}``.
* Each :class:`SuiteSpec` name is built into a ``gx.ExpectationSuite`` once and cached;
  the cached suite is rebuilt when a spec with the same name but different
  expectations arrives.
* Validations are serialised by a lock. GX keys every batch of a dataframe asset by
  the same batch id (``<datasource>-<asset>``) inside one shared execution engine, so
  two threads validating different DataFrames at once could read each other's data.
* An expectation that raises inside GX (e.g. a missing column) becomes a *failed*
  outcome carrying the exception message; it never passes silently and never aborts
  the rest of the suite.
* Offline by construction: ``GX_ANALYTICS_ENABLED`` is forced to ``false`` before GX is
  imported and analytics / progress bars are switched off on the context. (GX 1.24
  ships no usage-statistics client at all and has no PyPI version check on this code
  path; the settings are belt and braces should a later 1.x bring them back.)

Percentages follow GX: for column-map expectations ``unexpected_percent`` is relative
to the *non-null* values (nulls are excluded from the denominator, and ``mostly`` is
compared against that same ratio), while ``element_count`` counts every row.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import decimal
import math
import numbers
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ai_data_platform.governance.personal_data import SUBJECT_IDENTIFIER_COLUMNS
from ai_data_platform.quality import deferred_imports

SAMPLE_LIMIT = 10
"""Maximum number of offending values kept per expectation (``sample_unexpected``)."""

MASKED_SAMPLE = "<masked: identifies a data subject>"
"""What a sample value of a subject-identifier column (``governance.personal_data``) is replaced by."""

SUMMARY_SAMPLE_LIMIT = 5
"""Maximum number of offending values quoted per line of :meth:`ValidationReport.summary`."""

# What the samples of an aggregate expectation's outcome are, by expectation type (the columns a
# table-columns expectation found missing: ``_missing_columns``); others are quoted as examples.
_SAMPLE_LABELS = {"expect_table_columns_to_match_set": "missing"}

# BASIC gives what an outcome holds (counts, percentages, ``partial_unexpected_list``) without
# materialising every unexpected value as COMPLETE does, or the value counts and row indexes SUMMARY
# adds (a third of a 47-expectation suite's time over a 73k-row feature partition).
_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": SAMPLE_LIMIT}

_DATASOURCE_NAME = "ai_data_platform_pandas"
_ASSET_NAME = "dataframe"
_BATCH_DEFINITION_NAME = "whole_dataframe"

# Key stored in every GX expectation's ``meta`` so results (which GX returns grouped by
# metric, not in suite order) can be matched back to the spec that produced them.
_SPEC_INDEX_META_KEY = "ai_data_platform_spec_index"

# kwargs that say nothing about *what* is expected; left out of labels and summaries.
_NON_DESCRIPTIVE_KWARGS = frozenset(
    {"column", "mostly", "meta", "notes", "description", "result_format", "catch_exceptions"}
)
_LABEL_VALUE_MAX_CHARS = 40


# --------------------------------------------------------------------------------------
# Public data model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation, named by its GX class and configured by constructor kwargs."""

    kind: str  # GX expectation class name, e.g. "ExpectColumnValuesToNotBeNull"
    kwargs: dict = field(default_factory=dict)  # e.g. {"column": "amount", "min_value": 0}

    def __post_init__(self) -> None:
        # Own a copy so later mutation of the caller's dict cannot change this spec.
        object.__setattr__(self, "kwargs", dict(self.kwargs))

    @property
    def label(self) -> str:
        """Short human description, e.g. ``"amount: values between 0 and None (mostly 95%)"``."""
        return _describe_expectation(self.kind, self.kwargs)


@dataclass(frozen=True)
class SuiteSpec:
    """A named, ordered collection of expectations."""

    name: str  # e.g. "staging.payments"
    expectations: tuple[ExpectationSpec, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "expectations", tuple(self.expectations))

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns the suite's expectations read, in first-use order."""
        seen: dict[str, None] = {}
        for e in self.expectations:
            column = e.kwargs.get("column")
            if column is not None:
                seen.setdefault(column, None)
        return tuple(seen)


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation; every field is JSON-serialisable."""

    expectation: str  # snake_case type, e.g. "expect_column_values_to_be_between"
    column: str | None
    kwargs: dict  # the configured kwargs
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None  # GX: percent of non-null values
    sample_unexpected: list  # up to SAMPLE_LIMIT offending values
    observed_value: object | None  # for aggregate expectations (row count, mean, ...)
    exception: str | None  # message when GX raised for this expectation

    def __post_init__(self) -> None:
        # Samples of columns identifying a data subject are masked at the source: they end up in
        # Dagster's event log, dataset manifests and alerts, none of which an erasure can edit.
        columns = {self.column, *(self.kwargs.get("column_list") or ())}
        if columns & SUBJECT_IDENTIFIER_COLUMNS and self.sample_unexpected:
            masked = [None if v is None else MASKED_SAMPLE for v in self.sample_unexpected]  # a null identifies no one
            object.__setattr__(self, "sample_unexpected", masked)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe_failure(self) -> str:
        """One line saying why this expectation failed (used by ``summary()``)."""
        subject = f"{self.expectation}({self.column})" if self.column else self.expectation
        if self.exception is not None:
            return f"{subject}: raised {self.exception}"
        if self.unexpected_count is not None:
            return f"{subject}: {self._describe_unexpected_rows()}"
        return f"{subject}: {self._describe_observation()}"

    def _describe_unexpected_rows(self) -> str:
        text = f"{self.unexpected_count} of {self.element_count} rows unexpected"
        if self.unexpected_percent is not None:
            text += f" ({self.unexpected_percent:.2f}%{self._percent_basis()})"
        if self.sample_unexpected:
            text += f", e.g. {self.sample_unexpected[:SUMMARY_SAMPLE_LIMIT]!r}"
        return text

    def _percent_basis(self) -> str:
        """Say so when GX's percentage is not relative to all rows (nulls excluded)."""
        if not self.element_count or self.unexpected_percent is None:
            return ""
        percent_of_all_rows = 100.0 * (self.unexpected_count or 0) / self.element_count
        return "" if math.isclose(percent_of_all_rows, self.unexpected_percent) else " of non-null"

    def _describe_observation(self) -> str:
        expected = _format_kwargs(self.kwargs, exclude=_NON_DESCRIPTIVE_KWARGS, bare_single=False)
        observed = "failed" if self.observed_value is None else f"observed {self.observed_value!r}"
        text = f"{observed}, expected {expected}" if expected else observed
        if self.sample_unexpected:
            label = _SAMPLE_LABELS.get(self.expectation, "e.g.")
            text += f"; {label} {self.sample_unexpected[:SUMMARY_SAMPLE_LIMIT]!r}"
        return text


@dataclass(frozen=True)
class ValidationReport:
    """All outcomes of validating one DataFrame against one suite."""

    suite: str
    success: bool
    evaluated: int
    failed: int
    outcomes: tuple[ExpectationOutcome, ...]

    def failures(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(outcome for outcome in self.outcomes if not outcome.success)

    def summary(self) -> str:
        """One line per failed expectation; empty string when everything passed."""
        return "\n".join(outcome.describe_failure() for outcome in self.failures())

    def to_dict(self) -> dict:
        """JSON-serialisable form, for Dagster metadata and dataset manifests."""
        return {
            "suite": self.suite,
            "success": self.success,
            "evaluated": self.evaluated,
            "failed": self.failed,
            "outcomes": [outcome.to_dict() for outcome in self.outcomes],
        }


def validate_dataframe(df: pd.DataFrame, suite: SuiteSpec) -> ValidationReport:
    """Validate ``df`` against ``suite`` and return expectation-level results.

    Raises ``TypeError`` for a non-DataFrame and ``ValueError`` for a spec GX cannot
    build (unknown expectation kind, invalid kwargs). Problems with the *data*, including
    expectations that raise while evaluating, are reported as failed outcomes.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"validate_dataframe expects a pandas DataFrame, got {type(df).__name__}")
    outcomes = _RUNTIME.validate(df, suite)
    failed = sum(1 for outcome in outcomes if not outcome.success)
    return ValidationReport(
        suite=suite.name,
        success=failed == 0,
        evaluated=len(outcomes),
        failed=failed,
        outcomes=tuple(outcomes),
    )


def prewarm() -> threading.Thread:
    """Start importing GX and creating its context in the background (see ``_GXRuntime.prewarm``)."""
    return _RUNTIME.prewarm()


# --------------------------------------------------------------------------------------
# GX runtime: one lazily created ephemeral context per process
# --------------------------------------------------------------------------------------


# Imported by GX at module level for expectations the platform's suites do not use (KS tests, KL
# divergence and its charts): deferred until first read, ~2 s of CPU off every fresh process.
_DEFERRED_BY_GX = ("scipy.stats", "altair")


def import_gx() -> Any:
    """Import great_expectations as the platform does: analytics disabled (must precede the
    import) and the heavy modules it never needs deferred (a no-op once they are imported)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    deferred_imports.defer(*_DEFERRED_BY_GX)
    import great_expectations as gx

    return gx


class _GXRuntime:
    """Process-wide GX objects plus the suite cache, guarded by one lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._batch_definition: Any = None
        self._suites_by_name: dict[str, tuple[SuiteSpec, Any]] = {}
        self._prewarm_lock = threading.Lock()
        self._prewarm_thread: threading.Thread | None = None

    def validate(self, df: pd.DataFrame, suite_spec: SuiteSpec) -> list[ExpectationOutcome]:
        results_by_index = self.results(df, suite_spec, _RESULT_FORMAT)
        return [
            _outcome_for(spec, results_by_index.get(index))
            for index, spec in enumerate(suite_spec.expectations)
        ]

    def results(self, df: pd.DataFrame, suite_spec: SuiteSpec, result_format: Mapping) -> dict[int, _ResultOrError]:
        """GX's result (or the message of what it raised) per expectation index of the spec."""
        with self._lock:
            gx_suite = self._suite_for(suite_spec)
            batch = self._batch_definition_for_dataframes().get_batch(
                batch_parameters={"dataframe": df}
            )
            return _run_suite(batch, gx_suite, result_format)

    def _batch_definition_for_dataframes(self) -> Any:
        if self._batch_definition is None:
            self._batch_definition = _create_batch_definition()
        return self._batch_definition

    def prewarm(self) -> threading.Thread:
        """Import GX and build the context on a background thread, once per process.

        Importing GX and creating its context takes ~2 s of Python; started when an asset begins
        its warehouse work (DuckDB runs without the GIL), it is ready by the time the asset's gate
        validates. Idempotent: later calls return the same thread. Failures are not swallowed:
        the next validation creates the context itself and raises there.
        """
        with self._prewarm_lock:
            if self._prewarm_thread is None:
                self._prewarm_thread = threading.Thread(target=self._warm, name="gx-prewarm", daemon=True)
                self._prewarm_thread.start()
            return self._prewarm_thread

    def _warm(self) -> None:
        try:
            with self._lock:
                self._batch_definition_for_dataframes()
        except Exception:  # noqa: BLE001 - surfaced by the next validate(), which retries
            pass

    def _suite_for(self, suite_spec: SuiteSpec) -> Any:
        cached = self._suites_by_name.get(suite_spec.name)
        if cached is not None and _same_spec(cached[0], suite_spec):
            return cached[1]
        gx_suite = _build_gx_suite(suite_spec)
        # Keep a private copy: the caller may mutate nested kwargs after this call.
        self._suites_by_name[suite_spec.name] = (copy.deepcopy(suite_spec), gx_suite)
        return gx_suite


_RUNTIME = _GXRuntime()


def _create_batch_definition() -> Any:
    gx = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.enable_analytics(False)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm in logs
    asset = context.data_sources.add_pandas(name=_DATASOURCE_NAME).add_dataframe_asset(
        name=_ASSET_NAME
    )
    try:
        return asset.get_batch_definition(_BATCH_DEFINITION_NAME)
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION_NAME)


def _same_spec(cached: SuiteSpec, candidate: SuiteSpec) -> bool:
    try:
        return bool(cached == candidate)
    except Exception:  # noqa: BLE001 - e.g. numpy arrays in kwargs: ambiguous equality
        return False


def _build_gx_suite(suite_spec: SuiteSpec) -> Any:
    gx = import_gx()
    expectations = [
        _build_expectation(spec, index) for index, spec in enumerate(suite_spec.expectations)
    ]
    # Passed to the constructor: add_expectation() silently drops duplicate expectations.
    return gx.ExpectationSuite(name=suite_spec.name, expectations=expectations)


def _build_expectation(spec: ExpectationSpec, index: int) -> Any:
    expectation_class = _expectation_class(spec.kind)
    meta = {**(spec.kwargs.get("meta") or {}), _SPEC_INDEX_META_KEY: index}
    try:
        return expectation_class(**{**spec.kwargs, "meta": meta})
    except Exception as error:  # pydantic validation errors and the like
        raise ValueError(
            f"Cannot build {spec.kind} from kwargs {spec.kwargs!r} ({spec.label}): {error}"
        ) from error


def _expectation_class(kind: str) -> type:
    import great_expectations.expectations as gxe

    candidate = getattr(gxe, kind, None)
    if not (isinstance(candidate, type) and issubclass(candidate, gxe.Expectation)):
        raise ValueError(f"Unknown Great Expectations expectation kind: {kind!r}")
    return candidate


# A GX ExpectationValidationResult, or the message of an exception GX raised instead.
_ResultOrError = Any


def _run_suite(batch: Any, gx_suite: Any, result_format: Mapping) -> dict[int, _ResultOrError]:
    """Validate the whole suite; if GX aborts it, isolate expectations one by one."""
    try:
        suite_result = batch.validate(gx_suite, result_format=dict(result_format))
        return {_spec_index(result.expectation_config): result for result in suite_result.results}
    except Exception:  # noqa: BLE001 - fall back so one bad expectation can't sink the rest
        return {
            _spec_index(expectation): _validate_one(batch, expectation, result_format)
            for expectation in gx_suite.expectations
        }


def _validate_one(batch: Any, expectation: Any, result_format: Mapping) -> _ResultOrError:
    try:
        return batch.validate(expectation, result_format=dict(result_format))
    except Exception as error:  # noqa: BLE001 - reported as a failed outcome
        return f"{type(error).__name__}: {error}"


def run_raw(df: pd.DataFrame, suite: SuiteSpec, result_format: Mapping) -> list[_ResultOrError] | None:
    """GX's raw results for ``suite`` over ``df`` in spec order (an entry is the message of an
    exception where GX raised), or None when GX returned no result for some expectation."""
    by_index = _RUNTIME.results(df, suite, result_format)
    results = [by_index.get(i) for i in range(len(suite.expectations))]
    return None if any(r is None for r in results) else results


def exception_of(validation_result: Any) -> str | None:
    """The message of an exception GX recorded in a result, or None."""
    return _exception_message(validation_result.exception_info)


def expectation_type(kind: str) -> str:
    """GX's snake_case type of an expectation class name (``expect_column_values_to_be_unique``)."""
    return _expectation_class(kind).expectation_type


def outcome_from_result(spec: ExpectationSpec, validation_result: Any) -> ExpectationOutcome:
    return _outcome_from_result(spec, validation_result)


def _spec_index(expectation_or_config: Any) -> int | None:
    return (expectation_or_config.meta or {}).get(_SPEC_INDEX_META_KEY)


# --------------------------------------------------------------------------------------
# GX result -> ExpectationOutcome
# --------------------------------------------------------------------------------------


def _outcome_for(spec: ExpectationSpec, result_or_error: _ResultOrError) -> ExpectationOutcome:
    if result_or_error is None:  # never pass by omission
        return _failed_outcome(spec, "Great Expectations returned no result for this expectation")
    if isinstance(result_or_error, str):
        return _failed_outcome(spec, result_or_error)
    return _outcome_from_result(spec, result_or_error)


def _outcome_from_result(spec: ExpectationSpec, validation_result: Any) -> ExpectationOutcome:
    result = validation_result.result or {}
    exception = _exception_message(validation_result.exception_info)
    samples = to_json_safe(list(result.get("partial_unexpected_list") or _missing_columns(result)))
    return ExpectationOutcome(
        expectation=validation_result.expectation_config.type,
        column=_column_of(spec),
        kwargs=to_json_safe(spec.kwargs),
        success=bool(validation_result.success) and exception is None,
        element_count=_optional_int(result.get("element_count")),
        unexpected_count=_optional_int(result.get("unexpected_count")),
        unexpected_percent=_optional_float(result.get("unexpected_percent")),
        sample_unexpected=samples[:SAMPLE_LIMIT],
        observed_value=to_json_safe(result.get("observed_value")),
        exception=exception,
    )


def _missing_columns(result: Mapping) -> list:
    """The columns a table-columns expectation found missing (its offending values)."""
    details = result.get("details")
    mismatched = details.get("mismatched") if isinstance(details, Mapping) else None
    return list(mismatched.get("missing") or []) if isinstance(mismatched, Mapping) else []


def _failed_outcome(spec: ExpectationSpec, message: str) -> ExpectationOutcome:
    return ExpectationOutcome(
        expectation=expectation_type(spec.kind),
        column=_column_of(spec),
        kwargs=to_json_safe(spec.kwargs),
        success=False,
        element_count=None,
        unexpected_count=None,
        unexpected_percent=None,
        sample_unexpected=[],
        observed_value=None,
        exception=message,
    )


def _column_of(spec: ExpectationSpec) -> str | None:
    column = spec.kwargs.get("column")
    return None if column is None else str(column)


def _exception_message(exception_info: Any) -> str | None:
    """Collect messages from GX's exception_info.

    GX 1.x uses two shapes: a flat ``{"raised_exception": ..., "exception_message": ...}``
    or, for metric failures, ``{<metric id>: {"raised_exception": ..., ...}, ...}``.
    """
    if not isinstance(exception_info, Mapping) or not exception_info:
        return None
    if "raised_exception" in exception_info or "exception_message" in exception_info:
        entries: Iterable[Any] = [exception_info]
    else:
        entries = exception_info.values()
    messages: list[str] = []
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        message = entry.get("exception_message")
        if entry.get("raised_exception", bool(message)):
            text = str(message or "Great Expectations raised an exception")
            if text not in messages:
                messages.append(text)
    return "; ".join(messages) or None


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


# --------------------------------------------------------------------------------------
# JSON safety
# --------------------------------------------------------------------------------------


def to_json_safe(value: Any) -> Any:
    """Convert GX/pandas/numpy values into plain JSON types.

    numpy scalars -> Python scalars, NaN/NaT -> None, +/-inf -> "inf"/"-inf",
    Timestamps/dates -> ISO strings, Decimals -> float, containers -> lists/dicts.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, (numbers.Real, decimal.Decimal)):
        return _json_safe_float(float(value))
    if value is pd.NaT or isinstance(value, np.datetime64):
        return None if pd.isna(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (dt.timedelta, np.timedelta64)):
        return None if pd.isna(value) else str(pd.Timedelta(value))
    if isinstance(value, Mapping):
        return {str(key): to_json_safe(item) for key, item in value.items()}
    if isinstance(value, (set, frozenset)):
        return [to_json_safe(item) for item in sorted(value, key=repr)]
    if isinstance(value, (list, tuple, np.ndarray, pd.Series, pd.Index)):
        return [to_json_safe(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _json_safe_float(number: float) -> float | str | None:
    if math.isnan(number):
        return None
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    return number


# --------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_FILLER_WORDS = frozenset({"expect", "to", "be"})
_VERB_FIXES = {"exist": "exists"}


def _describe_expectation(kind: str, kwargs: Mapping) -> str:
    """Derive ``"<subject>: <phrase> [details] [(mostly N%)]"`` from a class name + kwargs."""
    words = _CAMEL_BOUNDARY.sub("_", kind).lower().split("_")
    subject = kwargs.get("column")
    if subject is None:
        subject = "table" if "table" in words[:2] else None
    words = [word for word in words if word not in _FILLER_WORDS]
    if words[:1] in (["column"], ["table"]) and len(words) > 2:
        words = words[1:]  # "column values between" -> "values between"
    phrase = " ".join(_VERB_FIXES.get(word, word) for word in words)

    consumed = set(_NON_DESCRIPTIVE_KWARGS)
    if phrase.endswith("between"):
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        phrase += f" {_short_repr(low)} and {_short_repr(high)}"
        consumed |= {"min_value", "max_value"}
    details = _format_kwargs(kwargs, exclude=consumed)
    if details:
        phrase += f" {details}"
    if kwargs.get("mostly") is not None:
        phrase += f" (mostly {float(kwargs['mostly']) * 100:g}%)"
    return f"{subject}: {phrase}" if subject is not None else phrase


def _format_kwargs(kwargs: Mapping, exclude: Iterable[str], bare_single: bool = True) -> str:
    """Remaining kwargs as ``key=value`` pairs; a lone one as just its value if ``bare_single``."""
    excluded = set(exclude)
    remaining = {key: value for key, value in kwargs.items() if key not in excluded}
    if bare_single and len(remaining) == 1:
        return _short_repr(next(iter(remaining.values())))
    return ", ".join(f"{key}={_short_repr(value)}" for key, value in remaining.items())


def _short_repr(value: Any) -> str:
    text = repr(value)
    if len(text) <= _LABEL_VALUE_MAX_CHARS:
        return text
    return text[: _LABEL_VALUE_MAX_CHARS - 1] + "…"
