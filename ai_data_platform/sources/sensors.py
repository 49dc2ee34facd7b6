"""Late-data sensor: a landing file that is new or changed after its day was materialized
triggers a re-materialization of that day (re-running a partition replaces it exactly)."""


from collections import defaultdict
from pathlib import Path

import dagster as dg

from ai_data_platform import settings
from ai_data_platform.partitions import daily_partitions
from ai_data_platform.sources.assets import raw_key
from ai_data_platform.sources.contracts import SOURCE_TABLES
from ai_data_platform.sources.contracts import table as contract

LATE_DATA_JOB = "nightly"


def landed_files(landing_root: Path) -> dict[str, dict[str, float]]:
    """{day: {table: file mtime (seconds)}} for every landing file that matches a contract."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for t in SOURCE_TABLES:
        folder = t.landing_dir(landing_root)
        if not folder.is_dir():
            continue
        for path in folder.glob(f"*.{t.extension}"):
            out[path.stem][t.name] = path.stat().st_mtime
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



def late_days(instance: dg.DagsterInstance, landing_root: Path) -> dict[str, float]:
    """Days already materialized whose landing files changed afterwards: {day: newest mtime}."""
    files = landed_files(landing_root)
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
    landing_root = settings.paths().landing
    stale = late_days(context.instance, landing_root)
    if not stale:
        return dg.SkipReason(f"no landing file under {landing_root} changed after its day was materialized")
    return [
        dg.RunRequest(
            run_key=f"late-data:{day}:{int(mtime * 1000)}",
            partition_key=day,
            tags={"adp/trigger": "late_landing_sensor"},
        )
        for day, mtime in sorted(stale.items())
    ]
