"""Source contracts: what each landing table looks like, as data.

One ``SourceTable`` per source table names its file format, columns (with the DuckDB type each
is parsed to, whether it is required, and its PII classification), its natural key, its event-time
column and the values it accepts. The simulator writes files to these contracts, the raw layer
detects schema drift against them, and the staging layer compiles its parsing and validation
rules from them. Nothing here imports Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

PII_DIRECT = "direct"
PII_INDIRECT = "indirect"
PII_NONE = "none"

REGIONS = ("EU", "US", "APAC")
SEGMENTS = ("consumer", "smb", "enterprise")
PLANS = ("basic", "pro", "business")
CURRENCIES = ("EUR", "USD", "GBP", "AUD", "JPY", "SGD")
EVENT_TYPES = ("login", "page_view", "feature_use", "card_transaction")

# The largest amount any money column holds, in any of the CURRENCIES (JPY included): no card
# transaction, invoice, payment, chargeback or monthly fee comes near it (the simulated ones stay
# below a million), and sums over a customer's history stay far from overflowing a DOUBLE. A larger
# value is a broken export or a hostile one, quarantined as ``out_of_range``.
MAX_AMOUNT = 1e8

# The kinds of dirt the simulator injects, and the staging rule that must catch each one.
# ``duplicate`` rows are not quarantined: they are dropped and counted.
DIRT_KINDS = ("duplicate", "malformed", "null_required", "unknown_customer", "bad_timestamp")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # DuckDB type the staging layer parses the raw value to
    required: bool = False
    pii: str = PII_NONE
    description: str = ""
    accepted_values: tuple[str, ...] | None = None
    non_negative: bool = False
    max_value: float | None = None  # the largest plausible value of a DOUBLE column (larger: ``out_of_range``)


@dataclass(frozen=True)
class SourceTable:
    source: str  # crm | billing | behavioral
    name: str
    file_format: str  # csv | parquet | jsonl
    key: str  # natural key, unique within a daily file
    time_column: str  # event time: must parse and lie in [2000-01-01, file date + 2 days)
    columns: tuple[Column, ...]
    description: str
    customer_ref: str | None = "customer_id"  # column referencing a customer, if any
    malformed_rule: str = "malformed_row"  # rule that catches the simulator's `malformed` dirt
    extra: dict = field(default_factory=dict)
    # Columns only a database source carries (never in the landing file): kept in raw and staging.
    database_columns: tuple[Column, ...] = ()
    # What one day's file holds (the landing guard judges each file against it, ``landing_guard``):
    # records timed on its day, or up to ``late_days`` days before it (delivered late); the table's
    # first file may be an initial full export of everything up to that day (``first_export_full``);
    # and no record already exported on another day, a record being its key, or for a table whose key
    # recurs (an upsert: a customer changed again) its key at one ``time_column`` value.
    late_days: int = 0
    first_export_full: bool = False
    key_recurs: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        """The landing file's columns (what the simulator writes and schema drift compares)."""
        return tuple(c.name for c in self.columns)

    @property
    def raw_columns(self) -> tuple[Column, ...]:
        """Every column of ``raw.<table>``: the file's columns plus the database-only ones."""
        return self.columns + self.database_columns

    @property
    def raw_column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.raw_columns)

    @property
    def identity(self) -> tuple[str, ...]:
        """The columns naming one record across every day's file: the key, and for a table whose key
        recurs the time of that version too."""
        return (self.key, self.time_column) if self.key_recurs else (self.key,)

    @property
    def extension(self) -> str:
        return {"csv": "csv", "parquet": "parquet", "jsonl": "jsonl"}[self.file_format]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.source}/{self.name} has no column {name!r}")

    def landing_dir(self, landing_root: Path) -> Path:
        """The table's directory within one landing zone. Which zone(s) a table lands in, and so
        which files hold its day: ``sources.landing.landing_files``."""
        return landing_root / self.source / self.name

    def landing_file(self, landing_root: Path, day: date | str) -> Path:
        """The table's file of ``day`` within one landing zone (see :meth:`landing_dir`)."""
        day_str = day if isinstance(day, str) else day.isoformat()
        return self.landing_dir(landing_root) / f"{day_str}.{self.extension}"


