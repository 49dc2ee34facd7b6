"""Great Expectations gates as Dagster asset checks (the Dagster side of ``gx_runner``)."""

from datetime import date

import dagster as dg

from ai_data_platform import warehouse as wh
from ai_data_platform.partitions import daily_partitions, days_in
from ai_data_platform.quality import finite
from ai_data_platform.quality.gx_days import validate_days
from ai_data_platform.quality.gx_runner import SuiteSpec, ValidationReport
from ai_data_platform.resources import WarehouseResource


def gx_check_result(table: str, reports: dict[date, ValidationReport], **result_kwargs) -> dg.AssetCheckResult:
    """One check result for the GX reports of every day in the run, naming each failure."""
    failed = {day: r for day, r in reports.items() if not r.success}
    if failed:
        lines = [
            f"{table} partition {day}: suite {r.suite} failed {r.failed} of {r.evaluated} expectations: {r.summary()}"
            for day, r in sorted(failed.items())
        ]
        message = "\n".join(lines)
    else:
        message = f"{table}: suite passed for {len(reports)} partition(s)"
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=message[:2000],
        metadata={
            "message": message,
            "partitions_validated": len(reports),
            "partitions_failed": sorted(str(d) for d in failed),
            "expectations_evaluated": sum(r.evaluated for r in reports.values()),
            "expectations_failed": sum(r.failed for r in reports.values()),
            "failures": {str(day): [o for o in r.to_dict()["outcomes"] if not o["success"]] for day, r in failed.items()},
        },
        **result_kwargs,
    )


def table_gx_check(
    asset_key: dg.AssetKey, table: str, suite: SuiteSpec, *, blocking: bool, description: str
) -> dg.AssetChecksDefinition:
    """A partitioned ``gx_suite`` check validating each day of ``table`` against ``suite`` (the days
    of a range run in one GX pass, each judged on its own: ``gx_days``), and that no floating-point
    column holds NaN or an infinity (``finite``: the failure names the column and the value)."""
    suite = finite.with_finite_values(suite)

    @dg.asset_check(
        asset=asset_key,
        name="gx_suite",
        blocking=blocking,
        partitions_def=daily_partitions,
        description=(
            f"Great Expectations suite {suite.name}: {description} No NaN or infinite value in any numeric column."
        ),
    )
    def _gx(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.get_connection() as con:
            flagged = finite.flagged_sql(finite.floating_columns(wh.table_columns(con, table)))
            reports = validate_days(
                days_in(context),
                lambda day: con.execute(
                    f"SELECT *, {flagged} AS {finite.FLAGGED_COLUMN} FROM {table} WHERE _partition_date = ?", [day]
                ).df(),
                suite,
            )
        return gx_check_result(table, reports)

    return _gx
