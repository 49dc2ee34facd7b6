"""Nightly bootstrap / repair of the online store from the warehouse. Plain functions, no Dagster.

The store is (re)built from what the warehouse holds within the online lookback:

* the staged rows of every online source (``staging.events``, ``staging.payments``) plus the
  streamed events landed in ``stream.events`` and not yet staged, de-duplicated by key (a staged
  row wins over its streamed copy: it is the batch's judgement of the same event);
* each customer's home country: the latest CRM row (``staging.customers``);
* per source, coverage: the end of the newest staged export day (events: or later, up to the
  stream sink's last landed receipt).

Rows are upserted by key (``bootstrap`` replaces a same-key row, so a corrupted row is repaired),
nothing is deleted (stream rows newer than the warehouse stay), coverage only rises: running it
twice gives the same store. Afterwards every customer's values are re-materialized. The erased
subjects of ``meta.erased_subjects`` are recorded in the store too (a store created, or moved to
Redis, after an erasure still drops their events).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from ai_data_platform import warehouse as wh
from ai_data_platform.features.registry import SOURCES
from ai_data_platform.governance import suppression
from ai_data_platform.streaming import warehouse_sink
from ai_data_platform.streaming.consumer import materialize, utc_now
from ai_data_platform.streaming.online_features import ONLINE, FeatureInterpreter
from ai_data_platform.streaming.online_store import OnlineStore, state_row


@dataclass
class BootstrapResult:
    rows_read: int
    rows_kept: int
    customers: int
    coverage: dict[str, datetime]
    materialized: int


def source_relation(con: duckdb.DuckDBPyConnection, source: str, columns: list[str]) -> str:
    """SQL of a source's rows in the warehouse: staged, plus streamed events not staged yet,
    one row per key (the staged one first)."""
    spec = SOURCES[source]
    cols = ", ".join(wh.quote(c) for c in ["customer_id", *columns])
    parts = [f"SELECT {cols}, 0 AS _origin FROM {spec['table']}"] if wh.table_exists(con, spec["table"]) else []
    if source == "events" and wh.table_exists(con, warehouse_sink.EVENTS_TABLE):
        parts.append(f"SELECT {cols}, 1 AS _origin FROM {warehouse_sink.EVENTS_TABLE}")
    if not parts:
        return ""
    return (f"(SELECT {cols} FROM ({' UNION ALL '.join(parts)}) "
            f"QUALIFY row_number() OVER (PARTITION BY {wh.quote(spec['key'])} ORDER BY _origin) = 1)")


def home_countries_sql(as_of_param: bool = False) -> str:
    """Latest CRM country per customer (loaded by ``?`` when ``as_of_param``)."""
    where = "WHERE _available_at <= ?" if as_of_param else ""
    return ("SELECT customer_id, arg_max(country, (updated_at, _available_at, _row_number)) "
            f"FROM staging.customers {where} GROUP BY customer_id")


def warehouse_coverage(con: duckdb.DuckDBPyConnection, sources: list[str]) -> dict[str, datetime]:
    out = {}
    for source in sources:
        table = SOURCES[source]["table"]
        if wh.table_exists(con, table):
            (day,) = con.execute(f"SELECT max(_partition_date) FROM {table}").fetchone()
            if day is not None:
                out[source] = datetime.combine(day, datetime.min.time()) + (datetime(1970, 1, 2) - datetime(1970, 1, 1))
    if "events" in sources and wh.table_exists(con, warehouse_sink.OFFSETS):
        (landed,) = con.execute(f"SELECT max(complete_at) FROM {warehouse_sink.OFFSETS}").fetchone()
        if landed is not None and landed > out.get("events", datetime.min):
            out["events"] = landed
    return out


def bootstrap(con: duckdb.DuckDBPyConnection, store: OnlineStore, interpreter: FeatureInterpreter = ONLINE,
              now: datetime | None = None) -> BootstrapResult:
    now = now or utc_now()
    coverage = warehouse_coverage(con, interpreter.sources)
    rows, read = [], 0
    for source in interpreter.sources:
        columns = interpreter.needed_columns(source)
        relation = source_relation(con, source, columns)
        if not relation:
            continue
        # Values are materialized as of the coverage (the end of the newest loaded day), which can
        # lie hours or days before now: the lookback starts from the earlier of the two.
        since = min(now, coverage.get(source, now)) - interpreter.widest_lookback(source)
        cur = con.execute(f"SELECT * FROM {relation} WHERE {wh.quote(SOURCES[source]['time'])} >= ?", [since])
        names = [d[0] for d in cur.description]
        while batch := cur.fetchmany(50_000):
            for values in batch:
                read += 1
                row = state_row(source, dict(zip(names, values)), interpreter)
                if row is not None:
                    rows.append(row)
    customers = dict(con.execute(home_countries_sql()).fetchall()) if wh.table_exists(con, "staging.customers") else {}
    store.add_erased_subjects(suppression.customer_id_hashes(con))
    store.bootstrap(rows, customers, coverage)
    materialized = 0
    while n := materialize(store, interpreter, limit=1000):
        materialized += n
    return BootstrapResult(read, len(rows), len(customers), coverage, materialized)
