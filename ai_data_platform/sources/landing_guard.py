"""The guard that keeps a loaded day from being silently emptied or filled with another day's records:
may a day's landing files fill, or replace, its raw partition?

Counts are of **well-formed** records (records that could be split into fields): a file of garbage
has many records and none of them usable.

* A **re-load** (the partition already holds rows from the day's landing files) that would keep
  fewer than :data:`RELOAD_KEEP_SHARE` of them, or none, or that loses rows to a file cut short, or
  whose files hold another day's records, is **refused** before anything is replaced: :func:`judge`
  returns the refusal, the load raises :class:`LoadRefused` and the partition stays as it was loaded.
* A **first load** is judged against the trailing days: a file cut short
  (``landing.LandedFile.incomplete``: a CSV without its header, a last record cut off, a quoted
  field never closed), a day far below the trailing days' median (:func:`volume_floor`) or a file
  of another day's records is a **finding**. Findings fail the raw asset's blocking
  ``landing_complete`` check, so nothing downstream is built from the day and the alert sensor
  raises an alert.

**A day's files hold the day's records** (:func:`belonging_findings`, per file, by the table's
contract: ``contracts.SourceTable.late_days``, ``first_export_full``, ``identity``):

* *Timed on the day.* Of a file's records whose event time is valid (it parses and lies in the range
  staging accepts; the others are staging's ``invalid_timestamp``), at least :data:`ON_DAY_SHARE`
  are timed on the day itself, and those timed neither on the day nor within the contract's
  lateness before it stay within staging's tolerance (:data:`OUTSIDE_WINDOW_SHARE` plus binomial
  noise). A file copied from another day, or an export holding mostly another day's records,
  fails. A table's first partition is not judged by time when its contract says the first export
  may be a full one (every record up to that day).
* *Not another day's records.* At most :data:`REPEATED_KEYS_SHARE` of a file's distinct records
  (its key, or key and version time for a table whose key recurs) may already be loaded in other
  partitions: a re-delivered or copied day repeats them all. A re-load of the *same* day replaces
  its own partition, so its own records are never "another day's".

An operator who knows such a day is right forces it with the run tag ``adp/allow_shrink=true``
(``adp materialize --allow-shrink``; in the Dagster UI a tag on the launchpad or the backfill). The
load then proceeds, the check passes with a warning, and an audit record (:func:`audit_fields`)
names the files, the partition, the counts and the actor. Pure Python: no Dagster, no DuckDB.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime

from ai_data_platform.errors import InputError, shown
from ai_data_platform.quality.tolerances import MAX_RULE_FAILURE_RATE, exceeds

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

# A day's export holds the day's records: at least this share of a file's validly timed records
# are timed on the day itself (the simulated collector delivers 2% of events late; a copied file
# has none on the day). A table whose records may arrive late is judged so only from
# ON_DAY_MIN_JUDGED records on: one late event alone is no majority of another day.
ON_DAY_SHARE = 0.5
ON_DAY_MIN_JUDGED = 5
# Records timed neither on the day nor within the contract's lateness before it: tolerated as
# staging tolerates the rows failing one rule (5% plus binomial noise, ``quality.tolerances``).
OUTSIDE_WINDOW_SHARE = MAX_RULE_FAILURE_RATE
# Distinct records of a file already loaded in other partitions: a few re-sent records load (and
# staging's ``key_unique_across_days`` shows them), a re-delivered or copied day does not.
REPEATED_KEYS_SHARE = 0.05


class LoadRefused(InputError):
    """A re-load refused before anything was replaced; the message names files, counts and the force."""


@dataclass(frozen=True)
class RecordTimes:
    """When a file's well-formed records are timed, against its day."""

    judged: int  # records with a valid time (it parses and lies in the range staging accepts)
    on_day: int  # of them, timed on the day itself
    late: int  # timed within the contract's lateness before the day
    earliest: datetime | None = None  # the earliest and latest time of the records not on the day
    latest: datetime | None = None

    @property
    def outside(self) -> int:
        """Records timed neither on the day nor within the lateness before it."""
        return self.judged - self.on_day - self.late


@dataclass(frozen=True)
class KeyRepeats:
    """A file's distinct records (by the contract's ``identity``) and how many other partitions hold."""

    keys: int
    repeated: int = 0
    partitions: tuple[tuple[date, int], ...] = ()  # the partitions holding most of them, most first


@dataclass(frozen=True)
class DayRule:
    """What one table's day may hold (its contract): records timed on the day or ``late_days`` before
    it, unless the day may be an initial full export (``full_export``); no record of another day."""

    time_column: str
    late_days: int = 0
    full_export: bool = False
    identity: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileIntake:
    """One landing file of a day: its records, and what the loaded partition holds from it."""

    name: str
    records: int
    well_formed: int
    incomplete: str | None = None  # why the file looks cut short; None when whole
    loaded_rows: int = 0  # rows of the loaded partition from this file
    loaded_well_formed: int = 0
    times: RecordTimes | None = None  # None: not judged by time
    repeats: KeyRepeats | None = None  # None: not judged by keys


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
    foreign: tuple[str, ...] = ()  # what in the files does not belong to the day (see the module docstring)

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
        return (
            f"{self.table} {self.day}: {self.well_formed} well-formed record(s) in {len(self.files)} {files}, "
            f"none cut short, none of another day; {baseline}"
        )


def volume_floor(median: float) -> float:
    """The fewest well-formed records a day may hold given its trailing days' median (see the constants)."""
    expected = VOLUME_FLOOR_SHARE * median
    return expected - VOLUME_FLOOR_SIGMAS * math.sqrt(expected)


