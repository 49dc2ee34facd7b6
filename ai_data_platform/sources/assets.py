"""Raw and staging assets for every source table (thin Dagster wiring around raw_load / staging).

``raw/<table>``: the day's landing file as it landed plus file name, row number and load time.
``staging/<table>`` + ``quarantine/<table>``: typed, validated, de-duplicated rows and the rows
that failed a rule, written together so row conservation holds for every partition.
"""


from datetime import timedelta

import dagster as dg

from ai_data_platform import settings
from ai_data_platform.metadata import OWNERS, column_lineage, column_schema, table_metadata
from ai_data_platform.partitions import daily_partitions, days_in
from ai_data_platform.resources import LandingResource, PiiResource, WarehouseResource
from ai_data_platform.sources import raw_load, staging
from ai_data_platform.sources import staging_sql as sql
from ai_data_platform.sources.contracts import CUSTOMERS, SOURCE_TABLES, SourceTable
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


IDENTITY_KEY = dg.AssetKey(["identity", "customer_pii"])


def _raw_schema(t: SourceTable) -> dg.TableSchema:
    cols = [(c, "VARCHAR") for c in t.raw_column_names] + [
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
            "_file": "landing file, relative to the landing root (or the source table's URL)",
            "_row_number": "1-based record number in the file (or in the database extraction)",
            "_raw_line": "raw text of a record that could not be split into fields",
            "_loaded_at": "wall-clock time of the load",
        },
        {c.name: c.pii for c in t.columns},
    )


def _staging_schema(t: SourceTable) -> dg.TableSchema:
    described = {c.name: c.description for c in t.raw_columns} | {
        "email_hash": "HMAC-SHA256 of the normalized email (join key)",
        "phone_hash": "HMAC-SHA256 of the normalized phone (join key)",
        "_available_at": "when the row became available to the platform (end of its export day)",
    }
    pii = {c.name: c.pii for c in t.columns} | {"email_hash": "indirect", "phone_hash": "indirect"}
    return column_schema(sql.staging_columns(t), described, pii)


