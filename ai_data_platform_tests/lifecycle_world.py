"""A tiny but complete platform state, built without Dagster, for the erasure and retention tests:
landing files, raw/staging/quarantine, the regional stores, Customer 360, both feature tables,
churn scores and a churn dataset version. Built once per test session and copied per test."""

from __future__ import annotations

import csv
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from ai_data_platform import settings, warehouse
from ai_data_platform.features.compile import customer_daily_sql, transaction_sql
from ai_data_platform.governance.stores import PersonalData, RegionalStores
from ai_data_platform.marts.customer_360 import customer_360_sql
from ai_data_platform.ml import datasets
from ai_data_platform.sources import raw_load, staging
from ai_data_platform.sources.contracts import CUSTOMERS, SOURCE_TABLES, SUPPORT_TICKETS
from ai_data_platform.sources.landing import LandingZones
from ai_data_platform.sources.simulator import generate

KEY = "lifecycle-test-key"
END = date(2026, 11, 20)
DAYS = [END - timedelta(days=i) for i in (3, 2, 1, 0)]
FEATURES = ("events_30d", "logins_30d", "tenure_days")
SUBJECT = "C0000001"  # active on every day: in every table, the scores and both dataset versions


def zones(paths: settings.Paths) -> LandingZones:
    return LandingZones.from_settings(paths)


def subject_row(paths: settings.Paths) -> tuple[str, dict]:
    """(region, CRM record) of the subject in the initial export: the region's zone holds it."""
    for region in zones(paths).regional:
        with zones(paths).file(CUSTOMERS, DAYS[0], region).open(newline="") as fh:
            for record in csv.DictReader(fh):
                if record["customer_id"] == SUBJECT:
                    return region, record
    raise LookupError(f"{SUBJECT} is in no region's CRM export of {DAYS[0]}")


def subject_email(paths: settings.Paths) -> str:
    return subject_row(paths)[1]["email"]


def landing_files(paths: settings.Paths) -> list[Path]:
    """Every file of every landing zone."""
    return [f for root in zones(paths).roots() for f in sorted(root.rglob("*")) if f.is_file()]


def _add_subject_tickets(paths: settings.Paths) -> None:
    """Two support tickets from the subject's email (one written in another case, padded), in
    their region's exports."""
    region, record = subject_row(paths)
    email = record["email"]
    for n, (day, sender) in enumerate(((DAYS[1], email), (DAYS[3], f"  {email.upper()}")), start=1):
        path = zones(paths).file(SUPPORT_TICKETS, day, region)
        with path.open("a", newline="") as fh:
            csv.writer(fh).writerow([f"T7{n:07d}", sender, f"{day}T10:00:00Z", "email", "billing", "high", "open", "please call me back"])


def personal_data(root: Path) -> PersonalData:
    return PersonalData(KEY, RegionalStores.from_settings(settings.Paths(root)))


def build(root: Path) -> settings.Paths:
    paths = settings.Paths(root)
    generate(zones(paths), customers=60, days=len(DAYS), end=END, seed=29)
    _add_subject_tickets(paths)
    load(paths)
    return paths


def load(paths: settings.Paths) -> None:
    """Load the landing files of :data:`DAYS` into every layer: raw, staging, the regional stores,
    Customer 360, both feature tables, churn scores and two churn dataset versions."""
    personal = personal_data(paths.root)
    con = warehouse.connect(paths.warehouse)
    warehouse.ensure_schemas(con)
    for t in SOURCE_TABLES:
        raw_load.load_days(con, t, zones(paths), DAYS, personal)
    for t in SOURCE_TABLES:
        staging.stage_days(con, t, DAYS, personal)
    warehouse.replace_partitions(con, "marts.customer_360", DAYS, customer_360_sql)
    warehouse.replace_partitions(con, "features.customer_daily", DAYS, customer_daily_sql)
    warehouse.replace_partitions(con, "features.transaction", DAYS, transaction_sql)
    con.execute(
        "CREATE TABLE ml.churn_scores AS SELECT customer_id, 0.5 AS churn_probability, 'v1' AS model_version, _partition_date "
        "FROM features.customer_daily"
    )
    frame = con.execute(
        f"SELECT _partition_date AS snapshot_date, customer_id, {', '.join(FEATURES)} FROM features.customer_daily "
        "WHERE _partition_date IN (?, ?) ORDER BY ALL",
        [DAYS[0], DAYS[-1]],
    ).df()
    con.close()
    frame["churned_30d"] = (np.arange(len(frame)) % 5 == 0).astype(int)
    for version, rows in (("2026-11-17", frame[frame.snapshot_date == frame.snapshot_date.min()]), ("2026-11-20", frame)):
        datasets.write_version(
            "churn", version, rows.reset_index(drop=True), key_columns=["snapshot_date", "customer_id"], label="churned_30d",
            features=[datasets.FeatureRef(f, "h-" + f) for f in FEATURES], code_version="test", upstream={},
            root=paths.root / "datasets",
        )


def copy(source: settings.Paths, target: Path) -> settings.Paths:
    shutil.copytree(source.root, target)
    return settings.Paths(target)
