"""`make bench`: every benchmark, one after another; each merges its figures into bench/results.json.

Benchmark data is kept under $ADP_DATA_DIR/bench (default data/bench) so a second run reuses the
generated landing files; pass --workdir DIR to put it elsewhere.
"""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
args = sys.argv[1:]
if "--workdir" not in args:
    data_dir = Path(os.environ.get("ADP_DATA_DIR", HERE.parent / "data"))
    args += ["--workdir", str(data_dir / "bench")]

for script in ("bench_simulator.py", "bench_nightly.py", "bench_pit.py", "bench_feature_window.py", "bench_lifecycle.py", "bench_stream.py"):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *args], check=True)
print(f"results: {HERE / 'results.json'}")
print("Feast 0.67 on the same point-in-time inputs: make bench-feast (its own virtual environment)")
