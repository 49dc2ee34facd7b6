"""The code location: every asset, check, job, schedule and sensor, with this environment's resources."""

import dagster as dg

from ai_data_platform.features.assets import customer_daily, customer_daily_gx, transaction, transaction_gx
from ai_data_platform.governance.assets import AUDIT_LOG, build_role_views_asset
from ai_data_platform.governance.audit_sensor import audit_lineage_sensor
from ai_data_platform.governance.lifecycle_jobs import lifecycle_jobs, lifecycle_schedules
from ai_data_platform.governance.pii_checks import pii_gates
from ai_data_platform.governance.residency_checks import residency_check
from ai_data_platform.marts.assets import customer_360, customer_360_gx
from ai_data_platform.ml.assets import ml_assets
from ai_data_platform.ml.checks import ml_checks
from ai_data_platform.observability.sensors import alert_sensor
from ai_data_platform.private_files import restrict_umask
from ai_data_platform.resources import resources_for_environment
from ai_data_platform.schedules import jobs, schedules
from ai_data_platform.sources.assets import raw_assets, staging_assets
from ai_data_platform.sources.checks import source_checks
from ai_data_platform.sources.sensors import late_landing_sensor
from ai_data_platform.streaming.assets import customer_features, online_bootstrap_job, online_bootstrap_schedule
from ai_data_platform.streaming.checks import online_offline_skew

# What libraries create in this code location's processes (DuckDB's and SQLite's logs, Dagster's
# storage) is owner-only too; the platform's own files are created owner-only whatever the umask.
restrict_umask()

domain_assets = [*raw_assets, *staging_assets, customer_360, customer_daily, transaction, *ml_assets]
assets = [*domain_assets, build_role_views_asset(domain_assets), AUDIT_LOG, customer_features]

defs = dg.Definitions(
    assets=assets,
    asset_checks=[
        *source_checks, customer_360_gx, customer_daily_gx, transaction_gx, *ml_checks,
        residency_check, *pii_gates(domain_assets), online_offline_skew,
    ],
    jobs=[*jobs, *lifecycle_jobs, online_bootstrap_job],
    schedules=[*schedules, *lifecycle_schedules, online_bootstrap_schedule],
    sensors=[late_landing_sensor, alert_sensor, audit_lineage_sensor],
    resources=resources_for_environment(),
    # One DuckDB file takes one writer at a time: steps of a run execute in one process.
    executor=dg.in_process_executor,
)