CUSTOMERS = SourceTable(
    source="crm",
    name="customers",
    file_format="csv",
    key="customer_id",
    time_column="updated_at",
    customer_ref=None,
    description="CRM customer upserts: one row per new or changed customer in the day's export.",
    first_export_full=True,
    key_recurs=True,
    columns=(
        Column("customer_id", "VARCHAR", True, description="CRM customer id"),
        Column("name", "VARCHAR", True, PII_DIRECT, "full name"),
        Column("email", "VARCHAR", True, PII_DIRECT, "email address"),
        Column("phone", "VARCHAR", False, PII_DIRECT, "phone number (E.164)"),
        Column("country", "VARCHAR", True, PII_INDIRECT, "home country, ISO 3166-1 alpha-2"),
        Column("region", "VARCHAR", True, description="data residency region", accepted_values=REGIONS),
        Column("segment", "VARCHAR", True, description="customer segment", accepted_values=SEGMENTS),
        Column("signup_at", "TIMESTAMP", True, description="signup time (UTC)"),
        Column("marketing_consent", "BOOLEAN", True, description="opted in to marketing"),
        Column("updated_at", "TIMESTAMP", True, description="time of this upsert (UTC)"),
    ),
    database_columns=(
        Column(
            "deleted_at",
            "TIMESTAMP",
            description="soft-delete time (UTC) in the CRM database; NULL while the customer exists (file exports never carry it)",
        ),
    ),
)

SUPPORT_TICKETS = SourceTable(
    source="crm",
    name="support_tickets",
    file_format="csv",
    key="ticket_id",
    time_column="created_at",
    customer_ref="customer_email",  # tickets arrive by email; resolved through the email HMAC
    description="CRM support interactions, one row per ticket opened that day.",
    columns=(
        Column("ticket_id", "VARCHAR", True, description="ticket id"),
        Column("customer_email", "VARCHAR", True, PII_DIRECT, "email the ticket came from"),
        Column("created_at", "TIMESTAMP", True, description="time the ticket was opened (UTC)"),
        Column("channel", "VARCHAR", True, accepted_values=("email", "chat", "phone")),
        Column(
            "category",
            "VARCHAR",
            True,
            accepted_values=("billing", "technical", "account", "cancellation"),
        ),
        Column("priority", "VARCHAR", True, accepted_values=("low", "normal", "high", "urgent")),
        Column("status", "VARCHAR", True, accepted_values=("open", "pending", "resolved")),
        Column("body", "VARCHAR", False, PII_INDIRECT, "free-text message"),
    ),
)

SUBSCRIPTIONS = SourceTable(
    source="billing",
    name="subscriptions",
    file_format="parquet",
    key="subscription_id",
    time_column="updated_at",
    malformed_rule="accepted_values",
    description="Billing subscription upserts: new subscriptions, plan changes and cancellations.",
    first_export_full=True,
    key_recurs=True,
    columns=(
        Column("subscription_id", "VARCHAR", True),
        Column("customer_id", "VARCHAR", True),
        Column("plan", "VARCHAR", True, accepted_values=PLANS),
        Column("mrr", "DOUBLE", True, description="monthly recurring revenue", non_negative=True, max_value=MAX_AMOUNT),
        Column("currency", "VARCHAR", True, accepted_values=CURRENCIES),
        Column("started_at", "TIMESTAMP", True),
        Column("cancelled_at", "TIMESTAMP", False, description="cancellation time, null if active"),
        Column("updated_at", "TIMESTAMP", True),
    ),
)

INVOICES = SourceTable(
    source="billing",
    name="invoices",
    file_format="parquet",
    key="invoice_id",
    time_column="issued_at",
    malformed_rule="accepted_values",
    description="Billing invoices issued that day.",
    columns=(
        Column("invoice_id", "VARCHAR", True),
        Column("subscription_id", "VARCHAR", True),
        Column("customer_id", "VARCHAR", True),
        Column("amount", "DOUBLE", True, non_negative=True, max_value=MAX_AMOUNT),
        Column("currency", "VARCHAR", True, accepted_values=CURRENCIES),
        Column("issued_at", "TIMESTAMP", True),
        Column("due_at", "TIMESTAMP", True),
        Column("status", "VARCHAR", True, accepted_values=("open", "paid", "void")),
    ),
)

