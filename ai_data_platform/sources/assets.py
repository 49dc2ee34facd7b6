"""Raw and staging assets for every source table (thin Dagster wiring around raw_load / staging).

``raw/<table>``: the day's landing file(s) as they landed (one per region for the CRM's tables)
plus file name, row number and load time.
``staging/<table>`` + ``quarantine/<table>``: typed, validated, de-duplicated rows and the rows
that failed a rule, written together so row conservation holds for every partition.

For the CRM tables, which hold personal data, the same steps also write the regional stores
(one DuckDB database per region, ``governance/stores.py``): ``raw/<table>_personal``,
``quarantine/<table>_personal`` and ``identity/customer_pii``. Each of those keys is one table
present in every regional store; its metadata gives the rows per region.
"""


from datetime import timedelta
from pathlib import Path

import dagster as dg

from ai_data_platform import settings
from ai_data_platform.errors import InputError
from ai_data_platform.governance import audit
from ai_data_platform.governance.audit_anchor import DagsterAnchor
from ai_data_platform.governance.audit_events import actor_of
from ai_data_platform.governance.classification import highest_of_columns
from ai_data_platform.metadata import OWNERS, PROFILE_KEY, column_lineage, column_schema, partition_profile, table_metadata
from ai_data_platform.partitions import daily_partitions, days_in
from ai_data_platform.governance.personal_data import hash_column, hashed_columns, holds_personal_data, warehouse_raw_columns
from ai_data_platform.governance.stores import IDENTITY, QUARANTINE_PERSONAL, RAW_PERSONAL, PersonalTable
from ai_data_platform.resources import LandingResource, PiiResource, RegionalStoresResource, WarehouseResource
from ai_data_platform.sources import landing_guard, raw_load, staging
from ai_data_platform.sources import staging_sql as sql
from ai_data_platform.sources.contracts import CUSTOMERS, SOURCE_TABLES, SourceTable
from ai_data_platform.sources.landing import LandingFileMissing
from ai_data_platform.quality.gx_runner import prewarm as prewarm_gx

WAREHOUSE_POOL = "duckdb_warehouse"
CODE_VERSION = "1"

# Exports land shortly after midnight UTC; the nightly run materializes them at 02:00.
SOURCE_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 4 * * *", lower_bound_delta=timedelta(hours=4))


def daily_sql_table(**overrides) -> dict:
    """Decorator arguments shared by every daily-partitioned table built by SQL in the warehouse."""
    return {
        "partitions_def": daily_partitions,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "kinds": {"duckdb", "sql"},
        "owners": OWNERS,
        "code_version": CODE_VERSION,
        "pool": WAREHOUSE_POOL,
        **overrides,
    }


def raw_key(t: SourceTable) -> dg.AssetKey:
    return dg.AssetKey(["raw", t.name])


def staging_key(t: SourceTable) -> dg.AssetKey:
    return dg.AssetKey(["staging", t.name])


def quarantine_key(t: SourceTable) -> dg.AssetKey:
    return dg.AssetKey(["quarantine", t.name])


IDENTITY_KEY = dg.AssetKey(IDENTITY.asset_path)


def personal_key(table: PersonalTable) -> dg.AssetKey:
    return dg.AssetKey(table.asset_path)


def personal_spec(table: PersonalTable, **attributes) -> dg.AssetSpec:
    """A table of the regional stores: restricted, with its PII classification per column."""
    return dg.AssetSpec(
        personal_key(table),
        description=table.description,
        tags={"layer": table.name.split(".")[0], "source": table.source.source, "access": "restricted", "residency": "regional"},
        metadata={"partition_expr": "_partition_date", "dagster/column_schema": column_schema(list(table.columns), pii=table.pii)},
        **attributes,
    )


def landing_pattern(t: SourceTable) -> str:
    """Where a raw table's records come from, in the default layout under ``$ADP_DATA_DIR``:
    ``landing/<source>/<table>/<day>.<ext>``, or ``regions/<region>/landing/...`` for a table
    landing in each region's zone (``sources/landing.LandingZones``)."""
    zone = "regions/<region>/landing" if holds_personal_data(t) else "landing"
    return f"{zone}/{t.source}/{t.name}/<day>.{t.extension}"


