"""Quality gates on staging: a blocking Great Expectations suite per table, and a blocking
referential-integrity suite across every table that references a customer.

Both run per partition; in a single-run backfill they validate every day of the range and report
each failing day. A failed gate stops everything downstream of it in the run.
"""


from datetime import date

import dagster as dg

from ai_data_platform.partitions import daily_partitions, days_in
from ai_data_platform.quality.checks import gx_check_result
from ai_data_platform.quality.gx_days import validate_days
from ai_data_platform.quality.suites import staging_suite
from ai_data_platform.quality.tolerances import MAX_UNKNOWN_CUSTOMER_RATE, exceeds
from ai_data_platform.resources import WarehouseResource
from ai_data_platform.sources import staging
from ai_data_platform.sources import staging_sql as sql
from ai_data_platform.sources.assets import staging_key
from ai_data_platform.sources.contracts import SOURCE_TABLES, SourceTable


def build_staging_gate(t: SourceTable) -> dg.AssetChecksDefinition:
    suite = staging_suite(t, rows=1_000_000)  # the large-partition form, for the description

    @dg.asset_check(
        asset=staging_key(t),
        name="gx_suite",
        blocking=True,
        partitions_def=daily_partitions,
        description=(
            f"Great Expectations suite {suite.name}: {len(suite.expectations)} expectations on the "
            "partition's parsed rows before quarantine (not null, unique key, accepted values, "
            "non-negative amounts, well-formed records), each tolerating at most 5% failures "
            "(plus binomial noise in a small partition)."
        ),
    )
    def _gate(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
        with warehouse.get_connection() as con:
            reports = validate_days(
                days_in(context),
                lambda day: staging.candidate_rows(con, t, day, columns=suite.columns),
                lambda day, frame: staging_suite(t, rows=len(frame)),
            )
        return gx_check_result(sql.staging_table(t), reports)

    return _gate


REFERENCING_TABLES = [t for t in SOURCE_TABLES if t.customer_ref is not None]


def unknown_customer_rates(con, t: SourceTable, lo: date, hi: date) -> dict[date, tuple[int, int]]:
    """Per day: (rows referencing an unknown customer, rows judged) for one table."""
    rows = con.execute(
        f"""
        WITH s AS (SELECT _partition_date d, count(*) n FROM {sql.staging_table(t)}
                   WHERE _partition_date BETWEEN ? AND ? GROUP BY 1),
             q AS (SELECT _partition_date d, count(*) n, count(*) FILTER (WHERE rule = 'known_customer') u
                   FROM {sql.quarantine_table(t)} WHERE _partition_date BETWEEN ? AND ? GROUP BY 1)
        SELECT coalesce(s.d, q.d), coalesce(q.u, 0), coalesce(s.n, 0) + coalesce(q.n, 0)
        FROM s FULL OUTER JOIN q ON s.d = q.d
        """,
        [lo, hi, lo, hi],
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


@dg.multi_asset_check(
    name="referential_integrity",
    specs=[
        dg.AssetCheckSpec(
            "referential_integrity",
            asset=staging_key(t),
            blocking=True,
            partitions_def=daily_partitions,
            description=(
                f"At most {MAX_UNKNOWN_CUSTOMER_RATE:.0%} of the partition's rows (plus binomial noise "
                "in a small partition) may reference a customer unknown to the CRM as of that day "
                "(those rows are quarantined)."
            ),
        )
        for t in REFERENCING_TABLES
    ],
    can_subset=True,
)
def referential_integrity(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    days = days_in(context)
    selected = context.selected_asset_check_keys
    with warehouse.get_connection() as con:
        staging.ensure_all_tables(con, REFERENCING_TABLES)
        for t in REFERENCING_TABLES:
            key = dg.AssetCheckKey(staging_key(t), "referential_integrity")
            if key not in selected:
                continue
            rates = unknown_customer_rates(con, t, min(days), max(days))
            failing = {d: (u, n) for d, (u, n) in rates.items() if exceeds(u, n, MAX_UNKNOWN_CUSTOMER_RATE)}
            if failing:
                message = "; ".join(
                    f"{sql.staging_table(t)} partition {d}: {u} of {n} rows ({u / n:.1%}) reference "
                    f"unknown customers via {t.customer_ref}, above the {MAX_UNKNOWN_CUSTOMER_RATE:.0%} tolerance"
                    for d, (u, n) in sorted(failing.items())
                )
            else:
                worst = max(((u / n if n else 0.0) for u, n in rates.values()), default=0.0)
                message = f"{sql.staging_table(t)}: unknown-customer rate at most {worst:.2%} over {len(rates)} partition(s)"
            yield dg.AssetCheckResult(
                asset_key=staging_key(t),
                check_name="referential_integrity",
                passed=not failing,
                description=message[:2000],
                metadata={
                    "message": message,
                    "unknown_by_day": {str(d): {"unknown": u, "rows": n} for d, (u, n) in sorted(rates.items())},
                },
            )


staging_gates = [build_staging_gate(t) for t in SOURCE_TABLES]
source_checks = [*staging_gates, referential_integrity]
