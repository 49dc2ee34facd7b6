"""Chargebacks: disputes of card transactions, reported 3–20 days after the transaction.

Fraudulent transactions are charged back with high probability (reason ``fraudulent``);
ordinary ones rarely (mostly ``not_received`` / ``duplicate`` / ``other``, sometimes friendly
fraud). A chargeback is written to the file of the day it is reported, if that day lies inside
the window, and always after the day its transaction's event file landed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ai_data_platform.sources.contracts import CHARGEBACKS, CURRENCIES
from ai_data_platform.sources.simulator_arrow import contract_table, pick, timestamps
from ai_data_platform.sources.simulator_clock import SECONDS_PER_DAY, Window
from ai_data_platform.sources.simulator_events import CARD_TRANSACTION, DayEvents
from ai_data_platform.sources.simulator_ids import clean_ids
from ai_data_platform.sources.simulator_queue import Queue
from ai_data_platform.sources.simulator_world import Population

REASONS = ("fraudulent", "not_received", "duplicate", "other")
REASON_SHARE_FRAUD = (0.95, 0.0, 0.0, 0.05)
REASON_SHARE_ORDINARY = (0.15, 0.40, 0.25, 0.20)
CHARGEBACK_SHARE_FRAUD = 0.85
CHARGEBACK_SHARE_ORDINARY = 0.0015
REPORT_DELAY_DAYS = (3.0, 20.0)


class Chargebacks:
    """Schedules chargebacks for each day's transactions and emits those reported per day."""

    def __init__(self, population: Population, window: Window):
        self.population = population
        self.window = window
        self.next_chargeback = 1
        self.pending = Queue(
            customer=np.int64, transaction=np.int64, amount=np.float64, reason=np.int64,
            transaction_at=np.int64, reported_at=np.int64, due_day=np.int64,
        )

    def schedule(self, t: int, rng: np.random.Generator, events: DayEvents, numbers: np.ndarray) -> None:
        """Decide which of day ``t``'s card transactions will be charged back, and when."""
        is_tx = events.event_type == CARD_TRANSACTION
        p = np.where(events.fraud, CHARGEBACK_SHARE_FRAUD, CHARGEBACK_SHARE_ORDINARY)
        disputed = np.flatnonzero(is_tx & (rng.random(is_tx.size) < p))
        fraud = events.fraud[disputed]
        reason = np.where(
            fraud,
            rng.choice(len(REASONS), disputed.size, p=REASON_SHARE_FRAUD),
            rng.choice(len(REASONS), disputed.size, p=REASON_SHARE_ORDINARY),
        )
        low, high = REPORT_DELAY_DAYS
        delay = ((low + rng.random(disputed.size) * (high - low)) * SECONDS_PER_DAY).astype(np.int64)
        after_file_day = self.window.day_start(t + 1) + rng.integers(0, 3600, disputed.size)
        reported_at = np.maximum(events.time[disputed] + delay, after_file_day)
        due_day = self.window.day_index(reported_at)
        inside = due_day < self.window.days
        self.pending.push(
            customer=events.customer[disputed][inside],
            transaction=numbers[disputed][inside],
            amount=events.amount[disputed][inside],
            reason=reason[inside],
            transaction_at=events.time[disputed][inside],
            reported_at=reported_at[inside],
            due_day=due_day[inside],
        )

    def rows(self, t: int) -> pa.Table:
        """The chargebacks reported on day ``t``."""
        pop = self.population
        due = self.pending.pop_due(t)
        order = np.lexsort((due["transaction"], due["reported_at"]))
        due = {k: v[order] for k, v in due.items()}
        size = order.size
        number = self.next_chargeback + np.arange(size, dtype=np.int64)
        self.next_chargeback += size
        return contract_table(
            CHARGEBACKS,
            {
                "chargeback_id": clean_ids("chargebacks", number),
                "transaction_id": clean_ids("events", due["transaction"]),
                "customer_id": pop.customer_id.take(pa.array(due["customer"])),
                "amount": due["amount"],
                "currency": pick(CURRENCIES, pop.currency[due["customer"]]),
                "reason": pick(REASONS, due["reason"]),
                "transaction_at": timestamps(due["transaction_at"]),
                "reported_at": timestamps(due["reported_at"]),
            },
            size,
        )
