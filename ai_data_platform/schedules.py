"""Jobs and schedules.

- ``nightly`` (02:00 UTC): yesterday's partition of every batch asset (sources, Customer 360,
  features) with their checks.
- ``churn_training`` (03:00) / ``fraud_training`` (03:30): the newest dataset version whose label
  window has just closed (30 / 60 days after it), and the model trained on it.
- ``churn_scoring`` (04:00): yesterday's scores with the latest model that passed its gate.
"""

from datetime import timedelta

import dagster as dg

from ai_data_platform.ml.training_sql import CHURN, FRAUD
from ai_data_platform.partitions import daily_partitions

BATCH_GROUPS = ("crm", "billing", "behavioral", "marts", "features", "governance")

nightly_job = dg.define_asset_job(
    name="nightly",
    selection=dg.AssetSelection.groups(*BATCH_GROUPS),
    partitions_def=daily_partitions,
    description="Materializes one day of every batch asset: raw → staging → Customer 360 and features, with their checks, then refreshes the role views.",
    tags={"adp/job": "nightly"},
)

nightly_schedule = dg.build_schedule_from_partitioned_job(
    nightly_job,
    name="nightly_schedule",
    hour_of_day=2,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="02:00 UTC: materialize yesterday's partition of every daily asset.",
)


def _training_job(spec):
    return dg.define_asset_job(
        name=f"{spec.name}_training",
        selection=dg.AssetSelection.assets(["ml", f"{spec.name}_training_set"], ["ml", f"{spec.name}_model"]),
        partitions_def=daily_partitions,
        description=f"Builds a {spec.name} dataset version and trains the {spec.name} model on it.",
    )


churn_training_job = _training_job(CHURN)
fraud_training_job = _training_job(FRAUD)
churn_scoring_job = dg.define_asset_job(
    name="churn_scoring",
    selection=dg.AssetSelection.assets(["ml", "churn_scores"]),
    partitions_def=daily_partitions,
    description="Scores every active customer with the latest churn model that passed its gate.",
)


def label_closed_partition(scheduled: dg.ScheduleEvaluationContext, label_days: int) -> str:
    """The newest version whose label window closed with yesterday's export."""
    day = scheduled.scheduled_execution_time.date() - timedelta(days=1 + label_days)
    return day.isoformat()


def _training_schedule(spec, job, minute: int) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{spec.name}_training_schedule",
        job=job,
        cron_schedule=f"{minute} 3 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"03:{minute:02d} UTC: build the {spec.name} version whose {spec.label_days}-day label window just closed, and train on it.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        partition = label_closed_partition(context, spec.label_days)
        if partition not in daily_partitions.get_partition_keys():
            return dg.SkipReason(f"{partition} is before the first partition")
        return dg.RunRequest(run_key=f"{spec.name}-{partition}", partition_key=partition)

    return _schedule


churn_training_schedule = _training_schedule(CHURN, churn_training_job, 0)
fraud_training_schedule = _training_schedule(FRAUD, fraud_training_job, 30)


@dg.schedule(
    name="churn_scoring_schedule",
    job=churn_scoring_job,
    cron_schedule="0 4 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="04:00 UTC: score yesterday's active customers, once a churn model has passed its gate.",
)
def churn_scoring_schedule(context: dg.ScheduleEvaluationContext):
    from ai_data_platform.ml import models

    if models.latest_passing_model(CHURN.name) is None:
        return dg.SkipReason("no churn model has passed its gate yet")
    day = context.scheduled_execution_time.date() - timedelta(days=1)
    return dg.RunRequest(run_key=f"scores-{day}", partition_key=day.isoformat())


jobs = [nightly_job, churn_training_job, fraud_training_job, churn_scoring_job]
schedules = [nightly_schedule, churn_training_schedule, fraud_training_schedule, churn_scoring_schedule]
