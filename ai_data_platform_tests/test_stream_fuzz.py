"""Every record is judged, none stops a service: hostile input against the running services.

* ``adp stream consume``: thousands of hostile records (``hostile.py``) appended in one go reach
  the end of the stream; each is a valid event or quarantined with the rule the judge names
  (valid + quarantined = appended, in the online store's position and in the warehouse).
* The consumer quarantines a record whose processing fails and passes it; an error of the store
  is not a record's: nothing is quarantined or committed.
* ``adp serve``: hostile ``POST /score`` bodies (and hostile paths and queries) get a 4xx, never a
  500; the body limit answers 413; an error echoes at most a short prefix of the input.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_data_platform.streaming import backends
from ai_data_platform.streaming import erased as erased_module
from ai_data_platform.streaming.consumer import Consumer
from ai_data_platform.streaming.erased import UNPROCESSABLE
from ai_data_platform.streaming.events import judge
from ai_data_platform.streaming.online_store import SqliteOnlineStore
from ai_data_platform.streaming.producer import EventProducer, encode
from ai_data_platform.streaming.serve import MAX_BODY_BYTES, SCORE_REQUEST
from ai_data_platform.streaming.transport import FileSegmentTransport

from .hostile import hostile_event, hostile_transaction
from .waiting import bound, wait_for

BIN = Path(sys.executable).parent
RECORDS = 4000
ECHO_LIMIT = 600  # characters of an error answer: the message, the rule and the field


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@settings(max_examples=1)  # a few thousand records each: one run of the real consumer is the cost
@given(seed=st.integers(0, 2**32 - 1))
def test_adp_stream_consume_reaches_the_end_of_thousands_of_hostile_records(tmp_path_factory, seed):
    root = tmp_path_factory.mktemp("fuzz")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {"ADP_DATA_DIR": str(root)}
    transport = FileSegmentTransport(root / "stream")
    rng = random.Random(seed)
    now = _now()
    records = transport.append([hostile_event(rng, now) for _ in range(RECORDS)])
    verdicts = Counter(v.rule if v else "valid" for _, v in (judge(r.payload, r.received_at) for r in records))
    assert verdicts["valid"] > RECORDS // 10 and RECORDS - verdicts["valid"] > RECORDS // 10  # both kinds, many of each

    done = subprocess.run([str(BIN / "adp"), "stream", "consume", "--until-idle", "--no-report"], env=env,
                          capture_output=True, text=True, timeout=bound(900))
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    assert stats["records"] == RECORDS and stats["rejected"] == RECORDS - verdicts["valid"]
    assert SqliteOnlineStore(root / "online" / backends.SQLITE_FILE).committed() == transport.end_position()
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    try:
        landed = con.execute("SELECT count(*), count(DISTINCT _position) FROM stream.records").fetchone()
        valid = con.execute("SELECT count(*) FROM stream.events").fetchone()[0]
        quarantined = Counter(dict(con.execute("SELECT rule, count(*) FROM stream.quarantine_events GROUP BY 1").fetchall()))
    finally:
        con.close()
    assert landed == (RECORDS, RECORDS)
    assert valid + sum(quarantined.values()) == RECORDS  # valid + quarantined = appended
    assert quarantined == Counter({rule: n for rule, n in verdicts.items() if rule != "valid"})


def test_a_record_whose_processing_fails_is_quarantined_and_passed(tmp_path, monkeypatch):
    transport = FileSegmentTransport(tmp_path / "stream")
    events = EventProducer(5, seed=1).events(20)
    transport.append([encode(e) for e in events])
    victim = events[7]["event_id"]
    real_state_row = erased_module.state_row

    def failing(source, row, interpreter):
        if row["event_id"] == victim:
            raise ValueError("a defect meets one record")
        return real_state_row(source, row, interpreter)

    monkeypatch.setattr(erased_module, "state_row", failing)
    store = SqliteOnlineStore(tmp_path / "online.sqlite")
    consumer = Consumer(transport, store, warehouse=tmp_path / "warehouse.duckdb")
    assert consumer.step() == 20 and consumer.step() == 0  # past it, and nothing left
    assert store.committed() == transport.end_position() and consumer.stats.rejected == 1
    assert consumer.stats.errors == ["record 7: ValueError: 'a defect meets one record'"]
    stored = [r["event_id"] for state in store.states(sorted({e["customer_id"] for e in events})).values()
              for r in state.rows.get("events", [])]
    assert sorted(stored) == sorted(e["event_id"] for e in events if e["event_id"] != victim)
    assert consumer.sink.sink.flush().records == 20  # the warehouse judges it alike, handed over or read again
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        quarantined = con.execute("SELECT _position, rule, raw_record FROM stream.quarantine_events").fetchall()
        assert con.execute("SELECT count(*) FROM stream.events").fetchone()[0] == 19
    finally:
        con.close()
    assert [(p, rule, json.loads(raw)["event_id"]) for p, rule, raw in quarantined] == [(7, UNPROCESSABLE, victim)]


def test_an_error_of_the_store_quarantines_nothing_and_commits_nothing(tmp_path, monkeypatch):
    transport = FileSegmentTransport(tmp_path / "stream")
    transport.append([encode(e) for e in EventProducer(5, seed=2).events(10)])
    store = SqliteOnlineStore(tmp_path / "online.sqlite")

    def unavailable(*args, **kwargs):
        raise ConnectionError("the store is down")

    monkeypatch.setattr(store, "apply", unavailable)
    consumer = Consumer(transport, store)
    with pytest.raises(ConnectionError):
        consumer.step()
    assert store.committed() is None and consumer.stats.rejected == 0 and consumer.stats.records == 0
    monkeypatch.undo()
    assert Consumer(transport, store).step() == 10  # the store is back: the same records, once


# ---------------------------------------------------------------- adp serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real ``adp serve`` over an online store with events of 20 customers and a passing fraud model:
    its client, port and the file its log (stderr) goes to."""
    from .test_serve import _train_fraud_model

    root = tmp_path_factory.mktemp("serve_fuzz")
    mp = pytest.MonkeyPatch()
    mp.setenv("ADP_DATA_DIR", str(root))
    mp.delenv("REDIS_URL", raising=False)
    _train_fraud_model()
    transport = FileSegmentTransport(root / "stream")
    transport.append([encode(e) for e in EventProducer(20, seed=4).events(300)])
    Consumer(transport, SqliteOnlineStore(root / "online" / backends.SQLITE_FILE)).run(until_idle=True)
    port = _free_port()
    log = root / "serve.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen([str(BIN / "adp"), "serve", "--port", str(port)], env=dict(os.environ),
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=bound(120)) as client:
            def health():
                assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
                try:
                    return client.get("/health").status_code
                except httpx.TransportError as exc:
                    return type(exc).__name__

            wait_for(health, "adp serve to answer /health", until=lambda status: status == 200, max_interval=0.5)
            yield client, port, log
    finally:
        proc.terminate()
        proc.wait(bound(120))
        mp.undo()


