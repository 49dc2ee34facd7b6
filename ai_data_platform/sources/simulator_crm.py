"""CRM: the daily customer export and support tickets.

The first day's export lists every customer who signed up on or before that day; later days
list that day's signups plus ~0.5% of existing customers whose profile changed (segment,
marketing consent or phone). Tickets come from live customers by email — a few per thousand
customers a day, far more from customers who are drifting towards cancellation (mostly
``cancellation`` tickets) or whose payment just failed (mostly ``billing``).

Both exports are per region: each row comes with the region (index into ``contracts.REGIONS``) of
the customer it is about, so the CRM can export it to that region's landing zone.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ai_data_platform.sources.contracts import CUSTOMERS, REGIONS, SEGMENTS, SUPPORT_TICKETS
from ai_data_platform.sources.simulator_arrow import contract_table, pick, timestamps, with_nulls
from ai_data_platform.sources.simulator_clock import SECONDS_PER_DAY, Window, uniform_seconds
from ai_data_platform.sources.simulator_ids import clean_ids
from ai_data_platform.sources.simulator_lifecycle import Lifecycle
from ai_data_platform.sources.simulator_world import Population, phone_numbers
from ai_data_platform.sources import simulator_vocab as vocab

PROFILE_CHANGE_SHARE = 0.005
PROFILE_CHANGE_KIND_SHARE = (0.25, 0.50, 0.25)  # segment, marketing consent, phone
TICKETS_PER_CUSTOMER_DAY = 0.0025
DISENGAGING_TICKET_FACTOR = 7.0
PAYMENT_TROUBLE_TICKET_FACTOR = 9.0
PAYMENT_TROUBLE_DAYS = 3
COMPLAINT_CATEGORIES = (vocab.TICKET_CATEGORIES.index("billing"), vocab.TICKET_CATEGORIES.index("cancellation"))


class Crm:
    """Current CRM profile of every customer plus the ticket counter."""

    def __init__(self, population: Population, window: Window):
        self.population = population
        self.window = window
        self.segment = population.segment.copy()
        self.marketing_consent = population.marketing_consent.copy()
        self.phone_national = population.phone_national.copy()
        self.updated_at = population.profile_updated_at.copy()
        self.next_ticket = 1

    def customer_rows(self, t: int, rng: np.random.Generator) -> tuple[pa.Table, np.ndarray]:
        """Day ``t``'s customer export (day 0: the initial full export) and each row's region."""
        pop = self.population
        if t == 0:
            rows = np.flatnonzero(pop.first_crm_day == 0)
        else:
            changed = self._change_profiles(t, rng)
            rows = np.flatnonzero((pop.first_crm_day == t) | changed)
            rows = rows[np.argsort(self.updated_at[rows], kind="stable")]
        return self._table(rows), pop.region[rows]

    def _change_profiles(self, t: int, rng: np.random.Generator) -> np.ndarray:
        pop = self.population
        changed = (pop.first_crm_day < t) & (rng.random(pop.size) < PROFILE_CHANGE_SHARE)
        rows = np.flatnonzero(changed)
        kind = rng.choice(3, rows.size, p=PROFILE_CHANGE_KIND_SHARE)
        seg_rows = rows[kind == 0]
        shift = rng.integers(1, len(SEGMENTS), seg_rows.size)  # always a different segment
        self.segment[seg_rows] = (self.segment[seg_rows] + shift) % len(SEGMENTS)
        consent_rows = rows[kind == 1]
        self.marketing_consent[consent_rows] = ~self.marketing_consent[consent_rows]
        phone_rows = rows[kind == 2]
        self.phone_national[phone_rows] = phone_numbers(rng, pop.country[phone_rows])
        day_start = self.window.day_start(t)
        self.updated_at[rows] = uniform_seconds(
            rng, np.full(rows.size, day_start), np.full(rows.size, day_start + SECONDS_PER_DAY)
        )
        return changed

    def _phones(self, rows: np.ndarray) -> pa.Array:
        codes = [vocab.PHONE_PLAN[c][0] for c in vocab.COUNTRIES]
        national = self.phone_national[rows]
        text = pc.binary_join_element_wise(
            "+", pick(codes, self.population.country[rows]), pc.cast(pa.array(national), pa.string()), ""
        )
        return with_nulls(text, national == 0)

    def _table(self, rows: np.ndarray) -> pa.Table:
        pop = self.population
        index = pa.array(rows)
        return contract_table(
            CUSTOMERS,
            {
                "customer_id": pop.customer_id.take(index),
                "name": pop.name.take(index),
                "email": pop.email.take(index),
                "phone": self._phones(rows),
                "country": pick(vocab.COUNTRIES, pop.country[rows]),
                "region": pick(REGIONS, pop.region[rows]),
                "segment": pick(SEGMENTS, self.segment[rows]),
                "signup_at": timestamps(pop.signup_at[rows]),
                "marketing_consent": self.marketing_consent[rows],
                "updated_at": timestamps(self.updated_at[rows]),
            },
            rows.size,
        )

    def ticket_rows(self, t: int, rng: np.random.Generator, life: Lifecycle) -> tuple[pa.Table, np.ndarray]:
        """Tickets opened on day ``t`` and the region of each one's customer; billing/cancellation
        tickets feed the churn hazard."""
        pop = self.population
        lo, hi = life.active_span(t)
        exposure = np.maximum(hi - lo, 0) / SECONDS_PER_DAY
        payment_trouble = life.last_failed_payment_day >= t - PAYMENT_TROUBLE_DAYS
        p = (
            TICKETS_PER_CUSTOMER_DAY
            * exposure
            * np.where(life.disengaging, DISENGAGING_TICKET_FACTOR, 1.0)
            * np.where(payment_trouble, PAYMENT_TROUBLE_TICKET_FACTOR, 1.0)
        )
        rows = np.flatnonzero((exposure > 0) & (rng.random(pop.size) < p))
        category = self._categories(rng, life.disengaging[rows], payment_trouble[rows])
        created_at = uniform_seconds(rng, lo[rows], hi[rows])
        order = np.lexsort((rows, created_at))
        rows, category, created_at = rows[order], category[order], created_at[order]
        complained = rows[np.isin(category, COMPLAINT_CATEGORIES)]
        life.last_complaint_day[complained] = t

        size = rows.size
        number = self.next_ticket + np.arange(size, dtype=np.int64)
        self.next_ticket += size
        templates = [body for bodies in vocab.TICKET_BODIES for body in bodies]
        per_category = len(vocab.TICKET_BODIES[0])
        body = category * per_category + rng.integers(0, per_category, size)
        table = contract_table(
            SUPPORT_TICKETS,
            {
                "ticket_id": clean_ids("support_tickets", number),
                "customer_email": pop.email.take(pa.array(rows)),
                "created_at": timestamps(created_at),
                "channel": pick(vocab.TICKET_CHANNELS, rng.choice(3, size, p=vocab.TICKET_CHANNEL_SHARE)),
                "category": pick(vocab.TICKET_CATEGORIES, category),
                "priority": pick(vocab.TICKET_PRIORITIES, rng.choice(4, size, p=vocab.TICKET_PRIORITY_SHARE)),
                "status": pick(vocab.TICKET_STATUSES, rng.choice(3, size, p=vocab.TICKET_STATUS_SHARE)),
                "body": pick(templates, body, missing=rng.random(size) < vocab.TICKET_BODY_MISSING_SHARE),
            },
            size,
        )
        return table, pop.region[rows]

    @staticmethod
    def _categories(rng, disengaging: np.ndarray, payment_trouble: np.ndarray) -> np.ndarray:
        k = len(vocab.TICKET_CATEGORIES)
        normal = rng.choice(k, disengaging.size, p=vocab.TICKET_CATEGORY_SHARE_NORMAL)
        trouble = rng.choice(k, disengaging.size, p=vocab.TICKET_CATEGORY_SHARE_PAYMENT_TROUBLE)
        drifting = rng.choice(k, disengaging.size, p=vocab.TICKET_CATEGORY_SHARE_DISENGAGING)
        return np.where(disengaging, drifting, np.where(payment_trouble, trouble, normal))
