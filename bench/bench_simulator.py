"""Benchmark the source simulator: wall time and peak memory of ``generate`` at scale.

Each run generates into a fresh temporary directory in a separate Python process, so its peak
resident set size (``ru_maxrss`` from ``os.wait4`` on that child) is the simulator's own. Prints every run
and the medians, then merges the figures into ``bench/results.json`` under ``"simulator"``
(read-modify-write; other keys are kept).

    .venv/bin/python bench/bench_simulator.py [--runs 3] [--customers 100000] [--days 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from results_file import record

END = date(2026, 1, 31)
SEED = 1
CHILD_CODE = """
import json, sys
from datetime import date
from pathlib import Path
from ai_data_platform import settings
from ai_data_platform.sources.landing import LandingZones
from ai_data_platform.sources.simulator import generate
root, customers, days, end, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
zones = LandingZones.from_settings(settings.Paths(Path(root)))
manifest = generate(zones, customers=customers, days=days, end=date.fromisoformat(end), seed=seed)
print(json.dumps({name: total["rows"] for name, total in manifest["totals"].items()}))
"""


def run_once(customers: int, days: int) -> dict:
    """Generate once in a child process; return wall seconds, peak RSS (MiB), rows and bytes."""
    with tempfile.TemporaryDirectory(prefix="adp-bench-") as tmp:
        root = Path(tmp)  # the data directory: shared and regional landing zones below it
        arguments = [str(root), str(customers), str(days), END.isoformat(), str(SEED)]
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", CHILD_CODE, *arguments], stdout=subprocess.PIPE, text=True)
        with child.stdout:
            output = child.stdout.read()
        # wait4 reports this child's own resource usage; ru_maxrss is its peak RSS in KiB on Linux.
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError(f"simulator run failed with exit code {child.returncode}")
        size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    rows = json.loads(output.strip().splitlines()[-1])
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "rows": rows, "bytes": size}


def merge_results(entry: dict) -> None:
    record("simulator", entry)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Benchmark ai_data_platform.sources.simulator.generate")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    # run_all.py hands every benchmark the same flags; ignore the ones meant for others.
    args, ignored = parser.parse_known_args(argv)
    if ignored:
        print(f"ignoring arguments for other benchmarks: {' '.join(ignored)}")

    runs = []
    for i in range(args.runs):
        run = run_once(args.customers, args.days)
        runs.append(run)
        print(f"run {i + 1}/{args.runs}: {run['wall_s']:.2f} s, peak RSS {run['peak_rss_mib']:.0f} MiB", flush=True)
    last = runs[-1]
    entry = {
        "customers": args.customers,
        "days": args.days,
        "end": END.isoformat(),
        "seed": SEED,
        "runs": args.runs,
        "median_wall_s": round(statistics.median(r["wall_s"] for r in runs), 2),
        "median_peak_rss_mib": round(statistics.median(r["peak_rss_mib"] for r in runs), 1),
        "wall_s": [r["wall_s"] for r in runs],
        "peak_rss_mib": [r["peak_rss_mib"] for r in runs],
        "rows": last["rows"],
        "total_rows": sum(last["rows"].values()),
        "landing_bytes": last["bytes"],
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(
        f"median over {args.runs} runs: {entry['median_wall_s']:.2f} s, "
        f"peak RSS {entry['median_peak_rss_mib']:.0f} MiB, {entry['total_rows']:,} rows, "
        f"{entry['landing_bytes'] / 2**20:.0f} MiB on disk"
    )
    merge_results(entry)
    return entry


if __name__ == "__main__":
    main()
