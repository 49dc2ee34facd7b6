"""The alerting sensor: freshness breaches, failed blocking checks and failed runs -> alerts.

``alert_sensor`` runs every minute (on by default), launches no runs and on each tick:

(a) **Freshness** - reads the freshness state the Dagster daemon records for every asset of this
    code location that has a ``FreshnessPolicy`` (``instance.get_freshness_state_records``) and
    alerts on the state changes :func:`~ai_data_platform.observability.alerts.transitions` deems
    alert-worthy (into WARN/FAIL, and FAIL/WARN -> PASS as an ``info`` "recovered" alert).
(b) **Blocking checks** - reads new FAILED executions of every *blocking* asset check of this code
    location (``event_log_storage.get_asset_check_execution_history``) and alerts once per failed
    evaluation with ERROR severity, naming asset, partition, check and the check's message.
(c) **Failed runs** - reads runs that reached FAILURE since the last tick
    (``instance.get_run_records(RunsFilter(statuses=[FAILURE], updated_after=...))``) and alerts
    once per run with job, run id, partition tags and the root step-failure message.

Every alert goes to :class:`~ai_data_platform.observability.alerts.AlertSink` (``alerts.jsonl``
plus the optional ``ADP_ALERT_WEBHOOK_URL`` webhook) and to the Dagster log. Alerts are
deduplicated by their stable id against the ids kept in the cursor and the tail of
``alerts.jsonl``, so re-processing never alerts twice.

Why check executions instead of a global event-log storage id: on Dagster's default SQLite
storage the event log is sharded per run, so event storage ids are not unique across runs and
``get_event_records`` cannot page by id there. The asset-check executions table lives in the
shared index and works the same on SQLite and Postgres; its row ids are unique, so the cursor
keeps, per blocking check, the ids of the most recent failed executions already processed.

Cursor (JSON)::

    {
      "version": 1,
      "freshness": {"<asset/key>": "PASS|WARN|FAIL|UNKNOWN|NOT_APPLICABLE", ...},
      "checks": {"<asset/key>:<check_name>": [<failed execution id>, ...]},   # newest first
      "runs_updated_after": <unix seconds of the newest failed-run update processed> | null,
      "alert_ids": ["<alert id>", ...]                                          # oldest first
    }
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg

# The status enum of the asset-check executions table, used to filter for failed executions.
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ai_data_platform.observability.alerts import (
    FRESHNESS_FAIL,
    FRESHNESS_PASS,
    FRESHNESS_UNKNOWN,
    FRESHNESS_WARN,
    Alert,
    AlertSink,
    DeliveryResult,
    transitions,
    utc_iso,
)

ALERT_SENSOR_NAME = "alert_sensor"
CURSOR_VERSION = 1
#: Without a cursor (first tick, or a check seen for the first time) look back this far only, so
#: enabling the sensor on an old instance does not replay its whole history.
INITIAL_LOOKBACK = timedelta(hours=24)
#: Failed runs are re-read this many seconds behind the watermark, to tolerate run updates that
#: commit slightly out of timestamp order; the alert-id dedup absorbs the overlap.
RUN_OVERLAP_SECONDS = 60.0
MAX_RUNS_PER_TICK = 200
#: Failed executions fetched per page and per blocking check; also how many ids the cursor keeps.
CHECK_PAGE_SIZE = 20
CHECK_IDS_RETAINED = 20
MAX_CHECK_PAGES = 5
#: How many recent alert ids the cursor keeps for deduplication.
MAX_ALERT_IDS = 300
#: Run tags copied into run-failure alerts.
_RUN_TAG_PREFIXES = ("dagster/partition", "dagster/asset_partition_range")
_RUN_TAGS = (
    "dagster/backfill",
    "dagster/schedule_name",
    "dagster/sensor_name",
    "dagster/failure_reason",
)

_FRESHNESS_SEVERITY = {FRESHNESS_FAIL: "error", FRESHNESS_WARN: "warning", FRESHNESS_PASS: "info"}


@dataclass
class AlertCursor:
    """The sensor's memory between ticks (serialized as JSON, see the module docstring)."""

    freshness: dict[str, str] = field(default_factory=dict)
    checks: dict[str, list[int]] = field(default_factory=dict)
    runs_updated_after: float | None = None
    alert_ids: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": CURSOR_VERSION,
                "freshness": self.freshness,
                "checks": self.checks,
                "runs_updated_after": self.runs_updated_after,
                "alert_ids": self.alert_ids,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | None) -> AlertCursor:
        """Parse a cursor; an empty, malformed or foreign-version cursor yields a fresh one."""
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except ValueError:
            return cls()
        if not isinstance(data, dict) or data.get("version") != CURSOR_VERSION:
            return cls()
        watermark = data.get("runs_updated_after")
        return cls(
            freshness={str(k): str(v) for k, v in (data.get("freshness") or {}).items()},
            checks={
                str(k): [int(i) for i in v] for k, v in (data.get("checks") or {}).items()
            },
            runs_updated_after=float(watermark) if watermark is not None else None,
            alert_ids=[str(i) for i in data.get("alert_ids") or []],
        )


