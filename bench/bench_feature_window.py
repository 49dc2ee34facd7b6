"""Benchmark: does one features/customer_daily partition cost follow the window or the history?

Takes a built warehouse (default: the one bench_nightly.py leaves in its --workdir), makes a copy
whose staging history is N times longer: the last 30 days of rows copied N-1 times further into
the past, each copy shifted by a multiple of 120 days (event time and export day), so all added
history lies before the features' widest lookback (90 days plus lateness). Times the feature SQL
for the last day in both, interleaved, median of --runs. A ratio near 1 means cost follows the
window, not the history. Results go to bench/results.json under "feature_window".

    python bench/bench_feature_window.py [--workdir /tmp/adp-bench] [--factor 4] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ai_data_platform import warehouse  # noqa: E402
from ai_data_platform.features.compile import customer_daily_sql  # noqa: E402
from ai_data_platform.features.registry import SOURCES  # noqa: E402
from results_file import record  # noqa: E402



def extend_history(path: Path, factor: int) -> dict[str, int]:
    con = warehouse.connect(path)
    rows = {}
    try:
        for spec in SOURCES.values():
            table, time_col = spec["table"], spec["time"]
            base = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for k in range(1, factor):
                shift = 120 * k  # beyond the 90-day lookback + lateness of the newest day
                con.execute(
                    f"INSERT INTO {table} SELECT * REPLACE ({time_col} - INTERVAL {shift} DAY AS {time_col}, "
                    f"_partition_date - INTERVAL {shift} DAY AS _partition_date) FROM {table} "
                    f"WHERE _partition_date > (SELECT max(_partition_date) FROM {table}) - INTERVAL 30 DAY"
                )
            rows[table] = (base, con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return rows


def time_features(path: Path, day: date) -> float:
    con = warehouse.connect(path, read_only=True)
    try:
        t = time.perf_counter()
        con.execute(f"CREATE TEMP TABLE f AS {customer_daily_sql(day)}")
        return time.perf_counter() - t
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/adp-bench"))
    ap.add_argument("--factor", type=int, default=4, help="history multiplier for the long copy")
    ap.add_argument("--runs", type=int, default=5)
    args, _ = ap.parse_known_args()
    base = args.workdir / "warehouse.duckdb"
    if not base.exists():
        raise SystemExit(f"no warehouse at {base}: run bench/bench_nightly.py --workdir {args.workdir} first")
    con = warehouse.connect(base, read_only=True)
    day = con.execute("SELECT max(_partition_date) FROM features.customer_daily").fetchone()[0]
    con.close()
    long_path = args.workdir / "warehouse_long_history.duckdb"
    shutil.copyfile(base, long_path)
    rows = extend_history(long_path, args.factor)
    short, long = [], []
    for _ in range(args.runs):
        short.append(time_features(base, day))
        long.append(time_features(long_path, day))
    long_path.unlink()
    result = {
        "day": day.isoformat(),
        "history_factor": args.factor,
        "rows_before_after": {t: list(v) for t, v in rows.items()},
        "median_seconds_history_1x": round(statistics.median(short), 3),
        f"median_seconds_history_{args.factor}x": round(statistics.median(long), 3),
        "ratio_long_to_short": round(statistics.median(long) / statistics.median(short), 2),
        "runs": args.runs,
    }
    record("feature_window", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