def _raw_schema(t: SourceTable) -> dg.TableSchema:
    cols = [(c, "VARCHAR") for c in warehouse_raw_columns(t)] + [
        ("_partition_date", "DATE"),
        ("_file", "VARCHAR"),
        ("_row_number", "BIGINT"),
        ("_raw_line", "VARCHAR"),
        ("_loaded_at", "TIMESTAMP"),
    ]
    return column_schema(
        cols,
        {c.name: c.description for c in t.raw_columns}
        | {
            "_file": "landing file, relative to the data directory (absolute when its zone lies elsewhere), or the source table's URL",
            "_row_number": "1-based record number in the file (or in the database extraction)",
            "_raw_line": "raw text of a record that could not be split into fields"
            + (" (here its HMAC digest; the line is in the regional store)" if holds_personal_data(t) else ""),
            "_loaded_at": "wall-clock time of the load",
            "_pii_digest": "HMAC of the record's personal values as landed (exact-duplicate detection)",
        }
        | {f"{c.name}_hash": f"HMAC-SHA256 of the normalized {c.name} (its value is in the regional store)" for c in t.columns},
        {c.name: c.pii for c in t.columns}
        | {c: "indirect" for c in warehouse_raw_columns(t) if c.endswith("_hash") or c == "_pii_digest"}
        # a record that could not be split may hold any of the table's values (a digest where those are personal)
        | {"_raw_line": "indirect" if holds_personal_data(t) else highest_of_columns(t.columns)},
    )


def quarantine_schema(t: SourceTable) -> dg.TableSchema:
    """Rejected rows keep their raw values: as sensitive as the table's most sensitive column."""
    raw = highest_of_columns(t.raw_columns)
    return column_schema(
        list(sql.QUARANTINE_COLUMNS),
        {
            "_file": "landing file of the rejected record",
            "_row_number": "1-based record number in the file",
            "rule": "the staging rule the record failed first",
            "column_name": "the column that failed it (NULL for whole-record rules)",
            "raw_value": "the failing raw value",
            "raw_record": "the whole raw record, as JSON",
        },
        {"raw_value": raw, "raw_record": raw},
    )


# identity.customer_pii, the same table in every regional store
IDENTITY_SCHEMA = column_schema(list(IDENTITY.columns), pii=IDENTITY.pii)


def staging_schema(t: SourceTable) -> dg.TableSchema:
    described = {c.name: c.description for c in t.raw_columns} | {
        "email_hash": "HMAC-SHA256 of the normalized email (join key)",
        "phone_hash": "HMAC-SHA256 of the normalized phone (join key)",
        "_available_at": "when the row became available to the platform (end of its export day)",
    }
    pii = {c.name: c.pii for c in t.columns} | {"email_hash": "indirect", "phone_hash": "indirect"}
    return column_schema(sql.staging_columns(t), described, pii)


def staging_lineage(t: SourceTable) -> dg.TableColumnLineage:
    rk = raw_key(t)
    mapping = {}
    for name, _ in sql.staging_columns(t):
        if name == "email_hash":
            mapping[name] = [(rk, "customer_email_hash" if t.name == "support_tickets" else "email_hash")]
        elif name == "phone_hash":
            mapping[name] = [(rk, "phone_hash")]
        elif name == "customer_id" and t.name == "support_tickets":
            mapping[name] = [(rk, "customer_email_hash"), (staging_key(CUSTOMERS), "email_hash"), (staging_key(CUSTOMERS), "customer_id")]
        elif name == "_available_at":
            mapping[name] = [(rk, "_partition_date")]
        else:
            mapping[name] = [(rk, name)]
    return column_lineage(mapping)