def judge(
    table: str, day: date, files: Sequence[FileIntake], history: Sequence[int], rule: DayRule | None = None
) -> DayVerdict:
    """The verdict on one day's landing ``files`` given the well-formed counts of its trailing days
    (``history``; the partition's loaded counts, and when the records are timed and how many are
    already loaded on other days, are in each :class:`FileIntake`; ``rule``: what the day may hold)."""
    files = tuple(files)
    loaded = sum(f.loaded_well_formed for f in files) or None
    median = statistics.median(history) if history else None
    foreign = tuple(finding for f in files for finding in belonging_findings(table, day, f, rule)) if rule else ()
    verdict = DayVerdict(table, day, files, loaded, median, len(history), foreign=foreign)
    landed = verdict.well_formed
    cut = [f for f in files if f.incomplete]
    shrinks = loaded is not None and (landed < RELOAD_KEEP_SHARE * loaded or (landed < loaded and bool(cut)))
    if shrinks or (loaded is not None and foreign):
        return replace(verdict, refusal=_refusal(verdict, shrinks))
    findings = [f"{table} {day}: {f.name} {f.incomplete}" for f in cut] + [f"{table} {day}: {x}" for x in foreign]
    if median is not None and landed < volume_floor(median):
        findings.append(
            f"{table} {day}: {_names(files)} hold(s) {landed} well-formed record(s), far below the trailing median "
            f"{median:.0f} of {len(history)} day(s) (at least {math.ceil(volume_floor(median))} expected)"
        )
    return replace(verdict, findings=tuple(findings))


def belonging_findings(table: str, day: date, f: FileIntake, rule: DayRule) -> list[str]:
    """What in file ``f`` does not belong to ``day`` (see the module docstring), each naming the file."""
    out = []
    times = f.times
    if times is not None and times.judged and not rule.full_export:
        off_day = times.judged - times.on_day
        mostly_elsewhere = times.on_day < ON_DAY_SHARE * times.judged and (
            rule.late_days == 0 or times.judged >= ON_DAY_MIN_JUDGED
        )
        if mostly_elsewhere or exceeds(times.outside, times.judged, OUTSIDE_WINDOW_SHARE):
            late = f" or up to {rule.late_days} day(s) before it (delivered late)" if rule.late_days else ""
            out.append(
                f"{f.name}: {off_day} of {times.judged} record(s) with a valid {rule.time_column} are not timed "
                f"on {day} ({times.outside} outside the day's window), timed {_span(times.earliest, times.latest)}; "
                f"a day's export holds records timed on {day}{late}"
            )
    repeats = f.repeats
    if repeats is not None and repeats.repeated > REPEATED_KEYS_SHARE * repeats.keys:
        where = ", ".join(f"{d} ({n})" for d, n in repeats.partitions)
        out.append(
            f"{f.name}: {repeats.repeated} of its {repeats.keys} distinct record(s) ({' + '.join(rule.identity)}) "
            f"are already loaded on another day: {where}; a day's export repeats no other day's records"
        )
    return out


def _span(earliest: datetime | None, latest: datetime | None) -> str:
    if earliest is None or latest is None:
        return "-"
    first, last = f"{earliest:%Y-%m-%d %H:%M:%S}", f"{latest:%Y-%m-%d %H:%M:%S}"
    return first if first == last else f"{first} .. {last}"


def forced(verdict: DayVerdict) -> DayVerdict:
    """The verdict of a day an operator forced: loaded despite what it says."""
    return replace(verdict, forced=True)


def _names(files: Sequence[FileIntake]) -> str:
    return files[0].name if len(files) == 1 else ", ".join(f"{f.name} ({f.well_formed})" for f in files)


def _refusal(v: DayVerdict, shrinks: bool) -> str:
    """One line: why a re-load is refused (the day shrinks, or its files hold another day's records)."""
    reasons = [_shrinkage(v)] if shrinks else []
    return (
        f"refused to replace {v.table} {v.day}: {'; '.join(reasons + list(v.foreign))}; "
        f"the partition is kept as loaded; {FORCE_HINT}"
    )


def _shrinkage(v: DayVerdict) -> str:
    shrunk = [f for f in v.files if f.well_formed < f.loaded_well_formed or f.incomplete] or list(v.files)
    detail = "; ".join(
        f"{f.name}: {f.loaded_rows} -> {f.records} rows ({f.loaded_well_formed} -> {f.well_formed} well-formed)"
        + (f", {f.incomplete}" if f.incomplete else "")
        for f in shrunk
    )
    loaded_rows = sum(f.loaded_rows for f in v.files)
    return (
        f"its {loaded_rows} loaded row(s) ({v.loaded} well-formed) would become {v.records} "
        f"({v.well_formed} well-formed); {detail}"
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
                    **_belonging_counts(f),
                }
                for f in verdict.files
            ],
            "refusal": verdict.refusal,
            "findings": list(verdict.findings),
            "not_of_the_day": list(verdict.foreign),
        },
    }


def _belonging_counts(f: FileIntake) -> dict:
    """The audit record's counts of when a file's records are timed and how many repeat other days."""
    out = {}
    if f.times is not None:
        out |= {"timed_records": f.times.judged, "timed_on_day": f.times.on_day, "timed_late": f.times.late}
    if f.repeats is not None:
        out |= {
            "distinct_records": f.repeats.keys,
            "loaded_on_other_days": f.repeats.repeated,
            "other_days": {d.isoformat(): n for d, n in f.repeats.partitions},
        }
    return out
