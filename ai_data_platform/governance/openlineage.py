"""OpenLineage run events: building them, writing them, delivering them, validating them.

The platform speaks OpenLineage spec 2-0-2. One *OpenLineage run* is one materialization of one
asset partition (or one evaluation of one asset check) inside a Dagster run, so every run has
exactly one START and one COMPLETE or FAIL. Its id is a UUID derived from the Dagster run id,
the asset (or check) and the partition, so rebuilding an event from the same Dagster event gives
the same id. The Dagster run it belongs to is the ``parent`` run facet.

Events are appended as JSON lines to ``$ADP_DATA_DIR/lineage/openlineage.jsonl`` (the system of
record, fsynced) and, when ``OPENLINEAGE_URL`` is set, POSTed to ``{url}/api/v1/lineage``
(Marquez's endpoint; ``OPENLINEAGE_ENDPOINT`` overrides the path, ``OPENLINEAGE_API_KEY`` adds a
bearer token). Delivery keeps a byte offset per endpoint in ``lineage/delivery.json``: each call
sends the events after the offset in order (a new endpoint gets the file from its start, at most
5000 events per call) and stops at the first one that cannot be delivered after bounded retries,
so a down endpoint costs one bounded attempt per call, never fails the caller, and gets every
event once it is back.

Pure Python (``requests``, ``jsonschema``), no Dagster. :func:`validator` checks events against
the published JSON schemas (the core spec and the facet schemas, registered together).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ai_data_platform import settings
from ai_data_platform.observability.alerts import post_json
from ai_data_platform.observability.redaction import scrub, shown_url
from ai_data_platform.private_files import make_private_dir, private_fd, write_private

SPEC_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
RUN_EVENT_SCHEMA_URL = f"{SPEC_URL}#/$defs/RunEvent"
PRODUCER = "https://github.com/ai-data-platform/ai_data_platform/tree/v0.1.0"
NAMESPACE_ENV = "OPENLINEAGE_NAMESPACE"
URL_ENV = "OPENLINEAGE_URL"
ENDPOINT_ENV = "OPENLINEAGE_ENDPOINT"
API_KEY_ENV = "OPENLINEAGE_API_KEY"
DEFAULT_NAMESPACE = "ai_data_platform"
DEFAULT_ENDPOINT = "api/v1/lineage"
EVENTS_FILE = "openlineage.jsonl"
DELIVERY_FILE = "delivery.json"
_RUN_NAMESPACE = uuid.UUID("5b0d8f44-3c36-4a55-9a4b-2f6a7f0e6c1d")

# facet name -> (schema file, $defs name, version path segment)
FACETS = {
    "schema": ("SchemaDatasetFacet", "1-2-0"),
    "columnLineage": ("ColumnLineageDatasetFacet", "1-2-0"),
    "dataQualityMetrics": ("DataQualityMetricsDatasetFacet", "1-0-0"),
    "dataQualityAssertions": ("DataQualityAssertionsDatasetFacet", "1-1-0"),
    "version": ("DatasetVersionDatasetFacet", "1-0-1"),
    "ownership": ("OwnershipDatasetFacet", "1-0-1"),
    "documentation": ("DocumentationDatasetFacet", "1-1-0"),
    "tags": ("TagsDatasetFacet", "1-0-0"),
    "parent": ("ParentRunFacet", "1-2-0"),
    "nominalTime": ("NominalTimeRunFacet", "1-0-1"),
    "errorMessage": ("ErrorMessageRunFacet", "1-0-1"),
    "jobType": ("JobTypeJobFacet", "2-0-4"),
}

logger = logging.getLogger(__name__)


def namespace() -> str:
    """The job namespace (``OPENLINEAGE_NAMESPACE``, default ``ai_data_platform``)."""
    return os.environ.get(NAMESPACE_ENV, "").strip() or DEFAULT_NAMESPACE


def lineage_dir() -> Path:
    return settings.data_dir() / "lineage"


def run_id(*parts: str) -> str:
    """A stable UUID for an OpenLineage run from what identifies it."""
    return str(uuid.uuid5(_RUN_NAMESPACE, "\x1f".join(parts)))


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


def facet(name: str, **fields: Any) -> dict:
    """A facet with its ``_producer`` and ``_schemaURL``."""
    schema, version = FACETS[name]
    return {"_producer": PRODUCER, "_schemaURL": f"https://openlineage.io/spec/facets/{version}/{schema}.json#/$defs/{schema}", **fields}


# -- facets ----------------------------------------------------------------------------------------


def schema_facet(columns: Sequence[Mapping[str, Any]]) -> dict:
    """``columns``: ``{"name", "type", "description"?}`` in table order."""
    fields = []
    for position, column in enumerate(columns, start=1):
        entry = {"name": column["name"], "type": column.get("type") or "UNKNOWN", "ordinal_position": position}
        if column.get("description"):
            entry["description"] = column["description"]
        fields.append(entry)
    return facet("schema", fields=fields)


def column_lineage_facet(deps_by_column: Mapping[str, Sequence[tuple[str, str, str]]]) -> dict:
    """``{output column: [(input namespace, input name, input column), ...]}``."""
    return facet(
        "columnLineage",
        fields={
            column: {"inputFields": [{"namespace": ns, "name": name, "field": field} for ns, name, field in deps]}
            for column, deps in deps_by_column.items()
        },
    )


def data_quality_metrics_facet(row_count: int | None, null_counts: Mapping[str, int] | None) -> dict:
    fields: dict[str, Any] = {"columnMetrics": {c: {"nullCount": int(n)} for c, n in (null_counts or {}).items()}}
    if row_count is not None:
        fields["rowCount"] = int(row_count)
    return facet("dataQualityMetrics", **fields)


def assertions_facet(assertions: Sequence[Mapping[str, Any]]) -> dict:
    return facet("dataQualityAssertions", assertions=[dict(a) for a in assertions])


def tags_facet(column_levels: Mapping[str, str]) -> dict:
    """The PII classification of every column, as OpenLineage column tags."""
    return facet(
        "tags",
        tags=[{"key": "pii", "value": level, "source": "ai_data_platform", "field": column} for column, level in column_levels.items()],
    )


def parent_facet(job_name: str, parent_run_id: str) -> dict:
    return facet("parent", job={"namespace": namespace(), "name": job_name}, run={"runId": parent_run_id})


def nominal_time_facet(start: str, end: str | None) -> dict:
    fields = {"nominalStartTime": start}
    if end:
        fields["nominalEndTime"] = end
    return facet("nominalTime", **fields)


def error_facet(message: str, stack_trace: str | None = None) -> dict:
    fields = {"message": message, "programmingLanguage": "python"}
    if stack_trace:
        fields["stackTrace"] = stack_trace
    return facet("errorMessage", **fields)


def job_type_facet(job_type: str) -> dict:
    return facet("jobType", processingType="BATCH", integration="DAGSTER", jobType=job_type)


# -- events ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    namespace: str
    name: str
    facets: Mapping[str, Any] | None = None
    input_facets: Mapping[str, Any] | None = None

    def as_input(self) -> dict:
        out: dict[str, Any] = {"namespace": self.namespace, "name": self.name}
        if self.facets:
            out["facets"] = dict(self.facets)
        if self.input_facets:
            out["inputFacets"] = dict(self.input_facets)
        return out

    def as_output(self) -> dict:
        out: dict[str, Any] = {"namespace": self.namespace, "name": self.name}
        if self.facets:
            out["facets"] = dict(self.facets)
        return out


def run_event(
    event_type: str,
    event_time: float,
    ol_run_id: str,
    job_name: str,
    *,
    inputs: Iterable[Dataset] = (),
    outputs: Iterable[Dataset] = (),
    run_facets: Mapping[str, Any] | None = None,
    job_facets: Mapping[str, Any] | None = None,
) -> dict:
    """One RunEvent (``START``, ``COMPLETE``, ``FAIL``, ...)."""
    event: dict[str, Any] = {
        "eventType": event_type,
        "eventTime": iso(event_time),
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT_SCHEMA_URL,
        "run": {"runId": ol_run_id},
        "job": {"namespace": namespace(), "name": job_name},
        "inputs": [d.as_input() for d in inputs],
        "outputs": [d.as_output() for d in outputs],
    }
    if run_facets:
        event["run"]["facets"] = dict(run_facets)
    if job_facets:
        event["job"]["facets"] = dict(job_facets)
    return event


# -- the sink --------------------------------------------------------------------------------------


def _endpoint_url(url: str) -> str:
    path = os.environ.get(ENDPOINT_ENV, "").strip() or DEFAULT_ENDPOINT
    return url.rstrip("/") + "/" + path.lstrip("/")


@dataclass
class DeliveryReport:
    delivered: int = 0
    pending: int = 0
    error: str | None = None


class LineageSink:
    """Appends events to the JSON-lines file and delivers them to ``OPENLINEAGE_URL``."""

    def __init__(
        self,
        directory: Path | None = None,
        url: str | None = None,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.25,
        timeout_seconds: float = 2.0,
        max_total_seconds: float = 4.0,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        self.directory = directory or lineage_dir()
        self.url = url
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.max_total_seconds = max_total_seconds
        self.log = log or logger

    @classmethod
    def from_env(cls, *, log=None, **kwargs: Any) -> LineageSink:
        return cls(lineage_dir(), os.environ.get(URL_ENV, "").strip() or None, log=log, **kwargs)

    @property
    def path(self) -> Path:
        return self.directory / EVENTS_FILE

    def write(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Append events, one compact JSON line each, in one write, fsynced."""
        if not events:
            return
        make_private_dir(self.directory)
        data = b"".join(json.dumps(e, sort_keys=True, separators=(",", ":")).encode() + b"\n" for e in events)
        fd = private_fd(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    # -- delivery ----------------------------------------------------------------------------

    def _offsets_path(self) -> Path:
        return self.directory / DELIVERY_FILE

    def _endpoint_id(self) -> str:
        return hashlib.sha256(_endpoint_url(self.url or "").encode()).hexdigest()[:16]

    def _read_offsets(self) -> dict[str, int]:
        try:
            return {str(k): int(v) for k, v in json.loads(self._offsets_path().read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _write_offsets(self, offsets: Mapping[str, int]) -> None:
        write_private(self._offsets_path(), json.dumps(dict(offsets), sort_keys=True).encode())

    def deliver(self, max_events: int = 5000) -> DeliveryReport:
        """POST undelivered events in file order (at most ``max_events``); stop at the first one
        that fails after its retries. Never raises."""
        report = DeliveryReport()
        if not self.url or not self.path.exists():
            return report
        try:
            offset = self._read_offsets().get(self._endpoint_id(), 0)
            target = _endpoint_url(self.url)
            headers = {"Content-Type": "application/json"}
            api_key = os.environ.get(API_KEY_ENV, "").strip()
            if api_key:
                headers["Authorization"] = f"Bearer {api_key}"
            with self.path.open("rb") as fh:
                fh.seek(offset)
                for line in fh:
                    if not line.endswith(b"\n"):
                        break  # a line still being written by another process
                    if report.delivered >= max_events:
                        report.pending = 1
                        break
                    if line.strip():
                        outcome = post_json(
                            target, json.loads(line), headers=headers, attempts=self.attempts,
                            backoff_seconds=self.backoff_seconds, timeout_seconds=self.timeout_seconds,
                            max_total_seconds=self.max_total_seconds, log=self.log, what="OpenLineage event",
                        )
                        if not outcome.delivered:
                            report.error = outcome.error
                            break
                        report.delivered += 1
                    offset += len(line)
                report.pending += sum(1 for rest in fh if rest.strip()) + (1 if report.error else 0)
            offsets = self._read_offsets()
            offsets[self._endpoint_id()] = offset
            self._write_offsets(offsets)
        except Exception as exc:  # delivery is best effort: the file keeps every event
            report.error = scrub(f"{type(exc).__name__}: {exc}", self.url)
        if report.error:
            self.log.warning(
                f"OpenLineage delivery to {shown_url(self.url)} stopped: {report.error}. {report.pending} event(s) wait "
                f"in {self.path} and are retried on the next evaluation."
            )
        return report


# -- validation ------------------------------------------------------------------------------------


def validator(spec_dir: Path):
    """A function ``event -> [error messages]`` checking a RunEvent against the core schema and the
    schema of every facet it carries (all files of ``spec_dir`` registered by their ``$id``)."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    resources = []
    for path in sorted(Path(spec_dir).rglob("*.json")):
        contents = json.loads(path.read_text())
        resources.append((contents["$id"], Resource.from_contents(contents)))
    if not resources:
        raise FileNotFoundError(f"no OpenLineage JSON schemas under {spec_dir}")
    registry = Registry().with_resources(resources)
    schemas = dict((uri, resource.contents) for uri, resource in resources)
    checker = Draft202012Validator.FORMAT_CHECKER
    core = Draft202012Validator(schemas[SPEC_URL], registry=registry, format_checker=checker)
    by_facet = {}
    for name, (schema, version) in FACETS.items():
        uri = f"https://openlineage.io/spec/facets/{version}/{schema}.json"
        if uri in schemas:
            by_facet[name] = Draft202012Validator({"$ref": f"{uri}#/$defs/{schema}"}, registry=registry, format_checker=checker)

    def validate(event: Mapping[str, Any]) -> list[str]:
        errors = [f"core: {e.json_path}: {e.message}" for e in core.iter_errors(event)]
        carriers = [("run", event.get("run", {}).get("facets", {})), ("job", event.get("job", {}).get("facets", {}))]
        for side in ("inputs", "outputs"):
            for i, dataset in enumerate(event.get(side, [])):
                carriers.append((f"{side}[{i}].facets", dataset.get("facets", {})))
                carriers.append((f"{side}[{i}].inputFacets", dataset.get("inputFacets", {})))
        for where, facets in carriers:
            for name, value in (facets or {}).items():
                if name not in by_facet:
                    errors.append(f"{where}.{name}: no schema for this facet in {spec_dir}")
                    continue
                errors += [f"{where}.{name}: {e.json_path}: {e.message}" for e in by_facet[name].iter_errors(value)]
        return errors

    return validate
