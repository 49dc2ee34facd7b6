"""``online/customer_features``: the online feature store as a Dagster asset (thin wiring).

Materialized two ways: by a run of this asset (the nightly bootstrap / repair from the warehouse,
``bootstrap.py``), and without a run by the stream consumer, which reports a materialization
with lag and throughput metadata every ``ADP_STREAM_REPORT_SECONDS`` (``reporting.py``). Its
``FreshnessPolicy`` therefore measures the stream: if the consumer stops reporting, the alert
sensor raises a freshness alert. The skew check lives in ``checks.py``.
"""


from datetime import timedelta

import dagster as dg

from ai_data_platform.features.registry import published
from ai_data_platform.metadata import OWNERS, column_schema, table_metadata
from ai_data_platform.resources import WarehouseResource
from ai_data_platform.sources.assets import staging_key
from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS, PAYMENTS
from ai_data_platform.streaming import backends
from ai_data_platform.streaming.bootstrap import bootstrap
from ai_data_platform.streaming.online_features import ONLINE
from ai_data_platform.streaming.reporting import ONLINE_ASSET_KEY

KEY = dg.AssetKey(list(ONLINE_ASSET_KEY))
GROUP = "streaming"
# The consumer reports at least every 30 s while it runs; 5 minutes without one is a warning,
# 15 a failure.
ONLINE_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=15), warn_window=timedelta(minutes=5))
SCHEMA = column_schema(
    [("customer_id", "VARCHAR"), ("as_of", "TIMESTAMP"),
     *((n, f.dtype) for f in published(ONLINE.features) if (n := f.name) in ONLINE.customer_level())],
    {"customer_id": "CRM customer id", "as_of": "time the materialized values are exact for"}
    | {f.name: f.description for f in ONLINE.features},
)


@dg.asset(
    key=KEY,
    group_name=GROUP,
    description=(
        "The online feature store (SQLite under $ADP_DATA_DIR/online, or Redis with REDIS_URL): the "
        "registry's transaction features for fraud scoring, kept current by `adp stream consume` and "
        "bootstrapped / repaired nightly from the warehouse (staged events and payments within the "
        "online lookback, streamed events, home countries). Grain: one row of materialized values per "
        "customer, each with the as-of time it is exact for; served by `adp serve`."
    ),
    deps=[staging_key(EVENTS), staging_key(PAYMENTS), staging_key(CUSTOMERS)],
    kinds={"sqlite", "redis", "python"},
    owners=OWNERS,
    code_version="1",
    freshness_policy=ONLINE_FRESHNESS,
    tags={"layer": "online"},
    metadata={"dagster/column_schema": SCHEMA},
)
def customer_features(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    store = backends.online_store()
    with warehouse.get_connection() as con:
        result = bootstrap(con, store)
    stats = store.stats()
    context.log.info(f"bootstrap: {result.rows_kept} of {result.rows_read} warehouse rows kept, "
                     f"{result.customers} customers, {result.materialized} materialized")
    return dg.MaterializeResult(
        metadata=table_metadata(
            row_count=stats["materialized"],
            schema=SCHEMA,
            table=store.label,
            extra={
                "warehouse_rows_read": result.rows_read,
                "state_rows": stats["rows"],
                "customers": stats["customers"],
                "coverage": {s: t.isoformat() for s, t in result.coverage.items()},
                "source": "nightly bootstrap",
            },
        )
    )


online_bootstrap_job = dg.define_asset_job(
    name="online_bootstrap",
    selection=dg.AssetSelection.assets(KEY),
    description="Re-materializes the online store from the warehouse (bootstrap / repair) and checks online/offline skew.",
)
online_bootstrap_schedule = dg.ScheduleDefinition(
    name="online_bootstrap_schedule",
    job=online_bootstrap_job,
    cron_schedule="45 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="02:45 UTC, after the nightly batch: repair the online store from the warehouse.",
)
