"""Compile the feature registry into DuckDB SQL.

Two entities, one set of declarations:

- ``customer_daily_sql(day)``: one row per active customer, every customer feature as of the end
  of ``day``. Each source is scanned once, grouped by customer, with one FILTERed aggregate per
  feature.
- ``transaction_sql(day)``: one row per card transaction exported on ``day``, every transaction
  feature as of just before that transaction (the transaction itself excluded). Each source is
  joined to the transactions on the customer within the widest lookback, then aggregated.

Point in time (both): a source row counts only if its event time is before the as-of time and it
was available (``_available_at``) at or before it. Cost follows the lookback: every source scan is
bounded by export day (``_partition_date``) to the widest lookback plus the allowed lateness, never
the whole history.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from ai_data_platform.features.registry import (
    CUSTOMER_FEATURES,
    MAX_LATENESS_DAYS,
    ROW_AGGS,
    SOURCES,
    TRANSACTION_FEATURES,
    Feature,
    duration_seconds,
    duration_sql,
    published,
)


def _lookback_cond(f: Feature, time_col: str, as_of: str) -> str:
    conds = [f"{time_col} >= {as_of} - {duration_sql(f.lookback)}"]
    if f.filter:
        conds.append(f"({f.filter})")
    return " AND ".join(conds)


def _aggregate(f: Feature, as_of: str) -> str:
    spec = SOURCES[f.source]
    time_col = spec["time"]
    cond = _lookback_cond(f, time_col, as_of)
    col = f.column
    order = f"({time_col}, _available_at, {spec['key']})"  # deterministic "latest"
    return {
        "count": f"count(*) FILTER (WHERE {cond})",
        "sum": f"sum({col}) FILTER (WHERE {cond})",
        "avg": f"avg({col}) FILTER (WHERE {cond})",
        "stddev": f"stddev_samp({col}) FILTER (WHERE {cond})",
        "max": f"max({col}) FILTER (WHERE {cond})",
        "count_distinct": f"count(DISTINCT {col}) FILTER (WHERE {cond})",
        "active_days": f"count(DISTINCT CAST({col} AS DATE)) FILTER (WHERE {cond})",
        "last": f"arg_max({col}, {order}) FILTER (WHERE {cond})",
        "days_since_last": f"date_diff('second', max({col}) FILTER (WHERE {cond}), {as_of}) / 86400.0",
        "seconds_since_last": f"date_diff('second', max({col}) FILTER (WHERE {cond}), {as_of})",
    }[f.agg]


def _by_source(features: tuple[Feature, ...]) -> dict[str, list[Feature]]:
    out: dict[str, list[Feature]] = defaultdict(list)
    for f in features:
        if f.agg not in ROW_AGGS:
            out[f.source].append(f)
    return dict(sorted(out.items()))


def _widest_seconds(features: list[Feature]) -> int:
    return max(duration_seconds(f.lookback) for f in features)


def _export_day_bound(day: date, widest_seconds: int) -> str:
    """Export days that can hold rows inside the lookback: pushed down to the scan as a range."""
    days_back = -(-widest_seconds // 86400) + MAX_LATENESS_DAYS
    d = f"DATE '{day.isoformat()}'"
    return f"_partition_date BETWEEN {d} - INTERVAL {days_back} DAY AND {d}"


def _base_value(f: Feature, agg_table: str) -> str:
    value = f"{agg_table}.{f.name}"
    if f.default is not None:
        value = f"coalesce({value}, {f.default})"
    return f"CAST({value} AS {f.dtype}) AS {f.name}"


def _output_columns(features: tuple[Feature, ...]) -> list[str]:
    out = []
    for f in published(features):
        if f.agg == "derived":
            value = f.expression if f.default is None else f"coalesce({f.expression}, {f.default})"
            out.append(f"CAST({value} AS {f.dtype}) AS {f.name}")
        else:
            out.append(f.name)
    return out


# ---------------------------------------------------------------- customer entity


# Where the spine's columns come from (staging table, column): profile features read these.
SPINE_INPUTS = {
    "customer_id": ("customers", "customer_id"),
    "signup_at": ("customers", "signup_at"),
    "marketing_consent": ("customers", "marketing_consent"),
    "plan": ("subscriptions", "plan"),
    "mrr": ("subscriptions", "mrr"),
}


def spine_ctes(day: date) -> list[str]:
    """Customers active at the end of ``day``: known to the CRM, not soft-deleted, with a live subscription.

    ``cust`` is each customer's latest CRM row loaded by ``day``; a customer whose latest row
    carries a ``deleted_at`` before the end of the day (a soft delete in the CRM database) is
    no longer a customer from then on.
    """
    d = f"DATE '{day.isoformat()}'"
    return [
        f"params AS (SELECT {d} AS as_of_date, CAST({d} + INTERVAL 1 DAY AS TIMESTAMP) AS _as_of)",
        "cust AS (SELECT * FROM staging.customers WHERE _partition_date <= "
        f"{d} QUALIFY row_number() OVER (PARTITION BY customer_id "
        "ORDER BY updated_at DESC, _partition_date DESC, _row_number DESC) = 1 "
        f"AND (deleted_at IS NULL OR deleted_at >= CAST({d} + INTERVAL 1 DAY AS TIMESTAMP)))",
        "subs AS (SELECT * FROM staging.subscriptions WHERE _partition_date <= "
        f"{d} QUALIFY row_number() OVER (PARTITION BY subscription_id "
        "ORDER BY updated_at DESC, _partition_date DESC, _row_number DESC) = 1)",
        "live_sub AS (SELECT customer_id, arg_max(plan, started_at) AS plan, arg_max(mrr, started_at) AS mrr "
        "FROM subs, params WHERE started_at < _as_of AND (cancelled_at IS NULL OR cancelled_at >= _as_of) "
        "GROUP BY customer_id)",
        "spine AS (SELECT c.customer_id, c.signup_at, c.marketing_consent, s.plan, s.mrr, p.as_of_date, p._as_of "
        "FROM cust c JOIN live_sub s USING (customer_id), params p WHERE c.signup_at < p._as_of)",
    ]


def _customer_source_cte(source: str, feats: list[Feature], day: date) -> str:
    spec = SOURCES[source]
    time_col = spec["time"]
    widest = _widest_seconds(feats)
    aggs = ",\n    ".join(f"{_aggregate(f, '_as_of')} AS {f.name}" for f in feats)
    return (
        f"agg_{source} AS (SELECT customer_id,\n    {aggs}\n  FROM {spec['table']}, params\n"
        f"  WHERE {_export_day_bound(day, widest)}\n"
        f"    AND {time_col} < _as_of AND {time_col} >= _as_of - INTERVAL {widest} SECOND\n"
        "    AND _available_at <= _as_of\n"
        "  GROUP BY customer_id, _as_of)"
    )


def customer_daily_sql(day: date, features: tuple[Feature, ...] = CUSTOMER_FEATURES) -> str:
    """SELECT producing one row per active customer with every feature as of the end of ``day``."""
    by_source = _by_source(features)
    ctes = spine_ctes(day) + [_customer_source_cte(s, fs, day) for s, fs in by_source.items()]
    base_cols = ["spine.customer_id", "spine.as_of_date"]
    base_cols += [_base_value(f, f"agg_{s}") for s, fs in by_source.items() for f in fs]
    base_cols += [f"CAST({f.expression} AS {f.dtype}) AS {f.name}" for f in features if f.agg == "profile"]
    joins = " ".join(f"LEFT JOIN agg_{s} USING (customer_id)" for s in by_source)
    ctes.append(f"base AS (SELECT {', '.join(base_cols)} FROM spine {joins})")
    out = ["customer_id", *_output_columns(features), "as_of_date AS _partition_date"]
    return "WITH " + ",\n".join(ctes) + f"\nSELECT {', '.join(out)} FROM base ORDER BY customer_id"


def customer_daily_columns(features: tuple[Feature, ...] = CUSTOMER_FEATURES) -> list[tuple[str, str]]:
    return [("customer_id", "VARCHAR"), *((f.name, f.dtype) for f in published(features)), ("_partition_date", "DATE")]


# ---------------------------------------------------------------- transaction entity

TRANSACTION_KEY_COLUMNS = [
    ("transaction_id", "VARCHAR"),
    ("customer_id", "VARCHAR"),
    ("transaction_time", "TIMESTAMP"),
]


# The transaction's own values as transaction features see them: ``_txn_*`` -> (staging table, column).
TXN_INPUTS = {
    "_txn_id": ("events", "event_id"),
    "_txn_customer_id": ("events", "customer_id"),
    "_txn_as_of": ("events", "event_time"),
    "_txn_amount": ("events", "amount"),
    "_txn_device_id": ("events", "device_id"),
    "_txn_ip_country": ("events", "ip_country"),
    "_txn_home_country": ("customers", "country"),  # the customer's home country as of the transaction
}


def _transaction_ctes(day: date) -> list[str]:
    d = f"DATE '{day.isoformat()}'"
    own = ", ".join(f"{column} AS {alias}" for alias, (table, column) in TXN_INPUTS.items() if table == "events")
    return [
        f"txn AS (SELECT {own} "
        f"FROM staging.events WHERE _partition_date = {d} AND event_type = 'card_transaction')",
        # the customer's home country as known (loaded) just before the transaction
        "home AS (SELECT t._txn_id, arg_max(c.country, (c.updated_at, c._available_at, c._row_number)) AS _txn_home_country "
        "FROM txn t JOIN staging.customers c ON c.customer_id = t._txn_customer_id "
        f"AND c._available_at <= t._txn_as_of AND c._partition_date <= {d} GROUP BY t._txn_id)",
        "_txn AS (SELECT txn.*, home._txn_home_country FROM txn LEFT JOIN home USING (_txn_id))",
    ]


def _per_transaction_cte(source: str, feats: list[Feature], relation: str, bound: str | None = None) -> str:
    """``agg_<source>``: each transaction's (``_txn`` row's) aggregates over ``relation`` rows of
    its customer inside the widest lookback, loaded by then, itself excluded; ``bound`` is an
    extra condition (the export-day range the scan may be pruned to)."""
    spec = SOURCES[source]
    time_col = spec["time"]
    widest = _widest_seconds(feats)
    aggs = ",\n    ".join(f"{_aggregate(f, '_txn_as_of')} AS {f.name}" for f in feats)
    not_itself = f" AND {spec['key']} <> _txn_id" if source == "events" else ""
    return (
        f"agg_{source} AS (SELECT _txn_id,\n    {aggs}\n"
        f"  FROM _txn JOIN {relation} ON customer_id = _txn_customer_id\n"
        f"    AND {time_col} < _txn_as_of AND {time_col} >= _txn_as_of - INTERVAL {widest} SECOND\n"
        f"    AND _available_at <= _txn_as_of{not_itself}\n"
        + (f"    AND {bound}\n" if bound else "")
        + "  GROUP BY _txn_id, _txn_as_of)"
    )


def _transaction_source_cte(source: str, feats: list[Feature], day: date) -> str:
    # A row inside a transaction's lookback was exported no earlier than two days before its
    # event time (staging rejects times further ahead of their export day), so the scan starts
    # from the earliest transaction of the day, however late that one was delivered.
    days_back = -(-_widest_seconds(feats) // 86400) + 2
    bound = (
        f"_partition_date BETWEEN (SELECT CAST(min(_txn_as_of) AS DATE) FROM txn) - INTERVAL {days_back} DAY"
        f" AND DATE '{day.isoformat()}'"
    )
    return _per_transaction_cte(source, feats, SOURCES[source]["table"], bound)


def _transaction_base_cte(features: tuple[Feature, ...], by_source: dict[str, list[Feature]]) -> str:
    base_cols = ["_txn.*"]
    base_cols += [_base_value(f, f"agg_{s}") for s, fs in by_source.items() for f in fs]
    base_cols += [f"CAST({f.expression} AS {f.dtype}) AS {f.name}" for f in features if f.agg == "row"]
    joins = " ".join(f"LEFT JOIN agg_{s} USING (_txn_id)" for s in by_source)
    return f"base AS (SELECT {', '.join(base_cols)} FROM _txn {joins})"


def transaction_sql(day: date, features: tuple[Feature, ...] = TRANSACTION_FEATURES) -> str:
    """SELECT producing one row per card transaction exported on ``day``, each feature as of
    just before the transaction."""
    by_source = _by_source(features)
    ctes = _transaction_ctes(day) + [_transaction_source_cte(s, fs, day) for s, fs in by_source.items()]
    ctes.append(_transaction_base_cte(features, by_source))
    out = [
        "_txn_id AS transaction_id",
        "_txn_customer_id AS customer_id",
        "_txn_as_of AS transaction_time",
        *_output_columns(features),
        f"DATE '{day.isoformat()}' AS _partition_date",
    ]
    return "WITH " + ",\n".join(ctes) + f"\nSELECT {', '.join(out)} FROM base ORDER BY transaction_id"


def transaction_columns(features: tuple[Feature, ...] = TRANSACTION_FEATURES) -> list[tuple[str, str]]:
    return [*TRANSACTION_KEY_COLUMNS, *((f.name, f.dtype) for f in published(features)), ("_partition_date", "DATE")]


# ---------------------------------------------------------------- probe points


PROBE_COLUMNS = (
    ("_txn_id", "VARCHAR"),
    ("_txn_customer_id", "VARCHAR"),
    ("_txn_as_of", "TIMESTAMP"),
    ("_txn_amount", "DOUBLE"),
    ("_txn_device_id", "VARCHAR"),
    ("_txn_ip_country", "VARCHAR"),
    ("_txn_home_country", "VARCHAR"),
)


def probe_sql(
    probes: str,
    features: tuple[Feature, ...] = TRANSACTION_FEATURES,
    relations: dict[str, str] | None = None,
) -> str:
    """The transaction features at arbitrary probe points, with the same SQL as ``transaction_sql``.

    ``probes`` is a relation with ``PROBE_COLUMNS``: one row per point (a non-NULL id, the
    customer, the as-of time and the transaction context; an event whose key equals the id is
    excluded, as a transaction excludes itself). ``relations`` maps a source to the relation its
    rows are read from (default: its staging table), e.g. staged plus streamed rows. Output: one
    row per probe, ``probe_id`` then every feature, intermediates included.
    """
    by_source = _by_source(features)
    relations = relations or {}
    ctes = [f"_txn AS (SELECT {', '.join(n for n, _ in PROBE_COLUMNS)} FROM {probes})"]
    ctes += [_per_transaction_cte(s, fs, relations.get(s, SOURCES[s]["table"])) for s, fs in by_source.items()]
    ctes.append(_transaction_base_cte(features, by_source))
    intermediates = [f.name for f in features if not f.published and f.agg != "derived"]
    out = ["_txn_id AS probe_id", *_output_columns(features), *intermediates]
    return "WITH " + ",\n".join(ctes) + f"\nSELECT {', '.join(out)} FROM base ORDER BY probe_id"