@pytest.fixture(scope="module")
def server(served):
    client, port, _ = served
    return client, port


_CONTENT_TYPES = [None, "application/json", "application/json; charset=utf-8", "application/problem+json",
                  "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", ";;", "\u00e9/x"]


def _expected_status(body: bytes, content_type: str | None) -> int:
    if content_type is not None and content_type.split(";")[0].strip().lower() not in ("", "application/json") \
            and not content_type.split(";")[0].strip().lower().endswith("+json"):
        return 415
    if len(body) > MAX_BODY_BYTES:
        return 413
    _, violation = judge(body, _now(), SCORE_REQUEST)
    return 200 if violation is None else 400 if violation.rule == "malformed_row" else 422


def _short_answer(response: httpx.Response) -> None:
    assert len(response.text) <= ECHO_LIMIT, response.text[:200]


@settings(max_examples=4)  # 60 bodies each
@given(seed=st.integers(0, 2**32 - 1))
def test_adp_serve_answers_hostile_score_bodies_with_a_4xx_never_a_500(server, seed):
    client, _ = server
    rng = random.Random(seed)
    for _ in range(60):
        body = hostile_transaction(rng, _now())
        content_type = rng.choice(_CONTENT_TYPES) if rng.random() < 0.2 else None
        headers = {} if content_type is None else {"content-type": content_type.encode("utf-8")}
        response = client.post("/score", content=body, headers=headers)
        assert response.status_code < 500, (body[:300], response.text[:300])
        assert response.status_code == _expected_status(body, content_type), (body[:300], content_type, response.text[:300])
        if response.status_code != 200:
            _short_answer(response)
            assert set(response.json()) == {"error", "rule", "field"}


