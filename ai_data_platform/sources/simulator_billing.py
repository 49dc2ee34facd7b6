"""Billing: subscription upserts, monthly invoices, card payment attempts, retries and refunds.

Every customer has one subscription, started at signup. An invoice is issued at signup and on
each monthly anniversary while the subscription is live; each invoice gets a payment attempt
the same day. Failed attempts are retried every three days, up to four attempts in all; when
the last one fails the subscription is cancelled (involuntary churn). A few successful
payments are refunded days later. Customers with an unreliable card fail far more often.
"""

from __future__ import annotations

import calendar

import numpy as np
import pyarrow as pa

from ai_data_platform.sources.contracts import CURRENCIES, INVOICES, PAYMENTS, PLANS, SUBSCRIPTIONS
from ai_data_platform.sources.simulator_arrow import contract_table, pick, timestamps
from ai_data_platform.sources.simulator_clock import SECONDS_PER_DAY, Window, uniform_seconds
from ai_data_platform.sources.simulator_ids import clean_ids
from ai_data_platform.sources.simulator_lifecycle import Lifecycle
from ai_data_platform.sources.simulator_queue import Queue
from ai_data_platform.sources.simulator_world import Population

INVOICE_STATUSES = ("open", "paid", "void")
PAYMENT_STATUSES = ("succeeded", "failed", "refunded")
FAILURE_CODES = ("card_declined", "insufficient_funds", "expired_card")
FAILURE_CODE_SHARE = (0.50, 0.35, 0.15)
FIRST_ATTEMPT_SUCCESS = {False: 0.97, True: 0.75}  # keyed by unreliable_card
RETRY_SUCCESS = {False: 0.60, True: 0.35}
MAX_ATTEMPTS = 4
RETRY_AFTER_DAYS = 3
VOID_SHARE = 0.003
REFUND_SHARE = 0.03  # of succeeded payments, refunded days later
PAYMENT_TERMS_DAYS = 7


