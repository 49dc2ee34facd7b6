"""Customer lifecycle: engaged, disengaging, cancelled — the churn signal of the simulation.

Each day an engaged customer may start to disengage, with a hazard that rises for the basic
plan, for customers who were never very active, after a failed payment and after a billing or
cancellation ticket. A disengaging customer's activity decays for 2–5 weeks, after which most
cancel (some recover). Billing adds involuntary cancellations when all retries of a payment
fail. Everything the other day-simulators need to know about the customer base's state on a
given day comes from here.
"""

from __future__ import annotations

import numpy as np

from ai_data_platform.sources.simulator_clock import NEVER, SECONDS_PER_DAY, Window, uniform_seconds
from ai_data_platform.sources.simulator_world import PLAN_CHURN_FACTOR, Population

BASE_DAILY_HAZARD = 0.0009
FAILED_PAYMENT_HAZARD_FACTOR = 4.0
COMPLAINT_HAZARD_FACTOR = 5.0
RECENT_DAYS = 30
DISENGAGEMENT_DAYS = (14, 36)  # [low, high) days from disengaging to the decision
SHARE_THAT_CANCEL = 0.8
ACTIVITY_DECAY_DAYS = 8.0
NO_DAY = -(10**6)


class Lifecycle:
    """Mutable per-customer state; arrays are indexed by customer row."""

    def __init__(self, population: Population, window: Window, rng: np.random.Generator):
        n = population.size
        self.population = population
        self.window = window
        self.cancel_at = population.cancelled_before_window_at.copy()
        self.disengaging = np.zeros(n, dtype=bool)
        self.disengaged_since = np.zeros(n, dtype=np.int64)
        self.decision_day = np.zeros(n, dtype=np.int64)
        self.will_cancel = np.zeros(n, dtype=bool)
        self.last_failed_payment_day = np.full(n, NO_DAY, dtype=np.int64)
        self.last_complaint_day = np.full(n, NO_DAY, dtype=np.int64)
        self._seed_disengagement_in_progress(rng)

    def _seed_disengagement_in_progress(self, rng: np.random.Generator) -> None:
        """Some customers are already drifting away on the first day (steady state)."""
        pop = self.population
        active = (pop.signup_at < self.window.start_s) & (self.cancel_at == NEVER)
        mean_duration = np.mean(DISENGAGEMENT_DAYS)
        drifting = active & (rng.random(pop.size) < self._base_hazard() * mean_duration)
        duration = rng.integers(*DISENGAGEMENT_DAYS, size=pop.size)
        elapsed = (rng.random(pop.size) * duration).astype(np.int64)
        self._start_disengaging(np.flatnonzero(drifting), -elapsed[drifting], duration[drifting], rng)

    def _base_hazard(self) -> np.ndarray:
        pop = self.population
        return BASE_DAILY_HAZARD * PLAN_CHURN_FACTOR[pop.plan] * pop.churn_propensity

    def _start_disengaging(self, rows, since, duration, rng) -> None:
        self.disengaging[rows] = True
        self.disengaged_since[rows] = since
        self.decision_day[rows] = since + duration
        self.will_cancel[rows] = rng.random(rows.size) < SHARE_THAT_CANCEL

    def daily_hazard(self, t: int) -> np.ndarray:
        """Probability of starting to disengage on day ``t``, per customer."""
        failed = self.last_failed_payment_day >= t - RECENT_DAYS
        complained = self.last_complaint_day >= t - RECENT_DAYS
        return (
            self._base_hazard()
            * np.where(failed, FAILED_PAYMENT_HAZARD_FACTOR, 1.0)
            * np.where(complained, COMPLAINT_HAZARD_FACTOR, 1.0)
        )

    def advance(self, t: int, rng: np.random.Generator) -> None:
        """Decide day ``t``'s voluntary cancellations, recoveries and new disengagements."""
        day_start = self.window.day_start(t)
        n = self.population.size
        decided = self.disengaging & (self.decision_day == t)
        cancelling = np.flatnonzero(decided & self.will_cancel & (self.cancel_at == NEVER))
        self.cancel_at[cancelling] = uniform_seconds(
            rng, np.full(cancelling.size, day_start), np.full(cancelling.size, day_start + SECONDS_PER_DAY)
        )
        self.disengaging[decided] = False

        eligible = (
            ~self.disengaging & (self.cancel_at == NEVER) & (self.population.signup_at < day_start)
        )
        starting = np.flatnonzero(eligible & (rng.random(n) < self.daily_hazard(t)))
        duration = rng.integers(*DISENGAGEMENT_DAYS, size=starting.size)
        self._start_disengaging(starting, np.full(starting.size, t), duration, rng)

    def cancel_involuntarily(self, rows: np.ndarray, at: np.ndarray) -> None:
        """Cancel subscriptions whose payment finally failed (keeps an earlier cancellation)."""
        self.cancel_at[rows] = np.minimum(self.cancel_at[rows], at)

    def activity_multiplier(self, t: int) -> np.ndarray:
        """How much of their usual activity each customer shows on day ``t``."""
        decay = np.exp(-(t - self.disengaged_since) / ACTIVITY_DECAY_DAYS)
        return np.where(self.disengaging, np.clip(decay, 0.05, 1.0), 1.0)

    def active_span(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Per customer, the part ``[lo, hi)`` of day ``t`` with a live subscription (may be empty)."""
        day_start = self.window.day_start(t)
        lo = np.maximum(self.population.signup_at, day_start)
        hi = np.minimum(self.cancel_at, day_start + SECONDS_PER_DAY)
        return lo, hi