def build_raw_asset(t: SourceTable) -> dg.AssetsDefinition:
    key = raw_key(t)
    database_note = (
        " With CRM_DATABASE_URL set, extracted instead from the CRM database's customers table: "
        "the partition's versions by an updated_at watermark (meta.crm_watermark) with a "
        "late-update overlap, soft deletes carried as deleted_at."
        if t is CUSTOMERS
        else ""
    )
    personal_note = (
        " Holds no personal data: names, emails, phones and free text are replaced by HMAC keys "
        f"(<column>_hash) and stored in the subject's regional store (raw/{t.name}_personal)."
        if holds_personal_data(t)
        else ""
    )

    specs = [
        dg.AssetSpec(
            key,
            group_name=t.source,
            description=(
                f"{t.description} Raw load of {landing_pattern(t)} as it landed"
                + (" (one file per region, read as one partition)" if holds_personal_data(t) else "")
                + ", every value as text. Grain: one row per record in the day's file(s) "
                "(nothing dropped), keyed by (_partition_date, _row_number)." + database_note + personal_note
            ),
            partitions_def=daily_partitions,
            kinds={"duckdb", t.file_format},
            owners=OWNERS,
            code_version=CODE_VERSION,
            freshness_policy=SOURCE_FRESHNESS,
            metadata={
                "partition_expr": "_partition_date",
                "dagster/column_schema": _raw_schema(t),
                "adp/landing_pattern": landing_pattern(t),
                "adp/landing_columns": {hash_column(c.name): {"column": c.name, "pii": c.pii} for c in hashed_columns(t)},
            },
            tags={"layer": "raw", "source": t.source},
        )
    ]
    if holds_personal_data(t):
        specs.append(
            personal_spec(
                RAW_PERSONAL[t.name], group_name=t.source, partitions_def=daily_partitions, kinds={"duckdb"},
                owners=OWNERS, code_version=CODE_VERSION, deps=[raw_key(CUSTOMERS)] if t is not CUSTOMERS else [],
            )
        )

    # Subsettable so raw/<table> can be selected alone (a backfill of raw loads): the step always
    # stores the personal values too (they exist nowhere else), and reports raw/<table>_personal
    # only when that key is selected.
    @dg.multi_asset(
        name=f"raw__{t.name}",
        specs=specs,
        can_subset=True,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        check_specs=[
            dg.AssetCheckSpec(
                "schema_drift",
                asset=key,
                blocking=True,
                partitions_def=daily_partitions,
                description=(
                    "The landed file's columns equal the source contract's (missing columns and Parquet columns "
                    "of the wrong type fail, extra ones warn)."
                ),
            ),
            dg.AssetCheckSpec(
                "landing_complete",
                asset=key,
                blocking=True,
                partitions_def=daily_partitions,
                description=(
                    "No landing file of the day is cut short (a CSV without its header, a last record cut off, "
                    "a quoted field never closed), the day's well-formed records are not far below the "
                    "trailing days' median, and they belong to the day: mostly timed on it (or late within the "
                    "contract's lateness), not already loaded on another day. A re-load that would empty or "
                    "shrink a loaded day, or fill it with another day's records, is refused before anything is "
                    f"replaced. The run tag {landing_guard.ALLOW_SHRINK_TAG}=true forces such a day through; "
                    "the override is audited."
                ),
            ),
            dg.AssetCheckSpec(
                "volume_anomaly",
                asset=key,
                partitions_def=daily_partitions,
                description="Row count within a band around the median of the trailing 14 partitions.",
            ),
        ],
    )
    def _raw(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        landing: LandingResource,
        pii: PiiResource,
        regional_stores: RegionalStoresResource,
    ):
        personal = regional_stores.personal_data(pii)
        days = days_in(context)
        crm_database_url = settings.crm_database_url() if t is CUSTOMERS else None
        force = _audited_override(context, key, Path(landing.data_dir))
        with warehouse.get_connection() as con:
            if crm_database_url:
                loads = raw_load.load_crm_days(con, crm_database_url, days, settings.crm_overlap(), personal)
            else:
                try:
                    loads = raw_load.load_days(con, t, landing.zones, days, personal, force=force)
                except (InputError, LandingFileMissing) as exc:  # names the file and the rule: no traceback
                    raise dg.Failure(description=str(exc)) from None
            volumes = [raw_load.volume_verdict(con, sql.raw_table(t), d) for d in days]
            profile = partition_profile(con, sql.raw_table(t), days)
        rows = sum(load.rows for load in loads)
        extraction = {"extract_windows": {str(load.day): load.extra["window"] for load in loads}} if crm_database_url else {}
        if t.name == "events":  # records of the event stream received that day (issue 5)
            extraction["stream_records_by_day"] = {str(load.day): load.extra.get("stream_records", 0) for load in loads}
        if holds_personal_data(t) and personal_key(RAW_PERSONAL[t.name]) in context.selected_asset_keys:
            placed = loads[0].extra["residency"]
            yield dg.MaterializeResult(
                asset_key=personal_key(RAW_PERSONAL[t.name]),
                metadata=table_metadata(
                    row_count=sum(placed["rows_by_region"].values()),
                    table=RAW_PERSONAL[t.name].name,
                    extra={**placed, "stores": regional_stores.stores.describe()},
                ),
            )
        if key not in context.selected_asset_keys:
            return
        dropped = sum(load.extra.get("erased_subject_rows_dropped", 0) for load in loads)
        yield dg.MaterializeResult(
            asset_key=key,
            metadata=table_metadata(
                row_count=rows,
                schema=_raw_schema(t),
                table=sql.raw_table(t),
                extra={
                    "files": [file for load in loads for file in load.files],
                    "rows_by_day": {str(load.day): load.rows for load in loads},
                    PROFILE_KEY: profile,
                    "malformed_records": sum(load.malformed for load in loads),
                    "erased_subject_rows_dropped": dropped,
                    **extraction,
                },
            ),
        )
        drifted = [load for load in loads if load.drift.drifted]
        failing = [load for load in drifted if load.drift.failing]
        messages = [load.drift.describe(t, load.day) for load in drifted]
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name="schema_drift",
            passed=not drifted,
            severity=dg.AssetCheckSeverity.ERROR if failing else dg.AssetCheckSeverity.WARN,
            description="; ".join(messages) or f"{len(loads)} file(s) match the contract",
            metadata={
                "message": "; ".join(messages) or "columns match the contract",
                "drift": {
                    str(load.day): {
                        "missing": list(load.drift.missing),
                        "added": list(load.drift.added),
                        "wrong_type": {c: {"expected": e, "found": f} for c, e, f in load.drift.retyped},
                    }
                    for load in drifted
                },
            },
        )
        yield _landing_check(key, [load.guard for load in loads if load.guard is not None], actor_of(context.run))
        anomalies = [v for v in volumes if v.anomalous]
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name="volume_anomaly",
            passed=not anomalies,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(v.describe(sql.raw_table(t)) for v in (anomalies or volumes[-1:])),
            metadata={
                "message": "; ".join(v.describe(sql.raw_table(t)) for v in (anomalies or volumes[-1:])),
                "rows": volumes[-1].rows,
                "trailing_median": volumes[-1].median if volumes[-1].median is not None else -1,
            },
        )

    return _raw


