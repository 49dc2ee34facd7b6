"""The audit and lineage sensor: Dagster's event log -> audit records and OpenLineage events.

``audit_lineage_sensor`` (every 30 s, on by default, launches no runs) is the single writer of
the platform's own records of what happened. It reads the event log by storage id, so it sees
runs launched anywhere (UI, schedules, sensors, backfills, ``adp``, Dagster's CLI) and runless
reports, and turns

- every **asset materialization** into one ``materialization`` audit record (run id, asset,
  partition, rows, code version, the upstream data versions Dagster recorded, actor) and an
  OpenLineage START (at the step's start) + COMPLETE (at the materialization) with ``schema``,
  ``columnLineage``, ``dataQualityMetrics`` (rows, per-column null counts where the asset
  profiled them), ``version``, ``ownership``, ``documentation`` and ``tags`` (PII classification)
  facets, the upstream assets (and, for raw tables, the landing file) as inputs;
- every **asset check evaluation** into one ``check`` record and a START + COMPLETE (FAIL for a
  failed ERROR-severity check) of the check, whose input carries ``dataQualityAssertions``;
- every **failed run** into one ``run_failed`` record and one ``step_failed`` record per failed
  step, with START + FAIL (``errorMessage``) for each asset partition the step did not write.

Exactly once. Each record carries ``details.event_storage_id`` (and ``event_part`` when one
event makes several records). A tick holds ``audit/sensor.lock``, derives where it stopped from
the newest records of the audit log itself (falling back to the Dagster cursor when the log has
none), re-reads the :data:`OVERLAP` storage ids up to that point (event-log rows can commit
slightly out of id order on PostgreSQL), reads at most :data:`MAX_EVENTS_PER_TICK` new events per
type after it, and skips every (event, part) already recorded. A tick retried
after a crash, or evaluated by ``adp`` and the daemon both, therefore writes nothing twice.
OpenLineage lines are written before the audit records, so a crash between the two can repeat
identical OpenLineage lines but never lose one.

Storage ids: on PostgreSQL one id sequence covers every event; on the default SQLite storage the
index shard mirrors asset, check and run-status events with one global sequence, which is the one
read here (``SqlEventLogStorage.get_event_records``, bypassing the run-shard override).
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import dagster as dg
from dagster._core.events import ASSET_EVENTS
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

from ai_data_platform import settings
from ai_data_platform.governance import audit, classification
from ai_data_platform.governance import openlineage as ol
from ai_data_platform.metadata import PROFILE_KEY, asset_storage
from ai_data_platform.observability.sensors import _root_error_message

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
INPUT_VERSION_TAG = "dagster/input_data_version/"
_ACTOR_TAGS = (("adp/actor", "{}"), ("dagster/user", "{}"), ("dagster/schedule_name", "schedule:{}"),
               ("dagster/sensor_name", "sensor:{}"), ("dagster/backfill", "backfill:{}"), ("adp/trigger", "trigger:{}"))
_TRIGGER_TAGS = ("adp/actor", "adp/trigger", "dagster/user", "dagster/schedule_name", "dagster/sensor_name", "dagster/backfill")


# -- reading the event log --------------------------------------------------------------------------


def fetch_events(storage, event_type: dg.DagsterEventType, after: int, limit: int) -> list:
    """Event records of one type with storage id > ``after``, oldest first."""
    records_filter = dg.EventRecordsFilter(event_type=event_type, after_cursor=after)
    if getattr(storage, "is_run_sharded", False) and event_type not in ASSET_EVENTS:
        # SQLite mirrors check evaluations and run-status events into its index shard (see
        # SqliteEventLogStorage.store_event); the base implementation pages that shard by id.
        return list(SqlEventLogStorage.get_event_records(storage, records_filter, limit=limit, ascending=True))
    return list(storage.get_event_records(records_filter, limit=limit, ascending=True))


def actor_of(run: dg.DagsterRun | None) -> str:
    """Who launched a run: ``adp/actor`` or ``dagster/user``, else the schedule, sensor, backfill
    or ``adp/trigger`` that did, else ``ADP_ACTOR`` / user@host of this process."""
    tags = run.tags if run is not None else {}
    for tag, form in _ACTOR_TAGS:
        if tags.get(tag):
            return form.format(tags[tag])
    return audit.default_actor()


def _metadata_value(value: Any) -> Any:
    return value.value if isinstance(value, dg.MetadataValue) else value


def _nominal(partition: str | None) -> tuple[str, str] | None:
    try:
        day = date.fromisoformat(partition or "")
    except ValueError:
        return None
    start = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)
    return start.isoformat(), (start + timedelta(days=1)).isoformat()


# -- what one tick knows ----------------------------------------------------------------------------


class _World:
    """Lookups one tick needs, cached: runs, step start times, asset nodes, dataset identities."""

    def __init__(self, instance: dg.DagsterInstance, graph) -> None:
        self.instance = instance
        self.graph = graph
        self._runs: dict[str, dg.DagsterRun | None] = {}
        self._step_times: dict[tuple[str, dg.DagsterEventType], dict[str, float]] = {}
        self.paths = settings.paths()

    def run(self, run_id: str) -> dg.DagsterRun | None:
        if not run_id:
            return None
        if run_id not in self._runs:
            self._runs[run_id] = self.instance.get_run_by_id(run_id)
        return self._runs[run_id]

    def step_times(self, run_id: str, event_type: dg.DagsterEventType) -> dict[str, float]:
        """``{step key: timestamp}`` of the run's first event of ``event_type`` per step."""
        if not run_id:
            return {}
        if (run_id, event_type) not in self._step_times:
            times: dict[str, float] = {}
            for record in self.instance.get_records_for_run(run_id, of_type=event_type).records:
                entry = record.event_log_entry
                if entry.step_key and entry.step_key not in times:
                    times[entry.step_key] = entry.timestamp
            self._step_times[(run_id, event_type)] = times
        return self._step_times[(run_id, event_type)]

    def step_start(self, run_id: str, step_key: str | None, default: float) -> float:
        return self.step_times(run_id, dg.DagsterEventType.STEP_START).get(step_key or "", default)

    def node(self, key: dg.AssetKey):
        return self.graph.get(key) if self.graph is not None and self.graph.has(key) else None

    def dataset(self, key: dg.AssetKey) -> tuple[str, str]:
        """(namespace, name) of an asset's data: a warehouse table, a dataset or a model directory."""
        node = self.node(key)
        try:
            storage = asset_storage(node) if node is not None else None
        except ValueError:
            storage = None
        if storage is None:
            return "dagster://" + ol.namespace(), key.to_user_string()
        if storage.kind == "warehouse":
            return f"duckdb://{self.paths.warehouse}", storage.name
        folder = "datasets" if storage.kind == "dataset" else "models"
        return f"file://{self.paths.root}", f"{folder}/{storage.name}"

    def landing_file(self, key: dg.AssetKey, partition: str | None) -> tuple[str, str] | None:
        node = self.node(key)
        pattern = node.metadata.get("adp/landing_pattern") if node is not None else None
        if not pattern:
            return None
        return f"file://{self.paths.root}", str(_metadata_value(pattern)).replace("<day>", partition or "*")