@dataclass
class AlertTickResult:
    """What one evaluation did: alerts emitted, duplicates suppressed, problems, next cursor."""

    alerts: list[Alert]
    cursor: str
    suppressed: int = 0
    delivery_failures: list[DeliveryResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for alert in self.alerts if alert.kind == kind)

    def summary(self) -> str:
        """One line for the sensor's SkipReason."""
        parts = [
            f"{len(self.alerts)} alert(s) raised "
            f"(freshness={self.count('freshness')}, check_failed={self.count('check_failed')}, "
            f"run_failed={self.count('run_failed')})",
            f"{self.suppressed} duplicate(s) suppressed",
        ]
        if self.delivery_failures:
            parts.append(f"{len(self.delivery_failures)} webhook delivery failure(s)")
        if self.errors:
            parts.append(f"{len(self.errors)} error(s): " + "; ".join(self.errors))
        parts.extend(self.notes)
        return "; ".join(parts)


# -- helpers ---------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-friendly version of a metadata value (``MetadataValue.value`` or ``str``)."""
    value = getattr(value, "value", value)
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def _describe_policy(policy: Any) -> str:
    """Human description of a ``FreshnessPolicy`` (time-window or cron)."""
    if policy is None:
        return "no policy"
    if hasattr(policy, "fail_window"):
        text = f"time window: fail after {policy.fail_window.to_timedelta()}"
        if getattr(policy, "warn_window", None):
            text += f", warn after {policy.warn_window.to_timedelta()}"
        return text
    if hasattr(policy, "deadline_cron"):
        return (
            f"cron: materialize by '{policy.deadline_cron}' ({policy.timezone}), "
            f"within {policy.lower_bound_delta} before the deadline"
        )
    return type(policy).__name__


def _root_error_message(error: Any) -> str | None:
    """The innermost cause's message of a ``SerializableErrorInfo`` (the user's exception)."""
    if error is None:
        return None
    while getattr(error, "cause", None) is not None:
        error = error.cause
    message = (getattr(error, "message", None) or "").strip()
    return message[:1000] or None


def _log_alert(log: Any, alert: Alert) -> None:
    text = f"[alert {alert.id}] {alert.title}: {alert.message}"
    if alert.severity == "error":
        log.error(text)
    elif alert.severity == "warning":
        log.warning(text)
    else:
        log.info(text)


def _repository(repository_def_or_defs: Any) -> dg.RepositoryDefinition | None:
    if repository_def_or_defs is None:
        return None
    if isinstance(repository_def_or_defs, dg.Definitions):
        return repository_def_or_defs.get_repository_def()
    return repository_def_or_defs


# -- (a) freshness ---------------------------------------------------------------------------------


def _freshness_alerts(
    instance: dg.DagsterInstance, repo: dg.RepositoryDefinition, previous: Mapping[str, str]
) -> tuple[list[Alert], dict[str, str]]:
    """Alerts for freshness transitions, and the current state per monitored asset."""
    nodes = {
        node.key: node
        for node in repo.asset_graph.asset_nodes
        if node.freshness_policy_or_from_metadata is not None
    }
    if not nodes:
        return [], {}
    records = instance.get_freshness_state_records(list(nodes))
    by_subject = {key.to_user_string(): (key, records.get(key)) for key in nodes}
    current = {
        subject: record.freshness_state.value if record else FRESHNESS_UNKNOWN
        for subject, (_, record) in by_subject.items()
    }
    alerts = []
    for subject, old, new in transitions(previous, current):
        key, record = by_subject[subject]
        changed_at = record.updated_at.timestamp() if record else time.time()
        policy = _describe_policy(nodes[key].freshness_policy_or_from_metadata)
        latest = instance.get_latest_materialization_event(key)
        last_materialized = utc_iso(latest.timestamp) if latest else None
        if new == FRESHNESS_PASS:
            title = f"Freshness recovered: {subject}"
            verdict = "is fresh again"
        elif new == FRESHNESS_FAIL:
            title = f"Freshness FAIL: {subject}"
            verdict = "is failing its freshness policy"
        else:
            title = f"Freshness WARN: {subject}"
            verdict = "is close to failing its freshness policy"
        message = (
            f"Asset `{subject}` {verdict} ({policy}); state {old} -> {new}. "
            f"Last materialization: {last_materialized or 'never'}."
        )
        alerts.append(
            Alert.create(
                kind="freshness",
                subject=subject,
                marker=f"{new}@{changed_at:.6f}",
                severity=_FRESHNESS_SEVERITY.get(new, "warning"),
                asset_key=subject,
                title=title,
                message=message,
                occurred_at=utc_iso(changed_at),
                details={
                    "previous_state": old,
                    "state": new,
                    "policy": policy,
                    "last_materialized_at": last_materialized,
                },
            )
        )
    return alerts, current


