"""The audit and lineage sensor: Dagster's event log -> audit records and OpenLineage events.

``audit_lineage_sensor`` (every 30 s, on by default, launches no runs) is the single writer of
the platform's own records of what happened. It reads the event log by storage id, so it sees
runs launched anywhere (UI, schedules, sensors, backfills, ``adp``, Dagster's CLI) and runless
reports, and records every asset materialization, asset check evaluation and failed run/step
(what each becomes: :mod:`ai_data_platform.governance.audit_events`). Every append anchors its
head in the tick's Dagster storage (:mod:`ai_data_platform.governance.audit_anchor`); a tick with
nothing to append still anchors records an earlier writer could not (``audit.anchor_pending``).

Exactly once. Each record carries ``details.event_storage_id`` (and ``event_part`` when one
event makes several records). A tick holds ``audit/sensor.lock``, derives where it stopped from
the newest records of the audit log itself (falling back to the Dagster cursor when the log has
none), re-reads the :data:`OVERLAP` storage ids up to that point (event-log rows can commit
slightly out of id order on PostgreSQL), reads at most :data:`MAX_EVENTS_PER_TICK` new events per
type after it, and skips every (event, part) already recorded. A tick retried after a crash, or
evaluated by ``adp`` and the daemon both, therefore writes nothing twice. OpenLineage lines are
written before the audit records, so a crash between the two can repeat identical OpenLineage
lines but never lose one.

Storage ids: on PostgreSQL one id sequence covers every event; on the default SQLite storage the
index shard mirrors asset, check and run-status events with one global sequence, which is the one
read here (``SqlEventLogStorage.get_event_records``, bypassing the run-shard override).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.events import ASSET_EVENTS
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

from ai_data_platform.file_lock import locked
from ai_data_platform.governance import audit
from ai_data_platform.governance import openlineage as ol
from ai_data_platform.governance.audit_anchor import AUDIT_LOG_KEY, DagsterAnchor  # noqa: F401 (importable from here)
from ai_data_platform.governance.audit_events import Part, World, parts_for

AUDIT_SENSOR_NAME = "audit_lineage_sensor"
CURSOR_VERSION = 1
#: Storage ids re-read behind the last recorded one (late commits); the audit log dedups them.
OVERLAP = 200
#: Events fetched per event type per tick; the rest waits for the next tick.
MAX_EVENTS_PER_TICK = 1000
EVENT_TYPES = (
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION,
    dg.DagsterEventType.RUN_FAILURE,
)
LOCK_FILE = "sensor.lock"


# -- reading the event log --------------------------------------------------------------------------


def fetch_events(storage, event_type: dg.DagsterEventType, after: int, limit: int) -> list:
    """Event records of one type with storage id > ``after``, oldest first."""
    records_filter = dg.EventRecordsFilter(event_type=event_type, after_cursor=after)
    if getattr(storage, "is_run_sharded", False) and event_type not in ASSET_EVENTS:
        # SQLite mirrors check evaluations and run-status events into its index shard (see
        # SqliteEventLogStorage.store_event); the base implementation pages that shard by id.
        return list(SqlEventLogStorage.get_event_records(storage, records_filter, limit=limit, ascending=True))
    return list(storage.get_event_records(records_filter, limit=limit, ascending=True))


# -- the tick ---------------------------------------------------------------------------------------


@dataclass
class AuditTickResult:
    records: int = 0
    lineage_events: int = 0
    events_read: int = 0
    duplicates_skipped: int = 0
    more: bool = False  # a page was full: more events wait
    cursor: str = ""
    delivery: ol.DeliveryReport | None = None
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"{self.records} audit record(s) and {self.lineage_events} OpenLineage event(s) from "
            f"{self.events_read} event(s); {self.duplicates_skipped} already recorded"
        )
        if self.more:
            text += "; more events wait for the next tick"
        if self.delivery is not None and (self.delivery.delivered or self.delivery.error):
            text += f"; delivered {self.delivery.delivered} to OPENLINEAGE_URL"
            if self.delivery.error:
                text += f", {self.delivery.pending} pending ({self.delivery.error})"
        return text + "".join(f"; error: {e}" for e in self.errors)


def report_head(instance: dg.DagsterInstance, directory=None) -> None:
    """Anchor in ``instance`` any records of the log after its anchored head (``audit.anchor_pending``)."""
    audit.anchor_pending(directory=directory, anchor=DagsterAnchor(instance))


def recorded_head(instance: dg.DagsterInstance) -> dict | None:
    """The newest head of this deployment's trail recorded in ``instance``: ``{"trail_id", "seq", "hash",
    "mac"}``, or None."""
    head = DagsterAnchor(instance).newest(audit.trail_name())
    return None if head is None else {"trail_id": head.trail_id, "seq": head.seq, "hash": head.hash, "mac": head.mac}


def _recorded(directory) -> tuple[int | None, set[tuple[int, int]]]:
    """The newest source storage id in the audit log and every (id, part) recorded near it."""
    high: int | None = None
    seen: set[tuple[int, int]] = set()
    for record in audit.records_newest_first(directory):
        source = (record.get("details") or {}).get("event_storage_id")
        if not isinstance(source, int):
            continue  # a record this sensor did not write (erasure, retention, ...)
        high = source if high is None else max(high, source)
        if source <= high - 2 * OVERLAP:
            break  # every record before this one has a smaller id than anything re-read
        seen.add((source, int(record["details"].get("event_part", 0))))
    return high, seen


def _cursor_after(cursor: str | None) -> int:
    try:
        data = json.loads(cursor or "")
        return int(data["after"]) if data.get("version") == CURSOR_VERSION else -1
    except (ValueError, KeyError, TypeError, AttributeError):
        return -1


def _graph(repository_def_or_defs):
    if repository_def_or_defs is None:
        return None
    if isinstance(repository_def_or_defs, dg.Definitions):
        return repository_def_or_defs.resolve_asset_graph()
    return repository_def_or_defs.asset_graph


def evaluate_audit_once(
    instance: dg.DagsterInstance,
    repository_def_or_defs=None,
    cursor: str | None = None,
    *,
    sink: ol.LineageSink | None = None,
    audit_directory=None,
    log: logging.Logger | Any | None = None,
    max_events: int = MAX_EVENTS_PER_TICK,
) -> AuditTickResult:
    """One tick: record every new event (see the module docstring). Usable from tests and ``adp``.

    Raises when the audit log or the lineage file cannot be written (the tick is then retried and
    writes nothing twice); OpenLineage delivery failures never raise.
    """
    log = log or logging.getLogger(__name__)
    sink = sink or ol.LineageSink.from_env(log=log)
    directory = audit_directory or audit.audit_dir()
    world = World(instance, _graph(repository_def_or_defs))
    result = AuditTickResult()
    with locked(directory / LOCK_FILE):
        high, seen = _recorded(directory)
        storage = instance.event_log_storage
        window = []
        if high is not None:  # at most OVERLAP ids lie in the window: one page per type holds them all
            window = [r for t in EVENT_TYPES for r in fetch_events(storage, t, high - OVERLAP, OVERLAP) if r.storage_id <= high]
        after = high if high is not None else _cursor_after(cursor)
        pages = {t: fetch_events(storage, t, after, max_events) for t in EVENT_TYPES}
        full = [page[-1].storage_id for page in pages.values() if len(page) >= max_events]
        bound = min(full) if full else None
        records = sorted(
            [*window, *(r for page in pages.values() for r in page if bound is None or r.storage_id <= bound)],
            key=lambda r: r.storage_id,
        )
        result.events_read, result.more = len(records), bool(full)
        entries: list[tuple[str, dict]] = []
        lineage: list[dict] = []
        for record in records:
            try:
                parts = parts_for(world, record)
            except Exception as exc:  # one unreadable event must not stop the trail: record the gap
                log.exception(f"Audit sensor: cannot interpret event {record.storage_id}: {exc}")
                result.errors.append(f"event {record.storage_id}: {exc}")
                parts = [Part("unreadable_event", {"run_id": record.event_log_entry.run_id or None, "status": "error",
                                                     "details": {"event_type": record.event_log_entry.dagster_event_type.value, "error": str(exc)[:500]}})]
            for number, part in enumerate(parts):
                if (record.storage_id, number) in seen:
                    result.duplicates_skipped += 1
                    continue
                details = dict(part.fields.get("details") or {})
                details.update(event_storage_id=record.storage_id, event_part=number)
                entries.append((part.action, {**part.fields, "details": details}))
                lineage += part.lineage
        sink.write(lineage)  # first: a crash before the audit append repeats lines, never loses them
        anchor = DagsterAnchor(instance)
        if entries:
            audit.append_many(entries, directory=directory, anchor=anchor)
        else:
            audit.anchor_pending(directory=directory, anchor=anchor)
        result.records, result.lineage_events = len(entries), len(lineage)
        newest = records[-1].storage_id if records else after
        result.cursor = json.dumps({"version": CURSOR_VERSION, "after": max(newest, after)})
    result.delivery = sink.deliver()
    return result


@dg.sensor(
    name=AUDIT_SENSOR_NAME,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Writes one hash-chained audit record per materialization, asset check result and failed "
        "run/step to $ADP_DATA_DIR/audit/audit.jsonl, and OpenLineage START/COMPLETE/FAIL events to "
        "$ADP_DATA_DIR/lineage/openlineage.jsonl (POSTed to $OPENLINEAGE_URL when set). Launches no runs."
    ),
)
def audit_lineage_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    started = time.monotonic()
    result = evaluate_audit_once(context.instance, context.repository_def, context.cursor, log=context.log)
    context.log.info(f"{result.summary()} in {time.monotonic() - started:.1f}s")
    return dg.SensorResult(skip_reason=dg.SkipReason(result.summary()), cursor=result.cursor)