def _audited_override(context: dg.AssetExecutionContext, key: dg.AssetKey, data_dir: Path):
    """The ``force`` of ``raw_load.load_days`` when the run carries ``adp/allow_shrink=true``: it
    appends the audit record of each day forced through; else None (stopped days stay stopped)."""
    try:
        allowed = landing_guard.allow_shrink(context.run.tags)
    except InputError as exc:
        raise dg.Failure(description=str(exc)) from None
    if not allowed:
        return None
    actor, run_id = actor_of(context.run), context.run_id

    def record(verdict: landing_guard.DayVerdict) -> None:
        audit.append(
            landing_guard.AUDIT_ACTION,
            directory=data_dir / "audit",
            anchor=DagsterAnchor(context.instance),  # the head in this run's own Dagster storage
            actor=actor,
            run_id=run_id,
            **landing_guard.audit_fields(verdict, key.to_user_string()),
        )
        context.log.warning(f"{_forced_by(actor)}: {verdict.describe()}")

    return record


def _forced_by(actor: str) -> str:
    return f"forced by {actor} with {landing_guard.ALLOW_SHRINK_TAG}=true (audited)"


def _landing_check(key: dg.AssetKey, verdicts: list[landing_guard.DayVerdict], actor: str) -> dg.AssetCheckResult:
    """The ``landing_complete`` result: fails on a day the guard stopped, passes with a warning on
    one an operator forced (an extraction from a database has no landing files to judge)."""
    stopped = [v for v in verdicts if v.stopped]
    blocking = [v for v in stopped if not v.forced]
    if blocking:
        message = "; ".join(v.describe() for v in blocking) + f"; {landing_guard.FORCE_HINT}"
    elif stopped:
        message = f"{_forced_by(actor)}: " + "; ".join(v.describe() for v in stopped)
    elif verdicts:
        message = verdicts[-1].describe()
    else:
        message = "extracted from a database: no landing files to judge"
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="landing_complete",
        passed=not blocking,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        description=message[:2000],
        metadata={
            "message": message,
            "by_day": {
                str(v.day): {
                    "well_formed": v.well_formed,
                    "loaded_well_formed": v.loaded if v.loaded is not None else -1,
                    "trailing_median": v.median if v.median is not None else -1,
                    "findings": list(v.findings) + ([v.refusal] if v.refusal else []),
                    "forced": v.forced,
                }
                for v in verdicts
            },
        },
    )


