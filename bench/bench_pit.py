"""Benchmark (issue 3): the feature partition and the point-in-time training set at 100k x 90 days.

Side by side in one run, each measured run a fresh subprocess (so peak memory is its own), runs
interleaved, medians of ``--runs``:

Library imports are not timed on either side (duckdb, pandas and pyarrow for the bare runs; dagster
and the platform's definitions for the platform runs), with one exception measured both ways:
Great Expectations, which the platform imports on first use. Each platform kind runs in two fresh
processes: one where GX is imported inside the first run (as a fresh Dagster run worker imports it),
one where it is imported before the clock (its import time reported apart). In each, the first run
is "cold" (Dagster's first-run costs, the GX context, DuckDB's cold buffer pool) and the same run
again is "warm" (as every partition after the first of a backfill and every gate after the first
in a nightly run find it).

1. one ``features/customer_daily`` partition (the newest day):
   - platform: ``dg.materialize`` of the asset and its checks (the blocking GX gate) through Dagster;
   - bare:     the same compiled SQL through ``warehouse.replace_partitions``, no Dagster, no checks;
   - pandas:   ``pandas_features.customer_daily`` (groupby-rolling over the same staged rows, loaded
     into memory first; the load is reported apart and not counted). Its values are compared with
     the platform's, every feature, every customer: a baseline that computes something else fails
     the benchmark.
2. one churn training-set version (the point-in-time join of the four weekly snapshots with the
   30-day label):
   - platform: ``dg.materialize`` of ``ml/churn_training_set`` and its checks (the version directory
     is removed first, so every run builds and writes it: join, label, GX validation, Parquet,
     content hash, manifest, the blocking dataset_quality gate);
   - join only: the platform's training-set SQL (``training_sql.churn_sql``) into a pandas
     DataFrame and, in another fresh process (the first query of a process also pays for reading
     the blocks into DuckDB's buffer pool), into an Arrow table — the point-in-time join and label
     alone, what Feast's ``get_historical_features(...).to_df()`` / ``.to_arrow()`` return. pandas
     and pyarrow are imported before the clock starts, as they are in Feast's process;
   - bare:     a hand-written DuckDB ``ASOF JOIN`` of the same entity rows to
     ``features.customer_daily``, with the same label, written to Parquet. Its rows are compared
     with the platform's version.
   Feast 0.67 on the same inputs runs from ``make bench-feast`` (bench_feast.py, its own venv).

Setup (generate, bulk stage, 60 feature partitions, exports for Feast) is done once by
``pit_data.prepare`` and reused. Results merge into bench/results.json under "pit".

    python bench/bench_pit.py [--workdir data/bench] [--runs 3] [--setup-only]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from child import run_snippet  # noqa: E402
from pit_data import END, bench_env, churn_version, prepare  # noqa: E402
from results_file import record  # noqa: E402

_DAGSTER_PRELUDE = r"""
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
import dagster as dg
from ai_data_platform import settings
from ai_data_platform.definitions import defs
from ai_data_platform.resources import build_resources
os.environ["DAGSTER_HOME"] = str(settings.ensure_dagster_home(settings.paths()))

def step_seconds(instance, run_id):
    starts, out = {}, {}
    for e in instance.all_logs(run_id):
        kind = e.dagster_event.event_type_value if e.dagster_event else None
        if kind == "STEP_START":
            starts[e.step_key] = e.timestamp
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and e.step_key in starts:
            out[e.step_key] = round(e.timestamp - starts[e.step_key], 3)
    return out

def materialize(instance, key, day):
    t = time.perf_counter()
    r = dg.materialize([*defs.assets, *defs.asset_checks], selection=dg.AssetSelection.assets(key),
                       partition_key=day, resources=build_resources(settings.paths()), instance=instance,
                       raise_on_error=False)
    seconds = time.perf_counter() - t
    checks = {e.check_name: e.passed for e in r.get_asset_check_evaluations()}
    return {"seconds": seconds, "ok": r.success and all(checks.values()), "checks": checks,
            "steps": step_seconds(instance, r.run_id)}

