"""Compile the feature registry into DuckDB SQL for one as-of day.

Point in time: the row for day D uses only rows whose event time is before the end of D and
whose export day (``_partition_date``) is at most D, so data that arrives later never changes an
already-computed day. Cost follows the window: every windowed aggregate reads only the export
days that can hold events of the largest window (plus the allowed lateness), never the whole
history, and each source is scanned once with one FILTERed aggregate per feature.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from ai_data_platform.features.registry import (
    CUSTOMER_FEATURES,
    HELPER_AGGREGATES,
    MAX_LATENESS_DAYS,
    SOURCES,
    Feature,
)


def _window_cond(f: Feature, time_col: str) -> str:
    conds = [f"{time_col} >= _as_of - INTERVAL {int(f.window_days)} DAY"]
    if f.filter:
        conds.append(f"({f.filter})")
    return " AND ".join(conds)


def _aggregate(f: Feature, time_col: str) -> str:
    cond = _window_cond(f, time_col)
    col = f.column
    return {
        "count": f"count(*) FILTER (WHERE {cond})",
        "sum": f"sum({col}) FILTER (WHERE {cond})",
        "avg": f"avg({col}) FILTER (WHERE {cond})",
        "max": f"max({col}) FILTER (WHERE {cond})",
        "count_distinct": f"count(DISTINCT {col}) FILTER (WHERE {cond})",
        "active_days": f"count(DISTINCT CAST({col} AS DATE)) FILTER (WHERE {cond})",
        "days_since_last": f"date_diff('second', max({col}) FILTER (WHERE {cond}), _as_of) / 86400.0",
    }[f.agg]


def _source_cte(source: str, feats: list[Feature], day: date) -> str:
    spec = SOURCES[source]
    time_col = spec["time"]
    widest = max(f.window_days for f in feats)
    d = f"DATE '{day.isoformat()}'"
    aggs = ",\n    ".join(f"{_aggregate(f, time_col)} AS {f.name}" for f in feats)
    return (
        f"agg_{source} AS (SELECT customer_id,\n    {aggs}\n  FROM {spec['table']}, params\n"
        f"  WHERE _partition_date BETWEEN {d} - INTERVAL {widest + MAX_LATENESS_DAYS} DAY AND {d}\n"
        f"    AND {time_col} < _as_of AND {time_col} >= _as_of - INTERVAL {widest} DAY\n"
        "  GROUP BY customer_id, _as_of)"
    )


def spine_ctes(day: date) -> list[str]:
    """Customers active at the end of ``day``: known to the CRM and with a live subscription."""
    d = f"DATE '{day.isoformat()}'"
    return [
        f"params AS (SELECT {d} AS as_of_date, CAST({d} + INTERVAL 1 DAY AS TIMESTAMP) AS _as_of)",
        "cust AS (SELECT * FROM staging.customers WHERE _partition_date <= "
        f"{d} QUALIFY row_number() OVER (PARTITION BY customer_id "
        "ORDER BY updated_at DESC, _partition_date DESC, _row_number DESC) = 1)",
        "subs AS (SELECT * FROM staging.subscriptions WHERE _partition_date <= "
        f"{d} QUALIFY row_number() OVER (PARTITION BY subscription_id "
        "ORDER BY updated_at DESC, _partition_date DESC, _row_number DESC) = 1)",
        "live_sub AS (SELECT customer_id, arg_max(plan, started_at) AS plan, arg_max(mrr, started_at) AS mrr "
        "FROM subs, params WHERE started_at < _as_of AND (cancelled_at IS NULL OR cancelled_at >= _as_of) "
        "GROUP BY customer_id)",
        "spine AS (SELECT c.customer_id, c.signup_at, c.marketing_consent, s.plan, s.mrr, p.as_of_date, p._as_of "
        "FROM cust c JOIN live_sub s USING (customer_id), params p WHERE c.signup_at < p._as_of)",
    ]


def customer_daily_sql(day: date, features: tuple[Feature, ...] = CUSTOMER_FEATURES) -> str:
    """SELECT producing one row per active customer with every feature as of the end of ``day``."""
    by_source: dict[str, list[Feature]] = defaultdict(list)
    for f in (*features, *HELPER_AGGREGATES):
        if f.source is not None:
            by_source[f.source].append(f)
    ctes = spine_ctes(day) + [_source_cte(s, fs, day) for s, fs in sorted(by_source.items())]
    base_cols = ["spine.customer_id", "spine.as_of_date"]
    for s, fs in sorted(by_source.items()):
        for f in fs:
            value = f"agg_{s}.{f.name}"
            if f.default is not None:
                value = f"coalesce({value}, {f.default})"
            base_cols.append(f"CAST({value} AS {f.dtype}) AS {f.name}")
    for f in features:
        if f.agg == "profile":
            base_cols.append(f"CAST({f.expression} AS {f.dtype}) AS {f.name}")
    joins = " ".join(f"LEFT JOIN agg_{s} USING (customer_id)" for s in sorted(by_source))
    ctes.append(f"base AS (SELECT {', '.join(base_cols)} FROM spine {joins})")
    out = ["customer_id"]
    for f in features:
        if f.agg == "derived":
            out.append(f"CAST({f.expression} AS {f.dtype}) AS {f.name}")
        else:
            out.append(f.name)
    out.append("as_of_date AS _partition_date")
    return "WITH " + ",\n".join(ctes) + f"\nSELECT {', '.join(out)} FROM base ORDER BY customer_id"


def customer_daily_columns(features: tuple[Feature, ...] = CUSTOMER_FEATURES) -> list[tuple[str, str]]:
    return [("customer_id", "VARCHAR"), *((f.name, f.dtype) for f in features), ("_partition_date", "DATE")]
