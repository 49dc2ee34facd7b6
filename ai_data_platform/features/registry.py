"""The feature registry: every feature declared once, as data.

A ``Feature`` names its entity (customer or transaction), source staging table, aggregation,
column, window, filter and TTL; the SQL for ``features/customer_daily`` and
``features/transaction`` is compiled from these declarations (``compile.py``), the assets'
column schemas carry each description, datasets record each definition's hash, and
``adp features list`` prints the catalog. Pure Python: no Dagster, no DuckDB.

Point in time, for an as-of time T (the end of a day, or just before a transaction): a source
row counts only if its event time is before T **and** it was available to the platform
(``_available_at``) at or before T. Windows are relative to T. ``last`` and
``seconds_since_last`` features look back no further than their TTL: a value older than its TTL
is NULL, never stale.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

CUSTOMER = "customer"
TRANSACTION = "transaction"

# Staging table and event-time column of every source a feature may aggregate.
SOURCES = {
    "events": {"table": "staging.events", "time": "event_time", "key": "event_id"},
    "payments": {"table": "staging.payments", "time": "created_at", "key": "payment_id"},
    "support_tickets": {"table": "staging.support_tickets", "time": "created_at", "key": "ticket_id"},
    "chargebacks": {"table": "staging.chargebacks", "time": "reported_at", "key": "chargeback_id"},
    "invoices": {"table": "staging.invoices", "time": "issued_at", "key": "invoice_id"},
}
# Largest gap between a row's event time and the export day it lands in (late data).
MAX_LATENESS_DAYS = 7

WINDOWED_AGGS = {"count", "sum", "avg", "stddev", "max", "count_distinct", "active_days"}
TTL_AGGS = {"last", "seconds_since_last", "days_since_last"}
ROW_AGGS = {"profile", "row", "derived"}
_DURATION = re.compile(r"^(\d+)([hd])$")


def duration_seconds(text: str) -> int:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"duration must look like '1h' or '30d', got {text!r}")
    return int(m.group(1)) * (3600 if m.group(2) == "h" else 86400)


def duration_sql(text: str) -> str:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"duration must look like '1h' or '30d', got {text!r}")
    return f"INTERVAL {int(m.group(1))} {'HOUR' if m.group(2) == 'h' else 'DAY'}"


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    entity: str  # customer | transaction
    agg: str  # see WINDOWED_AGGS, TTL_AGGS, ROW_AGGS
    source: str | None = None  # key of SOURCES (windowed and TTL aggregations)
    column: str | None = None
    window: str | None = None  # windowed aggregations: "1h", "24h", "7d", "30d", "90d"
    filter: str | None = None  # SQL over the source's columns (transactions: and _txn_* columns)
    ttl: str | None = None  # TTL aggregations: older than this is NULL
    expression: str | None = None  # profile / row / derived: SQL over the entity's base columns
    dtype: str = "DOUBLE"
    default: float | None = 0  # when no row is in the window (None: stays NULL)
    owner: str = "team:data-platform"
    tags: tuple[str, ...] = ()
    published: bool = True  # False: an intermediate other features derive from

    def __post_init__(self) -> None:
        if self.entity not in (CUSTOMER, TRANSACTION):
            raise ValueError(f"{self.name}: entity must be customer or transaction")
        if self.agg in WINDOWED_AGGS:
            if not (self.source in SOURCES and self.window):
                raise ValueError(f"{self.name}: {self.agg} needs a source and a window")
            duration_seconds(self.window)
        elif self.agg in TTL_AGGS:
            if not (self.source in SOURCES and self.ttl and self.window is None):
                raise ValueError(f"{self.name}: {self.agg} needs a source and a ttl (and no window)")
            duration_seconds(self.ttl)
        elif self.agg in ROW_AGGS:
            if not self.expression:
                raise ValueError(f"{self.name}: {self.agg} needs an expression")
        else:
            raise ValueError(f"{self.name}: unknown aggregation {self.agg!r}")

    @property
    def lookback(self) -> str | None:
        """How far back the feature reads: its window, or its TTL."""
        return self.window or self.ttl

    @property
    def definition_hash(self) -> str:
        """sha256 of everything that determines the feature's values (not its description)."""
        fields = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("description", "owner", "tags", "published")
        }
        return "sha256:" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()

    def catalog_entry(self) -> dict:
        return {
            "name": self.name,
            "entity": self.entity,
            "source": self.source,
            "aggregation": self.agg,
            "column": self.column,
            "window": self.window,
            "filter": self.filter,
            "ttl": self.ttl,
            "expression": self.expression,
            "dtype": self.dtype,
            "description": self.description,
            "owner": self.owner,
            "tags": list(self.tags),
            "definition_hash": self.definition_hash,
        }


def _customer(name, description, agg, **kw) -> Feature:
    return Feature(name, description, CUSTOMER, agg, **kw)


def _txn(name, description, agg, **kw) -> Feature:
    return Feature(name, description, TRANSACTION, agg, **kw)


CARD = "event_type = 'card_transaction'"