# -- (b) blocking asset checks ---------------------------------------------------------------------


def _check_alerts(
    instance: dg.DagsterInstance,
    repo: dg.RepositoryDefinition,
    previous: Mapping[str, Sequence[int]],
    now: float,
) -> tuple[list[Alert], dict[str, list[int]]]:
    """Alerts for new failed ERROR-severity evaluations of blocking checks, and the new ids kept.

    Per check, the cursor holds the ids of the newest failed executions already processed
    (newest first, at most ``CHECK_IDS_RETAINED``). A fetched failed execution is new when its id
    is not held, unless the list is full and the id is older than all held ids (it was processed
    and dropped). A check without an entry only looks back ``INITIAL_LOOKBACK``.

    Execution rows are created when a check is *planned* and updated when it finishes, so a slow
    execution can turn FAILED after newer ones; it is still caught unless more than
    ``CHECK_IDS_RETAINED`` newer failures of the same check were processed meanwhile.
    """
    graph = repo.asset_graph
    storage = instance.event_log_storage
    alerts: list[Alert] = []
    kept: dict[str, list[int]] = {}
    for check_key in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string()):
        spec = graph.get_check_spec(check_key)
        if not spec.blocking:
            continue
        subject = check_key.to_user_string()
        retained = list(previous.get(subject, []))
        held = set(retained)
        full = len(retained) >= CHECK_IDS_RETAINED
        oldest_held = min(retained) if retained else None
        since = None if subject in previous else now - INITIAL_LOOKBACK.total_seconds()

        def is_new(execution_id: int) -> bool:
            if execution_id in held:
                return False
            return not (full and oldest_held is not None and execution_id < oldest_held)

        fetched_ids: list[int] = []
        new_records = []
        page_cursor = None
        for _ in range(MAX_CHECK_PAGES):
            page = storage.get_asset_check_execution_history(
                check_key,
                limit=CHECK_PAGE_SIZE,
                cursor=page_cursor,
                status={AssetCheckExecutionRecordStatus.FAILED},
            )
            fetched_ids.extend(record.id for record in page)
            fresh = [
                record
                for record in page
                if is_new(record.id)
                and (since is None or (record.event and record.event.timestamp >= since))
            ]
            new_records.extend(fresh)
            if len(page) < CHECK_PAGE_SIZE or len(fresh) < len(page):
                break  # reached already-processed (or too old) executions
            page_cursor = page[-1].id
        kept[subject] = sorted(held | set(fetched_ids), reverse=True)[:CHECK_IDS_RETAINED]

        for record in sorted(new_records, key=lambda r: r.id):
            evaluation = record.evaluation
            if evaluation is None or evaluation.passed:
                continue
            blocking = evaluation.blocking if evaluation.blocking is not None else spec.blocking
            if not blocking or evaluation.severity != dg.AssetCheckSeverity.ERROR:
                continue
            alerts.append(_check_alert(instance, check_key, record, evaluation))
    return alerts, kept


def _run_partition(instance: dg.DagsterInstance, run_id: str | None) -> str | None:
    """The ``dagster/partition`` tag of a run, if the run exists and has one."""
    if not run_id:  # runless evaluations (reported from outside a run) have an empty run id
        return None
    run = instance.get_run_by_id(run_id)
    return run.tags.get("dagster/partition") if run else None


