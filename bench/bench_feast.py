"""Feast 0.67 ``get_historical_features`` (DuckDB offline store) on the churn training-set inputs.

Runs in its own virtual environment (``make bench-feast`` creates ``.venv-feast`` with
``feast[duckdb]==0.67.0``); it imports nothing of ai_data_platform, and Feast is never a project
dependency. Inputs are the files ``bench_pit.py`` exports to ``<workdir>/pit/``:
``customer_daily.parquet`` (every feature row with its as-of timestamp ``feature_ts``) and
``churn_entities.parquet`` (the churn version's (customer, snapshot) rows with their as-of
``event_timestamp`` and label) — the same rows the platform's training set joins.

Each measured run is a fresh process (``--child``) that builds a throwaway feature repo
(entity ``customer_id``, one FeatureView over the Parquet file, TTL one day), then times
``get_historical_features(entity_df, features).to_df()`` (and, in a separate process,
``.to_arrow()``) — the point-in-time join and its result in memory, not writing it anywhere
(generous to Feast). The first run's result is compared with
the platform's dataset version, value by value. Figures merge into bench/results.json under
"feast", with the ratio to the platform's figure from "pit" when that is there.

    .venv-feast/bin/python bench/bench_feast.py --workdir data/bench/pit90 [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from results_file import RESULTS, record  # noqa: E402


def child(work: Path, out: Path | None, output: str) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import pandas as pd
    import pyarrow.parquet as pq
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
    from feast.types import Float64, Int64

    pit = work / "pit"
    schema = pq.read_schema(pit / "customer_daily.parquet")
    feature_names = [n for n in schema.names if n not in ("customer_id", "feature_ts")]
    fields = [Field(name=n, dtype=Int64 if str(schema.field(n).type).startswith("int") else Float64) for n in feature_names]
    with tempfile.TemporaryDirectory() as repo:
        config = RepoConfig(
            project="adp_bench",
            registry=str(Path(repo) / "registry.db"),
            provider="local",
            offline_store=DuckDBOfflineStoreConfig(),
            online_store={"type": "sqlite", "path": str(Path(repo) / "online.db")},
            entity_key_serialization_version=3,
        )
        store = FeatureStore(config=config)
        customer = Entity(name="customer", join_keys=["customer_id"])
        view = FeatureView(
            name="customer_daily",
            entities=[customer],
            ttl=timedelta(days=1),
            schema=fields,
            source=FileSource(path=str(pit / "customer_daily.parquet"), timestamp_field="feature_ts"),
        )
        store.apply([customer, view])
        entity_df = pd.read_parquet(pit / "churn_entities.parquet", columns=["customer_id", "event_timestamp", "churned_30d"])
        job = lambda: store.get_historical_features(  # noqa: E731
            entity_df=entity_df, features=[f"customer_daily:{n}" for n in feature_names]
        )
        t = time.perf_counter()
        result = job().to_arrow() if output == "arrow" else job().to_df()
        seconds = time.perf_counter() - t
    rows = result.num_rows if output == "arrow" else len(result)
    if out is not None:
        (result.to_pandas() if output == "arrow" else result).to_parquet(out)
    print(json.dumps({"seconds": seconds, "rows": rows, "output": output}))


def run_child(work: Path, out: Path | None, output: str = "pandas") -> tuple[dict, float]:
    cmd = ["/usr/bin/time", "-f", "%M", sys.executable, __file__, "--child", "--workdir", str(work), "--output", output]
    if out is not None:
        cmd += ["--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-4000:])
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures, int(proc.stderr.strip().splitlines()[-1]) / 1024


def compare_with_platform(work: Path, feast_out: Path) -> dict:
    """Feast's values against the platform's dataset version on the same rows."""
    import pandas as pd

    stamp = json.loads((work / "pit_setup.json").read_text())
    version = stamp["version"]
    platform = pd.read_parquet(work / "datasets" / "churn" / version / "data.parquet")
    feast = pd.read_parquet(feast_out)
    feast["snapshot_date"] = (feast["event_timestamp"].dt.tz_localize(None) - pd.Timedelta(days=1)).dt.date
    platform["snapshot_date"] = pd.to_datetime(platform["snapshot_date"]).dt.date
    keys = ["snapshot_date", "customer_id"]
    merged = platform.merge(feast, on=keys, suffixes=("", "_feast"), how="outer", indicator=True)
    features = [c for c in feast.columns if c not in (*keys, "event_timestamp", "churned_30d")]
    mismatched = {}
    for c in features:
        a, b = merged[c].astype("float64"), merged[f"{c}_feast" if f"{c}_feast" in merged else c].astype("float64")
        bad = ~((a - b).abs().le(1e-9) | (a.isna() & b.isna()))
        if bad.any():
            mismatched[c] = int(bad.sum())
    return {"rows_platform": len(platform), "rows_feast": len(feast),
            "rows_only_in_one": int((merged["_merge"] != "both").sum()), "features_compared": len(features),
            "mismatched_values": mismatched}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--output", choices=["pandas", "arrow"], default="pandas", help="child: to_df() or to_arrow()")
    args = ap.parse_args()
    work = args.workdir.resolve()
    if args.child:
        child(work, args.out, args.output)
        return
    if not (work / "pit" / "churn_entities.parquet").exists():
        raise SystemExit(f"no inputs in {work / 'pit'}: run bench/bench_pit.py --workdir {work} first")
    import feast

    runs, arrow_runs, peaks = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "feast.parquet"
        for i in range(args.runs):
            figures, peak = run_child(work, out if i == 0 else None)
            arrow, arrow_peak = run_child(work, None, "arrow")
            runs.append(figures["seconds"])
            arrow_runs.append(arrow["seconds"])
            peaks.append(max(peak, arrow_peak))
            print(f"run {i + 1}: feast to_df {figures['seconds']:.2f}s, to_arrow {arrow['seconds']:.2f}s "
                  f"({figures['rows']} rows, peak {peak:.0f} MiB)", flush=True)
        version = json.loads((work / "pit_setup.json").read_text())["version"]
        if (work / "datasets" / "churn" / version / "data.parquet").exists():
            agreement = compare_with_platform(work, out)
        else:
            agreement = "not compared: the platform's version is built by bench_pit.py (make bench)"
    result = {
        "feast_version": feast.__version__,
        "offline_store": "duckdb",
        "median_seconds": round(statistics.median(runs), 2),
        "all_seconds": [round(s, 2) for s in runs],
        "to_arrow_median_seconds": round(statistics.median(arrow_runs), 2),
        "to_arrow_all_seconds": [round(s, 2) for s in arrow_runs],
        "peak_rss_mib": round(max(peaks), 1),
        "agreement_with_platform": agreement,
    }
    pit = json.loads(RESULTS.read_text()).get("pit", {}) if RESULTS.exists() else {}
    platform_runs = pit.get("training_set_platform", {})
    for name, figures in [("training_set_join_only", pit.get("training_set_join_only", {}))] + [
        (f"training_set_platform_{k}", platform_runs.get(k, {})) for k in ("cold_gx_imported_in_run", "warm")
    ]:
        platform = figures.get("median_seconds")
        if platform:
            result[f"ratio_feast_to_{name}"] = round(result["median_seconds"] / platform, 2)
    arrow = pit.get("training_set_join_only_arrow", {}).get("median_seconds")
    if arrow:  # like for like: Feast's to_arrow() against the platform's join into Arrow
        result["ratio_feast_to_arrow_to_training_set_join_only_arrow"] = round(result["to_arrow_median_seconds"] / arrow, 2)
    record("feast", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
