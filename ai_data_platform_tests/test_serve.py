"""Serving: the HTTP API through real HTTP (uvicorn on a free loopback port) and the Python API."""

from __future__ import annotations

import asyncio
import socket
import threading
from datetime import timedelta

import httpx
import numpy as np
import pandas as pd
import pytest
import uvicorn

from ai_data_platform.features.registry import TRANSACTION_FEATURES, published
from ai_data_platform.ml import models
from ai_data_platform.streaming.consumer import Consumer, utc_now
from ai_data_platform.streaming.online_api import Scorer, Transaction, get_online_features, transaction_features
from ai_data_platform.streaming.online_store import SqliteOnlineStore
from ai_data_platform.streaming.producer import EventProducer, encode
from ai_data_platform.streaming.serve import create_app
from ai_data_platform.streaming.transport import FileSegmentTransport
from ai_data_platform_tests.waiting import bound, wait_for

FEATURES = [f.name for f in published(TRANSACTION_FEATURES)]


def _train_fraud_model() -> None:
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({f: rng.random(n) for f in FEATURES})
    frame["chargeback_60d"] = (frame["amount_to_avg_90d"] + 0.3 * rng.random(n) > 0.9).astype(int)
    frame["transaction_time"] = pd.date_range("2026-10-01", periods=n, freq="h")
    trained = models.train_model("fraud", "2026-11-01", frame, features=FEATURES, label="chargeback_60d", time_column="transaction_time")
    models.save_model(trained, dataset_manifest={"content_hash": "sha256:test", "version": "2026-11-01"}, gate_passed=True, margin=0.02)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    mp = pytest.MonkeyPatch()
    mp.setenv("ADP_DATA_DIR", str(root))
    _train_fraud_model()
    transport = FileSegmentTransport(root / "stream")
    producer = EventProducer(20, seed=3)
    events = producer.events(600)
    transport.append([encode(e) for e in events])
    store = SqliteOnlineStore(root / "online" / "features.sqlite")
    store.bootstrap([], {"C0000001": "DE", "C0000002": "US"}, {"payments": utc_now()})
    Consumer(transport, store).run(until_idle=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), "uvicorn to start serving", max_interval=0.1)
    assert server.started, "uvicorn stopped without serving"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=bound(60)) as client:
        yield {"client": client, "store": store, "events": events}
    server.should_exit = True
    thread.join(bound(60))
    mp.undo()


def test_health(served):
    r = served["client"].get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["model"]["version"] == "2026-11-01"
    assert "events" in body["complete_as_of"]


def test_features_over_http_equal_the_python_api(served):
    events = served["events"]
    cid = max({e["customer_id"] for e in events}, key=lambda c: sum(e["customer_id"] == c for e in events))
    r = served["client"].get(f"/features/{cid}")
    assert r.status_code == 200
    body = r.json()
    api = get_online_features([cid], store=served["store"])[cid]
    moving = "seconds_since_last_txn"  # evaluated as of each call's "now"
    assert {k: v for k, v in body["features"].items() if k != moving} == {k: v for k, v in api["features"].items() if k != moving}
    if api["features"][moving] is not None:
        assert 0 <= api["features"][moving] - body["features"][moving] <= 2
    assert body["known"] and not body["defaults"]
    cards = [e for e in events if e["customer_id"] == cid and e["event_type"] == "card_transaction"]
    assert body["features"]["txn_count_1h"] == len(cards)
    assert body["features"]["distinct_devices_7d"] == len({e["device_id"] for e in events if e["customer_id"] == cid})
    assert body["expired"] == {name: False for name in body["features"]}
    subset = served["client"].get(f"/features/{cid}", params={"features": "txn_count_1h,txn_amount_24h"}).json()
    assert set(subset["features"]) == {"txn_count_1h", "txn_amount_24h"}


def test_unknown_customer_gets_explicit_defaults(served):
    r = served["client"].get("/features/C7777777")
    assert r.status_code == 200
    body = r.json()
    assert body["known"] is False and body["defaults"] is True
    assert body["features"]["txn_count_24h"] == 0 and body["features"]["avg_txn_amount_90d"] is None