CUSTOMER_FEATURES: tuple[Feature, ...] = (
    # behavioral
    _customer("logins_7d", "Logins in the last 7 days", "count", source="events", window="7d", filter="event_type = 'login'", dtype="BIGINT", tags=("churn",)),
    _customer("logins_30d", "Logins in the last 30 days", "count", source="events", window="30d", filter="event_type = 'login'", dtype="BIGINT", tags=("churn",)),
    _customer("page_views_30d", "Page views in the last 30 days", "count", source="events", window="30d", filter="event_type = 'page_view'", dtype="BIGINT"),
    _customer("feature_uses_30d", "Product feature uses in the last 30 days", "count", source="events", window="30d", filter="event_type = 'feature_use'", dtype="BIGINT", tags=("churn",)),
    _customer("events_7d", "All product events in the last 7 days", "count", source="events", window="7d", dtype="BIGINT"),
    _customer("events_30d", "All product events in the last 30 days", "count", source="events", window="30d", dtype="BIGINT"),
    _customer("events_90d", "All product events in the last 90 days", "count", source="events", window="90d", dtype="BIGINT"),
    _customer("active_days_30d", "Distinct days with any event in the last 30 days", "active_days", source="events", column="event_time", window="30d", dtype="BIGINT", tags=("churn",)),
    _customer("days_since_last_event", "Days since the last product event (NULL if none within 90 days)", "days_since_last", source="events", column="event_time", ttl="90d", default=None),
    _customer("card_txn_count_30d", "Card transactions in the last 30 days", "count", source="events", window="30d", filter=CARD, dtype="BIGINT", tags=("fraud",)),
    _customer("card_txn_amount_30d", "Card transaction amount in the last 30 days", "sum", source="events", column="amount", window="30d", filter=CARD, tags=("fraud",)),
    _customer("card_txn_avg_amount_90d", "Average card transaction amount over 90 days (NULL if none)", "avg", source="events", column="amount", window="90d", filter=CARD, default=None, tags=("fraud",)),
    _customer("distinct_devices_30d", "Distinct devices seen in the last 30 days", "count_distinct", source="events", column="device_id", window="30d", dtype="BIGINT", tags=("fraud",)),
    _customer("last_card_txn_amount", "Amount of the latest card transaction (NULL if none within 30 days)", "last", source="events", column="amount", filter=CARD, ttl="30d", default=None),
    # billing
    _customer("payment_failures_30d", "Failed payments in the last 30 days", "count", source="payments", window="30d", filter="status = 'failed'", dtype="BIGINT", tags=("churn",)),
    _customer("payment_failures_90d", "Failed payments in the last 90 days", "count", source="payments", window="90d", filter="status = 'failed'", dtype="BIGINT", tags=("churn",)),
    _customer("refunds_90d", "Refunds in the last 90 days", "count", source="payments", window="90d", filter="status = 'refunded'", dtype="BIGINT"),
    _customer("paid_amount_90d", "Amount successfully paid in the last 90 days", "sum", source="payments", column="amount", window="90d", filter="status = 'succeeded'"),
    _customer("paid_count_90d", "Successful payments in the last 90 days", "count", source="payments", window="90d", filter="status = 'succeeded'", dtype="BIGINT", published=False),
    _customer("last_payment_failed", "1 if the latest payment attempt failed, 0 if not (NULL if none within 45 days)", "last", source="payments", column="CAST(status = 'failed' AS INTEGER)", ttl="45d", default=None, dtype="INTEGER", tags=("churn",)),
    _customer("days_since_last_payment", "Days since the latest payment attempt (NULL if none within 60 days)", "days_since_last", source="payments", column="created_at", ttl="60d", default=None),
    _customer("chargebacks_90d", "Chargebacks reported in the last 90 days", "count", source="chargebacks", window="90d", dtype="BIGINT", tags=("fraud",)),
    # support
    _customer("tickets_30d", "Support tickets opened in the last 30 days", "count", source="support_tickets", window="30d", dtype="BIGINT", tags=("churn",)),
    _customer("tickets_90d", "Support tickets opened in the last 90 days", "count", source="support_tickets", window="90d", dtype="BIGINT"),
    _customer("urgent_tickets_90d", "High or urgent support tickets in the last 90 days", "count", source="support_tickets", window="90d", filter="priority IN ('high', 'urgent')", dtype="BIGINT", tags=("churn",)),
    _customer("cancellation_tickets_90d", "Support tickets about cancelling in the last 90 days", "count", source="support_tickets", window="90d", filter="category = 'cancellation'", dtype="BIGINT", tags=("churn",)),
    # profile (CRM and billing state as of the day)
    _customer("tenure_days", "Days since signup", "profile", expression="date_diff('day', CAST(signup_at AS DATE), as_of_date)", dtype="BIGINT"),
    _customer("mrr", "Monthly recurring revenue of the live subscription", "profile", expression="mrr"),
    _customer("marketing_consent", "Opted in to marketing (1/0)", "profile", expression="CAST(marketing_consent AS INTEGER)", dtype="INTEGER"),
    # derived
    _customer("activity_trend_7d_vs_30d", "Events per day over 7 days divided by events per day over 30 days (NULL if no events in 30 days)", "derived", expression="CASE WHEN events_30d = 0 THEN NULL ELSE (events_7d / 7.0) / (events_30d / 30.0) END", default=None, tags=("churn",)),
    _customer("payment_failure_rate_90d", "Failed share of payment attempts over 90 days (NULL if none)", "derived", expression="CASE WHEN payment_failures_90d + paid_count_90d = 0 THEN NULL ELSE payment_failures_90d / (payment_failures_90d + paid_count_90d) END", default=None, tags=("churn",)),
)

