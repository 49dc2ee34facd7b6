"""Time and randomness for the simulator: the window of simulated days and seeded RNG streams.

All instants are int64 seconds since the Unix epoch, UTC. Every random draw comes from a numpy
Generator seeded by ``(seed, stream, *keys)`` through ``SeedSequence``, so each part of the
simulation (a table, a day) has its own reproducible stream and no draw depends on wall-clock
time, Python's ``hash()`` or the order in which unrelated parts were computed.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

SECONDS_PER_DAY = 86_400
EPOCH = date(1970, 1, 1)
# "Never" for instants such as a cancellation that has not happened; far from int64 overflow.
NEVER = np.int64(2**62)


@dataclass(frozen=True)
class Window:
    """The simulated days ``[start, end]``; day index ``t`` runs from 0 to ``days - 1``."""

    start: date
    days: int

    @classmethod
    def ending(cls, end: date, days: int) -> Window:
        return cls(start=end - timedelta(days=days - 1), days=days)

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days - 1)

    @property
    def start_s(self) -> int:
        """Epoch seconds of the first day's midnight."""
        return (self.start - EPOCH).days * SECONDS_PER_DAY

    @property
    def end_s(self) -> int:
        """Epoch seconds of the midnight after the last day (exclusive end)."""
        return self.start_s + self.days * SECONDS_PER_DAY

    def day(self, t: int) -> date:
        return self.start + timedelta(days=t)

    def day_start(self, t: int) -> int:
        return self.start_s + t * SECONDS_PER_DAY

    def day_index(self, seconds: np.ndarray) -> np.ndarray:
        """Window day index of each instant (negative before the window)."""
        return (np.asarray(seconds, dtype=np.int64) - self.start_s) // SECONDS_PER_DAY


def stream(seed: int, name: str, *keys: int) -> np.random.Generator:
    """An independent, reproducible generator for one named part of the simulation."""
    entropy = [int(seed), zlib.crc32(name.encode("ascii")), *(int(k) for k in keys)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def uniform_seconds(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """One integer instant per row, uniform in ``[lo, hi)`` (``hi > lo`` required)."""
    lo = np.asarray(lo, dtype=np.int64)
    span = np.asarray(hi, dtype=np.int64) - lo
    return lo + (rng.random(lo.shape) * span).astype(np.int64)


def weekday_factor(day: date) -> float:
    """Activity multiplier of a calendar day: weekends are quieter."""
    return 0.85 if day.weekday() >= 5 else 1.0
