"""One GX pass over many days gives each day the outcome validating it alone would give."""

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from ai_data_platform.quality import gx_days
from ai_data_platform.quality.gx_runner import ExpectationSpec, SuiteSpec, validate_dataframe
from ai_data_platform.quality.suites import customer_daily_suite, staging_suite
from ai_data_platform.features.registry import CUSTOMER_FEATURES
from ai_data_platform.sources.contracts import PAYMENTS

DAYS = [date(2026, 11, 1) + timedelta(days=i) for i in range(6)]


def _suite(mostly: float) -> SuiteSpec:
    return SuiteSpec(
        name="t.mixed",
        expectations=(
            ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "id", "mostly": mostly}),
            ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "id", "mostly": mostly}),
            ExpectationSpec("ExpectColumnValuesToBeInSet", {"column": "status", "value_set": ["ok", "failed"], "mostly": mostly}),
            ExpectationSpec("ExpectColumnValuesToBeBetween", {"column": "amount", "min_value": 0, "mostly": mostly}),
            ExpectationSpec("ExpectColumnValuesToMatchRegex", {"column": "code", "regex": "^[A-Z]{3}$"}),
            ExpectationSpec("ExpectColumnToExist", {"column": "amount"}),
            ExpectationSpec("ExpectColumnToExist", {"column": "not_there"}),
            ExpectationSpec("ExpectTableRowCountToBeBetween", {"min_value": 30}),
        ),
    )


def _frame(rng: np.random.Generator, rows: int, dirt: float) -> pd.DataFrame:
    ids = [f"C{i:04d}" for i in range(rows)]  # the same ids every day: unique within a day only
    frame = pd.DataFrame(
        {
            "id": ids,
            "status": rng.choice(["ok", "failed"], rows),
            "amount": rng.uniform(0, 100, rows).round(2),
            "code": rng.choice(["EUR", "USD"], rows),
        }
    )
    bad = rng.random((4, rows)) < dirt
    frame.loc[bad[0], "id"] = None
    dup = np.flatnonzero(bad[1])
    if len(dup):
        frame.loc[dup, "id"] = frame["id"].iloc[0]
    frame.loc[bad[2], "status"] = "weird"
    frame.loc[bad[3], "amount"] = -1.0
    frame.loc[rng.random(rows) < dirt, "code"] = "eu"
    frame.loc[rng.random(rows) < dirt / 2, "amount"] = np.nan
    return frame


def _assert_same(got, expected):
    assert set(got) == set(expected)
    for day in expected:
        g, e = got[day].to_dict(), expected[day].to_dict()
        for go, eo in zip(g.pop("outcomes"), e.pop("outcomes")):
            assert go == eo, (day, eo["expectation"], eo["column"])
        assert g == e


