"""Run one measured step in a fresh interpreter and read back its figures and its own peak memory.

A snippet prints one JSON object as its last stdout line (its own timings, measured inside the
process so interpreter start-up and imports are not counted). Peak memory is the child's maximum
resident set size as reported by ``/usr/bin/time`` (falling back to ``getrusage`` of children).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path


def run_snippet(code: str, args: list[str], env: dict[str, str]) -> tuple[dict, float]:
    """Run ``code`` with ``args`` in a new interpreter; return (its JSON figures, peak RSS in MiB)."""
    timed = Path("/usr/bin/time").exists()
    cmd = [sys.executable, "-c", code, *args]
    if timed:
        cmd = ["/usr/bin/time", "-f", "%M", *cmd]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"measured step failed ({' '.join(args)}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    if figures.get("ok") is False:
        raise SystemExit(f"measured step did not succeed ({' '.join(args)}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    if timed:
        peak_mib = int(proc.stderr.strip().splitlines()[-1]) / 1024
    else:
        peak_mib = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
    return figures, peak_mib
