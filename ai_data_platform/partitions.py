"""The daily partitions every time-based asset shares.

Partitions are UTC days and end with the last complete day. They start at ``ADP_PARTITION_START``
when set; otherwise at the first day of the generated landing data (recorded by ``adp generate``
in ``landing/manifest.json``), so the demo's partitions are exactly the days it has data for;
otherwise at ``DEFAULT_START``.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import dagster as dg

from ai_data_platform import settings

DEFAULT_START = "2026-01-01"


def partition_start() -> str:
    explicit = settings.partition_start_override()
    if explicit:
        return explicit
    manifest = settings.paths().landing_manifest
    if manifest.is_file():
        try:
            start = json.loads(manifest.read_text())["start"]
            if date.fromisoformat(start) >= date(2000, 1, 1):
                return start
        except (ValueError, KeyError, TypeError):  # an unreadable manifest: `adp materialize` names it
            pass
    return DEFAULT_START


daily_partitions = dg.DailyPartitionsDefinition(start_date=partition_start(), timezone="UTC")


def days_in(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> list[date]:
    """The days a run covers: one for a single partition, several for a single-run backfill."""
    window = context.partition_time_window
    start = window.start.date()
    end = window.end.date()  # exclusive
    return [start + timedelta(days=i) for i in range((end - start).days)]


def parse_day(key: str) -> date:
    return datetime.strptime(key, "%Y-%m-%d").date()
