"""``adp stream produce``: paced at the asked rate, every event valid under the events contract,
and the simulator's fraud signal (a new device from abroad for several times the usual amount)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np

from ai_data_platform import cli, settings
from ai_data_platform.sources import simulator_vocab as vocab
from ai_data_platform.sources.contracts import EVENT_TYPES
from ai_data_platform.sources.simulator_ids import device_ids
from ai_data_platform.streaming.events import judge
from ai_data_platform.streaming.producer import EventProducer
from ai_data_platform.streaming.transport import FileSegmentTransport


def test_adp_stream_produce_paces_the_rate_and_every_event_passes_the_contract(data_dir, monkeypatch, capsys):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert cli.main(["stream", "produce", "--rate", "400", "--duration", "1.5", "--customers", "25"]) == 0
    printed = json.loads(capsys.readouterr().out)
    records = FileSegmentTransport(settings.paths().stream).read(None, 10_000)

    assert printed["produced"] == len(records) and printed["last_position"] == records[-1].position
    # 400/s for 1.5 s: the producer tops up every 10 ms to rate x elapsed, so ~600 (not a burst, not a trickle)
    assert 540 <= len(records) <= 610
    spread = (records[-1].received_at - records[0].received_at).total_seconds()
    assert 1.3 <= spread <= 1.6

    customers = set(EventProducer(25).customer_ids)
    types = set()
    for record in records:
        event, violation = judge(record.payload, record.received_at)
        assert violation is None, (record.position, violation)
        assert event["customer_id"] in customers
        types.add(event["event_type"])
    assert types == set(EVENT_TYPES)


def test_new_devices_from_abroad_carry_the_simulators_fraud_signal():
    producer = EventProducer(400, seed=7)
    pop = producer.population
    index = {cid: i for i, cid in enumerate(producer.customer_ids)}
    usual = {cid: set(device_ids(2 * pop.number[i] + np.arange(pop.devices[i])).to_pylist())
             for cid, i in index.items()}
    now = datetime(2026, 11, 30, 12, tzinfo=timezone.utc).replace(tzinfo=None)
    transactions = [e for e in producer.events(300_000, now=now) if e["event_type"] == "card_transaction"]

    suspicious, ordinary = [], []
    for e in transactions:
        i = index[e["customer_id"]]
        high = e["amount"] > 4 * float(pop.usual_amount[i])
        new_device = e["device_id"] not in usual[e["customer_id"]]
        abroad = e["ip_country"] != vocab.COUNTRIES[pop.country[i]]
        (suspicious if new_device and abroad else ordinary).append(high)

    # ordinary sessions: new device 1.5 %, abroad 4 % (independent), amounts around the usual
    assert 0.0002 < len(suspicious) / len(transactions) < 0.01
    high_suspicious, high_ordinary = np.mean(suspicious), np.mean(ordinary)
    assert high_suspicious > 10 * high_ordinary, (high_suspicious, high_ordinary)
    assert high_ordinary < 0.01
