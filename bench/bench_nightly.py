"""Benchmark: one nightly partition end to end through Dagster vs the same SQL run bare in DuckDB.

At 100k customers x 30 days (default): generates the data once, materializes the first 29 days
as one single-run backfill (setup, timed once), then measures the last day, side by side in one
run, each in a fresh subprocess so peak memory is its own:

- platform: ``dg.materialize`` of every asset and check for the day (what the nightly job runs);
- bare:     the same raw load, staging, Customer 360 and feature SQL through the plain functions,
            no Dagster and no checks (the floor);
- checks:   the platform run's share spent in checks is reported from the difference.

Medians of ``--runs`` runs (re-materializing a day replaces it exactly, so runs are repeatable).
Results are merged into bench/results.json under "nightly".

    python bench/bench_nightly.py [--customers 100000] [--days 30] [--runs 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from child import run_snippet
from results_file import record

HERE = Path(__file__).resolve().parent
END = date(2026, 11, 20)

PLATFORM = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import dagster as dg
from ai_data_platform import settings
from ai_data_platform.definitions import defs
from ai_data_platform.resources import build_resources
day = sys.argv[1]
t = time.perf_counter()
from ai_data_platform.schedules import BATCH_GROUPS
r = dg.materialize([*defs.assets, *defs.asset_checks], partition_key=day, selection=dg.AssetSelection.groups(*BATCH_GROUPS),
                   resources=build_resources(settings.paths()), raise_on_error=False)
print(json.dumps({"seconds": time.perf_counter() - t, "ok": r.success}))
"""

BARE = r"""
import json, sys, time
from datetime import date
from ai_data_platform import settings, warehouse
from ai_data_platform.features.compile import customer_daily_sql, transaction_sql
from ai_data_platform.marts import customer_360 as c360
from ai_data_platform.governance.stores import PersonalData
from ai_data_platform.sources import raw_load, staging
from ai_data_platform.sources.contracts import SOURCE_TABLES
from ai_data_platform.sources.landing import LandingZones
day = date.fromisoformat(sys.argv[1])
p = settings.paths()
t = time.perf_counter()
con = warehouse.connect(p.warehouse)
personal = PersonalData.from_settings(p)
for tbl in SOURCE_TABLES:
    raw_load.load_days(con, tbl, LandingZones.from_settings(p), [day], personal)
for tbl in SOURCE_TABLES:
    staging.stage_days(con, tbl, [day], personal)
warehouse.replace_partitions(con, "marts.customer_360", [day], c360.customer_360_sql)
warehouse.replace_partitions(con, "features.customer_daily", [day], customer_daily_sql)
warehouse.replace_partitions(con, "features.transaction", [day], transaction_sql)
con.close()
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def peak_rss_of(code: str, day: str, env: dict) -> tuple[float, float]:
    """(seconds the snippet timed, its own peak RSS in MiB), in a fresh interpreter."""
    figures, peak_mib = run_snippet(code, [day], env)
    return figures["seconds"], peak_mib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None, help="keep data here (default: a temp dir)")
    ap.add_argument("--reuse", action="store_true", help="skip the 29-day setup backfill when the workdir already holds it")
    args, _ = ap.parse_known_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="adp-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ADP_DATA_DIR=str(work), ADP_PARTITION_START="2026-01-01", PYTHONWARNINGS="ignore")
    sys.path.insert(0, str(HERE.parent))
    os.environ.update({k: env[k] for k in ("ADP_DATA_DIR", "ADP_PARTITION_START")})

    from ai_data_platform import settings
    from ai_data_platform.sources.landing import LandingZones
    from ai_data_platform.sources.simulator import GENERATOR_VERSION, generate

    manifest_path = work / "landing" / "manifest.json"
    wanted = {"customers": args.customers, "days": args.days, "end": END.isoformat()}
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    have = manifest.get("args", {})
    t = time.perf_counter()
    if manifest.get("generator_version") != GENERATOR_VERSION or any(have.get(k) != v for k, v in wanted.items()):
        generate(LandingZones.from_settings(settings.Paths(work)), customers=args.customers, days=args.days, end=END, seed=1)
    gen_s = time.perf_counter() - t
    last = END.isoformat()
    first = (END - timedelta(days=args.days - 1)).isoformat()
    before_last = (END - timedelta(days=1)).isoformat()

    setup = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import dagster as dg
from ai_data_platform import settings
from ai_data_platform.definitions import defs
from ai_data_platform.resources import build_resources
t = time.perf_counter()
from ai_data_platform.schedules import BATCH_GROUPS
r = dg.materialize([*defs.assets, *defs.asset_checks], resources=build_resources(settings.paths()), raise_on_error=False,
    selection=dg.AssetSelection.groups(*BATCH_GROUPS),
    tags={"dagster/asset_partition_range_start": sys.argv[1].split(',')[0], "dagster/asset_partition_range_end": sys.argv[1].split(',')[1]})
print(json.dumps({"seconds": time.perf_counter() - t, "ok": r.success}))
"""
    if args.reuse and (work / "warehouse.duckdb").exists():
        print("setup: reusing the materialized history in the workdir", flush=True)
        setup_s, setup_mib = float("nan"), float("nan")
    else:
        print(f"setup: materializing {first}..{before_last} as one single-run backfill ...", flush=True)
        setup_s, setup_mib = peak_rss_of(setup, f"{first},{before_last}", env)

    platform, bare = [], []
    for i in range(args.runs):
        # interleave so both see the same machine state
        platform.append(peak_rss_of(PLATFORM, last, env))
        bare.append(peak_rss_of(BARE, last, env))
        print(f"run {i + 1}: platform {platform[-1][0]:.2f}s  bare {bare[-1][0]:.2f}s", flush=True)

    p_med = statistics.median(s for s, _ in platform)
    b_med = statistics.median(s for s, _ in bare)
    result = {
        "customers": args.customers,
        "days": args.days,
        "runs": args.runs,
        "generate_seconds_if_run": round(gen_s, 2),
        "backfill_setup": {"days": args.days - 1, "seconds": round(setup_s, 2), "peak_rss_mib": round(setup_mib, 1)},
        "nightly_partition_platform": {"median_seconds": round(p_med, 2), "peak_rss_mib": round(max(m for _, m in platform), 1), "all_seconds": [round(s, 2) for s, _ in platform]},
        "nightly_partition_bare_sql": {"median_seconds": round(b_med, 2), "peak_rss_mib": round(max(m for _, m in bare), 1), "all_seconds": [round(s, 2) for s, _ in bare]},
        "ratio_platform_to_bare": round(p_med / b_med, 2),
        "machine": {"cpus": os.cpu_count()},
    }
    record("nightly", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
