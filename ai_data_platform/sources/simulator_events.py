"""Behavioural events: logins, page views, feature use and card transactions — with fraud.

A live customer's daily event count is Poisson with a rate set by their activity level, the
weekday and how far they have drifted towards churn. Events are grouped into sessions, each on
one device (one of the customer's 1–2 usual devices, rarely a new one) from one IP country
(nearly always home). Fraud arrives as separate incidents: a burst of card transactions within
an hour, mostly from a never-seen device in a foreign country, for amounts far above the
customer's usual spend. About 2% of a day's events are delivered late, with an event time 1–3
days before the file they land in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ai_data_platform.sources.contracts import CURRENCIES, EVENT_TYPES, EVENTS
from ai_data_platform.sources.simulator_arrow import contract_table, pick, timestamps
from ai_data_platform.sources.simulator_clock import SECONDS_PER_DAY, Window, uniform_seconds, weekday_factor
from ai_data_platform.sources.simulator_ids import clean_ids, device_ids, session_ids
from ai_data_platform.sources.simulator_lifecycle import Lifecycle
from ai_data_platform.sources.simulator_world import Population, round_money
from ai_data_platform.sources import simulator_vocab as vocab

EVENTS_PER_CUSTOMER_DAY = 1.1  # averaged over all customers, live or not
EXTRA_EVENTS_PER_SESSION = 0.35  # chance each further event opens another session
NEW_DEVICE_SHARE = 0.015  # ordinary sessions on a device never seen before
TRAVEL_SHARE = 0.04  # ordinary sessions from abroad
FRAUD_INCIDENTS_PER_CUSTOMER_DAY = 0.0005
LATE_SHARE = 0.02
LATE_DAYS = (1, EVENTS.late_days + 1)  # [low, high): as late as the contract allows
_NEW_DEVICE_BASE = 1 << 40  # device numbers of new devices; usual ones are 2 * customer + k

LOGIN = EVENT_TYPES.index("login")
PAGE_VIEW = EVENT_TYPES.index("page_view")
FEATURE_USE = EVENT_TYPES.index("feature_use")
CARD_TRANSACTION = EVENT_TYPES.index("card_transaction")


@dataclass
class DayEvents:
    """One day's events as parallel numpy columns (ids are assigned once they are ordered)."""

    customer: np.ndarray
    event_type: np.ndarray
    time: np.ndarray
    session: np.ndarray  # session number
    device: np.ndarray  # device number
    ip_country: np.ndarray
    amount: np.ndarray  # NaN unless a card transaction
    merchant: np.ndarray  # -1 unless a card transaction
    page: np.ndarray  # -1 unless a page view
    feature: np.ndarray  # -1 unless feature use
    fraud: np.ndarray  # bool, never written: the ground truth behind chargebacks

    @classmethod
    def concat(cls, parts: list[DayEvents]) -> DayEvents:
        return cls(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__})

    def take(self, index: np.ndarray) -> DayEvents:
        return DayEvents(**{f: getattr(self, f)[index] for f in self.__dataclass_fields__})


def _other_country(rng: np.random.Generator, home: np.ndarray) -> np.ndarray:
    """A random country different from ``home`` for every row."""
    n = len(vocab.COUNTRIES)
    return (home + rng.integers(1, n, home.size)) % n


