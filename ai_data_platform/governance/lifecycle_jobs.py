"""Dagster jobs of the data lifecycle: ``erase_customer`` (right to erasure) and ``retention``
(daily, with its schedule). Thin wiring around ``governance/erasure.py`` and
``governance/retention.py``; both run in the ``duckdb_warehouse`` pool, since they write the
warehouse and the regional stores."""

from datetime import date, datetime, timezone

import dagster as dg

from ai_data_platform import settings
from ai_data_platform.resources import PiiResource, RegionalStoresResource
from ai_data_platform.sources.assets import WAREHOUSE_POOL

GOVERNANCE_TAGS = {"domain": "governance"}


class EraseConfig(dg.Config):
    subject_ref: str  # "subject:<hmac>" (adp erase --print-ref): never the customer id, Dagster keeps run config forever
    reason: str


@dg.op(pool=WAREHOUSE_POOL, tags=GOVERNANCE_TAGS)
def erase_subject(context: dg.OpExecutionContext, config: EraseConfig, pii: PiiResource, regional_stores: RegionalStoresResource):
    """Erase one data subject everywhere, verify by searching every store, write the audit record."""
    from ai_data_platform.governance import erasure  # imported by the run that needs it, not the code location
    from ai_data_platform.governance.audit_anchor import DagsterAnchor

    try:
        result = erasure.erase_by_ref(
            config.subject_ref,
            config.reason,
            paths=settings.paths(),
            personal=regional_stores.personal_data(pii),
            actor=f"dagster run {context.run_id}",
            run_id=context.run_id,
            anchor=DagsterAnchor(context.instance),
        )
    except erasure.ErasureFailed as exc:  # the audit record names the step; the cause may quote a value
        raise dg.Failure(description=str(exc)) from None
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from exc
    report = "\n".join(result.report())
    if result.exit_code != erasure.EXIT_ERASED:
        raise dg.Failure(description=report, metadata={"status": result.status, "traces": [t.describe() for t in result.traces]})
    context.log.info(report)
    return dg.Output(
        result.status,
        metadata={
            "subject": result.subject_ref,
            "status": result.status,
            "removed": dg.MetadataValue.json(result.counts),
            "files_searched": result.files_searched,
        },
    )


@dg.job(
    name="erase_customer",
    tags=GOVERNANCE_TAGS,
    description=(
        "Right to erasure: removes a data subject (run config: subject_ref, reason) from landing files, raw, staging, "
        "quarantine, the regional stores, marts, features, datasets, scores and every registered store; compacts; "
        "fails unless a search of every file finds nothing left."
    ),
)
def erase_customer_job():
    erase_subject()


class RetentionConfig(dg.Config):
    dry_run: bool = False
    as_of: str = ""  # YYYY-MM-DD; default: the run's scheduled day, else today (UTC)


@dg.op(pool=WAREHOUSE_POOL, tags=GOVERNANCE_TAGS)
def apply_retention(context: dg.OpExecutionContext, config: RetentionConfig, pii: PiiResource, regional_stores: RegionalStoresResource):
    """Delete what the retention policy says has expired, compact, and audit it (or, dry, list it)."""
    from ai_data_platform.governance import retention  # imported by the run that needs it, not the code location
    from ai_data_platform.governance.audit_anchor import DagsterAnchor

    scheduled = context.run.tags.get("dagster/scheduled_execution_time")
    as_of = (
        date.fromisoformat(config.as_of)
        if config.as_of
        else (datetime.fromisoformat(scheduled).date() if scheduled else datetime.now(timezone.utc).date())
    )
    try:
        policy = retention.load_policy()
    except retention.RetentionConfigError as exc:
        raise dg.Failure(description=str(exc)) from exc
    report = retention.run(
        policy, as_of, dry_run=config.dry_run, paths=settings.paths(), stores=regional_stores.stores,
        actor=f"dagster run {context.run_id}", run_id=context.run_id, anchor=DagsterAnchor(context.instance),
    )
    context.log.info("\n".join(report.lines()))
    return dg.Output(
        report.total,
        metadata={"as_of": as_of.isoformat(), "dry_run": config.dry_run, "deleted": dg.MetadataValue.json(report.counts_by_asset())},
    )


@dg.job(
    name="retention",
    tags=GOVERNANCE_TAGS,
    description="Deletes rows, partitions, files, dataset versions and models older than their retention (governance/retention.toml), compacts, audits.",
)
def retention_job():
    apply_retention()


@dg.schedule(
    name="retention_schedule",
    job=retention_job,
    cron_schedule="30 5 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="05:30 UTC, after the nightly batch and the training runs: apply the retention policy as of that day.",
)
def retention_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.date()
    return dg.RunRequest(run_key=f"retention-{day}", run_config={"ops": {"apply_retention": {"config": {"as_of": day.isoformat()}}}})


lifecycle_jobs = [erase_customer_job, retention_job]
lifecycle_schedules = [retention_schedule]