def test_bad_requests_name_the_field(served):
    client = served["client"]
    r = client.get("/features/C0000001", params={"features": "no_such_feature"})
    assert r.status_code == 400 and "features" in r.json()["error"]
    assert client.post("/score", content=b"{oops").status_code == 400
    for body, field in [({"amount": 10}, "customer_id"), ({"customer_id": "C0000001"}, "amount"),
                        ({"customer_id": "C0000001", "amount": "ten"}, "amount"),
                        ({"customer_id": "C0000001", "amount": -1}, "amount"),
                        ({"customer_id": "C0000001", "amount": 1, "event_time": "noon"}, "event_time"),
                        ({"customer_id": "", "amount": 1}, "customer_id"),
                        ({"customer_id": "C0000001", "amount": 1, "colour": "red"}, "colour")]:
        r = client.post("/score", json=body)
        assert r.status_code == 422, body
        assert field in r.json()["error"], (body, r.json())
    huge = client.post("/score", json={"customer_id": "C0000001", "amount": 1e308})  # finite, but no amount
    assert huge.status_code == 422 and huge.json() == {
        "error": "field 'amount' must be at most 1e+08, got '1e+308'", "rule": "out_of_range", "field": "amount"}


def test_score_uses_the_latest_passing_model_and_reports_features(served):
    events = served["events"]
    card = next(e for e in events if e["event_type"] == "card_transaction" and e["customer_id"] == "C0000001") \
        if any(e["event_type"] == "card_transaction" and e["customer_id"] == "C0000001" for e in events) else None
    txn = {"customer_id": "C0000001", "amount": 950.0, "device_id": "dev-never-seen", "ip_country": "BR"}
    r = served["client"].post("/score", json=txn)
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0.0 <= body["fraud_probability"] <= 1.0
    assert body["model"] == {"name": "fraud", "version": "2026-11-01"}
    assert set(body["features"]) == set(FEATURES)
    assert body["features"]["is_new_device"] == 1 and body["features"]["ip_country_mismatch"] == 1
    assert body["features"]["amount"] == 950.0
    assert set(body["freshness"]) == set(FEATURES) and body["freshness"]["txn_count_1h"]["expired"] is False
    # the probability is the model's, as ml.models.score computes it
    _, estimator, model_card = models.latest_passing_model("fraud")
    used = model_card["features"]
    frame = pd.DataFrame([{f: np.nan if body["features"][f] is None else body["features"][f] for f in used}])
    assert body["fraud_probability"] == float(models.score(estimator, frame, used)[0])  # exactly: ml.tree_scorer
    # the same transaction through the Python path gives the same features
    values, _, _, _ = transaction_features(Transaction("C0000001", 950.0, "dev-never-seen", "BR"), served["store"])
    assert {f: values[f] for f in FEATURES if f != "seconds_since_last_txn"} == {f: v for f, v in body["features"].items() if f != "seconds_since_last_txn"}
    if card is not None:  # a known device from the home country is not flagged
        same = served["client"].post("/score", json={**txn, "device_id": card["device_id"], "ip_country": "DE"}).json()
        assert same["features"]["is_new_device"] == 0 and same["features"]["ip_country_mismatch"] == 0


def test_no_passing_model_is_503(served):
    app = create_app(served["store"], Scorer("fraud_without_models"))

    async def calls():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return (await client.post("/score", json={"customer_id": "C0000001", "amount": 1.0}),
                    await client.get("/health"), await client.get("/features/C0000001"))

    score, health, features = asyncio.run(calls())
    assert score.status_code == 503
    assert "no fraud_without_models model has passed its gate" in score.json()["error"]
    assert health.json()["model"]["version"] is None
    assert features.status_code == 200  # features are served without a model


def test_expired_flags_follow_source_coverage(served):
    store = served["store"]
    coverage = store.coverage()
    later = coverage["events"] + timedelta(hours=2)
    values = get_online_features(["C0000001"], store=store, now=later)["C0000001"]
    assert values["expired"]["txn_count_1h"] is True  # events known complete only 2 h ago: past the 1 h TTL
    assert values["expired"]["txn_count_24h"] is False
    assert values["expired"]["failed_payments_30d"] is False
    never = get_online_features(["C0000001"], store=SqliteOnlineStore(store.path.parent / "empty.sqlite"))["C0000001"]
    assert all(never["expired"].values())  # no coverage at all: nothing is current
