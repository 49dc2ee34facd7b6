"""`make bench`: every benchmark, one after another; each merges its figures into bench/results.json."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script in ("bench_simulator.py", "bench_nightly.py"):
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *sys.argv[1:]], check=True)
print(f"results: {HERE / 'results.json'}")
