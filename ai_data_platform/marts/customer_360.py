"""SQL for ``marts.customer_360``: one row per customer as of the end of a day.

Joins the CRM profile (pseudonymized: no name, email or phone), the live subscription, lifetime
billing totals, recent activity and support history. Only rows exported on or before the day
are used, so a snapshot never changes once its day has passed. A customer soft-deleted in the CRM
database (``deleted_at`` on their latest CRM row, before the end of the day) has no row from that
snapshot on: the ``cust`` CTE shared with the feature spine drops them.
"""

from __future__ import annotations

from datetime import date

from ai_data_platform.features.compile import spine_ctes

COLUMNS: list[tuple[str, str, str]] = [
    ("snapshot_date", "DATE", "day this snapshot describes (end of day, UTC)"),
    ("customer_id", "VARCHAR", "CRM customer id"),
    ("email_hash", "VARCHAR", "HMAC of the normalized email (join key, no raw email)"),
    ("country", "VARCHAR", "home country"),
    ("region", "VARCHAR", "data residency region"),
    ("segment", "VARCHAR", "customer segment"),
    ("signup_at", "TIMESTAMP", "signup time"),
    ("tenure_days", "BIGINT", "days since signup"),
    ("marketing_consent", "BOOLEAN", "opted in to marketing"),
    ("plan", "VARCHAR", "plan of the current subscription"),
    ("mrr", "DOUBLE", "monthly recurring revenue of the current subscription"),
    ("currency", "VARCHAR", "billing currency"),
    ("subscription_status", "VARCHAR", "active, cancelled or none"),
    ("cancelled_at", "TIMESTAMP", "cancellation time of the current subscription"),
    ("lifetime_revenue", "DOUBLE", "succeeded payments minus refunds, all time"),
    ("payments_succeeded", "BIGINT", "succeeded payments, all time"),
    ("payment_failures", "BIGINT", "failed payments, all time"),
    ("payment_failures_30d", "BIGINT", "failed payments in the last 30 days"),
    ("chargebacks", "BIGINT", "chargebacks, all time"),
    ("events_30d", "BIGINT", "product events in the last 30 days"),
    ("logins_30d", "BIGINT", "logins in the last 30 days"),
    ("card_transactions_30d", "BIGINT", "card transactions in the last 30 days"),
    ("last_seen_at", "TIMESTAMP", "time of the latest product event"),
    ("tickets_total", "BIGINT", "support tickets, all time"),
    ("tickets_open", "BIGINT", "support tickets not resolved"),
    ("tickets_90d", "BIGINT", "support tickets in the last 90 days"),
    ("_partition_date", "DATE", "partition (= snapshot_date)"),
]


def customer_360_sql(day: date) -> str:
    d = f"DATE '{day.isoformat()}'"
    ctes = spine_ctes(day)[:3]  # params, cust (latest CRM row, not deleted), subs (latest subscription rows)
    ctes += [
        "cur_sub AS (SELECT customer_id, arg_max(plan, started_at) AS plan, arg_max(mrr, started_at) AS mrr, "
        "arg_max(currency, started_at) AS currency, arg_max(cancelled_at, started_at) AS cancelled_at "
        "FROM subs, params WHERE started_at < _as_of GROUP BY customer_id)",
        "pay AS (SELECT customer_id, "
        "coalesce(sum(amount) FILTER (WHERE status = 'succeeded'), 0) - coalesce(sum(amount) FILTER (WHERE status = 'refunded'), 0) AS lifetime_revenue, "
        "count(*) FILTER (WHERE status = 'succeeded') AS payments_succeeded, "
        "count(*) FILTER (WHERE status = 'failed') AS payment_failures, "
        "count(*) FILTER (WHERE status = 'failed' AND created_at >= _as_of - INTERVAL 30 DAY) AS payment_failures_30d "
        f"FROM staging.payments, params WHERE _partition_date <= {d} AND created_at < _as_of GROUP BY customer_id)",
        "cb AS (SELECT customer_id, count(*) AS chargebacks FROM staging.chargebacks, params "
        f"WHERE _partition_date <= {d} AND reported_at < _as_of GROUP BY customer_id)",
        "act AS (SELECT customer_id, count(*) FILTER (WHERE event_time >= _as_of - INTERVAL 30 DAY) AS events_30d, "
        "count(*) FILTER (WHERE event_type = 'login' AND event_time >= _as_of - INTERVAL 30 DAY) AS logins_30d, "
        "count(*) FILTER (WHERE event_type = 'card_transaction' AND event_time >= _as_of - INTERVAL 30 DAY) AS card_transactions_30d, "
        "max(event_time) AS last_seen_at "
        f"FROM staging.events, params WHERE _partition_date <= {d} AND event_time < _as_of GROUP BY customer_id)",
        "sup AS (SELECT customer_id, count(*) AS tickets_total, "
        "count(*) FILTER (WHERE status <> 'resolved') AS tickets_open, "
        "count(*) FILTER (WHERE created_at >= _as_of - INTERVAL 90 DAY) AS tickets_90d "
        f"FROM staging.support_tickets, params WHERE _partition_date <= {d} AND created_at < _as_of "
        "AND customer_id IS NOT NULL GROUP BY customer_id)",
    ]
    select = f"""
    SELECT p.as_of_date AS snapshot_date, c.customer_id, c.email_hash, c.country, c.region, c.segment,
           c.signup_at, date_diff('day', CAST(c.signup_at AS DATE), p.as_of_date) AS tenure_days,
           c.marketing_consent, s.plan, s.mrr, s.currency,
           CASE WHEN s.customer_id IS NULL THEN 'none'
                WHEN s.cancelled_at IS NOT NULL AND s.cancelled_at < p._as_of THEN 'cancelled'
                ELSE 'active' END AS subscription_status,
           s.cancelled_at,
           coalesce(pay.lifetime_revenue, 0) AS lifetime_revenue,
           coalesce(pay.payments_succeeded, 0) AS payments_succeeded,
           coalesce(pay.payment_failures, 0) AS payment_failures,
           coalesce(pay.payment_failures_30d, 0) AS payment_failures_30d,
           coalesce(cb.chargebacks, 0) AS chargebacks,
           coalesce(act.events_30d, 0) AS events_30d,
           coalesce(act.logins_30d, 0) AS logins_30d,
           coalesce(act.card_transactions_30d, 0) AS card_transactions_30d,
           act.last_seen_at,
           coalesce(sup.tickets_total, 0) AS tickets_total,
           coalesce(sup.tickets_open, 0) AS tickets_open,
           coalesce(sup.tickets_90d, 0) AS tickets_90d,
           p.as_of_date AS _partition_date
    FROM cust c CROSS JOIN params p
    LEFT JOIN cur_sub s USING (customer_id)
    LEFT JOIN pay USING (customer_id)
    LEFT JOIN cb USING (customer_id)
    LEFT JOIN act USING (customer_id)
    LEFT JOIN sup USING (customer_id)
    WHERE c.signup_at < p._as_of
    ORDER BY c.customer_id"""
    return "WITH " + ",\n".join(ctes) + select


def ddl() -> str:
    cols = ", ".join(f"{n} {t}" for n, t, _ in COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS marts.customer_360 ({cols})"