def build_staging_asset(t: SourceTable) -> dg.AssetsDefinition:
    skey, qkey = staging_key(t), quarantine_key(t)
    deps = [raw_key(t)]
    if t.customer_ref is not None:
        deps.append(staging_key(CUSTOMERS))
    common = dict(
        group_name=t.source,
        partitions_def=daily_partitions,
        kinds={"duckdb", "sql"},
        owners=OWNERS,
        code_version=CODE_VERSION,
        deps=deps,
        metadata={"partition_expr": "_partition_date"},
    )
    specs = [
        dg.AssetSpec(
            skey,
            description=(
                f"{t.description} Typed, validated and de-duplicated; direct identifiers replaced "
                f"by keyed HMACs. Grain: one row per {t.key} per export day (_partition_date)."
            ),
            tags={"layer": "staging", "source": t.source},
            freshness_policy=SOURCE_FRESHNESS,
            **common,
        ).merge_attributes(metadata={"dagster/column_schema": staging_schema(t), "dagster/column_lineage": staging_lineage(t)}),
        dg.AssetSpec(
            qkey,
            description=(
                f"Rows of raw/{t.name} that failed a staging rule. Grain: one row per rejected "
                "record, with file, row number, rule, column, raw value and the raw record. "
                "Restricted: holds raw values."
            ),
            tags={"layer": "quarantine", "source": t.source},
            **common,
        ).merge_attributes(metadata={"dagster/column_schema": quarantine_schema(t)}),
    ]
    regional_outputs = []
    if holds_personal_data(t):
        regional_outputs.append(QUARANTINE_PERSONAL[t.name])
        if t is CUSTOMERS:
            regional_outputs.append(IDENTITY)
    personal_common = {k: v for k, v in common.items() if k not in ("metadata", "deps")}
    personal_deps = [raw_key(t)] + ([staging_key(CUSTOMERS)] if t is not CUSTOMERS else [])
    specs += [personal_spec(table, deps=personal_deps, **personal_common) for table in regional_outputs]

    @dg.multi_asset(
        name=f"stage_{t.name}",
        specs=specs,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        check_specs=[
            dg.AssetCheckSpec(
                "row_conservation",
                asset=skey,
                blocking=True,
                partitions_def=daily_partitions,
                description="raw rows = staged + quarantined + exact duplicates, for every partition.",
            ),
            dg.AssetCheckSpec(
                "key_unique_across_days",
                asset=skey,
                partitions_def=daily_partitions,
                description=(
                    f"No record ({' + '.join(t.identity)}) of the partition is also staged on another day. "
                    "Warns (naming the days): the raw layer's blocking landing_complete gate stops a day "
                    "repeating another day's records; what this shows got through it (a few re-sent records, "
                    "a day forced through)."
                ),
            ),
        ],
    )
    def _stage(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, pii: PiiResource, regional_stores: RegionalStoresResource
    ):
        prewarm_gx()  # GX imports on another thread while DuckDB works; the gate finds it ready
        days = days_in(context)
        personal = regional_stores.personal_data(pii) if holds_personal_data(t) else None
        with warehouse.get_connection() as con:
            staged_days = staging.stage_days(con, t, days, personal)
            conserved = staging.conservation(con, t, min(days), max(days))
            repeats = staging.repeated_keys(con, t, min(days), max(days))
            profile = partition_profile(con, sql.staging_table(t), days)
        rules: dict[str, int] = {}
        for d in staged_days:
            for rule, n in d.rules.items():
                rules[rule] = rules.get(rule, 0) + n
        staged = sum(d.staged for d in staged_days)
        quarantined = sum(d.quarantined for d in staged_days)
        duplicates = sum(d.duplicates for d in staged_days)
        raw = sum(d.raw for d in staged_days)
        conservation_md = {
            "raw_rows": raw,
            "staged_rows": staged,
            "quarantined_rows": quarantined,
            "duplicate_rows": duplicates,
            "by_day": {str(d.day): {"raw": d.raw, "staged": d.staged, "quarantined": d.quarantined, "duplicates": d.duplicates} for d in staged_days},
        }
        yield dg.MaterializeResult(
            asset_key=skey,
            metadata=table_metadata(
                row_count=staged,
                schema=staging_schema(t),
                lineage=staging_lineage(t),
                table=sql.staging_table(t),
                extra={"conservation": conservation_md, "quarantined_rows": quarantined, "duplicate_rows": duplicates, PROFILE_KEY: profile},
            ),
        )
        yield dg.MaterializeResult(
            asset_key=qkey,
            metadata=table_metadata(
                row_count=quarantined,
                schema=quarantine_schema(t),
                table=sql.quarantine_table(t),
                extra={"quarantined_by_rule": rules},
            ),
        )
        for table in regional_outputs:
            placed = staged_days[0].residency[table.name]
            yield dg.MaterializeResult(
                asset_key=personal_key(table),
                metadata=table_metadata(
                    row_count=sum(placed["rows_by_region"].values()),
                    table=table.name,
                    extra={**placed, "stores": regional_stores.stores.describe()},
                ),
            )
        broken = [c for c in conserved if not c.holds]
        yield dg.AssetCheckResult(
            check_name="row_conservation",
            asset_key=skey,
            passed=not broken,
            description="; ".join(c.describe(sql.staging_table(t)) for c in (broken or conserved[-1:])),
            metadata={
                "message": "; ".join(c.describe(sql.staging_table(t)) for c in (broken or conserved[-1:])),
                "by_day": {str(c.day): {"raw": c.raw, "staged": c.staged, "quarantined": c.quarantined, "duplicates": c.duplicates} for c in conserved},
            },
        )
        yield _repeats_check(t, skey, repeats)

    return _stage


def _repeats_check(t: SourceTable, key: dg.AssetKey, repeats: list[staging.RepeatedKeys]) -> dg.AssetCheckResult:
    """The ``key_unique_across_days`` result: warns on each staged day holding another day's records."""
    repeating = [r for r in repeats if r.repeated]
    if repeating:
        message = "; ".join(r.describe(t) for r in repeating)
    else:
        message = (
            f"{sql.staging_table(t)}: no record ({' + '.join(t.identity)}) staged on another day, "
            f"{len(repeats)} partition(s)"
        )
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="key_unique_across_days",
        passed=not repeating,
        severity=dg.AssetCheckSeverity.WARN,
        description=message[:2000],
        metadata={
            "message": message,
            "by_day": {
                str(r.day): {"records": r.keys, "also_staged_elsewhere": r.repeated,
                             "other_days": {str(d): n for d, n in r.elsewhere[:staging.REPEATS_NAMED]}}
                for r in repeating
            },
        },
    )


raw_assets = [build_raw_asset(t) for t in SOURCE_TABLES]
staging_assets = [build_staging_asset(t) for t in SOURCE_TABLES]
