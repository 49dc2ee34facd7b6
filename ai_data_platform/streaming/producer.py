"""``adp stream produce``: behavioural events as they happen, with the simulator's schema and signal.

The customers are the simulator's (``simulator_world.build_population`` with the same seed as
``adp generate``: same ids, home countries, usual devices and spend), and the event mix, device
and travel shares and the fraud pattern (a card transaction on a never-seen device, mostly from
abroad, for several times the usual amount) are the simulator's constants. Event times are
"now"; the transport stamps ``received_at`` when it appends. Event ids (``ES`` + 16 hex digits)
never collide with the daily export's (``E`` + 10 digits).
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, datetime, timezone

import numpy as np

from ai_data_platform.sources import simulator_events as sim
from ai_data_platform.sources import simulator_vocab as vocab
from ai_data_platform.sources.contracts import CURRENCIES, EVENT_TYPES
from ai_data_platform.sources.simulator_clock import Window, stream
from ai_data_platform.sources.simulator_ids import device_ids, session_ids
from ai_data_platform.sources.simulator_world import build_population, round_money
from ai_data_platform.streaming.transport import Transport

FRAUD_SHARE = 0.002  # of card transactions: a fraudulent one
TICK_SECONDS = 0.01


class EventProducer:
    """Draws events for the first ``customers`` simulated customers (deterministic in ``seed``)."""

    def __init__(self, customers: int, seed: int = 42):
        if customers < 1:
            raise ValueError("customers must be at least 1")
        self.population = build_population(customers, Window.ending(date.today(), 1), seed)
        self.rng = stream(seed, "stream-producer", os.getpid(), time.time_ns() % 1_000_000)
        weights = self.population.activity
        self.weights = weights / weights.sum()
        self.customer_ids = self.population.customer_id.to_pylist()
        self._types = np.array([EVENT_TYPES.index(e) for e in vocab.EVENT_TYPE_SHARE])
        self._type_p = np.array(list(vocab.EVENT_TYPE_SHARE.values()))

    def events(self, n: int, now: datetime | None = None) -> list[dict]:
        rng, pop = self.rng, self.population
        now = now or datetime.now(timezone.utc).replace(tzinfo=None)
        customer = rng.choice(pop.size, n, p=self.weights)
        event_type = rng.choice(self._types, n, p=self._type_p)
        is_tx = event_type == sim.CARD_TRANSACTION
        fraud = is_tx & (rng.random(n) < FRAUD_SHARE)
        usual = 2 * pop.number[customer] + (rng.random(n) * pop.devices[customer]).astype(np.int64)
        new_device = (rng.random(n) < sim.NEW_DEVICE_SHARE) | (fraud & (rng.random(n) < 0.85))
        device = np.where(new_device, (1 << 41) + rng.integers(0, 1 << 40, n), usual)
        home = pop.country[customer]
        abroad = (rng.random(n) < sim.TRAVEL_SHARE) | (fraud & (rng.random(n) < 0.75))
        country = np.where(abroad, sim._other_country(rng, home), home)
        scale = np.where(fraud, rng.lognormal(np.log(8.0), 0.5, n), rng.lognormal(0.0, 0.5, n))
        amount = round_money(pop.usual_amount[customer] * scale, pop.currency[customer])
        merchant = np.where(fraud, rng.choice(len(vocab.MERCHANT_CATEGORIES), n, p=vocab.MERCHANT_SHARE_FRAUD),
                            rng.choice(len(vocab.MERCHANT_CATEGORIES), n, p=vocab.MERCHANT_SHARE_LEGIT))
        page = rng.choice(len(vocab.PAGES), n, p=vocab.PAGE_SHARE_ENGAGED)
        feature = rng.choice(len(vocab.FEATURES), n, p=vocab.FEATURE_SHARE)
        devices = device_ids(device).to_pylist()
        sessions = session_ids(rng.integers(1 << 44, 1 << 45, n)).to_pylist()
        stamp = now.isoformat(timespec="microseconds") + "Z"
        out = []
        for i in range(n):
            etype = EVENT_TYPES[event_type[i]]
            tx = bool(is_tx[i])
            out.append({
                "event_id": "ES" + rng.bytes(8).hex(),
                "customer_id": self.customer_ids[customer[i]],
                "event_type": etype,
                "event_time": stamp,
                "session_id": sessions[i],
                "page": vocab.PAGES[page[i]] if etype == "page_view" else None,
                "feature": vocab.FEATURES[feature[i]] if etype == "feature_use" else None,
                "amount": float(amount[i]) if tx else None,
                "currency": CURRENCIES[pop.currency[customer[i]]] if tx else None,
                "merchant_category": vocab.MERCHANT_CATEGORIES[merchant[i]] if tx else None,
                "device_id": devices[i],
                "ip_country": vocab.COUNTRIES[country[i]],
            })
        return out


def encode(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def produce(transport: Transport, producer: EventProducer, *, rate: float, duration: float | None = None,
            total: int | None = None, on_batch=None) -> int:
    """Append events at ``rate`` per second until ``duration`` seconds or ``total`` events."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    started = time.monotonic()
    sent = 0
    while True:
        elapsed = time.monotonic() - started
        if (duration is not None and elapsed >= duration) or (total is not None and sent >= total):
            return sent
        due = int(rate * elapsed) + 1 - sent
        if total is not None:
            due = min(due, total - sent)
        if due > 0:
            events = producer.events(due)
            records = transport.append([encode(e) for e in events])
            sent += due
            if on_batch is not None:
                on_batch(events, records)
        time.sleep(TICK_SECONDS)
