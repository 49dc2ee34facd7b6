"""PII classification on every asset, and the blocking PII gates on features, datasets and models."""

import shutil

import dagster as dg
import duckdb
import pytest

from ai_data_platform import settings, warehouse
from ai_data_platform.definitions import defs
from ai_data_platform.features.assets import KEY as CUSTOMER_DAILY_KEY
from ai_data_platform.features.assets import customer_daily
from ai_data_platform.governance import classification, pii_scan
from ai_data_platform.governance.pii_checks import GATE_NAME, GATED_LAYERS, scan_dataset, scan_warehouse
from ai_data_platform.metadata import column_schema
from ai_data_platform.ml.assets import training_set_schema
from ai_data_platform.ml.training_sql import FRAUD
from ai_data_platform.partitions import daily_partitions
from ai_data_platform.resources import build_resources

GRAPH = defs.resolve_asset_graph()


def _gate(key: dg.AssetKey) -> dg.AssetChecksDefinition:
    return next(c for c in defs.asset_checks if dg.AssetCheckKey(key, GATE_NAME) in c.check_keys)


def test_every_column_of_every_asset_is_classified():
    assert classification.definition_problems(GRAPH) == []
    for key in GRAPH.get_all_asset_keys():  # models carry their feature columns
        schema = classification.schema_of(GRAPH.get(key).metadata)
        assert schema.columns, key
    model = classification.levels(classification.schema_of(GRAPH.get(dg.AssetKey(["ml", "fraud_model"])).metadata))
    assert "amount" in model and "chargeback_60d" not in model


def test_the_walk_catches_an_unclassified_column_a_missing_schema_and_a_downgrade():
    @dg.asset(metadata={"dagster/column_schema": column_schema([("email", "VARCHAR")], pii={"email": "direct"})})
    def upstream():
        return 1

    bad_schema = dg.TableSchema(columns=[dg.TableColumn("email", "VARCHAR"), dg.TableColumn("note", "VARCHAR", tags={"pii": "secret"})])
    lineage = dg.TableColumnLineage(deps_by_column={"email": [dg.TableColumnDep(asset_key=upstream.key, column_name="email")]})

    @dg.asset(deps=[upstream], metadata={"dagster/column_schema": bad_schema, "dagster/column_lineage": lineage})
    def downgraded():
        return 1

    @dg.asset
    def schemaless():
        return 1

    problems = classification.definition_problems(dg.Definitions(assets=[upstream, downgraded, schemaless]).resolve_asset_graph())
    assert any(p.startswith("schemaless: no dagster/column_schema") for p in problems)
    assert any(p.startswith("downgraded.email: no pii classification") for p in problems)
    assert any(p.startswith("downgraded.note: no pii classification") for p in problems)
    fixed = column_schema([("email", "VARCHAR")], pii={"email": "none"})

    @dg.asset(name="downgraded", deps=[upstream], metadata={"dagster/column_schema": fixed, "dagster/column_lineage": lineage})
    def downgraded_again():
        return 1

    problems = classification.definition_problems(dg.Definitions(assets=[upstream, downgraded_again]).resolve_asset_graph())
    assert problems == ["downgraded.email is classified none but passes through upstream.email, classified direct"]


def test_every_feature_dataset_and_model_asset_has_a_blocking_pii_gate():
    gated = {k for k in GRAPH.get_all_asset_keys() if GRAPH.get(k).tags.get("layer") in GATED_LAYERS}
    assert {k.to_user_string() for k in gated} >= {
        "features/customer_daily", "features/transaction", "ml/churn_training_set", "ml/fraud_training_set",
        "ml/churn_model", "ml/fraud_model", "ml/churn_scores",
    }
    for key in gated:
        check = dg.AssetCheckKey(key, GATE_NAME)
        assert check in GRAPH.asset_check_keys, key
        assert GRAPH.get_check_spec(check).blocking, key


def test_declared_schemas_match_the_warehouse_tables(tiny_world):
    """Classification covers what is really stored: every column of every table, no more, no less."""
    paths, _, _ = tiny_world
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        compared = 0
        for key in GRAPH.get_all_asset_keys():
            table = ".".join(key.path)
            if len(key.path) != 2 or not warehouse.table_exists(con, table):
                continue
            stored = {name for name, _ in warehouse.table_columns(con, table)}
            declared = set(classification.levels(classification.schema_of(GRAPH.get(key).metadata)))
            assert stored == declared, (table, stored ^ declared)
            compared += 1
    finally:
        con.close()
    assert compared >= 25  # raw, staging, quarantine, identity, marts, features


def test_clean_partitions_pass_the_gates(tiny_world):
    _, instance, _ = tiny_world
    keys = [dg.AssetCheckKey(dg.AssetKey(["features", t]), GATE_NAME) for t in ("customer_daily", "transaction")]
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    assert {k: r.status.value for k, r in latest.items()} == {k: "SUCCEEDED" for k in keys}


@pytest.fixture()
def world_copy(tiny_world, tmp_path, monkeypatch):
    paths, _, days = tiny_world
    shutil.copyfile(paths.warehouse, tmp_path / "warehouse.duckdb")
    shutil.copytree(paths.landing, tmp_path / "landing")
    shutil.copytree(paths.root / "regions", tmp_path / "regions", ignore=shutil.ignore_patterns("*.duckdb*"))
    monkeypatch.setenv("ADP_DATA_DIR", str(tmp_path))
    return settings.Paths(tmp_path), days


