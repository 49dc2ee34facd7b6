"""Benchmark the data lifecycle at demo scale: what residency, retention and erasure cost.

On one generated data set (default 3,000 customers x 30 days, every table loaded and staged with
the regional stores), medians of ``--runs`` runs of:

* the CRM tables' nightly step for one day (raw load with routing and the region rebalance, then
  staging with the regional outputs), next to the same day of ``raw.events`` + ``staging.events``
  (no personal data) as the yardstick;
* the residency check (every store plus every text column of the warehouse, plus every landing
  file of every zone), and the same without the landing files, side by side;
* a retention dry run as of the last day (every table, file, version);
* one erasure, split into its parts: everything but verification, and the verification search of
  every file (timed again on the erased state), with the number of files and bytes searched.

Each erasure runs on a fresh copy of the data directory. Prints the figures and merges them into
``bench/results.json`` under ``"lifecycle"``.

    .venv/bin/python bench/bench_lifecycle.py [--runs 3] [--customers 3000] [--days 30] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from results_file import record

END = date(2026, 11, 20)
SEED = 42


def _median(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=Path("data/bench"))
    args = parser.parse_args()
    root = (args.workdir / f"lifecycle-{args.customers}x{args.days}").resolve()
    os.environ["ADP_DATA_DIR"] = str(root)
    os.environ.setdefault("ADP_PARTITION_START", "2000-01-01")

    from ai_data_platform import settings, warehouse
    from ai_data_platform.governance import erasure, residency, retention
    from ai_data_platform.governance.stores import PersonalData
    from ai_data_platform.sources import raw_load, staging
    from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS, SOURCE_TABLES, SUPPORT_TICKETS
    from ai_data_platform.sources.landing import LandingZones
    from ai_data_platform.sources.simulator import generate

    shutil.rmtree(root, ignore_errors=True)
    paths = settings.Paths(root)
    zones = LandingZones.from_settings(paths)
    generate(zones, customers=args.customers, days=args.days, end=END, seed=SEED)
    days = [END - timedelta(days=args.days - 1 - i) for i in range(args.days)]
    personal = PersonalData.from_settings(paths)
    con = warehouse.connect(paths.warehouse)
    warehouse.ensure_schemas(con)
    for t in SOURCE_TABLES:
        raw_load.load_days(con, t, zones, days, personal)
    for t in SOURCE_TABLES:
        staging.stage_days(con, t, days, personal)

    def nightly(tables):
        def step():
            for t in tables:
                raw_load.load_days(con, t, zones, [END], personal)
                staging.stage_days(con, t, [END], personal)
        return step

    def check(landing=True):
        with personal.stores.attached(con, read_only=True) as aliases:
            assert residency.violations(con, aliases, personal.stores.paths, paths.warehouse, zones=zones if landing else None) == []

    figures = {
        "customers": args.customers,
        "days": args.days,
        "raw_events_rows": con.execute("SELECT count(*) FROM raw.events").fetchone()[0],
        "crm_day_raw_and_staging_s": _median(nightly((CUSTOMERS, SUPPORT_TICKETS)), args.runs),
        "events_day_raw_and_staging_s": _median(nightly((EVENTS,)), args.runs),
        "residency_check_s": _median(check, args.runs),
        "residency_check_without_landing_s": _median(lambda: check(landing=False), args.runs),
    }
    con.close()
    policy = retention.load_policy()
    figures["retention_dry_run_s"] = _median(lambda: retention.run(policy, END, dry_run=True, paths=paths), args.runs)

    erase_times, verify_times, searched = [], [], 0
    subjects = [f"C{n:07d}" for n in range(10, 10 + args.runs)]
    for subject in subjects:
        work = settings.Paths(root.parent / f"{root.name}-erasure")
        shutil.rmtree(work.root, ignore_errors=True)
        shutil.copytree(root, work.root)
        work_personal = PersonalData.from_settings(work)
        started = time.perf_counter()
        result = erasure.erase(subject, "bench", paths=work, personal=work_personal)
        erase_times.append(time.perf_counter() - started)
        if result.status != "erased":
            raise SystemExit(f"erasure of {subject}: {result.status}\n" + "\n".join(result.report()))
        subject_keys = erasure.resolve(subject, work, work_personal)
        started = time.perf_counter()
        traces, searched, _ = erasure.verify(subject_keys, work, work_personal)
        verify_times.append(time.perf_counter() - started)
        assert traces == []
        size = sum(p.stat().st_size for p in work.root.rglob("*") if p.is_file())
    shutil.rmtree(work.root, ignore_errors=True)
    figures |= {
        "erasure_total_s": round(statistics.median(erase_times), 2),
        "erasure_verification_s": round(statistics.median(verify_times), 2),
        "files_searched": searched,
        "bytes_searched": size,
    }
    figures["crm_vs_events_day_ratio"] = round(figures["crm_day_raw_and_staging_s"] / figures["events_day_raw_and_staging_s"], 2)
    print(json.dumps(figures, indent=2))
    record("lifecycle", figures | {"python": sys.version.split()[0], "runs": args.runs})


if __name__ == "__main__":
    main()
