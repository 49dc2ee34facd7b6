"""Dagster events -> audit records and OpenLineage events (what the audit sensor writes).

:func:`parts_for` turns one event-log record into :class:`Part` objects: one audit record each, with
the OpenLineage events that go with it.

- an **asset materialization**: a ``materialization`` record (run id, asset, partition, rows,
  code version, the upstream data versions Dagster recorded, actor) and an OpenLineage START (at
  the step's start) + COMPLETE (at the materialization) with ``schema``, ``columnLineage``,
  ``dataQualityMetrics`` (rows, per-column null counts from the asset's ``adp/profile``),
  ``version``, ``ownership``, ``documentation`` and ``tags`` (PII classification) facets and the
  upstream assets (and, for raw tables, the partition's landing files, one per region for a table
  landing in the regional zones) as inputs;
- an **asset check evaluation**: a ``check`` record and START + COMPLETE (FAIL for a failed
  ERROR-severity check) of the check, whose input carries ``dataQualityAssertions``;
- a **failed run**: a ``run_failed`` record and a ``step_failed`` record per failed step, with
  START + FAIL (``errorMessage``) for each asset partition the step did not write.

One OpenLineage run per asset partition (or check evaluation) per Dagster run; the Dagster run is
its ``parent``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import dagster as dg

from ai_data_platform import settings
from ai_data_platform.governance import audit, classification
from ai_data_platform.governance import openlineage as ol
from ai_data_platform.metadata import PROFILE_KEY, asset_storage
from ai_data_platform.observability.sensors import _root_error_message
from ai_data_platform.sources.contracts import TABLES_BY_NAME
from ai_data_platform.sources.landing import LandingZones

INPUT_VERSION_TAG = "dagster/input_data_version/"
_ACTOR_TAGS = (("adp/actor", "{}"), ("dagster/user", "{}"), ("dagster/schedule_name", "schedule:{}"),
               ("dagster/sensor_name", "sensor:{}"), ("dagster/backfill", "backfill:{}"), ("adp/trigger", "trigger:{}"))
_TRIGGER_TAGS = ("adp/actor", "adp/trigger", "dagster/user", "dagster/schedule_name", "dagster/sensor_name", "dagster/backfill")


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
    """(start, end) of a daily partition, or of a ``first...last`` range of them."""
    first, _, last = (partition or "").partition("...")
    try:
        start_day, end_day = date.fromisoformat(first), date.fromisoformat(last or first)
    except ValueError:
        return None
    start = datetime.combine(start_day, datetime.min.time(), tzinfo=timezone.utc)
    end = datetime.combine(end_day + timedelta(days=1), datetime.min.time(), tzinfo=timezone.utc)
    return start.isoformat(), end.isoformat()


# -- what one tick knows ----------------------------------------------------------------------------


class World:
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

    def landing_files(self, key: dg.AssetKey, partition: str | None) -> list[tuple[str, str]]:
        """(namespace, name) of each landing file a raw table's partition loads (``*`` for every day
        without a partition): ``file://<data dir>`` + the path below it, or, for a zone configured
        outside the data directory, ``file://<zone root>`` + the path below that."""
        node = self.node(key)
        t = TABLES_BY_NAME.get(key.path[-1]) if node is not None and node.metadata.get("adp/landing_pattern") else None
        if t is None:
            return []
        zones = LandingZones.from_settings(self.paths)
        out = []
        for (_, zone), path in zip(zones.zones(t), zones.files(t, partition or "*")):
            base = self.paths.root if path.is_relative_to(self.paths.root) else zone
            out.append((f"file://{base}", path.relative_to(base).as_posix()))
        return out


@dataclass
class Part:
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


def _output_facets(world: World, key: dg.AssetKey, metadata: Mapping[str, Any], partition: str | None,
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
        sources = world.landing_files(key, partition)
        if sources and schema is not None:  # raw tables: file columns as landed
            facets["columnLineage"] = ol.column_lineage_facet(
                {c.name: [(*source, c.name) for source in sources] for c in schema.columns if not c.name.startswith("_")}
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


def _inputs(world: World, key: dg.AssetKey, partition: str | None, input_versions: Mapping[str, str]) -> list[ol.Dataset]:
    node = world.node(key)
    inputs = []
    for parent in sorted(node.parent_keys if node is not None else (), key=lambda k: k.to_user_string()):
        version = input_versions.get(parent.to_user_string())
        facets = {"version": ol.facet("version", datasetVersion=version)} if version else None
        inputs.append(ol.Dataset(*world.dataset(parent), facets=facets))
    inputs += [ol.Dataset(*landing) for landing in world.landing_files(key, partition)]
    return inputs


def _materialization(world: World, record) -> list[Part]:
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
    return [Part("materialization", fields, lineage)]


# -- checks -----------------------------------------------------------------------------------------


def _run_partitions(run: dg.DagsterRun | None) -> str | None:
    """The partition, or ``start...end`` range, a run was launched for."""
    tags = run.tags if run is not None else {}
    if tags.get("dagster/partition"):
        return tags["dagster/partition"]
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    return f"{start}...{end}" if start and end else None


def _check_message(evaluation) -> str:
    message = _metadata_value((evaluation.metadata or {}).get("message"))
    return str(message or evaluation.description or ("passed" if evaluation.passed else "failed"))[:1000]


def _check(world: World, record) -> list[Part]:
    entry = record.event_log_entry
    evaluation = entry.dagster_event.event_specific_data
    run = world.run(entry.run_id)
    partition = evaluation.partition or _run_partitions(run)
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
    return [Part("check", fields, lineage)]


# -- failed runs ------------------------------------------------------------------------------------


def _partition_label(partitions: list[str]) -> str | None:
    if not partitions:
        return None
    return partitions[0] if len(partitions) == 1 else f"{partitions[0]}...{partitions[-1]}"


def _run_failure(world: World, record) -> list[Part]:
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
        Part("run_failed", {
            "actor": actor,
            "ts": ol.iso(entry.timestamp),
            "run_id": run_id,
            "partition": _run_partitions(run),
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
        parts.append(Part("step_failed", {
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


def parts_for(world: World, record) -> list[Part]:
    """The audit records (with their OpenLineage events) of one event-log record."""
    return _BUILDERS[record.event_log_entry.dagster_event_type](world, record)
