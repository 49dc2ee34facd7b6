"""``marts/customer_360``: the daily Customer 360 snapshot, and its quality suite."""


import dagster as dg

from ai_data_platform import warehouse as wh
from ai_data_platform.marts import customer_360 as c360
from ai_data_platform.metadata import PROFILE_KEY, column_lineage, column_schema, partition_profile, table_metadata
from ai_data_platform.partitions import days_in
from ai_data_platform.quality.checks import table_gx_check
from ai_data_platform.quality.suites import customer_360_suite
from ai_data_platform.resources import WarehouseResource
from ai_data_platform.sources.assets import daily_sql_table, staging_key
from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS, PAYMENTS, SUBSCRIPTIONS, SUPPORT_TICKETS, CHARGEBACKS
from ai_data_platform.quality.gx_runner import prewarm as prewarm_gx

KEY = dg.AssetKey(["marts", "customer_360"])
TABLE = "marts.customer_360"
SCHEMA = column_schema(
    [(n, t) for n, t, _ in c360.COLUMNS],
    {n: d for n, _, d in c360.COLUMNS},
    {"email_hash": "indirect", "country": "indirect"},
)


def _lineage() -> dg.TableColumnLineage:
    cust, subs, pay, ev, sup, cb = (staging_key(t) for t in (CUSTOMERS, SUBSCRIPTIONS, PAYMENTS, EVENTS, SUPPORT_TICKETS, CHARGEBACKS))
    m = {c: [(cust, c)] for c in ("customer_id", "email_hash", "country", "region", "segment", "signup_at", "marketing_consent")}
    m["snapshot_date"] = m["_partition_date"] = [(cust, "_partition_date")]  # the day of the CRM state
    m["tenure_days"] = [(cust, "signup_at")]
    m.update({c: [(subs, c)] for c in ("plan", "mrr", "currency", "cancelled_at")})
    m["subscription_status"] = [(subs, "cancelled_at"), (subs, "started_at")]
    for c in ("lifetime_revenue", "payments_succeeded", "payment_failures", "payment_failures_30d"):
        m[c] = [(pay, "amount"), (pay, "status"), (pay, "created_at")]
    m["chargebacks"] = [(cb, "chargeback_id")]
    for c in ("events_30d", "logins_30d", "card_transactions_30d", "last_seen_at"):
        m[c] = [(ev, "event_type"), (ev, "event_time")]
    for c in ("tickets_total", "tickets_open", "tickets_90d"):
        m[c] = [(sup, "status"), (sup, "created_at"), (sup, "customer_id")]
    return column_lineage(m)


LINEAGE = _lineage()


@dg.asset(
    key=KEY,
    group_name="marts",
    description=(
        "Customer 360: CRM profile without direct PII, current plan and MRR, lifetime revenue, "
        "payment failures, chargebacks, recent activity and support history, as of the end of the "
        "day. Grain: one row per customer known to the CRM, per snapshot day."
    ),
    deps=[staging_key(t) for t in (CUSTOMERS, SUBSCRIPTIONS, PAYMENTS, CHARGEBACKS, EVENTS, SUPPORT_TICKETS)],
    **daily_sql_table(),
    tags={"layer": "marts"},
    metadata={"partition_expr": "_partition_date", "dagster/column_schema": SCHEMA, "dagster/column_lineage": LINEAGE},
)
def customer_360(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    prewarm_gx()  # GX imports on another thread while DuckDB works; the gate finds it ready
    days = days_in(context)
    with warehouse.get_connection() as con:
        counts = wh.replace_partitions(con, TABLE, days, c360.customer_360_sql, create_sql=c360.ddl())
        profile = partition_profile(con, TABLE, days)
    return dg.MaterializeResult(
        metadata=table_metadata(
            row_count=sum(counts.values()),
            schema=SCHEMA,
            lineage=LINEAGE,
            table=TABLE,
            extra={"rows_by_day": {str(d): n for d, n in counts.items()}, PROFILE_KEY: profile},
        )
    )


customer_360_gx = table_gx_check(
    KEY,
    TABLE,
    customer_360_suite(),
    blocking=False,
    description="unique customers, valid regions and statuses, non-negative money and tenure, hashed join keys only.",
)