PAYMENTS = SourceTable(
    source="billing",
    name="payments",
    file_format="parquet",
    key="payment_id",
    time_column="created_at",
    malformed_rule="accepted_values",
    description="Billing payment attempts: successes, failures and refunds.",
    columns=(
        Column("payment_id", "VARCHAR", True),
        Column("invoice_id", "VARCHAR", False),
        Column("customer_id", "VARCHAR", True),
        Column("amount", "DOUBLE", True, non_negative=True, max_value=MAX_AMOUNT),
        Column("currency", "VARCHAR", True, accepted_values=CURRENCIES),
        Column("status", "VARCHAR", True, accepted_values=("succeeded", "failed", "refunded")),
        Column("failure_code", "VARCHAR", False, description="why a failed payment failed"),
        Column("created_at", "TIMESTAMP", True),
    ),
)

CHARGEBACKS = SourceTable(
    source="billing",
    name="chargebacks",
    file_format="parquet",
    key="chargeback_id",
    time_column="reported_at",
    malformed_rule="accepted_values",
    description="Chargebacks on card transactions, reported days after the transaction.",
    columns=(
        Column("chargeback_id", "VARCHAR", True),
        Column("transaction_id", "VARCHAR", True, description="event_id of the card transaction"),
        Column("customer_id", "VARCHAR", True),
        Column("amount", "DOUBLE", True, non_negative=True, max_value=MAX_AMOUNT),
        Column("currency", "VARCHAR", True, accepted_values=CURRENCIES),
        Column(
            "reason",
            "VARCHAR",
            True,
            accepted_values=("fraudulent", "not_received", "duplicate", "other"),
        ),
        Column("transaction_at", "TIMESTAMP", True),
        Column("reported_at", "TIMESTAMP", True),
    ),
)

EVENTS = SourceTable(
    source="behavioral",
    name="events",
    file_format="jsonl",
    key="event_id",
    time_column="event_time",
    description="Product events (logins, page views, feature use, card transactions).",
    late_days=3,  # the collector delivers a few events up to three days after they happened
    columns=(
        Column("event_id", "VARCHAR", True),
        Column("customer_id", "VARCHAR", True),
        Column("event_type", "VARCHAR", True, accepted_values=EVENT_TYPES),
        Column("event_time", "TIMESTAMP", True),
        Column(
            "received_at",
            "TIMESTAMP",
            False,
            description="when the event collector received the event (UTC): its load time",
        ),
        Column("session_id", "VARCHAR", False),
        Column("page", "VARCHAR", False, description="page_view: page path"),
        Column("feature", "VARCHAR", False, description="feature_use: feature name"),
        Column(
            "amount", "DOUBLE", False, description="card_transaction amount", non_negative=True, max_value=MAX_AMOUNT
        ),
        Column("currency", "VARCHAR", False),
        Column("merchant_category", "VARCHAR", False),
        Column("device_id", "VARCHAR", False, PII_INDIRECT, "device fingerprint"),
        Column("ip_country", "VARCHAR", False, PII_INDIRECT, "country of the client IP"),
    ),
)

SOURCE_TABLES: tuple[SourceTable, ...] = (
    CUSTOMERS,
    SUPPORT_TICKETS,
    SUBSCRIPTIONS,
    INVOICES,
    PAYMENTS,
    CHARGEBACKS,
    EVENTS,
)
TABLES_BY_NAME = {t.name: t for t in SOURCE_TABLES}


def table(name: str) -> SourceTable:
    try:
        return TABLES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown source table {name!r}; known: {sorted(TABLES_BY_NAME)}") from None


def dirt_rule(t: SourceTable, kind: str) -> str | None:
    """The staging quarantine rule that catches one kind of injected dirt (None: duplicates)."""
    return {
        "duplicate": None,
        "malformed": t.malformed_rule,
        "null_required": "not_null",
        "unknown_customer": "known_customer",
        "bad_timestamp": "invalid_timestamp",
    }[kind]


# Timestamps in CSV and JSON-lines exports are ISO 8601 UTC strings, e.g. 2026-11-25T13:45:12Z.
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
EARLIEST_VALID_TIME = "2000-01-01"
