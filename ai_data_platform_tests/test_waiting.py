"""The tests' one way of waiting: on an event, bounded generously, failing with what it awaited."""

import itertools

import pytest

from ai_data_platform.errors import InputError
from ai_data_platform_tests.waiting import TIME_SCALE_VAR, bound, time_scale, wait_for


def test_returns_the_first_observation_that_satisfies_the_condition():
    counter = itertools.count()
    assert wait_for(lambda: next(counter), "the third poll", until=lambda n: n >= 2, timeout=30) == 2
    assert wait_for(lambda: "ready", "a truthy observation") == "ready"


def test_a_timeout_names_what_was_awaited_and_the_last_observation():
    counter = itertools.count()
    with pytest.raises(AssertionError) as failed:
        wait_for(lambda: {"runs": next(counter) % 3}, "the runs to finish", until=lambda o: False, timeout=0.05)
    message = str(failed.value)
    assert "for the runs to finish" in message and "last observed: {'runs':" in message
    assert f"{TIME_SCALE_VAR}=1" in message


def test_a_stalled_observation_fails_before_the_timeout_while_a_changing_one_keeps_waiting():
    with pytest.raises(AssertionError, match=r"had not changed for \d+s; last observed: 'QUEUED'"):
        wait_for(lambda: "QUEUED", "a run to start", until=lambda s: s == "STARTED", timeout=60, stalled_after=0.05)
    progress = itertools.count()  # a new observation on every poll: never stalled, done at 8
    assert wait_for(lambda: next(progress), "eight polls", until=lambda n: n == 8, stalled_after=0.001, max_interval=0.01) == 8


def test_an_exception_from_the_observation_propagates():
    def dead():
        raise RuntimeError("the watched process exited")

    with pytest.raises(RuntimeError, match="exited"):
        wait_for(dead, "a process to answer")


def test_every_bound_scales_with_the_environment(monkeypatch):
    monkeypatch.delenv(TIME_SCALE_VAR, raising=False)
    assert time_scale() == 1.0 and bound(30) == 30
    monkeypatch.setenv(TIME_SCALE_VAR, "2.5")
    assert bound(30) == 75
    for bad in ("0", "-1", "fast", "nan", "inf"):
        monkeypatch.setenv(TIME_SCALE_VAR, bad)
        with pytest.raises(InputError, match=f"{TIME_SCALE_VAR}=.*must be a positive number"):
            bound(30)
