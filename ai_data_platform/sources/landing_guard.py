"""The guard that keeps a loaded day from being silently emptied: may a day's landing files fill, or
replace, its raw partition?

Counts are of **well-formed** records (records that could be split into fields): a file of garbage
has many records and none of them usable.

* A **re-load** (the partition already holds rows from the day's landing files) that would keep
  fewer than :data:`RELOAD_KEEP_SHARE` of them, or none, or that loses rows to a file cut short, is
  **refused** before anything is replaced: :func:`judge` returns the refusal, the load raises
  :class:`LoadRefused` and the partition stays as it was loaded.
* A **first load** is judged against the trailing days: a file cut short
  (``landing.LandedFile.incomplete``: a CSV without its header, a last record cut off, a quoted
  field never closed) or a day far below the trailing days' median (:func:`volume_floor`) is a
  **finding**. Findings fail the raw asset's blocking ``landing_complete`` check, so nothing
  downstream is built from the day and the alert sensor raises an alert.

An operator who knows a small day is right forces it with the run tag ``adp/allow_shrink=true``
(``adp materialize --allow-shrink``; in the Dagster UI a tag on the launchpad or the backfill). The
load then proceeds, the check passes with a warning, and an audit record (:func:`audit_fields`)
names the files, the partition, the counts and the actor. Pure Python: no Dagster, no DuckDB.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date

from ai_data_platform.errors import InputError, shown

ALLOW_SHRINK_TAG = "adp/allow_shrink"
FORCE_HINT = (
    f"to load it anyway, re-run with the run tag {ALLOW_SHRINK_TAG}=true "
    "(adp materialize --allow-shrink); the override is audited"
)
AUDIT_ACTION = "landing_guard_override"

# A re-load holds a re-delivery of the same day's export, so it should hold the same records: the
# platform's own changes to landing files never take records out of a day without taking the loaded
# rows too (an erasure deletes both; a region move only moves records between the day's files).
# Losing a tenth of the day or more is a cut or failed export, not a correction; a few corrected
# rows of a large day still load.
RELOAD_KEEP_SHARE = 0.9

# A day far below the trailing days: fewer well-formed records than a day at VOLUME_FLOOR_SHARE of
# the trailing median would show, by VOLUME_FLOOR_SIGMAS Poisson standard deviations. A day at half
# the usual volume falls below that bound about once in a thousand; an empty or cut-to-a-fraction
# file of a day that usually has a few dozen records or more falls below it. Small tables (a few
# records a day, zero on many) cannot be judged by volume: their floor is below zero. The simulated
# test worlds stay above it: their busiest small table (30 customers' events, ~35 a day) has a
# floor of about 5, and the long histories' events dip to 0.7 of their median at worst.
VOLUME_FLOOR_SHARE = 0.5
VOLUME_FLOOR_SIGMAS = 3.0
# Days before a day that are its trailing days (the table's first partition is left out: for some
# sources it is an initial full export, not a day).
VOLUME_HISTORY_DAYS = 14


class LoadRefused(InputError):
    """A re-load refused before anything was replaced; the message names files, counts and the force."""


@dataclass(frozen=True)
class FileIntake:
    """One landing file of a day: its records, and what the loaded partition holds from it."""

    name: str
    records: int
    well_formed: int
    incomplete: str | None = None  # why the file looks cut short; None when whole
    loaded_rows: int = 0  # rows of the loaded partition from this file
    loaded_well_formed: int = 0


@dataclass(frozen=True)
class DayVerdict:
    """What the guard found for one table's day. ``loaded`` is None when the partition held no rows
    from the day's files (a first load); ``median`` is None without trailing days to compare with."""

    table: str
    day: date
    files: tuple[FileIntake, ...]
    loaded: int | None
    median: float | None
    history: int
    refusal: str | None = None
    findings: tuple[str, ...] = ()
    forced: bool = False

    @property
    def well_formed(self) -> int:
        return sum(f.well_formed for f in self.files)

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)

    @property
    def stopped(self) -> bool:
        """Whether, unforced, the day is refused or fails the gate."""
        return self.refusal is not None or bool(self.findings)

    def describe(self) -> str:
        """One line: the refusal and findings, or why the day passes."""
        if self.stopped:
            return "; ".join(([self.refusal] if self.refusal else []) + list(self.findings))
        files = "file" if len(self.files) == 1 else "files"
        baseline = (
            f"trailing median {self.median:.0f} over {self.history} day(s), floor {max(0.0, volume_floor(self.median)):.0f}"
            if self.median is not None
            else "no trailing days to compare with"
        )
        return f"{self.table} {self.day}: {self.well_formed} well-formed record(s) in {len(self.files)} {files}, none cut short; {baseline}"


