"""Tests for ai_data_platform.quality.gx_runner (Great Expectations 1.x, in-process).

GX is imported once per process by the runner; the module-scoped ``runner`` fixture
pays that cost up front so individual tests stay fast.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pandas as pd
import pytest

from ai_data_platform.quality import gx_runner
from ai_data_platform.quality.gx_runner import (
    ExpectationSpec,
    SuiteSpec,
    ValidationReport,
    validate_dataframe,
)


@pytest.fixture(scope="module", autouse=True)
def runner():
    """Warm the process-wide GX context once for the whole module."""
    validate_dataframe(pd.DataFrame({"x": [1]}), SuiteSpec("warmup", ()))
    return gx_runner


def amounts_with_negatives(total: int = 100, negatives: int = 30) -> pd.DataFrame:
    """``negatives`` distinct negative amounts spread evenly among positive ones."""
    values = [float(i + 1) for i in range(total)]
    step = total // negatives
    for n, position in enumerate(range(0, step * negatives, step)):
        values[position] = -(n + 1) * 0.5
    return pd.DataFrame({"amount": values})


def between(column: str, mostly: float | None = None, **bounds) -> ExpectationSpec:
    kwargs = {"column": column, **bounds}
    if mostly is not None:
        kwargs["mostly"] = mostly
    return ExpectationSpec("ExpectColumnValuesToBeBetween", kwargs)


def only_outcome(report: ValidationReport):
    assert report.evaluated == 1 and len(report.outcomes) == 1
    return report.outcomes[0]


# --------------------------------------------------------------------------------------
# Passing and failing suites
# --------------------------------------------------------------------------------------


def test_passing_suite_reports_every_expectation_as_success():
    df = pd.DataFrame({"id": [1, 2, 3], "status": ["paid", "paid", "refunded"]})
    suite = SuiteSpec(
        "tests.passing",
        (
            ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "id"}),
            ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "id"}),
            ExpectationSpec(
                "ExpectColumnValuesToBeInSet",
                {"column": "status", "value_set": ["paid", "refunded"]},
            ),
            ExpectationSpec("ExpectTableRowCountToBeBetween", {"min_value": 1, "max_value": 3}),
        ),
    )

    report = validate_dataframe(df, suite)

    assert report.suite == "tests.passing"
    assert report.success is True
    assert (report.evaluated, report.failed) == (4, 0)
    assert all(outcome.success for outcome in report.outcomes)
    assert all(outcome.exception is None for outcome in report.outcomes)
    assert report.failures() == ()
    assert report.summary() == ""


def test_failing_between_reports_exact_counts_percent_and_samples():
    df = amounts_with_negatives(total=100, negatives=30)
    negatives_in_row_order = [v for v in df["amount"] if v < 0]

    report = validate_dataframe(
        df, SuiteSpec("tests.between", (between("amount", mostly=0.95, min_value=0),))
    )

    outcome = only_outcome(report)
    assert report.success is False and report.failed == 1
    assert outcome.success is False
    assert outcome.expectation == "expect_column_values_to_be_between"
    assert outcome.column == "amount"
    assert outcome.kwargs == {"column": "amount", "min_value": 0, "mostly": 0.95}
    assert outcome.element_count == 100
    assert outcome.unexpected_count == 30
    assert outcome.unexpected_percent == pytest.approx(30.0)
    assert outcome.sample_unexpected == negatives_in_row_order[:10]
    assert all(type(value) is float for value in outcome.sample_unexpected)
    assert outcome.exception is None


@pytest.mark.parametrize(
    ("mostly", "expected_success"),
    [(0.69, True), (0.70, True), (0.71, False), (0.95, False)],
)
def test_mostly_threshold_is_respected_on_both_sides(mostly, expected_success):
    df = amounts_with_negatives(total=100, negatives=30)  # 70% of values are valid

    report = validate_dataframe(
        df, SuiteSpec("tests.mostly", (between("amount", mostly=mostly, min_value=0),))
    )

    outcome = only_outcome(report)
    assert outcome.success is expected_success
    assert report.success is expected_success
    assert outcome.unexpected_count == 30  # counts are reported whether or not it passes


def test_unexpected_percent_excludes_nulls_like_gx():
    amounts = [-1.0] * 20 + [None] * 20 + [1.0] * 60
    report = validate_dataframe(
        pd.DataFrame({"amount": amounts}),
        SuiteSpec("tests.null_percent", (between("amount", mostly=0.8, min_value=0),)),
    )

    outcome = only_outcome(report)
    assert outcome.element_count == 100
    assert outcome.unexpected_count == 20
    assert outcome.unexpected_percent == pytest.approx(25.0)  # 20 of 80 non-null values
    assert outcome.success is False  # 75% valid among non-null < mostly 80%
    assert "(25.00% of non-null)" in report.summary()


# --------------------------------------------------------------------------------------
# Individual expectation kinds
# --------------------------------------------------------------------------------------


def test_values_to_be_in_set_reports_values_outside_the_set():
    df = pd.DataFrame({"status": ["paid", "bogus", "refunded", "weird", "paid"]})
    report = validate_dataframe(
        df,
        SuiteSpec(
            "tests.in_set",
            (
                ExpectationSpec(
                    "ExpectColumnValuesToBeInSet",
                    {"column": "status", "value_set": ["paid", "refunded"]},
                ),
            ),
        ),
    )

    outcome = only_outcome(report)
    assert outcome.success is False
    assert outcome.unexpected_count == 2
    assert outcome.sample_unexpected == ["bogus", "weird"]


def test_values_to_not_be_null_counts_nulls_over_all_rows():
    df = pd.DataFrame({"email": ["a@x", None, "b@x", np.nan, "c@x"]})
    report = validate_dataframe(
        df,
        SuiteSpec(
            "tests.not_null",
            (ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "email"}),),
        ),
    )

    outcome = only_outcome(report)
    assert outcome.success is False
    assert outcome.element_count == 5
    assert outcome.unexpected_count == 2
    assert outcome.unexpected_percent == pytest.approx(40.0)
    assert outcome.sample_unexpected == [None, None]  # NaN made JSON-safe


def test_values_to_be_unique_flags_every_duplicate_copy():
    df = pd.DataFrame({"id": [1, 2, 2, 3, 4, 4, 4]})
    report = validate_dataframe(
        df,
        SuiteSpec(
            "tests.unique", (ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "id"}),)
        ),
    )

    outcome = only_outcome(report)
    assert outcome.success is False
    assert outcome.unexpected_count == 5
    assert sorted(outcome.sample_unexpected) == [2, 2, 4, 4, 4]
    assert all(type(value) is int for value in outcome.sample_unexpected)  # not numpy ints


@pytest.mark.parametrize(
    ("bounds", "expected_success"),
    [
        ({"min_value": 3, "max_value": 3}, True),
        ({"min_value": 4}, False),
        ({"max_value": 2}, False),
    ],
)
def test_table_row_count_observes_the_number_of_rows(bounds, expected_success):
    report = validate_dataframe(
        pd.DataFrame({"x": [1, 2, 3]}),
        SuiteSpec("tests.row_count", (ExpectationSpec("ExpectTableRowCountToBeBetween", bounds),)),
    )

    outcome = only_outcome(report)
    assert outcome.success is expected_success
    assert outcome.observed_value == 3
    assert type(outcome.observed_value) is int
    assert outcome.column is None


def test_column_to_exist_passes_for_present_and_fails_for_absent_columns():
    suite = SuiteSpec(
        "tests.exists",
        (
            ExpectationSpec("ExpectColumnToExist", {"column": "present"}),
            ExpectationSpec("ExpectColumnToExist", {"column": "absent"}),
        ),
    )

    report = validate_dataframe(pd.DataFrame({"present": [1]}), suite)

    present, absent = report.outcomes
    assert present.success is True
    assert absent.success is False
    assert absent.exception is None  # a genuine "no", not an error
    assert (report.evaluated, report.failed) == (2, 1)


def test_aggregate_observed_value_is_a_plain_float():
    report = validate_dataframe(
        pd.DataFrame({"score": np.array([0.25, 0.75], dtype=np.float32)}),
        SuiteSpec(
            "tests.mean",
            (
                ExpectationSpec(
                    "ExpectColumnMeanToBeBetween", {"column": "score", "min_value": 0.6}
                ),
            ),
        ),
    )

    outcome = only_outcome(report)
    assert outcome.success is False
    assert outcome.observed_value == pytest.approx(0.5)
    assert type(outcome.observed_value) is float


# --------------------------------------------------------------------------------------
# Errors inside GX, ordering and edge cases
# --------------------------------------------------------------------------------------


def test_missing_column_is_a_failed_outcome_with_the_exception_message():
    suite = SuiteSpec(
        "tests.missing_column",
        (
            between("no_such_column", min_value=0),
            ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "amount"}),
        ),
    )

    report = validate_dataframe(pd.DataFrame({"amount": [1.0, 2.0]}), suite)

    broken, healthy = report.outcomes
    assert broken.success is False
    assert broken.column == "no_such_column"
    assert broken.exception and "no_such_column" in broken.exception
    assert healthy.success is True and healthy.exception is None  # the rest still ran
    assert report.success is False and report.failed == 1
    assert "raised" in report.summary() and "no_such_column" in report.summary()


def test_expectation_raising_on_incompatible_types_fails_instead_of_passing():
    report = validate_dataframe(
        pd.DataFrame({"name": ["a", "b"]}),
        SuiteSpec("tests.type_error", (between("name", min_value=0),)),
    )

    outcome = only_outcome(report)
    assert outcome.success is False
    assert outcome.exception


def test_outcomes_follow_spec_order_including_duplicates():
    specs = (
        between("missing", min_value=0),
        ExpectationSpec("ExpectTableRowCountToBeBetween", {"min_value": 1}),
        between("amount", min_value=0),
        between("amount", min_value=0),
        ExpectationSpec("ExpectColumnToExist", {"column": "amount"}),
    )

    report = validate_dataframe(
        pd.DataFrame({"amount": [-1.0, 2.0]}), SuiteSpec("tests.order", specs)
    )

    assert [(o.expectation, o.column) for o in report.outcomes] == [
        ("expect_column_values_to_be_between", "missing"),
        ("expect_table_row_count_to_be_between", None),
        ("expect_column_values_to_be_between", "amount"),
        ("expect_column_values_to_be_between", "amount"),
        ("expect_column_to_exist", "amount"),
    ]
    assert [o.success for o in report.outcomes] == [False, True, False, False, True]
    assert report.evaluated == 5 and report.failed == 3


def test_empty_dataframe_does_not_crash():
    empty = pd.DataFrame({"amount": pd.Series([], dtype=float)})
    suite = SuiteSpec(
        "tests.empty",
        (
            between("amount", min_value=0),
            ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "amount"}),
            ExpectationSpec("ExpectTableRowCountToBeBetween", {"min_value": 1}),
        ),
    )

    report = validate_dataframe(empty, suite)

    vacuous_between, vacuous_not_null, row_count = report.outcomes
    assert vacuous_between.success is True and vacuous_between.element_count == 0
    assert vacuous_not_null.success is True
    assert row_count.success is False and row_count.observed_value == 0
    json.dumps(report.to_dict(), allow_nan=False)


def test_suite_level_gx_crash_falls_back_to_isolated_expectations(monkeypatch):
    """If GX aborts the whole suite, expectations are re-run one by one."""
    suite = SuiteSpec(
        "tests.fallback",
        (
            between("amount", min_value=0),
            ExpectationSpec("ExpectColumnToExist", {"column": "amount"}),
        ),
    )
    gx_suite = gx_runner._RUNTIME._suite_for(suite)
    real_batch = gx_runner._RUNTIME._batch_definition_for_dataframes().get_batch(
        batch_parameters={"dataframe": pd.DataFrame({"amount": [-1.0, 1.0]})}
    )

    class SuiteRefusingBatch:
        def validate(self, expect, **kwargs):
            if expect is gx_suite:
                raise RuntimeError("suite-level boom")
            if expect.expectation_type == "expect_column_to_exist":
                raise RuntimeError("single boom")
            return real_batch.validate(expect, **kwargs)

    results = gx_runner._run_suite(SuiteRefusingBatch(), gx_suite, gx_runner._RESULT_FORMAT)
    outcomes = [
        gx_runner._outcome_for(spec, results.get(index))
        for index, spec in enumerate(suite.expectations)
    ]

    assert outcomes[0].success is False and outcomes[0].unexpected_count == 1
    assert outcomes[1].success is False and outcomes[1].exception == "RuntimeError: single boom"


def test_unknown_kind_and_invalid_kwargs_raise_value_error():
    df = pd.DataFrame({"x": [1]})
    with pytest.raises(ValueError, match="ExpectNothingInParticular"):
        validate_dataframe(
            df, SuiteSpec("tests.unknown", (ExpectationSpec("ExpectNothingInParticular", {}),))
        )
    with pytest.raises(ValueError, match="ExpectColumnValuesToBeBetween"):
        validate_dataframe(
            df, SuiteSpec("tests.invalid", (between("x", mostly=7.0, min_value=0),))
        )


def test_non_dataframe_input_is_rejected():
    with pytest.raises(TypeError):
        validate_dataframe([{"x": 1}], SuiteSpec("tests.not_df", ()))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------


def test_summary_names_expectation_column_counts_and_samples():
    df = amounts_with_negatives(total=100, negatives=30)
    suite = SuiteSpec(
        "tests.summary",
        (
            between("amount", mostly=0.95, min_value=0),
            ExpectationSpec("ExpectTableRowCountToBeBetween", {"max_value": 10}),
            ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "amount"}),
        ),
    )

    lines = validate_dataframe(df, suite).summary().splitlines()

    assert lines == [
        "expect_column_values_to_be_between(amount): 30 of 100 rows unexpected (30.00%), "
        "e.g. [-0.5, -1.0, -1.5, -2.0, -2.5]",
        "expect_table_row_count_to_be_between: observed 100, expected max_value=10",
    ]


def test_to_dict_round_trips_through_json_with_awkward_values():
    df = pd.DataFrame(
        {
            "ts": pd.to_datetime(["2020-01-01 00:00:00", "2024-05-06 07:08:09", None]),
            "amount": np.array([np.inf, -2, 3], dtype=np.float64),
            "count": np.array([1, 1, 2], dtype=np.int64),
        }
    )
    suite = SuiteSpec(
        "tests.json",
        (
            between("ts", min_value=pd.Timestamp("2021-01-01")),
            between("amount", min_value=0, max_value=10),
            ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "count"}),
            ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "ts"}),
            between("missing", min_value=0),
        ),
    )

    report_dict = validate_dataframe(df, suite).to_dict()
    encoded = json.dumps(report_dict, allow_nan=False)

    assert json.loads(encoded) == report_dict
    ts_between, amount_between, unique, not_null, missing = report_dict["outcomes"]
    assert ts_between["sample_unexpected"] == ["2020-01-01T00:00:00"]
    assert ts_between["kwargs"]["min_value"] == "2021-01-01T00:00:00"
    assert amount_between["sample_unexpected"] == ["inf", -2.0]
    assert unique["sample_unexpected"] == [1, 1]
    assert not_null["sample_unexpected"] == [None]
    assert missing["exception"]
    assert report_dict["success"] is False and report_dict["failed"] == 5


def test_label_describes_the_expectation():
    assert between("amount", mostly=0.95, min_value=0).label == (
        "amount: values between 0 and None (mostly 95%)"
    )
    assert (
        ExpectationSpec("ExpectTableRowCountToBeBetween", {"min_value": 1, "max_value": 5}).label
        == "table: row count between 1 and 5"
    )
    assert (
        ExpectationSpec(
            "ExpectColumnValuesToBeInSet", {"column": "status", "value_set": ["a", "b"]}
        ).label
        == "status: values in set ['a', 'b']"
    )


# --------------------------------------------------------------------------------------
# Re-use of the process-wide context and the suite cache
# --------------------------------------------------------------------------------------


def test_revalidating_other_dataframes_with_the_same_suite_uses_each_frames_data():
    suite = SuiteSpec(
        "tests.revalidate",
        (
            between("amount", min_value=0),
            ExpectationSpec("ExpectTableRowCountToBeBetween", {"min_value": 1}),
        ),
    )
    dirty = amounts_with_negatives(total=100, negatives=30)
    clean = pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0]})

    first = validate_dataframe(dirty, suite)
    second = validate_dataframe(clean, suite)
    third = validate_dataframe(dirty, suite)

    assert first.outcomes[0].unexpected_count == 30 and first.success is False
    assert second.outcomes[0].unexpected_count == 0 and second.success is True
    assert second.outcomes[1].observed_value == 4
    assert third.to_dict() == first.to_dict()


def test_changed_suite_spec_with_the_same_name_uses_the_new_expectations():
    df = amounts_with_negatives(total=100, negatives=30)
    strict = SuiteSpec("tests.changing", (between("amount", min_value=0),))
    relaxed = SuiteSpec(
        "tests.changing",
        (
            between("amount", min_value=-100),
            ExpectationSpec("ExpectColumnToExist", {"column": "amount"}),
        ),
    )

    assert validate_dataframe(df, strict).success is False
    relaxed_report = validate_dataframe(df, relaxed)
    assert relaxed_report.success is True
    assert relaxed_report.evaluated == 2
    assert validate_dataframe(df, strict).success is False  # and back again


def test_mutating_nested_kwargs_after_validation_is_not_masked_by_the_cache():
    value_set = {"paid"}
    spec = SuiteSpec(
        "tests.mutated",
        (ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "s", "value_set": value_set}),),
    )
    df = pd.DataFrame({"s": ["paid", "refunded"]})

    assert validate_dataframe(df, spec).success is False
    value_set.add("refunded")  # same SuiteSpec object, different content
    assert validate_dataframe(df, spec).success is True


def test_concurrent_validations_of_different_frames_do_not_mix_data():
    suite = SuiteSpec("tests.threads", (between("amount", min_value=0),))
    frames = {n: amounts_with_negatives(total=200, negatives=n) for n in (5, 10, 20, 25, 40, 50)}
    observed: list[tuple[int, int | None]] = []
    errors: list[BaseException] = []

    def run(expected_negatives: int) -> None:
        try:
            report = validate_dataframe(frames[expected_negatives], suite)
            observed.append((expected_negatives, report.outcomes[0].unexpected_count))
        except BaseException as error:  # pragma: no cover - surfaced below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in frames for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(observed) == sorted((n, n) for n in frames for _ in range(2))


def test_analytics_are_disabled_before_gx_runs():
    assert os.environ.get("GX_ANALYTICS_ENABLED") == "false"


def test_a_result_carrying_an_exception_never_counts_as_success():
    """Both shapes of GX exception_info (flat and keyed by metric) turn into failures."""

    class FakeConfig:
        type = "expect_column_values_to_be_between"
        meta = {}

    class FakeResult:
        expectation_config = FakeConfig()
        success = True
        result = {}

        def __init__(self, exception_info):
            self.exception_info = exception_info

    spec = between("amount", min_value=0)
    flat = FakeResult({"raised_exception": True, "exception_message": "flat boom"})
    keyed = FakeResult(
        {
            "metric-a": {"raised_exception": True, "exception_message": "keyed boom"},
            "metric-b": {"raised_exception": True, "exception_message": "keyed boom"},
        }
    )
    clean = FakeResult({"raised_exception": False, "exception_message": None})

    assert gx_runner._outcome_for(spec, flat).success is False
    assert gx_runner._outcome_for(spec, flat).exception == "flat boom"
    assert gx_runner._outcome_for(spec, keyed).exception == "keyed boom"
    assert gx_runner._outcome_for(spec, keyed).success is False
    assert gx_runner._outcome_for(spec, clean).success is True
    assert gx_runner._outcome_for(spec, None).success is False  # missing result