class EventSimulator:
    """Generates each day's behavioural events; keeps the id, session and device counters."""

    def __init__(self, population: Population, window: Window):
        self.population = population
        self.window = window
        self.next_event = 1
        self.next_session = 1
        self.next_new_device = 1
        self.base_rate = self._calibrated_base_rate()

    def _calibrated_base_rate(self) -> float:
        """Per-live-customer rate that makes all customers average EVENTS_PER_CUSTOMER_DAY."""
        pop, w = self.population, self.window
        lo = np.maximum(pop.signup_at, w.start_s)
        hi = np.minimum(pop.cancelled_before_window_at, w.end_s)
        live_days = np.maximum(hi - lo, 0) / SECONDS_PER_DAY
        weekday = np.mean([weekday_factor(w.day(t)) for t in range(w.days)])
        exposure = float(np.sum(pop.activity * live_days)) * weekday * 0.97  # ~3% lost to churn
        return min(EVENTS_PER_CUSTOMER_DAY * pop.size * w.days / max(exposure, 1e-9), 50.0)

    def run_day(self, t: int, rng: np.random.Generator, life: Lifecycle) -> tuple[pa.Table, DayEvents, np.ndarray]:
        """Day ``t``'s events file (clean rows), the events themselves and their event numbers."""
        lo, hi = life.active_span(t)
        live = np.flatnonzero(hi > lo)
        lo, hi = lo[live], hi[live]
        exposure = (hi - lo) / SECONDS_PER_DAY
        rate = (
            self.base_rate
            * weekday_factor(self.window.day(t))
            * self.population.activity[live]
            * life.activity_multiplier(t)[live]
            * exposure
        )
        ordinary = self._ordinary_events(rng, live, rng.poisson(rate), lo, hi, life.disengaging[live])
        incidents = rng.poisson(FRAUD_INCIDENTS_PER_CUSTOMER_DAY * exposure)
        fraud = self._fraud_incidents(rng, live, incidents, lo, hi)
        events = DayEvents.concat([ordinary, fraud])
        arrival = self._deliver_some_late(rng, t, events)
        order = np.argsort(arrival, kind="stable")
        events, arrival = events.take(order), arrival[order]
        numbers = self.next_event + np.arange(events.customer.size, dtype=np.int64)
        self.next_event += events.customer.size
        return self._table(events, numbers, arrival), events, numbers

    def _new_sessions(self, count: int) -> np.ndarray:
        numbers = self.next_session + np.arange(count, dtype=np.int64)
        self.next_session += count
        return numbers

    def _new_devices(self, count: int) -> np.ndarray:
        numbers = _NEW_DEVICE_BASE + self.next_new_device + np.arange(count, dtype=np.int64)
        self.next_new_device += count
        return numbers

    def _usual_device(self, rng: np.random.Generator, customer: np.ndarray) -> np.ndarray:
        pop = self.population
        which = (rng.random(customer.size) * pop.devices[customer]).astype(np.int64)
        return 2 * pop.number[customer] + which

    def _ordinary_events(self, rng, live, counts, lo, hi, disengaging) -> DayEvents:
        """``counts[i]`` events for customer ``live[i]`` within ``[lo[i], hi[i])``, in sessions."""
        pop = self.population
        has_events = counts > 0
        extra_sessions = rng.binomial(np.maximum(counts - 1, 0), EXTRA_EVENTS_PER_SESSION)
        sessions_per = np.where(has_events, 1 + extra_sessions, 0)
        session_owner = np.repeat(np.arange(live.size), sessions_per)  # position in `live`
        session_customer = live[session_owner]
        session_start = uniform_seconds(rng, lo[session_owner], hi[session_owner])
        session_number = self._new_sessions(session_owner.size)
        session_device = self._usual_device(rng, session_customer)
        new_device = rng.random(session_owner.size) < NEW_DEVICE_SHARE
        session_device[new_device] = self._new_devices(int(new_device.sum()))
        home = pop.country[session_customer]
        abroad = rng.random(session_owner.size) < TRAVEL_SHARE
        session_country = np.where(abroad, _other_country(rng, home), home)

        owner = np.repeat(np.arange(live.size), counts)
        first_session = np.cumsum(sessions_per) - sessions_per
        session = first_session[owner] + (rng.random(owner.size) * sessions_per[owner]).astype(np.int64)
        time = np.minimum(session_start[session] + rng.exponential(240.0, owner.size).astype(np.int64), hi[owner] - 1)
        customer = live[owner]
        shares = np.array(list(vocab.EVENT_TYPE_SHARE.values()))
        event_type = rng.choice(np.array([EVENT_TYPES.index(e) for e in vocab.EVENT_TYPE_SHARE]), owner.size, p=shares)
        drifting = disengaging[owner]
        page = np.where(
            drifting,
            rng.choice(len(vocab.PAGES), owner.size, p=vocab.PAGE_SHARE_DISENGAGING),
            rng.choice(len(vocab.PAGES), owner.size, p=vocab.PAGE_SHARE_ENGAGED),
        )
        feature = rng.choice(len(vocab.FEATURES), owner.size, p=vocab.FEATURE_SHARE)
        is_tx = event_type == CARD_TRANSACTION
        amount = pop.usual_amount[customer] * rng.lognormal(0.0, 0.5, owner.size)
        merchant = rng.choice(len(vocab.MERCHANT_CATEGORIES), owner.size, p=vocab.MERCHANT_SHARE_LEGIT)
        return DayEvents(
            customer=customer,
            event_type=event_type,
            time=time,
            session=session_number[session],
            device=session_device[session],
            ip_country=session_country[session],
            amount=np.where(is_tx, round_money(amount, pop.currency[customer]), np.nan),
            merchant=np.where(is_tx, merchant, -1),
            page=np.where(event_type == PAGE_VIEW, page, -1),
            feature=np.where(event_type == FEATURE_USE, feature, -1),
            fraud=np.zeros(owner.size, dtype=bool),
        )

    def _fraud_incidents(self, rng, live, incidents, lo, hi) -> DayEvents:
        """Bursts of fraudulent card transactions, usually on a new device from abroad."""
        pop = self.population
        owner = np.repeat(np.arange(live.size), incidents)
        customer = live[owner]
        m = owner.size
        transactions = 1 + np.minimum(rng.poisson(1.2, m), 5)
        with_login = rng.random(m) < 0.6
        on_new_device = rng.random(m) < 0.85
        device = np.where(on_new_device, self._new_devices(m), self._usual_device(rng, customer))
        foreign = np.where(on_new_device, rng.random(m) < 0.75, rng.random(m) < 0.2)
        home = pop.country[customer]
        country = np.where(foreign, _other_country(rng, home), home)
        start = uniform_seconds(rng, lo[owner], np.maximum(lo[owner] + 1, hi[owner] - 3600))
        session = self._new_sessions(m)

        per_incident = transactions + with_login
        incident = np.repeat(np.arange(m), per_incident)
        position = np.arange(incident.size) - np.repeat(np.cumsum(per_incident) - per_incident, per_incident)
        is_login = with_login[incident] & (position == 0)
        offset = np.where(is_login, 0, 30 + (rng.random(incident.size) * 3000).astype(np.int64))
        event_customer = customer[incident]
        amount = pop.usual_amount[event_customer] * rng.lognormal(np.log(8.0), 0.5, incident.size)
        merchant = rng.choice(len(vocab.MERCHANT_CATEGORIES), incident.size, p=vocab.MERCHANT_SHARE_FRAUD)
        return DayEvents(
            customer=event_customer,
            event_type=np.where(is_login, LOGIN, CARD_TRANSACTION),
            time=np.minimum(start[incident] + offset, hi[owner][incident] - 1),
            session=session[incident],
            device=device[incident],
            ip_country=country[incident],
            amount=np.where(is_login, np.nan, round_money(amount, pop.currency[event_customer])),
            merchant=np.where(is_login, -1, merchant),
            page=np.full(incident.size, -1),
            feature=np.full(incident.size, -1),
            fraud=~is_login,
        )

    def _deliver_some_late(self, rng: np.random.Generator, t: int, events: DayEvents) -> np.ndarray:
        """Move ~2% of events 1–3 days back in time; return each event's arrival instant.

        A late event never predates its customer's signup or first CRM day, so it references a
        customer the CRM has already exported by the file it lands in.
        """
        pop = self.population
        n = events.customer.size
        lateness = rng.integers(*LATE_DAYS, size=n)
        late = (rng.random(n) < LATE_SHARE) & (t - lateness >= pop.first_crm_day[events.customer])
        shifted = np.maximum(events.time - lateness * SECONDS_PER_DAY, pop.signup_at[events.customer])
        day_start = self.window.day_start(t)
        delivered = uniform_seconds(rng, np.full(n, day_start), np.full(n, day_start + SECONDS_PER_DAY))
        arrival = np.where(late, delivered, events.time)
        events.time = np.where(late, shifted, events.time)
        return arrival

    def _table(self, events: DayEvents, numbers: np.ndarray, arrival: np.ndarray) -> pa.Table:
        pop = self.population
        is_tx = events.event_type == CARD_TRANSACTION
        return contract_table(
            EVENTS,
            {
                "event_id": clean_ids("events", numbers),
                "customer_id": pop.customer_id.take(pa.array(events.customer)),
                "event_type": pick(EVENT_TYPES, events.event_type),
                "event_time": timestamps(events.time),
                # the collector stamps receipt; on-time events arrive as they happen
                "received_at": timestamps(arrival),
                "session_id": session_ids(events.session),
                "page": pick(vocab.PAGES, np.maximum(events.page, 0), missing=events.page < 0),
                "feature": pick(vocab.FEATURES, np.maximum(events.feature, 0), missing=events.feature < 0),
                "amount": pa.array(events.amount, mask=~is_tx),
                "currency": pick(CURRENCIES, pop.currency[events.customer], missing=~is_tx),
                "merchant_category": pick(
                    vocab.MERCHANT_CATEGORIES, np.maximum(events.merchant, 0), missing=~is_tx
                ),
                "device_id": device_ids(events.device),
                "ip_country": pick(vocab.COUNTRIES, events.ip_country),
            },
            events.customer.size,
        )
