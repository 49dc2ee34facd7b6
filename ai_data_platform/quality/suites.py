"""Great Expectations suites, defined in code, for staging tables (built from source contracts).

The staging gate validates a partition's *candidate* rows: every de-duplicated landed row parsed
to its contract type, before rules remove any. ``mostly`` thresholds tolerate the routine dirt
that quarantine absorbs, and fail the gate when a partition is corrupt beyond it; because the bad
values are in the batch, the result shows how many there are and what they look like.
"""

from __future__ import annotations

from ai_data_platform.quality.gx_runner import ExpectationSpec, SuiteSpec
from ai_data_platform.quality.tolerances import MAX_RULE_FAILURE_RATE, allowed_rate
from ai_data_platform.sources.contracts import PII_DIRECT, SourceTable


def staging_suite(t: SourceTable, rows: int = 0, tolerance: float = MAX_RULE_FAILURE_RATE) -> SuiteSpec:
    """The suite for a partition of ``rows`` candidate rows (small partitions tolerate a few rows)."""
    mostly = round(1.0 - allowed_rate(rows, tolerance), 4)
    exps: list[ExpectationSpec] = [
        ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "malformed", "value_set": [False], "mostly": mostly}),
    ]
    visible = [c for c in t.columns if c.pii != PII_DIRECT]
    for c in visible:
        if c.required:
            exps.append(ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": c.name, "mostly": mostly}))
    exps.append(ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": t.key, "mostly": mostly}))
    for c in visible:
        if c.accepted_values:
            exps.append(
                ExpectationSpec(
                    "ExpectColumnValuesToBeInSet",
                    {"column": c.name, "value_set": list(c.accepted_values), "mostly": mostly},
                )
            )
        if c.non_negative or c.max_value is not None:
            bounds = ({"min_value": 0} if c.non_negative else {}) | (
                {"max_value": c.max_value} if c.max_value is not None else {}
            )
            kwargs = {"column": c.name, **bounds, "mostly": mostly}
            exps.append(ExpectationSpec("ExpectColumnValuesToBeBetween", kwargs))
    return SuiteSpec(name=f"staging.{t.name}", expectations=tuple(exps))


def customer_360_suite() -> SuiteSpec:
    exps = [
        ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "customer_id"}),
        ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "customer_id"}),
        ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "email_hash"}),
        ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "region", "value_set": ["EU", "US", "APAC"]}),
        ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "subscription_status", "value_set": ["active", "cancelled", "none"]}),
        ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": "tenure_days", "min_value": 0}),
        ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": "mrr", "min_value": 0}),
        ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": "payment_failures", "min_value": 0}),
        ExpectationSpec("ExpectColumnValuesToMatchRegex", {"column": "email_hash", "regex": "^[0-9a-f]{64}$"}),
        ExpectationSpec("ExpectTableRowCountToBeBetween", {"min_value": 1}),
    ]
    return SuiteSpec(name="marts.customer_360", expectations=tuple(exps))


def customer_daily_suite(features) -> SuiteSpec:
    """Every feature column exists; count features are non-negative and never null."""
    exps = [
        ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "customer_id"}),
        ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "customer_id"}),
        ExpectationSpec("ExpectTableRowCountToBeBetween", {"min_value": 1}),
    ]
    return SuiteSpec(name="features.customer_daily", expectations=tuple(exps + _feature_expectations(features)))


def transaction_suite(features) -> SuiteSpec:
    exps = [
        ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "transaction_id"}),
        ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "transaction_id"}),
        ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "transaction_time"}),
        ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": "amount", "min_value": 0}),
    ]
    return SuiteSpec(name="features.transaction", expectations=tuple(exps + _feature_expectations(features)))


def columns_present(columns) -> ExpectationSpec:
    """Every one of ``columns`` is in the table (others may be too): one expectation naming the
    missing ones, instead of one ``ExpectColumnToExist`` per column (GX's cost is per expectation)."""
    return ExpectationSpec("ExpectTableColumnsToMatchSet", {"column_set": list(columns), "exact_match": False})


def _feature_expectations(features) -> list[ExpectationSpec]:
    published = [f for f in features if f.published]
    exps: list[ExpectationSpec] = [columns_present(f.name for f in published)] if published else []
    for f in published:
        if f.default is not None:
            exps.append(ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": f.name}))
        if f.agg in ("count", "count_distinct", "active_days", "days_since_last", "seconds_since_last"):
            exps.append(ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": f.name, "min_value": 0}))
    return exps