def measure(key, day, reset=lambda: None):
    # libraries "lazy": GX is imported inside the first run, as a fresh run worker does (the platform
    # imports it on first use); "imported": GX is imported before the clock starts, as duckdb is for
    # the bare run and dagster and the definitions are for both. cold: the first run in the process
    # (Dagster's first-run costs, the GX context, DuckDB's cold buffer pool); warm: the same run
    # again, as every partition after the first of a backfill and every gate after the first of a
    # nightly run find it
    import_seconds = None
    if sys.argv[2] == "imported":
        from ai_data_platform.quality import gx_runner
        t = time.perf_counter()
        gx_runner.import_gx()
        import_seconds = time.perf_counter() - t
    with dg.DagsterInstance.get() as instance:
        reset()
        cold = materialize(instance, key, day)
        reset()
        warm = materialize(instance, key, day)
    print(json.dumps(cold | {"warm_seconds": warm["seconds"], "warm_steps": warm["steps"],
                             "gx_import_seconds": import_seconds, "ok": cold["ok"] and warm["ok"]}))
"""

FEATURES_PLATFORM = _DAGSTER_PRELUDE + r"""
measure(dg.AssetKey(["features", "customer_daily"]), sys.argv[1])
"""

FEATURES_BARE = r"""
import json, sys, time
from datetime import date
from ai_data_platform import settings, warehouse
from ai_data_platform.features.compile import customer_daily_sql
day = date.fromisoformat(sys.argv[1])
t = time.perf_counter()
con = warehouse.connect(settings.paths().warehouse)
rows = warehouse.replace_partitions(con, "features.customer_daily", [day], customer_daily_sql)[day]
con.close()
print(json.dumps({"seconds": time.perf_counter() - t, "rows": rows}))
"""

FEATURES_PANDAS = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
from datetime import date
import numpy as np
sys.path.insert(0, sys.argv[2])
import pandas_features
from ai_data_platform import settings, warehouse
from ai_data_platform.features.compile import customer_daily_columns
from ai_data_platform.features.registry import MAX_LATENESS_DAYS, max_window_days
day = date.fromisoformat(sys.argv[1])
con = warehouse.connect(settings.paths().warehouse, read_only=True)
t = time.perf_counter()
frames = pandas_features.load_inputs(con, day, max_window_days() + MAX_LATENESS_DAYS)
load_seconds = time.perf_counter() - t
t = time.perf_counter()
ours = pandas_features.customer_daily(frames, day)
seconds = time.perf_counter() - t
platform = con.execute("SELECT * FROM features.customer_daily WHERE _partition_date = ? ORDER BY customer_id", [day]).df()
con.close()
ours = ours.sort_values("customer_id").reset_index(drop=True)
names = [n for n, _ in customer_daily_columns() if n not in ("customer_id", "_partition_date")]
mismatched = {}
if list(ours.customer_id) != list(platform.customer_id):
    mismatched["customer_id"] = abs(len(ours) - len(platform)) or 1
else:
    for n in names:
        a, b = ours[n].astype("float64").to_numpy(), platform[n].astype("float64").to_numpy()
        bad = ~(np.isclose(a, b, rtol=1e-9, atol=1e-9) | (np.isnan(a) & np.isnan(b)))
        if bad.any():
            mismatched[n] = int(bad.sum())
print(json.dumps({"seconds": seconds, "load_seconds": load_seconds, "rows": len(ours), "features": len(names),
                  "mismatched": mismatched, "ok": not mismatched}))
"""

TRAINING_PLATFORM = _DAGSTER_PRELUDE + r"""
import shutil
measure(dg.AssetKey(["ml", "churn_training_set"]), sys.argv[1],
        reset=lambda: shutil.rmtree(settings.paths().root / "datasets" / "churn" / sys.argv[1], ignore_errors=True))
"""

TRAINING_JOIN = r"""
import json, sys, time
from datetime import date
import pandas, pyarrow  # libraries imported before the clock, as in Feast's process (its import pulls in pandas)
from ai_data_platform import settings, warehouse
from ai_data_platform.ml.training_sql import churn_sql
version, output = date.fromisoformat(sys.argv[1]), sys.argv[2]
con = warehouse.connect(settings.paths().warehouse, read_only=True)
t = time.perf_counter()
relation = con.sql(churn_sql(version))
result = relation.df() if output == "pandas" else relation.to_arrow_table()
seconds = time.perf_counter() - t
con.close()
print(json.dumps({"seconds": seconds, "rows": len(result)}))
"""

