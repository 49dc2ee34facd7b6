"""Benchmark: does one nightly feature partition cost follow the window or the history?

Takes the 90-day benchmark warehouse of bench_pit.py (100k customers; built when missing) and
makes a copy whose staging history is ``--factor`` times longer (default 4: 90 -> 360 days): every
staging table's rows copied ``factor - 1`` times, each copy with every DATE and TIMESTAMP column
shifted back by a multiple of the history's length. So the copy holds a contiguous 360-day
history whose newest 90 days are the original ones; the CRM and billing state tables grow too
(their older copies never win "latest row"), so the features of the newest day must come out
**identical** — the benchmark checks that (a hash of every row) before it reports a ratio.

Then it times ``features/customer_daily`` for the newest day on both warehouses, each run a fresh
process (peak memory its own), interleaved, median of ``--runs``. A ratio near 1 means cost
follows the window, not the history. Results go to bench/results.json under "feature_window".

    python bench/bench_feature_window.py [--workdir data/bench] [--factor 4] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from child import run_snippet  # noqa: E402
from pit_data import END, bench_env, prepare  # noqa: E402
from results_file import record  # noqa: E402

from ai_data_platform import warehouse  # noqa: E402

TIME_FEATURES = r"""
import json, sys, time
from datetime import date
from ai_data_platform import warehouse
from ai_data_platform.features.compile import customer_daily_sql
path, day = sys.argv[1], date.fromisoformat(sys.argv[2])
con = warehouse.connect(path, read_only=True)
t = time.perf_counter()
con.execute(f"CREATE TEMP TABLE f AS {customer_daily_sql(day)}")
seconds = time.perf_counter() - t
# one digest per column; doubles rounded to 9 decimals (parallel float sums may differ in the last bit)
cols = con.execute("DESCRIBE f").fetchall()
exprs = [f"md5(string_agg(CAST({'round(' + c + ', 9)' if t == 'DOUBLE' else c} AS VARCHAR), '|' ORDER BY customer_id))"
         for c, t, *_ in cols]
digests = dict(zip([c for c, *_ in cols], con.execute(f"SELECT {', '.join(exprs)} FROM f").fetchone()))
rows = con.execute("SELECT count(*) FROM f").fetchone()[0]
con.close()
print(json.dumps({"seconds": seconds, "rows": rows, "digests": digests}))
"""


def extend_history(path: Path, factor: int, history_days: int) -> dict[str, list[int]]:
    """Copy every staging table's rows ``factor - 1`` times, shifted back by whole histories."""
    con = warehouse.connect(path)
    rows = {}
    try:
        tables = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'staging' ORDER BY 1"
        ).fetchall()]
        for table in tables:
            qualified = f"staging.{table}"
            shifted = [c for c, t in warehouse.table_columns(con, qualified) if t in ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE")]
            base = con.execute(f"SELECT count(*) FROM {qualified}").fetchone()[0]
            for k in range(1, factor):
                replace = ", ".join(f"{c} - INTERVAL {history_days * k} DAY AS {c}" for c in shifted)
                con.execute(f"INSERT INTO {qualified} SELECT * REPLACE ({replace}) FROM {qualified} "
                            f"WHERE _partition_date > DATE '{END}' - INTERVAL {history_days} DAY")
            rows[qualified] = [base, con.execute(f"SELECT count(*) FROM {qualified}").fetchone()[0]]
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=None, help="benchmark data root (default $ADP_DATA_DIR/bench)")
    ap.add_argument("--factor", type=int, default=4, help="history multiplier for the long copy")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--days", type=int, default=90)
    args, _ = ap.parse_known_args()
    root = args.workdir or Path(os.environ.get("ADP_DATA_DIR", HERE.parent / "data")) / "bench"
    work = (root / f"pit{args.days}").resolve()
    prepare(work, days=args.days)
    base = work / "warehouse.duckdb"
    long_path = work / "warehouse_long_history.duckdb"
    shutil.copyfile(base, long_path)
    try:
        rows = extend_history(long_path, args.factor, args.days)
        env, day = bench_env(work), END.isoformat()
        short, long = [], []
        for i in range(args.runs):
            short.append(run_snippet(TIME_FEATURES, [str(base), day], env))
            long.append(run_snippet(TIME_FEATURES, [str(long_path), day], env))
            print(f"run {i + 1}: {args.days} days {short[-1][0]['seconds']:.2f}s  "
                  f"{args.days * args.factor} days {long[-1][0]['seconds']:.2f}s", flush=True)
    finally:
        long_path.unlink(missing_ok=True)
    reference = short[0][0]["digests"]
    differing = sorted({c for r, _ in short + long for c, d in r["digests"].items() if d != reference[c]})
    if differing:
        raise SystemExit(f"the longer history changed the newest day's features {differing}: the comparison is void")
    s_med = statistics.median(r["seconds"] for r, _ in short)
    l_med = statistics.median(r["seconds"] for r, _ in long)
    result = {
        "day": day,
        "customers_rows": short[0][0]["rows"],
        "history_days": [args.days, args.days * args.factor],
        "staging_rows_before_after": rows,
        "identical_output": True,
        f"median_seconds_{args.days}d": round(s_med, 3),
        f"median_seconds_{args.days * args.factor}d": round(l_med, 3),
        f"peak_rss_mib_{args.days}d": round(max(m for _, m in short), 1),
        f"peak_rss_mib_{args.days * args.factor}d": round(max(m for _, m in long), 1),
        "ratio_long_to_short": round(l_med / s_med, 2),
        "runs": args.runs,
    }
    record("feature_window", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