def _staging_lineage(t: SourceTable) -> dg.TableColumnLineage:
    rk = raw_key(t)
    mapping = {}
    for name, _ in sql.staging_columns(t):
        if name == "email_hash":
            mapping[name] = [(rk, "customer_email" if t.name == "support_tickets" else "email")]
        elif name == "phone_hash":
            mapping[name] = [(rk, "phone")]
        elif name == "customer_id" and t.name == "support_tickets":
            mapping[name] = [(rk, "customer_email"), (staging_key(CUSTOMERS), "email_hash"), (staging_key(CUSTOMERS), "customer_id")]
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

    @dg.asset(
        key=key,
        group_name=t.source,
        description=(
            f"{t.description} Raw load of landing/{t.source}/{t.name}/<day>.{t.extension} as it "
            "landed, every value as text. Grain: one row per record in the day's file "
            "(nothing dropped), keyed by (_partition_date, _row_number)." + database_note
        ),
        partitions_def=daily_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        kinds={"duckdb", t.file_format},
        owners=OWNERS,
        code_version=CODE_VERSION,
        pool=WAREHOUSE_POOL,
        freshness_policy=SOURCE_FRESHNESS,
        metadata={"partition_expr": "_partition_date", "dagster/column_schema": _raw_schema(t)},
        tags={"layer": "raw", "source": t.source},
        check_specs=[
            dg.AssetCheckSpec(
                "schema_drift",
                asset=key,
                blocking=True,
                partitions_def=daily_partitions,
                description="The landed file's columns equal the source contract's (missing columns fail, extra ones warn).",
            ),
            dg.AssetCheckSpec(
                "volume_anomaly",
                asset=key,
                partitions_def=daily_partitions,
                description="Row count within a band around the median of the trailing 14 partitions.",
            ),
        ],
    )
    def _raw(context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource):
        days = days_in(context)
        crm_database_url = settings.crm_database_url() if t is CUSTOMERS else None
        with warehouse.get_connection() as con:
            if crm_database_url:
                loads = raw_load.load_crm_days(con, crm_database_url, days, settings.crm_overlap())
            else:
                loads = raw_load.load_days(con, t, landing.path, days)
            volumes = [raw_load.volume_verdict(con, sql.raw_table(t), d) for d in days]
        rows = sum(load.rows for load in loads)
        extraction = {"extract_windows": {str(load.day): load.extra["window"] for load in loads}} if crm_database_url else {}
        if t.name == "events":  # records of the event stream received that day (issue 5)
            extraction["stream_records_by_day"] = {str(load.day): load.extra.get("stream_records", 0) for load in loads}
        yield dg.MaterializeResult(
            metadata=table_metadata(
                row_count=rows,
                schema=_raw_schema(t),
                table=sql.raw_table(t),
                extra={
                    "files": [load.file for load in loads],
                    "rows_by_day": {str(load.day): load.rows for load in loads},
                    "malformed_records": sum(load.malformed for load in loads),
                    **extraction,
                },
            )
        )
        drifted = [load for load in loads if load.drift.drifted]
        missing = [load for load in drifted if load.drift.missing]
        messages = [load.drift.describe(t, load.day) for load in drifted]
        yield dg.AssetCheckResult(
            check_name="schema_drift",
            passed=not drifted,
            severity=dg.AssetCheckSeverity.ERROR if missing else dg.AssetCheckSeverity.WARN,
            description="; ".join(messages) or f"{len(loads)} file(s) match the contract",
            metadata={
                "message": "; ".join(messages) or "columns match the contract",
                "drift": {str(load.day): {"missing": list(load.drift.missing), "added": list(load.drift.added)} for load in drifted},
            },
        )
        anomalies = [v for v in volumes if v.anomalous]
        yield dg.AssetCheckResult(
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
        ).merge_attributes(metadata={"dagster/column_schema": _staging_schema(t)}),
        dg.AssetSpec(
            qkey,
            description=(
                f"Rows of raw/{t.name} that failed a staging rule. Grain: one row per rejected "
                "record, with file, row number, rule, column, raw value and the raw record. "
                "Restricted: holds raw values."
            ),
            tags={"layer": "quarantine", "source": t.source},
            **common,
        ),
    ]
    if t is CUSTOMERS:
        specs.append(
            dg.AssetSpec(
                IDENTITY_KEY,
                description=(
                    "Restricted identity table: the only place raw names, emails and phones "
                    "live, with their HMAC join keys. Grain: one row per customer upsert."
                ),
                tags={"layer": "identity", "source": t.source, "access": "restricted"},
                **common,
            ).merge_attributes(
                metadata={
                    "dagster/column_schema": column_schema(
                        list(sql.IDENTITY_COLUMNS),
                        pii={"name": "direct", "email": "direct", "phone": "direct", "country": "indirect", "email_hash": "indirect", "phone_hash": "indirect"},
                    )
                }
            )
        )

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
            )
        ],
    )
    def _stage(context: dg.AssetExecutionContext, warehouse: WarehouseResource, pii: PiiResource):
        prewarm_gx()  # GX imports on another thread while DuckDB works; the gate finds it ready
        days = days_in(context)
        with warehouse.get_connection() as con:
            staged_days = staging.stage_days(con, t, days, pii.hmac_key)
            conserved = staging.conservation(con, t, min(days), max(days))
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
                schema=_staging_schema(t),
                lineage=_staging_lineage(t),
                table=sql.staging_table(t),
                extra={"conservation": conservation_md, "quarantined_rows": quarantined, "duplicate_rows": duplicates},
            ),
        )
        yield dg.MaterializeResult(
            asset_key=qkey,
            metadata=table_metadata(
                row_count=quarantined,
                table=sql.quarantine_table(t),
                extra={"quarantined_by_rule": rules},
            ),
        )
        if t is CUSTOMERS:
            yield dg.MaterializeResult(
                asset_key=IDENTITY_KEY,
                metadata=table_metadata(row_count=staged, table=sql.IDENTITY_TABLE),
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

    return _stage


raw_assets = [build_raw_asset(t) for t in SOURCE_TABLES]
staging_assets = [build_staging_asset(t) for t in SOURCE_TABLES]