def test_adp_serve_limits_the_body_and_echoes_only_a_prefix(server):
    client, port = server
    at_limit = b'{"customer_id": "C0000001", "amount": 1, "device_id": "' + b"d" * MAX_BODY_BYTES + b'"}'
    assert client.post("/score", content=at_limit).status_code == 413
    assert client.post("/score", content=b"[" * (8 * MAX_BODY_BYTES)).status_code == 413
    just_in = b'{"customer_id": "C0000001", "amount": 1, "device_id": "' + b" " * (MAX_BODY_BYTES - 60) + b'd"}'
    assert len(just_in) <= MAX_BODY_BYTES and client.post("/score", content=just_in).status_code == 200

    def chunks():  # no Content-Length: the limit holds for a streamed body too
        for _ in range(MAX_BODY_BYTES // 1000 + 2):
            yield b" " * 1000

    assert client.post("/score", content=chunks()).status_code == 413
    for declared in (b"100000000", b"9" * 5000):  # declared sizes, refused before reading (or by the HTTP parser)
        with socket.create_connection(("127.0.0.1", port), timeout=bound(120)) as s:
            s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + declared + b"\r\n\r\n")
            status = int(s.recv(1000).split(b" ", 2)[1])
            assert status == 413 if len(declared) < 20 else 400 <= status < 500

    long_value = "x" * 5000
    for body in ({"customer_id": long_value, "amount": 1}, {"customer_id": "C0000001", "amount": long_value},
                 {"customer_id": "C0000001", "amount": 1, long_value: 1}, {"customer_id": "C0000001", "amount": 1, "event_time": long_value}):
        response = client.post("/score", json=body)
        assert response.status_code == 422 and long_value[:100] not in response.text, response.text[:300]
        _short_answer(response)
    for body in (b"", b" ", b"[]", b"null", b"{" * 60_000, b"[" * 60_000, b'{"customer_id": "C1", "customer_id": "C2", "amount": 1}',
                 b'{"customer_id": "\\ud800", "amount": 1}', b'{"customer_id": "C\xff1", "amount": 1}', long_value.encode()):
        response = client.post("/score", content=body)
        assert response.status_code == 400 and response.json()["rule"] == "malformed_row", (body[:100], response.text[:300])
        _short_answer(response)


@pytest.mark.parametrize("path", [
    "/features/%00", "/features/%ff", "/features/%ed%a0%80", "/features/" + "x" * 129, "/features/%7B%22a%22%3A1%7D",
    "/features/%5B1%5D", "/features/%20", "/features/C0000001%0A", "/features/C0000001?features=" + "nope," * 2000,
    "/features/C0000001?features=%00%ff", "/features/%F0%9F%98%80", "/score", "/features", "/nothing",
])
def test_adp_serve_answers_hostile_paths_and_queries_with_a_4xx_or_defaults(server, path):
    client, _ = server
    response = client.get(path)
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert len(response.text) <= 2 * ECHO_LIMIT, response.text[:300]


def _send_part_and_hang_up(port: int, head: bytes, body_part: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=bound(120)) as s:
        s.sendall(head + body_part)


def test_adp_serve_logs_one_line_not_a_traceback_when_a_client_disconnects_mid_body(served):
    """A client that sends part of a ``POST /score`` body and hangs up: the server logs one line for
    it (no traceback, no "Exception in ASGI application") and keeps answering."""
    client, port, log = served
    head = b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    hang_ups = [
        (head + b"Content-Length: 200\r\n\r\n", b'{"customer_id": "C0000001", "am'),  # part of a declared body
        (head + b"Content-Length: 200\r\n\r\n", b""),  # none of it
        (head + b"Transfer-Encoding: chunked\r\n\r\n", b'10\r\n{"customer_id": '),  # a chunked body cut mid-chunk
        (head + b"Transfer-Encoding: chunked\r\n\r\n", b'5\r\n{"cus\r\n'),  # cut between chunks
    ]
    before = log.read_text(errors="replace").count("disconnected")
    for request_head, body_part in hang_ups:
        _send_part_and_hang_up(port, request_head, body_part)
    wait_for(lambda: log.read_text(errors="replace").count("disconnected") - before,
             "adp serve to log each client's disconnect", until=lambda n: n >= len(hang_ups), max_interval=0.2)
    assert client.post("/score", json={"customer_id": "C0000001", "amount": 12.5}).status_code == 200
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "Exception in ASGI application" not in text and "ClientDisconnect" not in text, text[-3000:]
    lines = [line for line in text.splitlines() if "disconnected" in line]
    assert len(lines) == before + len(hang_ups) and all("POST /score" in line for line in lines), lines