def _no_per_day_fallback(monkeypatch):
    def refuse(frame, suite):
        raise AssertionError("validated a day on its own instead of in one pass")

    monkeypatch.setattr(gx_days, "validate_dataframe", refuse)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_pass_over_many_days_equals_validating_each_day_alone(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    # clean days, dirty days, a day too small for the row-count bound, an empty day
    rows = [40, 60, 25, 80, 0, 50]
    dirt = [0.0, 0.08, 0.02, 0.3, 0.0, 0.01]
    frames = {d: _frame(rng, n, p) for d, n, p in zip(DAYS, rows, dirt)}
    # per-day suites that differ in `mostly` (as staging's do with partition size)
    suite_for_day = lambda day, frame: _suite(0.9 if len(frame) < 50 else 0.95)  # noqa: E731

    with monkeypatch.context() as m:
        _no_per_day_fallback(m)
        got = gx_days.validate_days(list(frames), frames.__getitem__, suite_for_day)
    expected = {d: validate_dataframe(f, suite_for_day(d, f)) for d, f in frames.items()}

    _assert_same(got, expected)
    assert any(o.sample_unexpected for r in got.values() for o in r.outcomes)
    assert len({r.failed for r in got.values()}) > 2  # the days really differ


def test_real_suites_on_a_corrupted_day_match_and_name_the_day(monkeypatch):
    rng = np.random.default_rng(7)
    frames = {}
    for i, day in enumerate(DAYS[:4]):
        n = 300
        frames[day] = pd.DataFrame(
            {
                "malformed": rng.random(n) < 0.003,
                "payment_id": [f"P{day:%d}{j:05d}" for j in range(n)],
                "customer_id": [f"C{j % 97:04d}" for j in range(n)],
                "amount": np.where(rng.random(n) < (0.4 if i == 2 else 0.0), -5.0, rng.uniform(1, 50, n)),
                "currency": rng.choice(["EUR", "USD"], n),
                "status": rng.choice(["succeeded", "failed", "refunded"], n),
                "created_at": pd.Timestamp("2026-11-01"),
            }
        )
    suite_for_day = lambda day, frame: staging_suite(PAYMENTS, rows=len(frame))  # noqa: E731
    with monkeypatch.context() as m:
        _no_per_day_fallback(m)
        got = gx_days.validate_days(list(frames), frames.__getitem__, suite_for_day)
    expected = {d: validate_dataframe(f, suite_for_day(d, f)) for d, f in frames.items()}
    _assert_same(got, expected)
    assert [d for d, r in got.items() if not r.success] == [DAYS[2]]
    assert "expect_column_values_to_be_between(amount)" in got[DAYS[2]].summary()


def test_feature_suite_over_days_with_the_same_customers_passes_like_each_day(monkeypatch):
    rng = np.random.default_rng(3)
    suite = customer_daily_suite(CUSTOMER_FEATURES)
    names = next(e.kwargs["column_set"] for e in suite.expectations if e.kind == "ExpectTableColumnsToMatchSet")
    frames = {
        d: pd.DataFrame({"customer_id": [f"C{j}" for j in range(120)], **{n: rng.integers(0, 5, 120) for n in names}})
        for d in DAYS[:3]
    }
    frames[DAYS[1]].loc[5, names[0]] = None  # a null count feature on one day fails that day only
    with monkeypatch.context() as m:
        _no_per_day_fallback(m)
        got = gx_days.validate_days(list(frames), frames.__getitem__, suite)
    _assert_same(got, {d: validate_dataframe(f, suite) for d, f in frames.items()})
    assert [d for d, r in got.items() if not r.success] == [DAYS[1]]


def test_frames_with_different_columns_fall_back_to_one_validation_per_day(monkeypatch):
    calls = []
    monkeypatch.setattr(gx_days, "validate_dataframe", lambda f, s: calls.append(len(f)) or validate_dataframe(f, s))
    frames = {DAYS[0]: pd.DataFrame({"id": ["a"]}), DAYS[1]: pd.DataFrame({"id": ["b"], "extra": [1]})}
    suite = SuiteSpec("t", (ExpectationSpec("ExpectColumnValuesToNotBeNull", {"column": "id"}),))
    reports = gx_days.validate_days(list(frames), frames.__getitem__, suite)
    assert calls == [1, 1] and all(r.success for r in reports.values())


def test_large_ranges_are_validated_in_bounded_passes(monkeypatch):
    monkeypatch.setattr(gx_days, "MAX_ROWS_PER_PASS", 100)
    passes = []
    real = gx_days.gx_runner.run_raw
    monkeypatch.setattr(gx_days.gx_runner, "run_raw", lambda df, s, f: passes.append(len(df)) or real(df, s, f))
    frames = {d: pd.DataFrame({"id": [f"x{i}" for i in range(40)]}) for d in DAYS}
    suite = SuiteSpec("t", (ExpectationSpec("ExpectColumnValuesToBeUnique", {"column": "id"}),))
    reports = gx_days.validate_days(list(frames), frames.__getitem__, suite)
    assert passes == [80, 80, 80] and all(r.success for r in reports.values())


def test_columns_present_is_judged_in_one_pass_and_an_exact_match_day_by_day(monkeypatch):
    frames = {d: pd.DataFrame({"id": [f"{d}-{j}" for j in range(3)], "a": [1, 2, 3]}) for d in DAYS[:2]}
    present = SuiteSpec("p", (ExpectationSpec("ExpectTableColumnsToMatchSet", {"column_set": ["id", "b"], "exact_match": False}),))
    with monkeypatch.context() as m:
        _no_per_day_fallback(m)
        got = gx_days.validate_days(list(frames), frames.__getitem__, present)
    _assert_same(got, {d: validate_dataframe(f, present) for d, f in frames.items()})
    assert all(not r.success and "missing ['b']" in r.summary() for r in got.values())
    assert sorted(got[DAYS[0]].outcomes[0].observed_value) == ["a", "id"]  # the day marker is not a column of the day

    calls = []
    monkeypatch.setattr(gx_days, "validate_dataframe", lambda f, s: calls.append(len(f)) or validate_dataframe(f, s))
    exact = SuiteSpec("e", (ExpectationSpec("ExpectTableColumnsToMatchSet", {"column_set": ["id", "a"], "exact_match": True}),))
    reports = gx_days.validate_days(list(frames), frames.__getitem__, exact)
    assert calls == [3, 3] and all(r.success for r in reports.values())
