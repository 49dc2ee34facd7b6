"""The code location: every asset, check, job, schedule and sensor, with this environment's resources."""

import dagster as dg

from ai_data_platform.features.assets import customer_daily, customer_daily_gx, transaction, transaction_gx
from ai_data_platform.marts.assets import customer_360, customer_360_gx
from ai_data_platform.ml.assets import ml_assets
from ai_data_platform.ml.checks import ml_checks
from ai_data_platform.observability.sensors import alert_sensor
from ai_data_platform.resources import resources_for_environment
from ai_data_platform.schedules import jobs, schedules
from ai_data_platform.sources.assets import raw_assets, staging_assets
from ai_data_platform.sources.checks import source_checks
from ai_data_platform.sources.sensors import late_landing_sensor
from ai_data_platform.streaming.assets import customer_features, online_bootstrap_job, online_bootstrap_schedule
from ai_data_platform.streaming.checks import online_offline_skew

defs = dg.Definitions(
    assets=[*raw_assets, *staging_assets, customer_360, customer_daily, transaction, *ml_assets, customer_features],
    asset_checks=[*source_checks, customer_360_gx, customer_daily_gx, transaction_gx, *ml_checks, online_offline_skew],
    jobs=[*jobs, online_bootstrap_job],
    schedules=[*schedules, online_bootstrap_schedule],
    sensors=[late_landing_sensor, alert_sensor],
    resources=resources_for_environment(),
    # One DuckDB file takes one writer at a time: steps of a run execute in one process.
    executor=dg.in_process_executor,
)
