"""The code location loads, and every asset carries what a platform engineer needs in the UI."""

from datetime import datetime, timezone

import dagster as dg

from ai_data_platform.definitions import defs
from ai_data_platform.sources.contracts import SOURCE_TABLES


def test_definitions_load_with_every_layer():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.materializable_asset_keys}
    for t in SOURCE_TABLES:
        assert {f"raw/{t.name}", f"staging/{t.name}", f"quarantine/{t.name}"} <= keys
    assert {"identity/customer_pii", "marts/customer_360", "features/customer_daily", "features/transaction"} <= keys
    assert {"ml/churn_training_set", "ml/fraud_training_set", "ml/churn_model", "ml/fraud_model", "ml/churn_scores"} <= keys
    assert defs.resolve_job_def("nightly") is not None
    assert {s.name for s in defs.sensors} == {"late_landing_sensor", "alert_sensor", "audit_lineage_sensor"}


def test_every_asset_has_description_kinds_owners_code_version_schema():
    graph = defs.resolve_asset_graph()
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        spec = node.to_asset_spec() if hasattr(node, "to_asset_spec") else None
        assert node.description and "Grain" in node.description, key
        assert node.owners, key
        assert node.code_version, key
        assert node.kinds, key
        assert key.path[0] in {"raw", "staging", "quarantine", "identity", "marts", "features", "ml", "meta", "online"}, key
        if key.path[0] == "online":  # the online store is current, not time-partitioned (issue 5)
            assert node.freshness_policy is not None and "dagster/column_schema" in node.metadata, key
            continue
        assert node.partitions_def is not None, key
        if key.path[0] != "ml":  # dataset versions and models are built one partition at a time
            assert node.backfill_policy is not None, key
        if key.path[0] not in ("quarantine", "ml"):
            assert "dagster/column_schema" in node.metadata, key
        del spec


def test_freshness_policies_on_sources_and_features():
    graph = defs.resolve_asset_graph()
    for name in ("raw/events", "staging/payments", "features/customer_daily"):
        node = graph.get(dg.AssetKey.from_user_string(name))
        assert node.freshness_policy is not None, name


def test_staging_and_feature_gates_are_blocking():
    graph = defs.resolve_asset_graph()
    blocking = {
        (ck.asset_key.to_user_string(), ck.name)
        for ck in graph.asset_check_keys
        if graph.get_check_spec(ck).blocking
    }
    for t in SOURCE_TABLES:
        assert (f"staging/{t.name}", "gx_suite") in blocking
        assert (f"staging/{t.name}", "row_conservation") in blocking
    assert ("staging/payments", "referential_integrity") in blocking
    assert ("features/customer_daily", "gx_suite") in blocking
    assert ("raw/events", "volume_anomaly") not in blocking


def test_nightly_schedule_runs_yesterdays_partition_at_2am_utc():
    schedule = next(s for s in defs.schedules if s.name == "nightly_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 21, 2, 0, tzinfo=timezone.utc))
    requests = list(schedule.evaluate_tick(context).run_requests)
    assert [r.partition_key for r in requests] == ["2026-11-20"]