def volume_floor(median: float) -> float:
    """The fewest well-formed records a day may hold given its trailing days' median (see the constants)."""
    expected = VOLUME_FLOOR_SHARE * median
    return expected - VOLUME_FLOOR_SIGMAS * math.sqrt(expected)


def judge(table: str, day: date, files: Sequence[FileIntake], history: Sequence[int]) -> DayVerdict:
    """The verdict on one day's landing ``files`` given the well-formed counts of its trailing days
    (``history``; the partition's loaded counts are in each :class:`FileIntake`)."""
    files = tuple(files)
    loaded = sum(f.loaded_well_formed for f in files) or None
    median = statistics.median(history) if history else None
    verdict = DayVerdict(table, day, files, loaded, median, len(history))
    landed = verdict.well_formed
    cut = [f for f in files if f.incomplete]
    if loaded is not None and (landed < RELOAD_KEEP_SHARE * loaded or (landed < loaded and cut)):
        return replace(verdict, refusal=_refusal(verdict))
    findings = [f"{table} {day}: {f.name} {f.incomplete}" for f in cut]
    if median is not None and landed < volume_floor(median):
        findings.append(
            f"{table} {day}: {_names(files)} hold(s) {landed} well-formed record(s), far below the trailing median "
            f"{median:.0f} of {len(history)} day(s) (at least {math.ceil(volume_floor(median))} expected)"
        )
    return replace(verdict, findings=tuple(findings))


def forced(verdict: DayVerdict) -> DayVerdict:
    """The verdict of a day an operator forced: loaded despite what it says."""
    return replace(verdict, forced=True)


def _names(files: Sequence[FileIntake]) -> str:
    return files[0].name if len(files) == 1 else ", ".join(f"{f.name} ({f.well_formed})" for f in files)


def _refusal(v: DayVerdict) -> str:
    shrunk = [f for f in v.files if f.well_formed < f.loaded_well_formed or f.incomplete] or list(v.files)
    detail = "; ".join(
        f"{f.name}: {f.loaded_rows} -> {f.records} rows ({f.loaded_well_formed} -> {f.well_formed} well-formed)"
        + (f", {f.incomplete}" if f.incomplete else "")
        for f in shrunk
    )
    loaded_rows = sum(f.loaded_rows for f in v.files)
    return (
        f"refused to replace {v.table} {v.day}: its {loaded_rows} loaded row(s) ({v.loaded} well-formed) would become "
        f"{v.records} ({v.well_formed} well-formed); {detail}; the partition is kept as loaded; {FORCE_HINT}"
    )


def allow_shrink(tags: Mapping[str, str]) -> bool:
    """Whether a run's tags force stopped days through (:data:`ALLOW_SHRINK_TAG`: ``true`` or ``false``)."""
    value = tags.get(ALLOW_SHRINK_TAG)
    if value is None or value.strip().lower() == "false":
        return False
    if value.strip().lower() == "true":
        return True
    raise InputError(f"run tag {ALLOW_SHRINK_TAG}={shown(value)}: must be true or false")


def audit_fields(verdict: DayVerdict, asset: str) -> dict:
    """The audit record of a forced day (``governance/audit.append`` fields besides actor and run)."""
    return {
        "asset": asset,
        "partition": verdict.day.isoformat(),
        "row_counts": {
            "loaded_well_formed": verdict.loaded or 0,
            "landed_well_formed": verdict.well_formed,
            "landed_records": verdict.records,
        },
        "status": "forced",
        "details": {
            "flag": f"{ALLOW_SHRINK_TAG}=true",
            "table": verdict.table,
            "files": [
                {
                    "file": f.name,
                    "loaded_rows": f.loaded_rows,
                    "loaded_well_formed": f.loaded_well_formed,
                    "landed_records": f.records,
                    "landed_well_formed": f.well_formed,
                    "incomplete": f.incomplete,
                }
                for f in verdict.files
            ],
            "refusal": verdict.refusal,
            "findings": list(verdict.findings),
        },
    }
