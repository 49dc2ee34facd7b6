"""No NaN or infinity in a table's floating-point columns, as one Great Expectations expectation.

A pandas frame cannot tell NaN from NULL (both are ``NaN`` after DuckDB's ``.df()``), and a feature
may well be NULL. So the frame a gate validates carries one more column, :data:`FLAGGED_COLUMN`,
computed in DuckDB where NaN and NULL differ: per row, the floating-point columns holding NaN,
``inf`` or ``-inf`` and their values (``card_txn_amount_30d=inf``), NULL when every value is finite
or NULL. The expectation that it is NULL (:func:`with_finite_values`) fails on any such row and its
sample of unexpected values names the columns.
"""

from __future__ import annotations

from collections.abc import Iterable

from ai_data_platform.quality.gx_runner import ExpectationSpec, SuiteSpec
from ai_data_platform.warehouse import quote, sql_literal

FLAGGED_COLUMN = "_non_finite_values"
FLOATING_TYPES = frozenset({"DOUBLE", "FLOAT", "REAL"})


def flagged_sql(columns: Iterable[str]) -> str:
    """SQL of :data:`FLAGGED_COLUMN` over ``columns`` (floating-point columns of the row)."""
    parts = [
        f"CASE WHEN NOT isfinite({quote(c)}) THEN {sql_literal(c + '=')} || CAST({quote(c)} AS VARCHAR) END"
        for c in columns
    ]
    return f"nullif(concat_ws(', ', {', '.join(parts)}), '')" if parts else "CAST(NULL AS VARCHAR)"


def floating_columns(columns: Iterable[tuple[str, str]]) -> list[str]:
    """The names among ``(name, type)`` pairs whose type can hold NaN or infinity."""
    return [name for name, dtype in columns if dtype.upper() in FLOATING_TYPES]


def with_finite_values(suite: SuiteSpec) -> SuiteSpec:
    """``suite`` plus the expectation that no row holds a non-finite value (the frame a gate validates
    carries :data:`FLAGGED_COLUMN`)."""
    expectation = ExpectationSpec("ExpectColumnValuesToBeNull", {"column": FLAGGED_COLUMN})
    return SuiteSpec(suite.name, (*suite.expectations, expectation))