TRAINING_BARE = r"""
import json, sys, time
from datetime import date, timedelta
from ai_data_platform import settings, warehouse
from ai_data_platform.ml.training_sql import churn_feature_columns
version = date.fromisoformat(sys.argv[1])
entities, out = sys.argv[2], sys.argv[3]
features = ", ".join(f"f.{c}" for c in churn_feature_columns())
last_label_day = version + timedelta(days=30)
sql = f'''
COPY (
  WITH e AS (SELECT customer_id, snapshot_date FROM read_parquet('{entities}')),
  churned AS (SELECT DISTINCT s.snapshot_date, c.customer_id
              FROM (SELECT DISTINCT snapshot_date FROM e) s JOIN staging.subscriptions c
                ON c.cancelled_at >= CAST(s.snapshot_date + INTERVAL 1 DAY AS TIMESTAMP)
               AND c.cancelled_at < CAST(s.snapshot_date + INTERVAL 31 DAY AS TIMESTAMP)
               AND c._available_at <= CAST(s.snapshot_date + INTERVAL 31 DAY AS TIMESTAMP)
              WHERE c.cancelled_at IS NOT NULL AND c._partition_date <= DATE '{last_label_day}')
  SELECT e.snapshot_date, e.customer_id, {features},
         CAST(churned.customer_id IS NOT NULL AS INTEGER) AS churned_30d
  FROM e ASOF JOIN features.customer_daily f
    ON e.customer_id = f.customer_id AND e.snapshot_date >= f._partition_date
  LEFT JOIN churned ON churned.customer_id = e.customer_id AND churned.snapshot_date = e.snapshot_date
  ORDER BY e.snapshot_date, e.customer_id
) TO '{out}' (FORMAT parquet)
'''
t = time.perf_counter()
con = warehouse.connect(settings.paths().warehouse, read_only=True)
con.execute(sql)
con.close()
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def compare_training_sets(platform_file: Path, bare_file: Path) -> dict:
    """The bare ASOF JOIN's rows against the platform's version: same keys, same values."""
    import duckdb

    con = duckdb.connect()
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM '{bare_file}'").fetchall()]
    select = ", ".join(cols)
    only_platform = con.execute(f"SELECT count(*) FROM (SELECT {select} FROM '{platform_file}' EXCEPT ALL SELECT {select} FROM '{bare_file}')").fetchone()[0]
    only_bare = con.execute(f"SELECT count(*) FROM (SELECT {select} FROM '{bare_file}' EXCEPT ALL SELECT {select} FROM '{platform_file}')").fetchone()[0]
    rows = con.execute(f"SELECT count(*) FROM '{platform_file}'").fetchone()[0]
    return {"rows": rows, "columns": len(cols), "rows_only_in_platform": only_platform, "rows_only_in_bare": only_bare}


def summary(runs: list[tuple[dict, float]], key: str = "seconds") -> dict:
    seconds = [r[key] for r, _ in runs]
    return {"median_seconds": round(statistics.median(seconds), 2), "all_seconds": [round(s, 2) for s in seconds],
            "peak_rss_mib": round(max(m for _, m in runs), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=None, help="benchmark data root (default $ADP_DATA_DIR/bench)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--setup-only", action="store_true", help="prepare the data and the Feast inputs, measure nothing")
    ap.add_argument("--skip-pandas", action="store_true", help="leave out the pandas baseline (~3 min a run)")
    args, _ = ap.parse_known_args()
    root = args.workdir or Path(os.environ.get("ADP_DATA_DIR", HERE.parent / "data")) / "bench"
    work = (root / f"pit{args.days}").resolve()
    setup = prepare(work, args.customers, args.days)
    print(f"setup: {json.dumps(setup['timings'])} entity rows {setup['entity_rows']}", flush=True)
    if args.setup_only:
        return
    env = bench_env(work)
    day, version = END.isoformat(), churn_version().isoformat()
    bare_out = work / "pit" / "bare_asof.parquet"
    measured: dict[str, list] = {k: [] for k in ("fp", "fpi", "fb", "fpd", "tp", "tpi", "tj", "tja", "tb")}
    for i in range(args.runs):
        measured["fp"].append(run_snippet(FEATURES_PLATFORM, [day, "lazy"], env))
        measured["fb"].append(run_snippet(FEATURES_BARE, [day], env))
        measured["fpi"].append(run_snippet(FEATURES_PLATFORM, [day, "imported"], env))
        if not args.skip_pandas:
            measured["fpd"].append(run_snippet(FEATURES_PANDAS, [day, str(HERE)], env))
        measured["tp"].append(run_snippet(TRAINING_PLATFORM, [version, "lazy"], env))
        measured["tj"].append(run_snippet(TRAINING_JOIN, [version, "pandas"], env))
        measured["tpi"].append(run_snippet(TRAINING_PLATFORM, [version, "imported"], env))
        measured["tja"].append(run_snippet(TRAINING_JOIN, [version, "arrow"], env))
        measured["tb"].append(run_snippet(TRAINING_BARE, [version, str(work / "pit" / "churn_entities.parquet"), str(bare_out)], env))
        last = {k: v[-1][0] for k, v in measured.items() if v}
        print(
            f"run {i + 1}: features bare {last['fb']['seconds']:.2f}s platform: GX imported in the run "
            f"{last['fp']['seconds']:.2f}s, GX imported before {last['fpi']['seconds']:.2f}s "
            f"(import {last['fpi']['gx_import_seconds']:.2f}s), warm {last['fp']['warm_seconds']:.2f}/{last['fpi']['warm_seconds']:.2f}s"
            + (f", pandas {last['fpd']['seconds']:.2f}s" if "fpd" in last else "")
            + f" | training set bare ASOF {last['tb']['seconds']:.2f}s platform: {last['tp']['seconds']:.2f}s / "
            f"{last['tpi']['seconds']:.2f}s, warm {last['tp']['warm_seconds']:.2f}/{last['tpi']['warm_seconds']:.2f}s; "
            f"join only {last['tj']['seconds']:.2f}s (Arrow {last['tja']['seconds']:.2f}s)",
            flush=True,
        )
    agreement = compare_training_sets(work / "datasets" / "churn" / version / "data.parquet", bare_out)
    if agreement["rows_only_in_platform"] or agreement["rows_only_in_bare"]:
        raise SystemExit(f"the bare ASOF JOIN and the platform disagree: {agreement}")
    fb, tb = summary(measured["fb"]), summary(measured["tb"])
    tj, tj_arrow = summary(measured["tj"]), summary(measured["tja"])

    def platform(kind: str, bare: dict) -> dict:
        """cold with GX imported in the run / after importing it, warm (both processes' warm runs)."""
        lazy, imported = measured[kind], measured[kind + "i"]
        warm_runs = [(r | {"seconds": r["warm_seconds"]}, m) for r, m in lazy + imported]
        out = {
            "cold_gx_imported_in_run": summary(lazy) | {"steps_last_run": lazy[-1][0]["steps"]},
            "cold_gx_imported_before": summary(imported) | {"steps_last_run": imported[-1][0]["steps"]},
            "warm": summary(warm_runs) | {"steps_last_run": imported[-1][0]["warm_steps"]},
            "gx_import_seconds": round(statistics.median(r["gx_import_seconds"] for r, _ in imported), 2),
        }
        for name in ("cold_gx_imported_in_run", "cold_gx_imported_before", "warm"):
            out[f"ratio_{name}_to_bare"] = round(out[name]["median_seconds"] / bare["median_seconds"], 2)
        return out

    result = {
        "customers": args.customers,
        "days": args.days,
        "runs": args.runs,
        "staging_rows": setup["staging_rows"],
        "feature_day": day,
        "features_rows": measured["fb"][0][0]["rows"],
        "features_platform": platform("fp", fb),
        "features_bare_sql": fb,
        "training_set_version": version,
        "training_set_rows": agreement["rows"],
        "training_set_platform": platform("tp", tb),
        "training_set_join_only": tj,
        "training_set_join_only_arrow": tj_arrow,
        "training_set_bare_asof": tb,
        "bare_asof_agrees_with_platform": agreement,
    }
    if measured["fpd"]:
        fpd = summary(measured["fpd"])
        cold_in_run = result["features_platform"]["cold_gx_imported_in_run"]["median_seconds"]
        result |= {
            "features_pandas_rolling": fpd | {
                "median_load_seconds_not_counted": round(statistics.median(r["load_seconds"] for r, _ in measured["fpd"]), 2)
            },
            "ratio_pandas_to_features_platform_cold_gx_imported_in_run": round(fpd["median_seconds"] / cold_in_run, 1),
            "ratio_pandas_to_features_bare": round(fpd["median_seconds"] / fb["median_seconds"], 1),
        }
    record("pit", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