@dataclass
class _Part:
    """One audit record and the OpenLineage events that go with it."""

    action: str
    fields: dict[str, Any]
    lineage: list[dict] = field(default_factory=list)


# -- materializations -------------------------------------------------------------------------------


def _rows_for(metadata: Mapping[str, Any], partition: str | None) -> tuple[int | None, dict[str, int] | None]:
    """(rows, null counts by column) of one partition, from the asset's profile when it has one."""
    profile = _metadata_value(metadata.get(PROFILE_KEY)) or {}
    if partition and partition in (profile.get("rows") or {}):
        return int(profile["rows"][partition]), {str(k): int(v) for k, v in (profile.get("nulls") or {}).get(partition, {}).items()}
    by_day = _metadata_value(metadata.get("rows_by_day")) or {}
    if partition and partition in by_day:
        return int(by_day[partition]), None
    total = _metadata_value(metadata.get("dagster/row_count"))
    return (int(total) if total is not None else None), None


def _output_facets(world: _World, key: dg.AssetKey, metadata: Mapping[str, Any], partition: str | None,
                   data_version: str | None, complete: bool) -> dict:
    node = world.node(key)
    definition = node.metadata if node is not None else {}
    schema = classification.schema_of(metadata) or classification.schema_of(definition)
    facets: dict[str, Any] = {}
    if schema is not None:
        facets["schema"] = ol.schema_facet([{"name": c.name, "type": c.type, "description": c.description} for c in schema.columns])
        facets["tags"] = ol.tags_facet({c: level or "unclassified" for c, level in classification.levels(schema).items()})
    if node is not None and node.owners:
        facets["ownership"] = ol.facet("ownership", owners=[{"name": o} for o in node.owners])
    if not complete:
        return facets
    lineage = classification.lineage_of(metadata) or classification.lineage_of(definition)
    if lineage is not None:
        facets["columnLineage"] = ol.column_lineage_facet(
            {column: [(*world.dataset(d.asset_key), d.column_name) for d in deps] for column, deps in lineage.deps_by_column.items()}
        )
    else:
        source = world.landing_file(key, partition)
        if source is not None and schema is not None:  # raw tables: file columns as landed
            facets["columnLineage"] = ol.column_lineage_facet(
                {c.name: [(*source, c.name)] for c in schema.columns if not c.name.startswith("_")}
            )
    rows, nulls = _rows_for(metadata, partition)
    if nulls is not None and schema is not None:
        nulls = {c.name: nulls.get(c.name, 0) for c in schema.columns}
    facets["dataQualityMetrics"] = ol.data_quality_metrics_facet(rows, nulls)
    if data_version:
        facets["version"] = ol.facet("version", datasetVersion=data_version)
    if node is not None and node.description:
        facets["documentation"] = ol.facet("documentation", description=node.description)
    return facets


