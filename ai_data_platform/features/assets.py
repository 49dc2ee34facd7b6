"""``features/customer_daily``: the daily customer feature partition, and its blocking gate."""


from datetime import datetime, timedelta, timezone

import re

import dagster as dg

from ai_data_platform import warehouse as wh
from ai_data_platform.features import compile as fc
from ai_data_platform.features.registry import CUSTOMER_FEATURES, SOURCES, TRANSACTION_FEATURES, Feature, published
from ai_data_platform.metadata import PROFILE_KEY, column_lineage, column_schema, partition_profile, table_metadata
from ai_data_platform.partitions import days_in
from ai_data_platform.quality.checks import table_gx_check
from ai_data_platform.quality.suites import customer_daily_suite, transaction_suite
from ai_data_platform.resources import WarehouseResource
from ai_data_platform.sources.assets import daily_sql_table, staging_key
from ai_data_platform.sources import staging_sql as sql
from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS, SUBSCRIPTIONS, TABLES_BY_NAME
from ai_data_platform.quality.gx_runner import prewarm as prewarm_gx

KEY = dg.AssetKey(["features", "customer_daily"])
TABLE = "features.customer_daily"
FEATURE_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 5 * * *", lower_bound_delta=timedelta(hours=5))
SCHEMA = column_schema(
    fc.customer_daily_columns(),
    {"customer_id": "CRM customer id", "_partition_date": "as-of day"} | {f.name: f.description for f in published(CUSTOMER_FEATURES)},
)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _identifiers(*sql_fragments: str | None) -> list[str]:
    """Identifiers in SQL fragments, string literals removed, in order of first appearance."""
    text = " ".join(re.sub(r"'[^']*'", " ", f) for f in sql_fragments if f)
    return list(dict.fromkeys(_IDENTIFIER.findall(text)))


def _staging_column(table: str, column: str) -> tuple[dg.AssetKey, str]:
    return staging_key(TABLES_BY_NAME[table]), column


def feature_inputs(f: Feature, entity_features: tuple[Feature, ...]) -> list[tuple[dg.AssetKey, str]]:
    """The staging columns a feature's value is computed from, read off its registry declaration:
    the aggregated column, the event time its window or TTL is measured on, the columns of its
    filter, the transaction's own values (``_txn_*``) and, for derived features, the inputs of the
    features its expression uses."""
    inputs: list[tuple[dg.AssetKey, str]] = []
    if f.source:
        source_columns = {c for c, _ in sql.staging_columns(TABLES_BY_NAME[f.source])}
        time_column = SOURCES[f.source]["time"]
        for name in [*_identifiers(f.column, f.filter), time_column]:
            if name in source_columns:
                inputs.append(_staging_column(f.source, name))
    by_name = {g.name: g for g in entity_features}
    for name in _identifiers(f.expression, f.filter):
        if name in fc.TXN_INPUTS:
            inputs.append(_staging_column(*fc.TXN_INPUTS[name]))
        elif f.agg == "profile" and name in fc.SPINE_INPUTS:
            inputs.append(_staging_column(*fc.SPINE_INPUTS[name]))
        elif f.agg == "derived" and name in by_name and name != f.name:
            inputs.extend(feature_inputs(by_name[name], entity_features))
    return list(dict.fromkeys(inputs))


def _lineage() -> dg.TableColumnLineage:
    m = {
        "customer_id": [_staging_column(*fc.SPINE_INPUTS["customer_id"]), (staging_key(SUBSCRIPTIONS), "customer_id")],
        "_partition_date": [(staging_key(CUSTOMERS), "_partition_date")],
    }
    for f in published(CUSTOMER_FEATURES):
        m[f.name] = feature_inputs(f, CUSTOMER_FEATURES)
    return column_lineage(m)


LINEAGE = _lineage()


