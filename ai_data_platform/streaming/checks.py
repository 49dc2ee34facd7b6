"""The online/offline skew check on ``online/customer_features`` (thin wiring around ``skew.py``)."""


import dagster as dg

from ai_data_platform import settings
from ai_data_platform.resources import WarehouseResource
from ai_data_platform.streaming import backends
from ai_data_platform.streaming.assets import KEY
from ai_data_platform.streaming.skew import skew_report


@dg.asset_check(
    asset=KEY,
    name="online_offline_skew",
    blocking=True,
    description=(
        "For a sample of customers (ADP_SKEW_SAMPLE, default 200), recomputes each materialized online "
        "value offline with the compiled DuckDB SQL over the warehouse as of the value's as-of time; "
        "any difference fails, naming the feature, the customer and both values."
    ),
)
def online_offline_skew(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    store = backends.online_store()
    with warehouse.get_connection() as con:
        report = skew_report(con, store, settings.env_int("ADP_SKEW_SAMPLE", 200, minimum=1))
    return dg.AssetCheckResult(
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=report.describe(),
        metadata={
            "message": report.describe(),
            "compared_customers": report.compared_customers,
            "compared_values": report.compared_values,
            "not_yet_landed": report.not_yet_landed,
            "mismatches": report.mismatches[:50],
        },
    )
