"""Run the platform through Dagster on the persistent instance, and summarize what it holds.

Used by ``adp materialize`` and ``adp demo``: runs are recorded in the instance under
``$ADP_DATA_DIR/dagster_home`` exactly like runs launched from the UI, so ``make ui`` shows them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Sequence
import sys
from dataclasses import dataclass, field
from datetime import date
from typing import NoReturn

import dagster as dg

from ai_data_platform import settings, warehouse
from ai_data_platform.errors import InputError, shown
from ai_data_platform.governance import audit
from ai_data_platform.private_files import restrict_tree, write_private

_ASSET_KEY = re.compile(r"[A-Za-z0-9_]+(?:/[A-Za-z0-9_]+)*")


def prepare_instance() -> dg.DagsterInstance:
    """The instance under ``$ADP_DATA_DIR/dagster_home`` (sets ``DAGSTER_HOME`` for this process)."""
    home = settings.ensure_dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    instance = dg.DagsterInstance.get()
    restrict_tree(home)  # the SQLite storage Dagster just created took the umask's modes
    return instance


def load_defs() -> dg.Definitions:
    # Imported late: partitions start at the generated data's first day, read at import.
    from ai_data_platform.definitions import defs

    return defs


def materialize_range(
    instance: dg.DagsterInstance,
    start: date,
    end: date,
    *,
    selection: Sequence[dg.AssetKey] | None = None,
    log_level: str = "WARNING",
    allow_shrink: bool = False,
) -> dg.ExecuteInProcessResult:
    """One single-run backfill of the nightly job over [start, end], in this process (``selection``:
    only these assets, see :func:`asset_selection`).

    ``allow_shrink`` tags the run ``adp/allow_shrink=true``: days the landing guard would stop (a
    re-load emptying or shrinking a loaded day, a first load cut short or far below the trailing
    days, files of another day's records) are loaded anyway, each with an audit record
    (``sources/landing_guard.py``)."""
    from ai_data_platform.sources.landing_guard import ALLOW_SHRINK_TAG

    defs = load_defs()
    job = defs.resolve_job_def("nightly")
    tags = {
        "dagster/asset_partition_range_start": start.isoformat(),
        "dagster/asset_partition_range_end": end.isoformat(),
        "adp/trigger": "adp materialize",
        "adp/actor": audit.default_actor(),
    }
    if allow_shrink:
        tags[ALLOW_SHRINK_TAG] = "true"
    kwargs = {}
    if selection:
        kwargs["asset_selection"] = list(selection)
    # Step-by-step DEBUG events go to the instance (and the UI); the console shows warnings and up.
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    return job.execute_in_process(
        instance=instance, tags=tags, raise_on_error=False, run_config=run_config, **kwargs
    )


def asset_selection(text: str) -> list[dg.AssetKey]:
    """The assets a ``--select`` list names (comma-separated ``schema/table`` keys of the nightly
    job), judged before any run: an InputError names an empty item, a malformed or unknown key, a
    check given as an asset, an asset outside the nightly job, or an asset computed together with
    others that are not listed (Dagster cannot run a part of it)."""
    from ai_data_platform.schedules import nightly_job

    defs = load_defs()
    graph = defs.resolve_asset_graph()
    nightly = set(nightly_job.selection.resolve(graph))
    keys: list[dg.AssetKey] = []
    for position, item in enumerate(text.split(","), start=1):
        name = item.strip()
        if not name:
            raise InputError(
                f"--select {shown(text)}: item {position} is empty (list asset keys such as raw/events,raw/payments)"
            )
        key = _asset_key(name, graph, nightly)
        if key not in keys:
            keys.append(key)
    for key in keys:
        missing = sorted(k.to_user_string() for k in defs.resolve_assets_def(key).keys if k not in keys)
        if missing and not defs.resolve_assets_def(key).can_subset:
            raise InputError(f"--select: {key.to_user_string()} is computed together with {', '.join(missing)}: "
                             "list them too")
    return keys


def _asset_key(name: str, graph, nightly: set[dg.AssetKey]) -> dg.AssetKey:
    """The nightly job's asset named ``name`` (``schema/table``), or an InputError saying what it is."""
    for separator in ("/", ":", "."):
        asset, _, check = name.rpartition(separator)
        if asset and _ASSET_KEY.fullmatch(asset) and any(
            k.name == check and k.asset_key.to_user_string() == asset for k in graph.asset_check_keys
        ):
            return _refuse_check(name, asset)
    checked = sorted({k.asset_key.to_user_string() for k in graph.asset_check_keys if k.name == name})
    if checked:
        return _refuse_check(name, ", ".join(checked[:5]))
    if not _ASSET_KEY.fullmatch(name):
        raise InputError(f"--select: {shown(name)} is not an asset key (schema/table: letters, digits and _)")
    key = dg.AssetKey(name.split("/"))
    if key in nightly:
        return key
    if key in graph.materializable_asset_keys:
        raise InputError(f"--select: {name} is not part of the nightly job that adp materialize runs "
                         "(training, scoring and streaming assets have their own jobs)")
    close = difflib.get_close_matches(name, sorted(k.to_user_string() for k in nightly), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise InputError(f"--select: unknown asset {shown(name)}{hint}")


def _refuse_check(name: str, asset: str) -> NoReturn:
    raise InputError(
        f"--select: {shown(name)} is a check, not an asset: select its asset ({asset}); its checks run with it"
    )


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    """One line per failed step of a run: the step and its ``dg.Failure`` description (the error's
    message for any other exception)."""
    lines = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        described = data.user_failure_data.description if data.user_failure_data else None
        text = described or (data.error.message if data.error else "failed")
        lines.append(f"{event.step_key}: {' '.join(text.split())}")
    return lines


def run_job(
    instance: dg.DagsterInstance, job_name: str, partition: str | None = None, *, log_level: str = "WARNING"
) -> dg.ExecuteInProcessResult:
    """One run of a job of the code location (one partition, or unpartitioned), in this process."""
    job = load_defs().resolve_job_def(job_name)
    tags = {"adp/trigger": "adp demo", "adp/actor": audit.default_actor()}
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    return job.execute_in_process(
        instance=instance, partition_key=partition, tags=tags, raise_on_error=False, run_config=run_config
    )


@dataclass(frozen=True)
class ModelStep:
    """What the demo did for one model: trained on a version, or skipped and why."""

    name: str
    version: str | None
    success: bool
    message: str


def train_models(instance: dg.DagsterInstance, first: date, last: date) -> list[ModelStep]:
    """Build the newest churn and fraud dataset versions whose label windows have closed within
    [first, last] and train a model on each (the training jobs, as their schedules would)."""
    from datetime import timedelta

    from ai_data_platform.ml import models
    from ai_data_platform.ml.training_sql import CHURN, FRAUD, FRAUD_LOOKBACK_DAYS

    steps = []
    for spec, earliest in ((CHURN, first), (FRAUD, first + timedelta(days=FRAUD_LOOKBACK_DAYS - 1))):
        version = last - timedelta(days=spec.label_days)
        if version < earliest:
            needed = (spec.label_days + (earliest - first).days + 1)
            steps.append(ModelStep(spec.name, None, False, f"skipped: needs {needed} days of history, {(last - first).days + 1} loaded"))
            continue
        result = run_job(instance, f"{spec.name}_training", version.isoformat())
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        if not result.success:
            steps.append(ModelStep(spec.name, version.isoformat(), False, f"run failed (checks: {checks})"))
            continue
        _, card = models.load_model(spec.name, version.isoformat())
        m, b = card["metrics"], card["baseline_metrics"]
        gate = "served" if card["gate_passed"] else "NOT served: does not beat the baseline"
        steps.append(ModelStep(
            spec.name, version.isoformat(), True,
            f"ROC-AUC {m['roc_auc']:.3f} (baseline {b['roc_auc']:.3f}), PR-AUC {m['pr_auc']:.3f} "
            f"(baseline {b['pr_auc']:.3f}) on {card['test_rows']} test rows: {gate}",
        ))
    return steps


def run_alert_sensor(instance: dg.DagsterInstance) -> int:
    """Evaluate the alert sensor once (as the daemon would) and return how many alerts it raised."""
    from ai_data_platform.observability.sensors import alert_sensor

    alerts_file = settings.paths().alerts
    before = _count_lines(alerts_file)
    defs = load_defs()
    cursor_path = settings.paths().dagster_home / "alert_sensor_cursor.json"
    cursor = cursor_path.read_text() if cursor_path.exists() else None
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    alert_sensor.evaluate_tick(context)
    if context.cursor:
        write_private(cursor_path, context.cursor.encode())
    return _count_lines(alerts_file) - before


def run_audit_sensor(instance: dg.DagsterInstance, *, max_ticks: int = 100) -> tuple[int, int]:
    """Evaluate the audit and lineage sensor until it has caught up (as the daemon would, tick by
    tick); return (audit records, OpenLineage events) written. An audit trail that cannot take the
    records (see ``adp audit verify``) is reported on stderr and stops the ticks."""
    from ai_data_platform.governance.audit_sensor import evaluate_audit_once

    defs = load_defs()
    cursor_path = settings.paths().dagster_home / "audit_sensor_cursor.json"
    cursor = cursor_path.read_text() if cursor_path.exists() else None
    records = events = 0
    for _ in range(max_ticks):
        try:
            result = evaluate_audit_once(instance, defs, cursor)
        except audit.AuditError as exc:
            print(f"audit trail: {exc}", file=sys.stderr)
            break
        records, events, cursor = records + result.records, events + result.lineage_events, result.cursor
        write_private(cursor_path, cursor.encode())
        if not result.more:
            break
    return records, events


def _count_lines(path) -> int:
    if not path.exists():
        return 0
    with path.open() as fh:
        return sum(1 for _ in fh)


@dataclass
class AssetSummary:
    key: str
    partitions: int
    rows: int | None
    checks_passed: int
    checks_failed: int
    quarantined: int | None
    alerts: int
    failed_checks: list[str] = field(default_factory=list)


def summarize(instance: dg.DagsterInstance) -> list[AssetSummary]:
    defs = load_defs()
    graph = defs.resolve_asset_graph()
    alerts_by_asset: dict[str, int] = {}
    alerts_file = settings.paths().alerts
    if alerts_file.exists():
        for line in alerts_file.read_text().splitlines():
            try:
                key = json.loads(line).get("asset_key")
            except ValueError:
                continue
            if key:
                alerts_by_asset[key] = alerts_by_asset.get(key, 0) + 1
    wh_path = settings.paths().warehouse
    con = warehouse.connect(wh_path, read_only=True) if wh_path.exists() else None
    out: list[AssetSummary] = []
    try:
        for key in sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
            partitions = len(instance.get_materialized_partitions(key))
            table = ".".join(key.path)
            rows = quarantined = None
            if con is not None and warehouse.table_exists(con, table):
                rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            q_table = f"quarantine.{key.path[-1]}"
            if key.path[0] == "staging" and con is not None and warehouse.table_exists(con, q_table):
                quarantined = con.execute(f"SELECT count(*) FROM {q_table}").fetchone()[0]
            check_keys = list(graph.get(key).check_keys)
            latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys) if check_keys else {}
            passed = sum(1 for r in latest.values() if r.status.value == "SUCCEEDED")
            failed = [ck.name for ck, r in latest.items() if r.status.value == "FAILED"]
            out.append(
                AssetSummary(
                    key=key.to_user_string(),
                    partitions=partitions,
                    rows=rows,
                    checks_passed=passed,
                    checks_failed=len(failed),
                    quarantined=quarantined,
                    alerts=alerts_by_asset.get(key.to_user_string(), 0),
                    failed_checks=failed,
                )
            )
    finally:
        if con is not None:
            con.close()
    return out


def format_summary(rows: list[AssetSummary], total_alerts: int | None = None) -> str:
    header = f"{'asset':32} {'partitions':>10} {'rows':>10} {'checks ok':>9} {'failed':>6} {'quarantined':>11} {'alerts':>6}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.key:32} {r.partitions:>10} {('-' if r.rows is None else r.rows):>10} {r.checks_passed:>9} "
            f"{r.checks_failed:>6} {('-' if r.quarantined is None else r.quarantined):>11} {r.alerts:>6}"
            + (f"   failed: {', '.join(r.failed_checks)}" if r.failed_checks else "")
        )
    if total_alerts is not None:
        lines.append(f"alerts raised: {total_alerts} (see {settings.paths().alerts})")
    return "\n".join(lines)