def _check_alert(
    instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, record: Any, evaluation: Any
) -> Alert:
    """One ``check_failed`` alert for a failed execution record of a blocking check.

    The partition is the evaluation's own (partitioned checks) or else the partition of the run
    that evaluated it (an unpartitioned check running in a partitioned run).
    """
    asset = check_key.asset_key.to_user_string()
    partition = evaluation.partition or record.partition
    partition_source = "evaluation" if partition else None
    if not partition:
        partition = _run_partition(instance, record.run_id)
        partition_source = "run_tag" if partition else None
    metadata = {key: _plain(value) for key, value in (evaluation.metadata or {}).items()}
    reason_parts = []
    if metadata.get("message") not in (None, ""):
        reason_parts.append(str(metadata["message"]))
    if evaluation.description and evaluation.description not in reason_parts:
        reason_parts.append(evaluation.description)
    reason = " - ".join(reason_parts) or "no message"
    where = f"asset `{asset}`" + (f" partition `{partition}`" if partition else "")
    return Alert.create(
        kind="check_failed",
        subject=f"{check_key.to_user_string()}[{partition or ''}]",
        marker=f"{record.run_id}:{record.id}",
        severity="error",
        asset_key=asset,
        partition=partition,
        title=f"Blocking check failed: {check_key.name} on {asset}"
        + (f" [{partition}]" if partition else ""),
        message=f"Blocking check `{check_key.name}` failed on {where}: {reason}",
        run_id=record.run_id,
        occurred_at=utc_iso(record.event.timestamp if record.event else record.create_timestamp),
        details={
            "check_name": check_key.name,
            "check_key": check_key.to_user_string(),
            "description": evaluation.description,
            "metadata": metadata,
            "severity": evaluation.severity.value,
            "blocking": True,
            "execution_id": record.id,
            "partition_source": partition_source,
        },
    )


# -- (c) failed runs -------------------------------------------------------------------------------


def _run_alerts(
    instance: dg.DagsterInstance, watermark: float | None, now: float, log: Any
) -> tuple[list[Alert], float]:
    """Alerts for runs that ended in FAILURE after ``watermark``, and the new watermark."""
    after = watermark if watermark is not None else now - INITIAL_LOOKBACK.total_seconds()
    since = after - RUN_OVERLAP_SECONDS
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE],
            updated_after=datetime.fromtimestamp(since, tz=timezone.utc),
        ),
        order_by="update_timestamp",
        ascending=True,
        limit=MAX_RUNS_PER_TICK,
    )
    alerts = []
    new_watermark = after
    for record in records:
        updated = record.update_timestamp.timestamp()
        new_watermark = max(new_watermark, updated)
        ended = record.end_time or updated
        if ended < since:
            continue  # an old failed run that was merely touched again (e.g. tags edited)
        alerts.append(_run_alert(instance, record, ended, log))
    return alerts, new_watermark


def _failure_summary(
    instance: dg.DagsterInstance, run_id: str, log: Any
) -> tuple[list[str], str | None]:
    """Failed step keys and the root error message of a run (best effort, two small queries)."""
    try:
        steps: list[str] = []
        message = None
        connection = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=10
        )
        for event_record in connection.records:
            event = event_record.event_log_entry.dagster_event
            if event is None:
                continue
            if event.step_key and event.step_key not in steps:
                steps.append(event.step_key)
            if message is None:
                data = event.step_failure_data
                message = _root_error_message(data.error) if data else None
                message = message or event.message
        if message is None:
            connection = instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.RUN_FAILURE, limit=1
            )
            for event_record in connection.records:
                event = event_record.event_log_entry.dagster_event
                entry = event_record.event_log_entry
                message = (event.message if event else None) or entry.user_message
        return steps, message
    except Exception as exc:  # a missing detail must not lose the alert
        log.warning(f"Could not read failure details of run {run_id}: {exc}")
        return [], None


def _run_alert(instance: dg.DagsterInstance, record: dg.RunRecord, ended: float, log: Any) -> Alert:
    run = record.dagster_run
    tags = {
        key: value
        for key, value in run.tags.items()
        if key.startswith(_RUN_TAG_PREFIXES) or key in _RUN_TAGS
    }
    partition = run.tags.get("dagster/partition")
    assets = sorted(key.to_user_string() for key in (run.asset_selection or ()))
    steps, error = _failure_summary(instance, run.run_id, log)
    where = f" partition `{partition}`" if partition else ""
    in_steps = f" in step(s) {', '.join(steps)}" if steps else ""
    return Alert.create(
        kind="run_failed",
        subject=run.run_id,
        marker="FAILURE",
        severity="error",
        asset_key=assets[0] if len(assets) == 1 else None,
        partition=partition,
        title=f"Run failed: {run.job_name}" + (f" [{partition}]" if partition else ""),
        message=f"Run `{run.run_id}` of job `{run.job_name}`{where} failed{in_steps}: "
        f"{error or 'no error message recorded'}",
        run_id=run.run_id,
        occurred_at=utc_iso(ended),
        details={
            "job_name": run.job_name,
            "failed_steps": steps,
            "error": error,
            "tags": tags,
            "assets": assets,
        },
    )


