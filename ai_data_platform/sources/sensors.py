"""Late-data sensor: a landing file that is new or changed after its day was materialized
triggers a re-materialization of that day (re-running a partition replaces it exactly). A table
landing per region has one file per region and day: a change to any of them counts."""


from collections import defaultdict

import dagster as dg

from ai_data_platform import settings
from ai_data_platform.partitions import daily_partitions
from ai_data_platform.sources.assets import raw_key
from ai_data_platform.sources.contracts import SOURCE_TABLES
from ai_data_platform.sources.contracts import table as contract
from ai_data_platform.sources.landing import LandingZones

LATE_DATA_JOB = "nightly"


def landed_files(zones: LandingZones) -> dict[str, dict[str, float]]:
    """{day: {table: newest mtime (seconds) of its files}} over every zone's landing files that match a contract."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for t in SOURCE_TABLES:
        for path in zones.landed(t):
            mtime = path.stat().st_mtime
            out[path.stem][t.name] = max(out[path.stem].get(t.name, mtime), mtime)
    return out


def last_materialized(instance: dg.DagsterInstance, table: str, days: list[str]) -> dict[str, float]:
    """Latest materialization timestamp of raw/<table> per partition among ``days``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=raw_key(contract(table)), asset_partitions=days), limit=10_000
    ).records
    latest: dict[str, float] = {}
    for r in records:
        key = r.partition_key
        if key is not None and r.timestamp > latest.get(key, 0.0):
            latest[key] = r.timestamp
    return latest



def late_days(instance: dg.DagsterInstance, zones: LandingZones) -> dict[str, float]:
    """Days already materialized whose landing files changed afterwards: {day: newest mtime}."""
    files = landed_files(zones)
    valid = set(daily_partitions.get_partition_keys())
    days = sorted(d for d in files if d in valid)
    if not days:
        return {}
    stale: dict[str, float] = {}
    for t in SOURCE_TABLES:
        materialized = last_materialized(instance, t.name, days)
        for day in days:
            mtime = files[day].get(t.name)
            if mtime is not None and day in materialized and mtime > materialized[day]:
                stale[day] = max(stale.get(day, 0.0), mtime)
    return stale


@dg.sensor(
    name="late_landing_sensor",
    job_name=LATE_DATA_JOB,
    minimum_interval_seconds=settings.late_landing_interval_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-materializes a day whose landing files are new or changed after it was materialized (late data).",
)
def late_landing_sensor(context: dg.SensorEvaluationContext):
    zones = LandingZones.from_settings(settings.paths())
    stale = late_days(context.instance, zones)
    if not stale:
        where = ", ".join(str(root) for root in zones.roots())
        return dg.SkipReason(f"no landing file under {where} changed after its day was materialized")
    return [
        dg.RunRequest(
            run_key=f"late-data:{day}:{int(mtime * 1000)}",
            partition_key=day,
            tags={"adp/trigger": "late_landing_sensor"},
        )
        for day, mtime in sorted(stale.items())
    ]