TRANSACTION_FEATURES: tuple[Feature, ...] = (
    _txn("amount", "Amount of this card transaction", "row", expression="_txn_amount", default=None, tags=("fraud",)),
    _txn("txn_count_1h", "The customer's card transactions in the hour before this one", "count", source="events", window="1h", filter=CARD, dtype="BIGINT", tags=("fraud", "velocity")),
    _txn("txn_count_24h", "The customer's card transactions in the 24 hours before this one", "count", source="events", window="24h", filter=CARD, dtype="BIGINT", tags=("fraud", "velocity")),
    _txn("txn_amount_24h", "Card transaction amount in the 24 hours before this one", "sum", source="events", column="amount", window="24h", filter=CARD, tags=("fraud", "velocity")),
    _txn("avg_txn_amount_90d", "Average card transaction amount over the 90 days before (NULL if none)", "avg", source="events", column="amount", window="90d", filter=CARD, default=None, tags=("fraud",)),
    _txn("stddev_txn_amount_90d", "Standard deviation of card transaction amounts over 90 days (NULL if fewer than 2)", "stddev", source="events", column="amount", window="90d", filter=CARD, default=None, published=False),
    _txn("amount_to_avg_90d", "This amount divided by the customer's 90-day average (NULL without history)", "derived", expression="CASE WHEN avg_txn_amount_90d > 0 THEN amount / avg_txn_amount_90d END", default=None, tags=("fraud",)),
    _txn("amount_zscore_90d", "Standard score of this amount against the customer's 90-day amounts (NULL without spread)", "derived", expression="CASE WHEN stddev_txn_amount_90d > 0 THEN (amount - avg_txn_amount_90d) / stddev_txn_amount_90d END", default=None, tags=("fraud",)),
    _txn("device_seen_90d", "Prior events from this transaction's device in 90 days", "count", source="events", window="90d", filter="device_id = _txn_device_id", dtype="BIGINT", published=False),
    _txn("is_new_device", "1 if this device was not seen in the customer's events of the previous 90 days", "derived", expression="CAST(device_seen_90d = 0 AS INTEGER)", dtype="INTEGER", tags=("fraud",)),
    _txn("distinct_devices_7d", "Distinct devices in the customer's events of the previous 7 days", "count_distinct", source="events", column="device_id", window="7d", dtype="BIGINT", tags=("fraud",)),
    _txn("ip_country_mismatch", "1 if the transaction's IP country differs from the customer's home country (NULL if either is unknown)", "row", expression="CASE WHEN _txn_ip_country IS NULL OR _txn_home_country IS NULL THEN NULL ELSE CAST(_txn_ip_country <> _txn_home_country AS INTEGER) END", dtype="INTEGER", default=None, tags=("fraud",)),
    _txn("foreign_ip_txn_count_24h", "Card transactions from an IP outside the home country in the previous 24 hours", "count", source="events", window="24h", filter=f"{CARD} AND ip_country <> _txn_home_country", dtype="BIGINT", tags=("fraud",)),
    _txn("failed_payments_30d", "The customer's failed payments in the 30 days before", "count", source="payments", window="30d", filter="status = 'failed'", dtype="BIGINT", tags=("fraud",)),
    _txn("seconds_since_last_txn", "Seconds since the customer's previous card transaction (NULL if none within 30 days)", "seconds_since_last", source="events", column="event_time", filter=CARD, ttl="30d", default=None, tags=("fraud", "velocity")),
)

ALL_FEATURES = CUSTOMER_FEATURES + TRANSACTION_FEATURES


def published(features: tuple[Feature, ...]) -> tuple[Feature, ...]:
    return tuple(f for f in features if f.published)


def feature(name: str, entity: str = CUSTOMER) -> Feature:
    for f in ALL_FEATURES:
        if f.name == name and f.entity == entity:
            return f
    raise KeyError(f"unknown {entity} feature {name!r}")


def max_lookback_seconds(features: tuple[Feature, ...] = CUSTOMER_FEATURES) -> int:
    return max(duration_seconds(f.lookback) for f in features if f.lookback)


def max_window_days(features: tuple[Feature, ...] = CUSTOMER_FEATURES) -> int:
    return -(-max_lookback_seconds(features) // 86400)


def catalog(entity: str | None = None) -> list[dict]:
    return [f.catalog_entry() for f in ALL_FEATURES if f.published and (entity is None or f.entity == entity)]