def _run_facets(run: dg.DagsterRun | None, partition: str | None, error: str | None = None) -> dict:
    facets: dict[str, Any] = {}
    if run is not None:
        facets["parent"] = ol.parent_facet(run.job_name, run.run_id)
    nominal = _nominal(partition)
    if nominal:
        facets["nominalTime"] = ol.nominal_time_facet(*nominal)
    if error:
        facets["errorMessage"] = ol.error_facet(error)
    return facets


def _inputs(world: _World, key: dg.AssetKey, partition: str | None, input_versions: Mapping[str, str]) -> list[ol.Dataset]:
    node = world.node(key)
    inputs = []
    for parent in sorted(node.parent_keys if node is not None else (), key=lambda k: k.to_user_string()):
        version = input_versions.get(parent.to_user_string())
        facets = {"version": ol.facet("version", datasetVersion=version)} if version else None
        inputs.append(ol.Dataset(*world.dataset(parent), facets=facets))
    landing = world.landing_file(key, partition)
    if landing is not None:
        inputs.append(ol.Dataset(*landing))
    return inputs


def _materialization(world: _World, record) -> list[_Part]:
    entry = record.event_log_entry
    event = entry.dagster_event
    materialization = event.event_specific_data.materialization
    key, partition = materialization.asset_key, materialization.partition
    metadata = dict(materialization.metadata or {})
    tags = dict(materialization.tags or {})
    run = world.run(entry.run_id)
    input_versions = {k[len(INPUT_VERSION_TAG):]: v for k, v in tags.items() if k.startswith(INPUT_VERSION_TAG)}
    rows, _ = _rows_for(metadata, partition)
    total = _metadata_value(metadata.get("dagster/row_count"))
    row_counts = {"rows": rows} if rows is not None else {}
    if total is not None and total != rows:
        row_counts["rows_in_run"] = int(total)
    data_version = tags.get("dagster/data_version")
    asset = key.to_user_string()
    ol_run = ol.run_id(entry.run_id, asset, partition or "")
    start = world.step_start(entry.run_id, entry.step_key, entry.timestamp)
    job_facets = {"jobType": ol.job_type_facet("ASSET")}
    inputs = _inputs(world, key, partition, input_versions)
    namespace_name = world.dataset(key)
    lineage = [
        ol.run_event("START", start, ol_run, asset, inputs=inputs,
                     outputs=[ol.Dataset(*namespace_name, facets=_output_facets(world, key, metadata, partition, data_version, False))],
                     run_facets=_run_facets(run, partition), job_facets=job_facets),
        ol.run_event("COMPLETE", entry.timestamp, ol_run, asset, inputs=inputs,
                     outputs=[ol.Dataset(*namespace_name, facets=_output_facets(world, key, metadata, partition, data_version, True))],
                     run_facets=_run_facets(run, partition), job_facets=job_facets),
    ]
    fields = {
        "actor": actor_of(run),
        "ts": ol.iso(entry.timestamp),
        "run_id": entry.run_id or None,
        "asset": asset,
        "partition": partition,
        "row_counts": row_counts,
        "code_version": tags.get("dagster/code_version"),
        "input_data_versions": input_versions,
        "status": "success",
        "details": {
            "step": entry.step_key,
            "job": run.job_name if run is not None else None,
            "data_version": data_version,
            "trigger": {t: run.tags[t] for t in _TRIGGER_TAGS if run is not None and t in run.tags},
            "openlineage_run_id": ol_run,
        },
    }
    return [_Part("materialization", fields, lineage)]


