"""Column-level lineage: complete on staging, marts, features and training sets, and walked back
to the landing files by `adp lineage`."""

import json

import dagster as dg

from ai_data_platform.cli import main
from ai_data_platform.definitions import defs
from ai_data_platform.governance import classification, lineage
from ai_data_platform.metadata import column_lineage, column_schema

GRAPH = defs.resolve_asset_graph()
TRACED_LAYERS = ("staging", "marts", "features")
TRAINING_SETS = ("ml/churn_training_set", "ml/fraud_training_set")


def test_every_output_column_has_lineage_to_an_existing_upstream_column():
    keys = [k for k in GRAPH.get_all_asset_keys() if k.path[0] in TRACED_LAYERS or k.to_user_string() in TRAINING_SETS]
    assert len(keys) == 7 + 1 + 2 + 2  # staging tables, customer_360, two feature tables, two training sets
    for key in keys:
        node = GRAPH.get(key)
        columns = classification.levels(classification.schema_of(node.metadata))
        deps = classification.lineage_of(node.metadata).deps_by_column
        assert set(deps) == set(columns), (key, set(columns) ^ set(deps))
        for column, inputs in deps.items():
            assert inputs, (key, column)
            for dep in inputs:
                assert dep.asset_key in node.parent_keys, (key, column, dep.asset_key)
                upstream = classification.levels(classification.schema_of(GRAPH.get(dep.asset_key).metadata))
                assert dep.column_name in upstream, (key, column, dep.asset_key, dep.column_name)


def _path_to(node: lineage.Node, predicate) -> list[str] | None:
    if predicate(node):
        return [node.label]
    for child in node.inputs:
        found = _path_to(child, predicate)
        if found:
            return [node.label, *found]
    return None


def test_adp_lineage_walks_a_training_column_back_to_the_billing_files(capsys):
    assert main(["lineage", "ml/churn_training_set.payment_failures_30d", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source_files"] == {"landing/billing/payments/*.parquet": ["created_at", "status"]}
    tree = lineage.trace(GRAPH, "ml/churn_training_set.payment_failures_30d")
    path = _path_to(tree, lambda n: n.source == "landing/billing/payments/*.parquet" and n.column == "status")
    assert path == [
        "ml/churn_training_set.payment_failures_30d",
        "features/customer_daily.payment_failures_30d",
        "staging/payments.status",
        "raw/payments.status",
        "landing/billing/payments/*.parquet : status",
    ]
    assert main(["lineage", "ml/churn_training_set.payment_failures_30d"]) == 0
    text = capsys.readouterr().out
    assert "└── landing/billing/payments/*.parquet : created_at" in text and "source files:" in text


def test_lineage_shows_where_a_pseudonymized_column_came_from_and_its_classification():
    tree = lineage.trace(GRAPH, "marts/customer_360.email_hash")
    path = _path_to(tree, lambda n: n.source is not None)
    # the warehouse's raw table holds the HMAC computed at load; the address itself is in the file
    assert path == ["marts/customer_360.email_hash", "staging/customers.email_hash", "raw/customers.email_hash", "regions/<region>/landing/crm/customers/*.csv : email"]
    raw = tree.inputs[0].inputs[0]
    assert (tree.pii, raw.pii, raw.inputs[0].pii) == ("indirect", "indirect", "direct")


def test_an_asset_traces_to_every_source_it_reads():
    tree = lineage.trace(GRAPH, "features/customer_daily")
    assert set(tree.sources()) == {
        "landing/behavioral/events/*.jsonl", "landing/billing/payments/*.parquet", "landing/billing/chargebacks/*.parquet",
        "landing/billing/subscriptions/*.parquet", "regions/<region>/landing/crm/customers/*.csv", "regions/<region>/landing/crm/support_tickets/*.csv",
    }
    model = lineage.trace(GRAPH, "ml/fraud_model.ip_country_mismatch")
    assert model.sources() == {"landing/behavioral/events/*.jsonl": {"ip_country"}, "regions/<region>/landing/crm/customers/*.csv": {"country"}}


def test_unknown_targets_are_refused_with_suggestions(capsys):
    assert main(["lineage", "ml/churn_training_set.payment_falures_30d"]) == 2
    assert "did you mean payment_failures_30d" in capsys.readouterr().err
    assert main(["lineage", "features/customer_dialy"]) == 2
    assert "no asset 'features/customer_dialy'; did you mean features/customer_daily" in capsys.readouterr().err


def test_the_walk_reads_the_definitions_it_is_given():
    @dg.asset(key=["raw", "orders"], metadata={
        "dagster/column_schema": column_schema([("total", "VARCHAR")]), "adp/landing_pattern": "landing/shop/orders/<day>.csv"})
    def raw_orders():
        return 1

    @dg.asset(key=["staging", "orders"], deps=[raw_orders], metadata={
        "dagster/column_schema": column_schema([("amount", "DOUBLE")]),
        "dagster/column_lineage": column_lineage({"amount": [(raw_orders.key, "total")]})})
    def staging_orders():
        return 1

    tree = lineage.trace(dg.Definitions(assets=[raw_orders, staging_orders]).resolve_asset_graph(), "staging/orders.amount")
    assert _path_to(tree, lambda n: n.source is not None) == ["staging/orders.amount", "raw/orders.total", "landing/shop/orders/*.csv : total"]
