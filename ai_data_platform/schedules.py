"""The nightly job and its schedule: every daily asset, yesterday's partition, at 02:00 UTC."""


import dagster as dg

from ai_data_platform.partitions import daily_partitions

nightly_job = dg.define_asset_job(
    name="nightly",
    selection=dg.AssetSelection.all(),
    partitions_def=daily_partitions,
    description="Materializes one day of every asset: raw → staging → Customer 360 and features, with their checks.",
    tags={"adp/job": "nightly"},
)

nightly_schedule = dg.build_schedule_from_partitioned_job(
    nightly_job,
    name="nightly_schedule",
    hour_of_day=2,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="02:00 UTC: materialize yesterday's partition of every daily asset.",
)