# -- checks -----------------------------------------------------------------------------------------


def _check_message(evaluation) -> str:
    message = _metadata_value((evaluation.metadata or {}).get("message"))
    return str(message or evaluation.description or ("passed" if evaluation.passed else "failed"))[:1000]


def _check(world: _World, record) -> list[_Part]:
    entry = record.event_log_entry
    evaluation = entry.dagster_event.event_specific_data
    run = world.run(entry.run_id)
    partition = evaluation.partition or (run.tags.get("dagster/partition") if run is not None else None)
    asset = evaluation.asset_key.to_user_string()
    check = f"{asset}:{evaluation.check_name}"
    severity = evaluation.severity.value
    failed = not evaluation.passed and severity == "ERROR"
    message = _check_message(evaluation)
    ol_run = ol.run_id(entry.run_id, check, partition or "")
    assertion = {
        "assertion": evaluation.check_name,
        "name": check,
        "success": bool(evaluation.passed),
        "severity": "error" if severity == "ERROR" else "warn",
        "description": message,
    }
    checked = ol.Dataset(*world.dataset(evaluation.asset_key), input_facets={"dataQualityAssertions": ol.assertions_facet([assertion])})
    job_facets = {"jobType": ol.job_type_facet("ASSET_CHECK")}
    lineage = [
        ol.run_event("START", world.step_start(entry.run_id, entry.step_key, entry.timestamp), ol_run, check,
                     inputs=[checked], run_facets=_run_facets(run, partition), job_facets=job_facets),
        ol.run_event("FAIL" if failed else "COMPLETE", entry.timestamp, ol_run, check, inputs=[checked],
                     run_facets=_run_facets(run, partition, message if failed else None), job_facets=job_facets),
    ]
    fields = {
        "actor": actor_of(run),
        "ts": ol.iso(entry.timestamp),
        "run_id": entry.run_id or None,
        "asset": asset,
        "partition": partition,
        "status": "passed" if evaluation.passed else "failed",
        "details": {
            "check": evaluation.check_name,
            "severity": severity,
            "blocking": evaluation.blocking,
            "message": message,
            "step": entry.step_key,
            "openlineage_run_id": ol_run,
        },
    }
    return [_Part("check", fields, lineage)]


# -- failed runs ------------------------------------------------------------------------------------


def _partition_label(partitions: list[str]) -> str | None:
    if not partitions:
        return None
    return partitions[0] if len(partitions) == 1 else f"{partitions[0]}...{partitions[-1]}"