class Billing:
    """Day-by-day billing for the whole population."""

    def __init__(self, population: Population, window: Window):
        self.population = population
        self.window = window
        signup_dates = (population.signup_at // SECONDS_PER_DAY).astype("datetime64[D]")
        month_start = signup_dates.astype("datetime64[M]").astype("datetime64[D]")
        self.anniversary = (signup_dates - month_start).astype(np.int64) + 1  # day of month
        self.signup_day = window.day_index(population.signup_at)
        self.next_invoice = 1
        self.next_payment = 1
        self.retries = Queue(
            customer=np.int64, invoice=np.int64, amount=np.float64, attempt=np.int64, due_day=np.int64
        )
        self.refunds = Queue(customer=np.int64, invoice=np.int64, amount=np.float64, due_day=np.int64)

    def _billed_today(self, t: int, life: Lifecycle) -> tuple[np.ndarray, np.ndarray]:
        """Rows invoiced on day ``t``: new subscriptions and monthly anniversaries."""
        day = self.window.day(t)
        month_days = calendar.monthrange(day.year, day.month)[1]
        anniversary_today = np.minimum(self.anniversary, month_days) == day.day
        day_end = self.window.day_start(t) + SECONDS_PER_DAY
        live_all_day = life.cancel_at >= day_end
        first = self.signup_day == t
        renewal = (self.signup_day < t) & anniversary_today & live_all_day
        return np.flatnonzero(first), np.flatnonzero(renewal)

    def run_day(self, t: int, rng: np.random.Generator, life: Lifecycle) -> tuple[pa.Table, pa.Table]:
        """Invoices and payments of day ``t``; records failures and involuntary cancellations."""
        pop = self.population
        day_start = self.window.day_start(t)
        day_end = day_start + SECONDS_PER_DAY
        retry_rows = self._run_retries(t, rng, life)

        first, renewal = self._billed_today(t, life)
        customer = np.concatenate([first, renewal])
        issued_at = np.concatenate(
            [
                np.minimum(pop.signup_at[first] + rng.integers(5, 120, first.size), day_end - 1),
                day_start + rng.integers(0, 6 * 3600, renewal.size),
            ]
        )
        order = np.lexsort((customer, issued_at))
        customer, issued_at = customer[order], issued_at[order]
        invoice = self.next_invoice + np.arange(customer.size, dtype=np.int64)
        self.next_invoice += customer.size
        amount = pop.mrr[customer]
        void = rng.random(customer.size) < VOID_SHARE
        reliable_p = np.where(pop.unreliable_card[customer], FIRST_ATTEMPT_SUCCESS[True], FIRST_ATTEMPT_SUCCESS[False])
        succeeded = rng.random(customer.size) < reliable_p
        attempt_at = np.minimum(issued_at + rng.integers(30, 900, customer.size), day_end - 1)
        status = np.where(void, 2, np.where(succeeded, 1, 0))
        invoices = contract_table(
            INVOICES,
            {
                "invoice_id": clean_ids("invoices", invoice),
                "subscription_id": clean_ids("subscriptions", pop.number[customer]),
                "customer_id": pop.customer_id.take(pa.array(customer)),
                "amount": amount,
                "currency": pick(CURRENCIES, pop.currency[customer]),
                "issued_at": timestamps(issued_at),
                "due_at": timestamps(issued_at + PAYMENT_TERMS_DAYS * SECONDS_PER_DAY),
                "status": pick(INVOICE_STATUSES, status),
            },
            customer.size,
        )
        paying = ~void
        first_attempts = {
            "customer": customer[paying],
            "invoice": invoice[paying],
            "amount": amount[paying],
            "created_at": attempt_at[paying],
            "succeeded": succeeded[paying],
            "attempt": np.ones(int(paying.sum()), dtype=np.int64),
        }
        self._after_attempts(t, rng, life, first_attempts)
        refund_rows = self._due_refunds(t, rng)
        payments = self._payments_table(rng, [first_attempts, retry_rows], refund_rows)
        return invoices, payments

    def _run_retries(self, t: int, rng: np.random.Generator, life: Lifecycle) -> dict:
        due = self.retries.pop_due(t)
        day_start = self.window.day_start(t)
        customer = due["customer"]
        created_at = day_start + rng.integers(3600, 20 * 3600, customer.size)
        live = life.cancel_at[customer] > created_at
        rows = {k: v[live] for k, v in due.items() if k != "due_day"}
        rows["created_at"] = created_at[live]
        unreliable = self.population.unreliable_card[rows["customer"]]
        p = np.where(unreliable, RETRY_SUCCESS[True], RETRY_SUCCESS[False])
        rows["succeeded"] = rng.random(rows["customer"].size) < p
        self._after_attempts(t, rng, life, rows)
        return rows

    def _after_attempts(self, t: int, rng: np.random.Generator, life: Lifecycle, rows: dict) -> None:
        """Record failures, queue retries and refunds, cancel after the last failed attempt."""
        failed = ~rows["succeeded"]
        life.last_failed_payment_day[rows["customer"][failed]] = t
        final = failed & (rows["attempt"] >= MAX_ATTEMPTS)
        retry = failed & ~final
        self.retries.push(
            customer=rows["customer"][retry],
            invoice=rows["invoice"][retry],
            amount=rows["amount"][retry],
            attempt=rows["attempt"][retry] + 1,
            due_day=np.full(int(retry.sum()), t + RETRY_AFTER_DAYS, dtype=np.int64),
        )
        day_end = self.window.day_start(t) + SECONDS_PER_DAY
        cancel_at = np.minimum(rows["created_at"][final] + rng.integers(60, 3600, int(final.sum())), day_end - 1)
        life.cancel_involuntarily(rows["customer"][final], cancel_at)
        refunded = rows["succeeded"] & (rng.random(rows["customer"].size) < REFUND_SHARE)
        self.refunds.push(
            customer=rows["customer"][refunded],
            invoice=rows["invoice"][refunded],
            amount=rows["amount"][refunded],
            due_day=t + rng.integers(1, 11, int(refunded.sum())),
        )

    def _due_refunds(self, t: int, rng: np.random.Generator) -> dict:
        due = self.refunds.pop_due(t)
        day_start = self.window.day_start(t)
        size = due["customer"].size
        return {
            "customer": due["customer"],
            "invoice": due["invoice"],
            "amount": due["amount"],
            "created_at": uniform_seconds(rng, np.full(size, day_start), np.full(size, day_start + SECONDS_PER_DAY)),
        }

    def _payments_table(self, rng, attempt_groups: list[dict], refunds: dict) -> pa.Table:
        pop = self.population
        customer = np.concatenate([g["customer"] for g in attempt_groups] + [refunds["customer"]])
        invoice = np.concatenate([g["invoice"] for g in attempt_groups] + [refunds["invoice"]])
        amount = np.concatenate([g["amount"] for g in attempt_groups] + [refunds["amount"]])
        created_at = np.concatenate([g["created_at"] for g in attempt_groups] + [refunds["created_at"]])
        status = np.concatenate(
            [np.where(g["succeeded"], 0, 1) for g in attempt_groups]
            + [np.full(refunds["customer"].size, 2, dtype=np.int64)]
        ).astype(np.int64)
        order = np.lexsort((invoice, created_at))
        customer, invoice, amount, created_at, status = (
            a[order] for a in (customer, invoice, amount, created_at, status)
        )
        failure = rng.choice(len(FAILURE_CODES), size=customer.size, p=FAILURE_CODE_SHARE)
        number = self.next_payment + np.arange(customer.size, dtype=np.int64)
        self.next_payment += customer.size
        return contract_table(
            PAYMENTS,
            {
                "payment_id": clean_ids("payments", number),
                "invoice_id": clean_ids("invoices", invoice),
                "customer_id": pop.customer_id.take(pa.array(customer)),
                "amount": amount,
                "currency": pick(CURRENCIES, pop.currency[customer]),
                "status": pick(PAYMENT_STATUSES, status),
                "failure_code": pick(FAILURE_CODES, failure, missing=status != 1),
                "created_at": timestamps(created_at),
            },
            customer.size,
        )

    def subscription_rows(self, t: int, life: Lifecycle) -> pa.Table:
        """Day ``t``'s subscription upserts (day 0: every subscription that exists, a full export)."""
        pop = self.population
        day_start = self.window.day_start(t)
        day_end = day_start + SECONDS_PER_DAY
        if t == 0:
            rows = np.flatnonzero(pop.signup_at < day_end)
        else:
            cancelled_today = (life.cancel_at >= day_start) & (life.cancel_at < day_end)
            rows = np.flatnonzero((self.signup_day == t) | cancelled_today)
        cancel_at = life.cancel_at[rows]
        cancelled = cancel_at < day_end
        started_at = pop.signup_at[rows]
        updated_at = np.where(cancelled, np.maximum(cancel_at, started_at), started_at)
        return contract_table(
            SUBSCRIPTIONS,
            {
                "subscription_id": clean_ids("subscriptions", pop.number[rows]),
                "customer_id": pop.customer_id.take(pa.array(rows)),
                "plan": pick(PLANS, pop.plan[rows]),
                "mrr": pop.mrr[rows],
                "currency": pick(CURRENCIES, pop.currency[rows]),
                "started_at": timestamps(started_at),
                "cancelled_at": timestamps(np.where(cancelled, cancel_at, 0), missing=~cancelled),
                "updated_at": timestamps(updated_at),
            },
            rows.size,
        )
