"""The day loop: advance the simulated business one day at a time and yield its clean tables.

Per day, in order: lifecycle decisions (voluntary cancellations, new disengagements), billing
(retries first, so an involuntary cancellation stops that day's activity), behavioural events
and the chargebacks they cause, support tickets, the CRM export and the subscription upserts.
Each step draws from its own (seed, step, day) random stream.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from ai_data_platform.sources.simulator_billing import Billing
from ai_data_platform.sources.simulator_chargebacks import Chargebacks
from ai_data_platform.sources.simulator_clock import Window, stream
from ai_data_platform.sources.simulator_crm import Crm
from ai_data_platform.sources.simulator_events import EventSimulator
from ai_data_platform.sources.simulator_lifecycle import Lifecycle
from ai_data_platform.sources.simulator_world import build_population


def simulate(customers: int, window: Window, seed: int) -> Iterator[tuple[int, dict[str, pa.Table]]]:
    """Yield ``(day index, {table name: clean contract-typed table})`` for every window day."""
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
        tickets = crm.ticket_rows(t, stream(seed, "tickets", t), life)
        yield t, {
            "customers": crm.customer_rows(t, stream(seed, "customers", t)),
            "support_tickets": tickets,
            "subscriptions": billing.subscription_rows(t, life),
            "invoices": invoices,
            "payments": payments,
            "chargebacks": chargebacks.rows(t),
            "events": events,
        }
