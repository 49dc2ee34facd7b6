"""SQL for the versioned training sets: point-in-time features joined to labels from the future.

``churn`` version S: the ``features/customer_daily`` snapshots at S, S-7, S-14 and S-21 (those
that exist), each customer labelled 1 when one of their subscriptions is cancelled within the 30
days after the snapshot, judged only from subscription records loaded by the end of that label
window. ``fraud`` version D: every card transaction exported in the 30 days up to D with its
``features/transaction`` values, labelled 1 when a chargeback for it is reported within 60 days
of the transaction, from chargebacks loaded by then.

A version is buildable only once every label window in it has closed, i.e. the label source is
loaded through the last day of the window (``label_window_closed``). Features come from their own
point-in-time tables, so a label can never leak into a feature. Pure functions returning SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from ai_data_platform.features.compile import TRANSACTION_KEY_COLUMNS, customer_daily_columns, transaction_columns


@dataclass(frozen=True)
class TrainingSetSpec:
    name: str  # dataset name: churn | fraud
    label: str
    label_days: int  # label window length
    label_source: str  # staging table whose export days must cover the label windows
    key_columns: tuple[str, ...]
    time_column: str  # what the time-based train/test split orders by
    feature_table: str
    description: str

    def last_label_day(self, version: date) -> date:
        """The export day through which the label source must be loaded to build ``version``."""
        return version + timedelta(days=self.label_days)


CHURN = TrainingSetSpec(
    name="churn",
    label="churned_30d",
    label_days=30,
    label_source="staging.subscriptions",
    key_columns=("snapshot_date", "customer_id"),
    time_column="snapshot_date",
    feature_table="features.customer_daily",
    description="Active customers at weekly snapshots; label: cancels within 30 days after the snapshot.",
)
FRAUD = TrainingSetSpec(
    name="fraud",
    label="chargeback_60d",
    label_days=60,
    label_source="staging.chargebacks",
    key_columns=("transaction_id",),
    time_column="transaction_time",
    feature_table="features.transaction",
    description="Card transactions of 30 export days; label: a chargeback reported within 60 days.",
)
SPECS = {s.name: s for s in (CHURN, FRAUD)}
CHURN_SNAPSHOT_OFFSETS = (21, 14, 7, 0)  # days before the version's snapshot date
FRAUD_LOOKBACK_DAYS = 30


def _d(day: date) -> str:
    return f"DATE '{day.isoformat()}'"


def missing_label_days(spec: TrainingSetSpec, version: date, loaded_days: set[str]) -> list[str]:
    """Export days of the label window not yet loaded; the version is buildable when empty."""
    days = [(version + timedelta(days=i)).isoformat() for i in range(1, spec.label_days + 1)]
    return [d for d in days if d not in loaded_days]


def churn_feature_columns() -> list[str]:
    return [n for n, _ in customer_daily_columns() if n not in ("customer_id", "_partition_date")]


def fraud_feature_columns() -> list[str]:
    keys = {n for n, _ in TRANSACTION_KEY_COLUMNS}
    return [n for n, _ in transaction_columns() if n not in keys and n != "_partition_date"]


def churn_sql(version: date) -> str:
    """The churn version's rows: the snapshot partitions' features, each labelled from the
    cancellations loaded by the end of its own label window.

    The label is a left join to the (snapshot, customer) pairs with such a cancellation, so the
    feature table is scanned once and never materialized. Rows come in no particular order: the
    dataset writer sorts them by the key columns (``datasets.encode_version``).
    """
    snapshot_days = [version - timedelta(days=o) for o in CHURN_SNAPSHOT_OFFSETS]
    features = ", ".join(f"f.{c}" for c in churn_feature_columns())
    return f"""
    SELECT f._partition_date AS snapshot_date, f.customer_id, {features},
           CAST(churned.customer_id IS NOT NULL AS INTEGER) AS {CHURN.label}
    FROM features.customer_daily f
    LEFT JOIN (
        SELECT DISTINCT s.snapshot_date, c.customer_id
        FROM (VALUES {", ".join(f"({_d(d)})" for d in snapshot_days)}) s(snapshot_date)
        JOIN staging.subscriptions c
          ON c.cancelled_at >= CAST(s.snapshot_date + INTERVAL 1 DAY AS TIMESTAMP)
         AND c.cancelled_at < CAST(s.snapshot_date + INTERVAL {CHURN.label_days + 1} DAY AS TIMESTAMP)
         AND c._available_at <= CAST(s.snapshot_date + INTERVAL {CHURN.label_days + 1} DAY AS TIMESTAMP)
        WHERE c.cancelled_at IS NOT NULL AND c._partition_date <= {_d(CHURN.last_label_day(version))}
    ) churned ON churned.customer_id = f.customer_id AND churned.snapshot_date = f._partition_date
    WHERE f._partition_date IN ({", ".join(_d(d) for d in snapshot_days)})
    """


def fraud_sql(version: date) -> str:
    first = version - timedelta(days=FRAUD_LOOKBACK_DAYS - 1)
    features = ", ".join(f"t.{c}" for c in fraud_feature_columns())
    return f"""
    WITH txns AS (
        SELECT t.transaction_id, t.customer_id, t.transaction_time, {features}
        FROM features.transaction t WHERE t._partition_date BETWEEN {_d(first)} AND {_d(version)}
    ),
    cb AS (SELECT transaction_id, reported_at, _available_at FROM staging.chargebacks
           WHERE _partition_date BETWEEN {_d(first)} AND {_d(FRAUD.last_label_day(version))})
    SELECT x.*,
           CAST(EXISTS (
               SELECT 1 FROM cb
               WHERE cb.transaction_id = x.transaction_id
                 AND cb.reported_at < x.transaction_time + INTERVAL 60 DAY
                 AND cb._available_at <= x.transaction_time + INTERVAL 60 DAY
           ) AS INTEGER) AS {FRAUD.label}
    FROM txns x
    ORDER BY x.transaction_id
    """


def dataset_sql(spec: TrainingSetSpec, version: date) -> str:
    return churn_sql(version) if spec is CHURN else fraud_sql(version)


def feature_columns(spec: TrainingSetSpec) -> list[str]:
    return churn_feature_columns() if spec is CHURN else fraud_feature_columns()