# -- the tick --------------------------------------------------------------------------------------


def evaluate_alerts_once(
    instance: dg.DagsterInstance,
    repository_def_or_defs: dg.RepositoryDefinition | dg.Definitions | None,
    cursor: str | None = None,
    *,
    sink: AlertSink | None = None,
    log: logging.Logger | Any | None = None,
    now: float | None = None,
) -> AlertTickResult:
    """Evaluate (a) freshness, (b) blocking checks and (c) failed runs once; emit new alerts.

    This is the whole sensor body, usable from tests or a CLI. ``cursor`` is the previous
    :class:`AlertCursor` JSON (``None`` on the first tick); the returned result carries the next
    one. Without a repository (``None``) only failed runs are evaluated. Each part is isolated: an
    error in one is logged and reported in the result, and leaves that part's cursor unchanged.
    Writing ``alerts.jsonl`` failing *does* raise, so the tick fails and is retried rather than
    losing alerts; webhook failures never raise.
    """
    log = log or logging.getLogger(__name__)
    now = time.time() if now is None else now
    sink = sink or AlertSink.from_env(log=log)
    state = AlertCursor.from_json(cursor)
    repo = _repository(repository_def_or_defs)
    candidates: list[Alert] = []
    errors: list[str] = []
    notes: list[str] = []
    next_state = AlertCursor(
        freshness=dict(state.freshness),
        checks={k: list(v) for k, v in state.checks.items()},
        runs_updated_after=state.runs_updated_after,
        alert_ids=list(state.alert_ids),
    )

    if repo is None:
        notes.append("no repository: freshness and checks not evaluated")
    else:
        try:
            alerts, next_state.freshness = _freshness_alerts(instance, repo, state.freshness)
            candidates.extend(alerts)
        except Exception as exc:
            log.exception(f"Alert sensor: freshness evaluation failed: {exc}")
            errors.append(f"freshness: {exc}")
        try:
            alerts, next_state.checks = _check_alerts(instance, repo, state.checks, now)
            candidates.extend(alerts)
        except Exception as exc:
            log.exception(f"Alert sensor: asset check evaluation failed: {exc}")
            errors.append(f"checks: {exc}")
    try:
        alerts, next_state.runs_updated_after = _run_alerts(
            instance, state.runs_updated_after, now, log
        )
        candidates.extend(alerts)
    except Exception as exc:
        log.exception(f"Alert sensor: failed-run evaluation failed: {exc}")
        errors.append(f"runs: {exc}")

    known = set(state.alert_ids) | sink.recent_ids()
    emitted: list[Alert] = []
    failures: list[DeliveryResult] = []
    suppressed = 0
    for alert in candidates:
        if alert.id in known:
            suppressed += 1
            continue
        known.add(alert.id)
        _log_alert(log, alert)
        delivery = sink.emit(alert)  # file first (may raise), then webhook (never raises)
        emitted.append(alert)
        if delivery.failed:
            failures.append(delivery)
    next_state.alert_ids = (state.alert_ids + [a.id for a in emitted])[-MAX_ALERT_IDS:]
    return AlertTickResult(
        alerts=emitted,
        cursor=next_state.to_json(),
        suppressed=suppressed,
        delivery_failures=failures,
        errors=errors,
        notes=notes,
    )


@dg.sensor(
    name=ALERT_SENSOR_NAME,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Raises one alert per freshness breach/recovery, failed blocking asset check and failed "
        "run: appended to $ADP_DATA_DIR/alerts.jsonl, logged, and POSTed to "
        "$ADP_ALERT_WEBHOOK_URL (Slack-compatible) when set. Launches no runs."
    ),
)
def alert_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Evaluate alerts once (see :func:`evaluate_alerts_once`) and persist the cursor."""
    result = evaluate_alerts_once(
        context.instance, context.repository_def, context.cursor, log=context.log
    )
    return dg.SensorResult(skip_reason=dg.SkipReason(result.summary()), cursor=result.cursor)