def test_a_planted_email_in_a_feature_table_is_caught_with_a_masked_sample(world_copy):
    paths, days = world_copy
    declared = classification.levels(classification.schema_of(GRAPH.get(CUSTOMER_DAILY_KEY).metadata))
    con = warehouse.connect(paths.warehouse)
    try:
        assert scan_warehouse(con, "features/customer_daily", "features.customer_daily", days, declared) == []
        con.execute(
            "UPDATE features.customer_daily SET customer_id = 'jane.doe@example.com' "
            "WHERE _partition_date = ? AND customer_id = (SELECT min(customer_id) FROM features.customer_daily WHERE _partition_date = ?)",
            [days[1], days[1]],
        )
        findings = scan_warehouse(con, "features/customer_daily", "features.customer_daily", days, declared)
    finally:
        con.close()
    assert [(f.partition, f.column, f.rule, f.count) for f in findings] == [(days[1].isoformat(), "customer_id", "email_value", 1)]
    message = findings[0].describe()
    assert "features/customer_daily partition" in message and "j*******@e******.com" in message
    assert "jane.doe" not in message and "example.com" not in message


def test_a_phone_number_in_a_dataset_version_is_caught(world_copy):
    paths, _ = world_copy
    version = "2026-10-01"
    target = paths.root / "datasets" / "fraud" / version
    target.mkdir(parents=True)
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT * FROM (VALUES ('E0000000001', 'C0000001', 12.5, 0), ('E0000000002', 'call +4915112345678', 3.0, 1)) "
        f"t(transaction_id, customer_id, amount, chargeback_60d)) TO '{target / 'data.parquet'}' (FORMAT parquet)"
    )
    con.close()
    declared = classification.levels(training_set_schema(FRAUD))
    findings = scan_dataset("ml/fraud_training_set", "fraud", version, declared)
    assert [(f.partition, f.column, f.rule, f.sample) for f in findings] == [
        (version, "customer_id", "phone_value", "+49*********78")
    ]


def test_a_direct_pii_column_in_a_feature_table_fails_the_gate_and_blocks_downstream(world_copy):
    paths, days = world_copy
    con = warehouse.connect(paths.warehouse)
    con.execute("ALTER TABLE features.customer_daily ADD COLUMN email VARCHAR")  # survives re-materialization
    con.close()

    @dg.asset(key=["ml", "probe"], deps=[CUSTOMER_DAILY_KEY], partitions_def=daily_partitions, backfill_policy=dg.BackfillPolicy.single_run())
    def probe():
        return 1

    result = dg.materialize(
        [customer_daily, _gate(CUSTOMER_DAILY_KEY), probe],
        partition_key=days[-1].isoformat(),
        resources=build_resources(paths),
        raise_on_error=False,
    )
    assert not result.success
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == GATE_NAME]
    assert not evaluation.passed
    message = evaluation.metadata["message"].text
    assert "column email is named like a direct identifier" in message and "direct_pii_column" in message
    assert evaluation.metadata["rules_broken"].value == ["direct_pii_column"]
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert CUSTOMER_DAILY_KEY in materialized and probe.key not in materialized


def test_a_model_card_or_feature_list_holding_pii_is_caught():
    declared = {"amount": "none", "txn_count_1h": "none"}
    card = {"features": ["amount", "txn_count_1h", "phone"], "notes": "trained for ops@example.com"}
    findings = pii_scan.column_findings("ml/fraud_model", "2026-10-01", card["features"], declared)
    findings += pii_scan.text_findings("ml/fraud_model", "2026-10-01", card)
    assert [(f.column, f.rule) for f in findings] == [("phone", "direct_pii_column"), ("notes", "email_value")]
    unclassified = pii_scan.column_findings("ml/fraud_model", "2026-10-01", ["amount", "new_feature"], declared)
    assert [(f.column, f.rule) for f in unclassified] == [("new_feature", "unclassified_column")]


def test_regexes_do_not_flag_the_platforms_identifiers_dates_or_addresses():
    con = duckdb.connect()
    values = ["C0000001", "E0000000042", "2026-11-20", "2026-11-20 10:00:00", "192.168.100.200",
              "3dbe5bc5-c14f-40c8-ab27-9a00ea40de0f", "sha256:4e07408562bedb8b60ce05c1decfe3ad", "+00:00"]
    phones = ["+4915112345678", "+1 415 555 0100", "(415) 555-0100", "call 030-1234-5678 now"]
    rows = con.execute(
        f"SELECT v, regexp_matches(v, '{pii_scan.EMAIL_PATTERN}'), regexp_matches(v, '{pii_scan.PHONE_PATTERN}') "
        "FROM unnest(?) t(v)", [values + phones + ["a.b@c-d.io"]]
    ).fetchall()
    flagged = {v: (e, p) for v, e, p in rows}
    assert all(flagged[v] == (False, False) for v in values), flagged
    assert all(flagged[v] == (False, True) for v in phones), flagged
    assert flagged["a.b@c-d.io"] == (True, False)
