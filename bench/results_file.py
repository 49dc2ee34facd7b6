"""bench/results.json: every benchmark merges its figures under its own key (read-modify-write)."""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


def record(key: str, figures: dict) -> None:
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[key] = figures
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
