"""Benchmark data for the issue-3 benchmarks: 100k customers x 90 days, staged and featurized once.

``prepare(workdir)`` leaves in ``workdir``:

- ``landing/``: the simulator's files (generated when missing or made with other arguments);
- ``warehouse.duckdb``: raw and staging for every day (loaded in bulk with the platform's own
  ``raw_load`` and ``staging`` functions, the SQL the assets run), and ``features.customer_daily``
  for the last ``FEATURE_DAYS`` days;
- ``dagster_home/``: an instance that knows those partitions are materialized (runless
  materialization events), so the platform's training-set asset sees its label window loaded;
- ``pit/``: the inputs the point-in-time join benchmarks share — ``customer_daily.parquet`` (every
  feature row with its as-of timestamp) and ``churn_entities.parquet`` (the churn version's
  (customer, snapshot) rows with their as-of timestamp and label).

Setup is recorded in ``pit_setup.json`` and skipped when its arguments match. Building the same
history through Dagster day by day would take ~15 minutes at this size; the bulk load runs the
same SQL functions, so the tables are identical.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, timedelta
from pathlib import Path

END = date(2026, 11, 20)
FEATURE_DAYS = 60  # features/customer_daily partitions built (enough for every churn snapshot)
CHUNK_DAYS = 15


def churn_version(end: date = END) -> date:
    """The newest churn version whose 30-day label window has closed by ``end``."""
    return end - timedelta(days=30)


def bench_env(work: Path) -> dict[str, str]:
    return dict(os.environ, ADP_DATA_DIR=str(work), ADP_PARTITION_START="2026-01-01", PYTHONWARNINGS="ignore")


def _generate_if_needed(work: Path, customers: int, days: int) -> None:
    from ai_data_platform import settings
    from ai_data_platform.sources.landing import LandingZones
    from ai_data_platform.sources.simulator import GENERATOR_VERSION, generate

    manifest_path = work / "landing" / "manifest.json"
    wanted = {"customers": customers, "days": days, "end": END.isoformat()}
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    have = manifest.get("args", {})
    if manifest.get("generator_version") != GENERATOR_VERSION or any(have.get(k) != v for k, v in wanted.items()):
        print(f"generating {customers} customers x {days} days ...", flush=True)
        generate(LandingZones.from_settings(settings.Paths(work)), customers=customers, days=days, end=END, seed=1)


def _record_materializations(work: Path, days: list[date], feature_days: list[date]) -> None:
    import dagster as dg

    from ai_data_platform import settings
    from ai_data_platform.sources.contracts import SOURCE_TABLES

    home = settings.ensure_dagster_home(settings.paths())
    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        for t in SOURCE_TABLES:
            for layer in ("raw", "staging"):
                for d in days:
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(asset_key=[layer, t.name], partition=d.isoformat())
                    )
        for d in feature_days:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=["features", "customer_daily"], partition=d.isoformat())
            )


def _export_pit_inputs(con, out: Path, version: date) -> dict:
    """The shared inputs of the point-in-time join benchmarks (see the module docstring)."""
    from ai_data_platform.ml import training_sql

    out.mkdir(parents=True, exist_ok=True)
    features = ", ".join(training_sql.churn_feature_columns())
    con.execute(
        f"COPY (SELECT customer_id, CAST(_partition_date + INTERVAL 1 DAY AS TIMESTAMP) AS feature_ts, {features} "
        f"FROM features.customer_daily ORDER BY _partition_date, customer_id) TO '{out / 'customer_daily.parquet'}' (FORMAT parquet)"
    )
    label = training_sql.CHURN.label
    con.execute(
        f"COPY (SELECT customer_id, CAST(snapshot_date + INTERVAL 1 DAY AS TIMESTAMP) AS event_timestamp, snapshot_date, {label} "
        f"FROM ({training_sql.churn_sql(version)}) ORDER BY snapshot_date, customer_id) "
        f"TO '{out / 'churn_entities.parquet'}' (FORMAT parquet)"
    )
    rows = con.execute(f"SELECT count(*) FROM '{out / 'churn_entities.parquet'}'").fetchone()[0]
    feature_rows = con.execute(f"SELECT count(*) FROM '{out / 'customer_daily.parquet'}'").fetchone()[0]
    return {"entity_rows": rows, "feature_rows": feature_rows, "version": version.isoformat()}


def prepare(work: Path, customers: int = 100_000, days: int = 90) -> dict:
    """Generate, stage and featurize the benchmark history in ``work`` (skipped when done)."""
    work.mkdir(parents=True, exist_ok=True)
    os.environ.update({k: v for k, v in bench_env(work).items() if k.startswith("ADP_")})
    from ai_data_platform.sources.simulator import GENERATOR_VERSION

    stamp = work / "pit_setup.json"
    wanted = {"customers": customers, "days": days, "end": END.isoformat(), "generator_version": GENERATOR_VERSION,
              "feature_days": FEATURE_DAYS}
    if stamp.exists() and json.loads(stamp.read_text()).get("args") == wanted:
        return json.loads(stamp.read_text())

    from ai_data_platform import settings, warehouse
    from ai_data_platform.features.compile import customer_daily_sql
    from ai_data_platform.sources import raw_load, staging
    from ai_data_platform.sources.contracts import SOURCE_TABLES
    from ai_data_platform.sources.landing import LandingZones

    _generate_if_needed(work, customers, days)
    for stale in ("warehouse.duckdb", "warehouse.duckdb.wal"):
        (work / stale).unlink(missing_ok=True)
    for store in settings.region_store_paths(settings.Paths(work)).values():  # the regional personal data stores
        for stale in (store, store.with_name(store.name + ".wal")):  # (not the regional landing zones beside them)
            stale.unlink(missing_ok=True)
    all_days = [END - timedelta(days=days - 1 - i) for i in range(days)]
    feature_days = all_days[-FEATURE_DAYS:]
    timings: dict[str, float] = {}
    con = warehouse.connect(work / "warehouse.duckdb")
    warehouse.ensure_schemas(con)
    from ai_data_platform.governance.stores import PersonalData

    personal = PersonalData.from_settings(settings.Paths(work))
    try:
        t = time.perf_counter()
        for i in range(0, len(all_days), CHUNK_DAYS):
            chunk = all_days[i : i + CHUNK_DAYS]
            for tbl in SOURCE_TABLES:
                raw_load.load_days(con, tbl, LandingZones.from_settings(settings.Paths(work)), chunk, personal)
            for tbl in SOURCE_TABLES:
                staging.stage_days(con, tbl, chunk, personal)
            print(f"staged {chunk[0]}..{chunk[-1]}", flush=True)
        timings["raw_and_staging_seconds"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        for i in range(0, len(feature_days), 10):
            warehouse.replace_partitions(con, "features.customer_daily", feature_days[i : i + 10], customer_daily_sql)
        timings["customer_daily_seconds"] = round(time.perf_counter() - t, 1)
        print(f"features/customer_daily for {feature_days[0]}..{feature_days[-1]}", flush=True)
        con.execute("CHECKPOINT")
        exported = _export_pit_inputs(con, work / "pit", churn_version())
        counts = {
            t.name: con.execute(f"SELECT count(*) FROM staging.{t.name}").fetchone()[0] for t in SOURCE_TABLES
        }
    finally:
        con.close()
    _record_materializations(work, all_days, feature_days)
    result = {"args": wanted, "timings": timings, "staging_rows": counts, **exported}
    stamp.write_text(json.dumps(result, indent=2) + "\n")
    return result
