"""The feature registry: every customer feature declared once, as data.

A ``Feature`` names its source staging table, aggregation, column, window and filter; the SQL
for ``features/customer_daily`` is compiled from these declarations (see ``compile.py``), and
the asset's column schema carries each description. Pure Python: no Dagster, no DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass

# Event-time column and the largest lateness (days between event time and export day) per source.
SOURCES = {
    "events": {"table": "staging.events", "time": "event_time"},
    "payments": {"table": "staging.payments", "time": "created_at"},
    "support_tickets": {"table": "staging.support_tickets", "time": "created_at"},
    "chargebacks": {"table": "staging.chargebacks", "time": "reported_at"},
    "invoices": {"table": "staging.invoices", "time": "issued_at"},
}
MAX_LATENESS_DAYS = 7


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    source: str | None  # key of SOURCES; None for profile/derived features
    agg: str  # count | sum | avg | max | count_distinct | days_since_last | active_days | profile | derived
    column: str | None = None
    window_days: int | None = None
    filter: str | None = None  # SQL predicate over the source's columns
    expression: str | None = None  # for profile (over the spine) and derived (over other features)
    dtype: str = "DOUBLE"
    owner: str = "team:data-platform"
    tags: tuple[str, ...] = ()
    default: float | None = 0  # value when the customer has no rows in the window (None: stays null)


F = Feature
CUSTOMER_FEATURES: tuple[Feature, ...] = (
    # behavioral
    F("logins_7d", "Logins in the last 7 days", "events", "count", window_days=7, filter="event_type = 'login'", dtype="BIGINT", tags=("churn",)),
    F("logins_30d", "Logins in the last 30 days", "events", "count", window_days=30, filter="event_type = 'login'", dtype="BIGINT", tags=("churn",)),
    F("page_views_30d", "Page views in the last 30 days", "events", "count", window_days=30, filter="event_type = 'page_view'", dtype="BIGINT"),
    F("feature_uses_30d", "Product feature uses in the last 30 days", "events", "count", window_days=30, filter="event_type = 'feature_use'", dtype="BIGINT", tags=("churn",)),
    F("events_7d", "All product events in the last 7 days", "events", "count", window_days=7, dtype="BIGINT"),
    F("events_30d", "All product events in the last 30 days", "events", "count", window_days=30, dtype="BIGINT"),
    F("events_90d", "All product events in the last 90 days", "events", "count", window_days=90, dtype="BIGINT"),
    F("active_days_30d", "Distinct days with any event in the last 30 days", "events", "active_days", column="event_time", window_days=30, dtype="BIGINT", tags=("churn",)),
    F("days_since_last_event", "Days since the last product event (within 90 days; null if none)", "events", "days_since_last", column="event_time", window_days=90, default=None),
    F("card_txn_count_30d", "Card transactions in the last 30 days", "events", "count", window_days=30, filter="event_type = 'card_transaction'", dtype="BIGINT", tags=("fraud",)),
    F("card_txn_amount_30d", "Card transaction amount in the last 30 days", "events", "sum", column="amount", window_days=30, filter="event_type = 'card_transaction'", tags=("fraud",)),
    F("card_txn_avg_amount_90d", "Average card transaction amount over 90 days (null if none)", "events", "avg", column="amount", window_days=90, filter="event_type = 'card_transaction'", default=None, tags=("fraud",)),
    F("distinct_devices_30d", "Distinct devices seen in the last 30 days", "events", "count_distinct", column="device_id", window_days=30, dtype="BIGINT", tags=("fraud",)),
    # billing
    F("payment_failures_30d", "Failed payments in the last 30 days", "payments", "count", window_days=30, filter="status = 'failed'", dtype="BIGINT", tags=("churn",)),
    F("payment_failures_90d", "Failed payments in the last 90 days", "payments", "count", window_days=90, filter="status = 'failed'", dtype="BIGINT", tags=("churn",)),
    F("refunds_90d", "Refunds in the last 90 days", "payments", "count", window_days=90, filter="status = 'refunded'", dtype="BIGINT"),
    F("paid_amount_90d", "Amount successfully paid in the last 90 days", "payments", "sum", column="amount", window_days=90, filter="status = 'succeeded'"),
    F("chargebacks_90d", "Chargebacks reported in the last 90 days", "chargebacks", "count", window_days=90, dtype="BIGINT", tags=("fraud",)),
    # support
    F("tickets_30d", "Support tickets opened in the last 30 days", "support_tickets", "count", window_days=30, dtype="BIGINT", tags=("churn",)),
    F("tickets_90d", "Support tickets opened in the last 90 days", "support_tickets", "count", window_days=90, dtype="BIGINT"),
    F("urgent_tickets_90d", "High or urgent support tickets in the last 90 days", "support_tickets", "count", window_days=90, filter="priority IN ('high', 'urgent')", dtype="BIGINT", tags=("churn",)),
    F("cancellation_tickets_90d", "Support tickets about cancelling in the last 90 days", "support_tickets", "count", window_days=90, filter="category = 'cancellation'", dtype="BIGINT", tags=("churn",)),
    # profile (CRM + billing state as of the day)
    F("tenure_days", "Days since signup", None, "profile", expression="date_diff('day', CAST(signup_at AS DATE), as_of_date)", dtype="BIGINT"),
    F("mrr", "Monthly recurring revenue of the active subscription", None, "profile", expression="mrr"),
    F("marketing_consent", "Opted in to marketing (1/0)", None, "profile", expression="CAST(marketing_consent AS INTEGER)", dtype="INTEGER"),
    # derived
    F("activity_trend_7d_vs_30d", "Events per day over 7 days divided by events per day over 30 days (null if no events in 30 days)", None, "derived", expression="CASE WHEN events_30d = 0 THEN NULL ELSE (events_7d / 7.0) / (events_30d / 30.0) END", default=None, tags=("churn",)),
    F("payment_failure_rate_90d", "Failed share of payment attempts over 90 days (null if none)", None, "derived", expression="CASE WHEN payment_failures_90d + paid_count_90d = 0 THEN NULL ELSE payment_failures_90d / (payment_failures_90d + paid_count_90d) END", default=None, tags=("churn",)),
)

# Helper aggregates used by derived features but not published as features themselves.
HELPER_AGGREGATES: tuple[Feature, ...] = (
    F("paid_count_90d", "Successful payments in the last 90 days", "payments", "count", window_days=90, filter="status = 'succeeded'", dtype="BIGINT"),
)


def feature(name: str) -> Feature:
    for f in CUSTOMER_FEATURES:
        if f.name == name:
            return f
    raise KeyError(f"unknown feature {name!r}")


def max_window_days() -> int:
    return max(f.window_days or 0 for f in (*CUSTOMER_FEATURES, *HELPER_AGGREGATES))
