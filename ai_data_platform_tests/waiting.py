"""Waiting for something to happen, in tests: poll with backoff, bounded generously.

A test waits for an event (a run finished, a server answers, a process exited), never for the
machine to be quick. A bound only stops a test waiting for something that will not come: it is
generous (a busy machine is slow, not wrong), it costs nothing while the behaviour is right, and a
test that reaches it fails naming what it awaited and what it observed last.
``ADP_TEST_TIME_SCALE`` (a positive number, default 1) multiplies every bound, for a CI machine
slower still.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import TypeVar

from ai_data_platform.errors import InputError, shown

TIME_SCALE_VAR = "ADP_TEST_TIME_SCALE"
DEFAULT_TIMEOUT_SECONDS = 300.0
FIRST_INTERVAL_SECONDS = 0.01

T = TypeVar("T")
_NOTHING = object()


def time_scale() -> float:
    """The multiplier of every bound (``ADP_TEST_TIME_SCALE``, default 1)."""
    raw = os.environ.get(TIME_SCALE_VAR, "").strip()
    if not raw:
        return 1.0
    try:
        scale = float(raw)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise InputError(f"{TIME_SCALE_VAR}={shown(raw)}: must be a positive number (it multiplies every test bound)")
    return scale


def bound(seconds: float) -> float:
    """``seconds`` times ``ADP_TEST_TIME_SCALE``: the bound to hand to another API's timeout
    (``subprocess.run``, ``Popen.wait``, an HTTP client, a thread join)."""
    return seconds * time_scale()


def wait_for(
    observe: Callable[[], T],
    what: str,
    *,
    until: Callable[[T], object] = bool,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    stalled_after: float | None = None,
    max_interval: float = 2.0,
) -> T:
    """Call ``observe()`` until ``until(observation)`` holds, and return that observation.

    Observes at once, then after 10 ms, the pause doubling up to ``max_interval`` seconds: quick
    when the event is near, cheap when it is far. Raises ``AssertionError`` naming ``what`` and the
    last observation after ``bound(timeout)`` seconds or, given ``stalled_after``, once the
    observation has not changed for ``bound(stalled_after)`` seconds: a wait on a series of events
    (runs finishing one after another) then lasts while they keep coming and fails soon after
    they stop. An exception raised by ``observe`` propagates (a process it watches died, say).
    """
    limit = bound(timeout)
    stall_limit = bound(stalled_after) if stalled_after is not None else math.inf
    started = changed = time.monotonic()
    last: object = _NOTHING
    interval = min(FIRST_INTERVAL_SECONDS, max_interval)
    while True:
        observation = observe()
        if until(observation):
            return observation
        now = time.monotonic()
        if last is _NOTHING or observation != last:
            last, changed = observation, now
        if now - started >= limit or now - changed >= stall_limit:
            raise AssertionError(_timed_out(what, now - started, now - changed, last))
        time.sleep(min(interval, max(0.0, started + limit - now)))
        interval = min(interval * 2, max_interval)


def _timed_out(what: str, waited: float, unchanged: float, last: object) -> str:
    scale = f"{TIME_SCALE_VAR}={time_scale():g}"
    return (
        f"waited {waited:.0f}s for {what} ({scale}); the observation had not changed for {unchanged:.0f}s; "
        f"last observed: {shown(last, limit=2000)}"
    )