@dg.asset(
    key=KEY,
    group_name="features",
    description=(
        f"Daily customer features ({len(published(CUSTOMER_FEATURES))} from the feature registry, 7/30/90-day "
        "windows over events, payments, chargebacks and support tickets, plus profile and derived "
        "features), point-in-time correct as of the end of the day. Grain: one row per active "
        "customer (live subscription) per day."
    ),
    deps=[staging_key(TABLES_BY_NAME[s]) for s in sorted(SOURCES)] + [staging_key(CUSTOMERS), staging_key(SUBSCRIPTIONS)],
    **daily_sql_table(),
    freshness_policy=FEATURE_FRESHNESS,
    tags={"layer": "features"},
    metadata={"partition_expr": "_partition_date", "dagster/column_schema": SCHEMA, "dagster/column_lineage": LINEAGE},
)
def customer_daily(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    prewarm_gx()  # GX imports on another thread while DuckDB works; the gate finds it ready
    days = days_in(context)
    with warehouse.get_connection() as con:
        counts = wh.replace_partitions(
            con, TABLE, days, fc.customer_daily_sql, create_sql=_ddl()
        )
        profile = partition_profile(con, TABLE, days)
    newest_end = datetime.combine(max(days) + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
    lag_hours = (datetime.now(timezone.utc) - newest_end).total_seconds() / 3600
    return dg.MaterializeResult(
        metadata=table_metadata(
            row_count=sum(counts.values()),
            schema=SCHEMA,
            lineage=LINEAGE,
            table=TABLE,
            extra={
                "rows_by_day": {str(d): n for d, n in counts.items()},
                PROFILE_KEY: profile,
                "feature_count": len(published(CUSTOMER_FEATURES)),
                "data_lag_hours": round(lag_hours, 2),
            },
        )
    )


def _ddl() -> str:
    cols = ", ".join(f"{n} {t}" for n, t in fc.customer_daily_columns())
    return f"CREATE TABLE IF NOT EXISTS {TABLE} ({cols})"


customer_daily_gx = table_gx_check(
    KEY,
    TABLE,
    customer_daily_suite(CUSTOMER_FEATURES),
    blocking=True,
    description="one row per customer, every feature present, counts non-negative and never null.",
)


TXN_KEY = dg.AssetKey(["features", "transaction"])
TXN_TABLE = "features.transaction"
TXN_SCHEMA = column_schema(
    fc.transaction_columns(),
    {
        "transaction_id": "event_id of the card transaction",
        "customer_id": "CRM customer id",
        "transaction_time": "event time of the transaction",
        "_partition_date": "export day of the transaction",
    }
    | {f.name: f.description for f in published(TRANSACTION_FEATURES)},
)


def _transaction_lineage() -> dg.TableColumnLineage:
    m = {
        "transaction_id": [_staging_column(*fc.TXN_INPUTS["_txn_id"])],
        "customer_id": [_staging_column(*fc.TXN_INPUTS["_txn_customer_id"])],
        "transaction_time": [_staging_column(*fc.TXN_INPUTS["_txn_as_of"])],
        "_partition_date": [(staging_key(EVENTS), "_partition_date")],
    }
    for f in published(TRANSACTION_FEATURES):
        m[f.name] = feature_inputs(f, TRANSACTION_FEATURES)
    return column_lineage(m)


TXN_LINEAGE = _transaction_lineage()


@dg.asset(
    key=TXN_KEY,
    group_name="features",
    description=(
        f"Transaction features ({len(published(TRANSACTION_FEATURES))} from the feature registry: "
        "velocity over 1h/24h, amount against the customer's history, new device, IP country "
        "against home country, recent failed payments and chargebacks), each as of just before "
        "the transaction and excluding it, from rows loaded by then. Grain: one row per card "
        "transaction, partitioned by export day."
    ),
    deps=[staging_key(TABLES_BY_NAME[s]) for s in ("events", "payments", "chargebacks")] + [staging_key(CUSTOMERS)],
    **daily_sql_table(),
    freshness_policy=FEATURE_FRESHNESS,
    tags={"layer": "features"},
    metadata={"partition_expr": "_partition_date", "dagster/column_schema": TXN_SCHEMA, "dagster/column_lineage": TXN_LINEAGE},
)
def transaction(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    prewarm_gx()  # GX imports on another thread while DuckDB works; the gate finds it ready
    days = days_in(context)
    ddl = f"CREATE TABLE IF NOT EXISTS {TXN_TABLE} ({', '.join(f'{n} {t}' for n, t in fc.transaction_columns())})"
    with warehouse.get_connection() as con:
        counts = wh.replace_partitions(con, TXN_TABLE, days, fc.transaction_sql, create_sql=ddl)
        profile = partition_profile(con, TXN_TABLE, days)
    return dg.MaterializeResult(
        metadata=table_metadata(
            row_count=sum(counts.values()),
            schema=TXN_SCHEMA,
            lineage=TXN_LINEAGE,
            table=TXN_TABLE,
            extra={"rows_by_day": {str(d): n for d, n in counts.items()}, PROFILE_KEY: profile},
        )
    )


transaction_gx = table_gx_check(
    TXN_KEY,
    TXN_TABLE,
    transaction_suite(TRANSACTION_FEATURES),
    blocking=True,
    description="one row per transaction, every feature present, counts non-negative.",
)
