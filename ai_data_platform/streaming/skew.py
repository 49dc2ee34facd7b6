"""Online/offline skew: materialized online values against the compiled SQL over the warehouse.

For a sample of customers with materialized values, each value's as-of time and the customer's
home country become a probe point; ``features.compile.probe_sql`` evaluates the same
declarations over the warehouse's rows (staged + streamed, ``bootstrap.source_relation``) at
those points, and every online feature is compared (floats to 1e-9 relative). A mismatch names
the feature, the customer, both values and the as-of time. Plain functions, no Dagster.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from ai_data_platform.features import compile as fc
from ai_data_platform.streaming.bootstrap import source_relation, warehouse_coverage
from ai_data_platform.streaming.online_features import ONLINE, FeatureInterpreter
from ai_data_platform.streaming.online_store import OnlineStore

REL_TOLERANCE = 1e-9
STREAMED = ("events",)  # sources the consumer keeps current; the others come from the bootstrap


@dataclass
class SkewReport:
    compared_customers: int = 0
    compared_values: int = 0
    not_yet_landed: int = 0  # customers whose values are newer than the warehouse's coverage
    mismatches: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches

    def describe(self) -> str:
        if self.passed:
            return (f"{self.compared_values} online values of {self.compared_customers} customers equal their offline "
                    f"recomputation ({self.not_yet_landed} customers' values are newer than the warehouse and were not compared)")
        return f"{len(self.mismatches)} of {self.compared_values} online values differ from offline: " + "; ".join(self.mismatches[:20])


def sample(store: OnlineStore, size: int) -> list[str]:
    """A deterministic spread of customers: the ``size`` smallest by hash of id."""
    ids = store.customer_ids()
    return sorted(ids, key=lambda c: hashlib.sha256(c.encode()).hexdigest())[:size]


def _equal(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=REL_TOLERANCE, abs_tol=REL_TOLERANCE)
    return a == b


def compare(con: duckdb.DuckDBPyConnection, store: OnlineStore, customers: list[str],
            interpreter: FeatureInterpreter = ONLINE) -> SkewReport:
    report = SkewReport()
    landed = warehouse_coverage(con, interpreter.sources)
    known = store.coverage()

    def comparable(as_of: datetime) -> bool:
        # streamed sources: the warehouse has landed every record the value saw; batch-only
        # sources: the store was bootstrapped from the warehouse's newest export
        return all(
            landed.get(s) is not None and (as_of <= landed[s] if s in STREAMED else known.get(s, datetime.min) >= landed[s])
            for s in interpreter.sources
        )

    materialized = {}
    for c, (as_of, values) in store.values(customers).items():
        if comparable(as_of):
            materialized[c] = (as_of, values)
        else:
            report.not_yet_landed += 1
    if not materialized:
        return report
    states = store.states(list(materialized))
    probes = [(f"probe:{c}", c, as_of, states[c].home_country) for c, (as_of, _) in sorted(materialized.items())]
    con.execute(f"CREATE OR REPLACE TEMP TABLE _skew_probes ({', '.join(f'{n} {t}' for n, t in fc.PROBE_COLUMNS)})")
    con.executemany("INSERT INTO _skew_probes VALUES (?, ?, ?, NULL, NULL, NULL, ?)", probes)
    relations = {s: source_relation(con, s, interpreter.needed_columns(s)) for s in interpreter.sources}
    relations = {s: r for s, r in relations.items() if r}
    features = tuple(f for f in interpreter.features if f.source is None or f.source in relations)
    cur = con.execute(fc.probe_sql("_skew_probes", features, relations))
    cols = [d[0] for d in cur.description]
    offline = {row[0].removeprefix("probe:"): dict(zip(cols, row)) for row in cur.fetchall()}
    names = [n for n in interpreter.customer_level() if n in cols]
    for cid, (as_of, values) in sorted(materialized.items()):
        report.compared_customers += 1
        for name in names:
            if name not in values:
                continue
            report.compared_values += 1
            if not _equal(values[name], offline[cid][name]):
                report.mismatches.append(
                    f"{name} of customer {cid} as of {as_of.isoformat()}: online={values[name]!r} offline={offline[cid][name]!r}"
                )
    con.execute("DROP TABLE IF EXISTS _skew_probes")
    return report


def skew_report(con: duckdb.DuckDBPyConnection, store: OnlineStore, sample_size: int = 200) -> SkewReport:
    return compare(con, store, sample(store, sample_size))
