"""The day loop: advance the simulated business one day at a time and yield its clean tables.

Per day, in order: lifecycle decisions (voluntary cancellations, new disengagements), billing
(retries first, so an involuntary cancellation stops that day's activity), behavioural events
and the chargebacks they cause, support tickets, the CRM export and the subscription upserts.
Each step draws from its own (seed, step, day) random stream.

The CRM's tables come with the region of each row's customer (``Day.regions``): the CRM exports
each region's rows to that region's landing zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from ai_data_platform.sources.simulator_billing import Billing
from ai_data_platform.sources.simulator_chargebacks import Chargebacks
from ai_data_platform.sources.simulator_clock import Window, stream
from ai_data_platform.sources.simulator_crm import Crm
from ai_data_platform.sources.simulator_events import EventSimulator
from ai_data_platform.sources.simulator_lifecycle import Lifecycle
from ai_data_platform.sources.simulator_world import build_population


class Day(NamedTuple):
    t: int  # day index in the window
    tables: dict[str, pa.Table]  # table name -> clean contract-typed table
    regions: dict[str, np.ndarray]  # CRM table name -> region (index into contracts.REGIONS) of each row


def simulate(customers: int, window: Window, seed: int) -> Iterator[Day]:
    """Yield every window day's clean tables (and the regions of the CRM's rows)."""
    population = build_population(customers, window, seed)
    life = Lifecycle(population, window, stream(seed, "lifecycle-start"))
    billing = Billing(population, window)
    behaviour = EventSimulator(population, window)
    chargebacks = Chargebacks(population, window)
    crm = Crm(population, window)
    for t in range(window.days):
        life.advance(t, stream(seed, "lifecycle", t))
        invoices, payments = billing.run_day(t, stream(seed, "billing", t), life)
        events, day_events, event_numbers = behaviour.run_day(t, stream(seed, "events", t), life)
        chargebacks.schedule(t, stream(seed, "chargebacks", t), day_events, event_numbers)
        tickets, ticket_regions = crm.ticket_rows(t, stream(seed, "tickets", t), life)
        customers_today, customer_regions = crm.customer_rows(t, stream(seed, "customers", t))
        tables = {
            "customers": customers_today,
            "support_tickets": tickets,
            "subscriptions": billing.subscription_rows(t, life),
            "invoices": invoices,
            "payments": payments,
            "chargebacks": chargebacks.rows(t),
            "events": events,
        }
        yield Day(t, tables, {"customers": customer_regions, "support_tickets": ticket_regions})