def _run_failure(world: _World, record) -> list[_Part]:
    entry = record.event_log_entry
    run_id = entry.run_id
    run = world.run(run_id)
    failures: dict[str, tuple[float, str]] = {}
    for failure in world.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
        step_entry = failure.event_log_entry
        data = step_entry.dagster_event.step_failure_data
        error = (_root_error_message(data.error) if data else None) or step_entry.dagster_event.message or "step failed"
        failures.setdefault(step_entry.step_key, (step_entry.timestamp, error))
    planned: dict[str, list[tuple[dg.AssetKey, str | None]]] = {}
    for plan in world.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records:
        data = plan.event_log_entry.dagster_event.event_specific_data
        planned.setdefault(plan.event_log_entry.step_key or "", []).append((data.asset_key, data.partition))
    written = {
        (m.event_log_entry.dagster_event.asset_key, m.event_log_entry.dagster_event.partition)
        for m in world.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    }
    missing = sorted({f"{k.to_user_string()}[{p}]" if p else k.to_user_string() for plans in planned.values() for k, p in plans if (k, p) not in written})
    run_error = entry.dagster_event.message if entry.dagster_event else entry.user_message
    actor = actor_of(run)
    parts = [
        _Part("run_failed", {
            "actor": actor,
            "ts": ol.iso(entry.timestamp),
            "run_id": run_id,
            "partition": run.tags.get("dagster/partition") if run is not None else None,
            "status": "failure",
            "details": {
                "job": run.job_name if run is not None else None,
                "failed_steps": sorted(failures),
                "error": (run_error or "")[:1000],
                "not_materialized": missing,
                "trigger": {t: run.tags[t] for t in _TRIGGER_TAGS if run is not None and t in run.tags},
            },
        })
    ]
    for step_key in sorted(failures):
        failed_at, error = failures[step_key]
        unwritten = [(k, p) for k, p in planned.get(step_key, []) if (k, p) not in written]
        assets = sorted({k.to_user_string() for k, _ in unwritten})
        partitions = sorted({p for _, p in unwritten if p})
        lineage = []
        start = world.step_start(run_id, step_key, failed_at)
        for key, partition in unwritten:
            asset = key.to_user_string()
            ol_run = ol.run_id(run_id, asset, partition or "")
            dataset = [ol.Dataset(*world.dataset(key))]
            job_facets = {"jobType": ol.job_type_facet("ASSET")}
            lineage += [
                ol.run_event("START", start, ol_run, asset, outputs=dataset, run_facets=_run_facets(run, partition), job_facets=job_facets),
                ol.run_event("FAIL", failed_at, ol_run, asset, outputs=dataset, run_facets=_run_facets(run, partition, error), job_facets=job_facets),
            ]
        parts.append(_Part("step_failed", {
            "actor": actor,
            "ts": ol.iso(failed_at),
            "run_id": run_id,
            "asset": assets[0] if len(assets) == 1 else None,
            "partition": _partition_label(partitions),
            "status": "failure",
            "details": {"step": step_key, "assets": assets, "partitions": partitions, "error": error[:1000]},
        }, lineage))
    return parts


_BUILDERS = {
    dg.DagsterEventType.ASSET_MATERIALIZATION: _materialization,
    dg.DagsterEventType.ASSET_CHECK_EVALUATION: _check,
    dg.DagsterEventType.RUN_FAILURE: _run_failure,
}


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


AUDIT_LOG_KEY = dg.AssetKey(["meta", "audit_log"])


def report_head(instance: dg.DagsterInstance, directory=None) -> None:
    """Record the chain's head on ``meta/audit_log`` in Dagster's storage, out of the writer's reach."""
    head = audit.head(directory)
    if head is not None:
        instance.report_runless_asset_event(
            dg.AssetObservation(asset_key=AUDIT_LOG_KEY, metadata={"head_seq": int(head["seq"]), "head_hash": str(head["hash"])})
        )


def recorded_head(instance: dg.DagsterInstance) -> dict | None:
    """The newest head recorded in Dagster: ``{"seq", "hash"}``, or None."""
    found = instance.fetch_observations(AUDIT_LOG_KEY, limit=1).records
    if not found:
        return None
    metadata = found[0].asset_observation.metadata
    return {"seq": int(_metadata_value(metadata["head_seq"])), "hash": str(_metadata_value(metadata["head_hash"]))}


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


@contextmanager
def _tick_lock(directory) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


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
    world = _World(instance, _graph(repository_def_or_defs))
    result = AuditTickResult()
    with _tick_lock(directory):
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
                parts = _BUILDERS[record.event_log_entry.dagster_event_type](world, record)
            except Exception as exc:  # one unreadable event must not stop the trail: record the gap
                log.exception(f"Audit sensor: cannot interpret event {record.storage_id}: {exc}")
                result.errors.append(f"event {record.storage_id}: {exc}")
                parts = [_Part("unreadable_event", {"run_id": record.event_log_entry.run_id or None, "status": "error",
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
        audit.append_many(entries, directory=directory)
        result.records, result.lineage_events = len(entries), len(lineage)
        if entries:
            report_head(instance, directory)
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
