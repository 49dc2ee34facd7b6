"""Right to erasure on the real-time path, searched, not assumed.

A customer with batch history (the lifecycle world), an online state (bootstrapped from the
warehouse and applied from the stream) and streamed events, some consumed and landed, some not
yet, is erased: with the segment files and SQLite, and with Redis. Afterwards a search of every
file (and of Redis) finds nothing; the consumer and the warehouse sink, which had committed
positions before the erased records, continue exactly once without them and without quarantining
the tombstones; a trace the erasure does not know about is named; and the subject's later events
are dropped by the consumer and the sink.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import duckdb
import pytest

from ai_data_platform import warehouse
from ai_data_platform.governance import erasure, suppression
from ai_data_platform.governance.pii import hmac_hex
from ai_data_platform.streaming import backends
from ai_data_platform.streaming.bootstrap import bootstrap
from ai_data_platform.streaming.consumer import Consumer, materialize
from ai_data_platform.streaming.online_features import ONLINE
from ai_data_platform.streaming.online_store import SqliteOnlineStore
from ai_data_platform.streaming.producer import EventProducer, encode
from ai_data_platform.streaming.redis_backend import RedisStreamTransport, delete_prefix
from ai_data_platform.streaming.transport import FileSegmentTransport
from ai_data_platform.streaming.warehouse_sink import WarehouseSink

from . import lifecycle_world as world
from .lifecycle_world import KEY, SUBJECT
from .services import REDIS, require_service

URL = "redis://127.0.0.1:6379/0"
OTHER_MALFORMED = b"{not json at all"


@pytest.fixture()
def paths(lifecycle_paths, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    return lifecycle_paths


class Stream:
    """Events of the world's customers, the subject's among them, as payloads."""

    def __init__(self):
        self.producer = EventProducer(60, seed=29)
        card = next(e for e in self.producer.events(200) if e["event_type"] == "card_transaction")
        self.card = card

    def others(self, n: int) -> list[bytes]:
        events = self.producer.events(n, now=datetime.now(timezone.utc).replace(tzinfo=None))
        return [encode({**e, "customer_id": "C0000002" if e["customer_id"] == SUBJECT else e["customer_id"]}) for e in events]

    def subject(self, n: int) -> list[bytes]:
        now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat() + "Z"
        return [encode({**self.card, "event_id": f"ES{uuid.uuid4().hex[:16]}", "customer_id": SUBJECT, "event_time": now})
                for _ in range(n)]


def _rows(database, sql, params=()):
    con = duckdb.connect(str(database), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def _erase(paths):
    return erasure.erase(SUBJECT, "DSR ticket 7", paths=paths, personal=world.personal_data(paths.root))


def _online_state(paths, store) -> None:
    """The subject's profile and staged rows from the warehouse (the nightly bootstrap)."""
    con = warehouse.connect(paths.warehouse)
    try:
        bootstrap(con, store)
    finally:
        con.close()


def test_erasure_covers_segment_files_sqlite_and_stream_tables_and_both_consumers_continue_exactly_once(paths):
    stream = Stream()
    transport = FileSegmentTransport(paths.stream)
    store = SqliteOnlineStore(paths.online / backends.SQLITE_FILE)
    _online_state(paths, store)
    assert SUBJECT in store.customer_ids()

    # consumed by the online consumer and landed by the warehouse sink before the erasure
    rejected_json = json.dumps({"event_id": "ESBAD1", "customer_id": SUBJECT, "event_type": "login", "event_time": "yesterday"}).encode()
    transport.append(stream.others(30) + stream.subject(3) + [rejected_json, f'{{"broken": "{SUBJECT}"'.encode(), OTHER_MALFORMED])
    consumer = Consumer(transport, store, warehouse=paths.warehouse, materialize_budget=0)
    consumer.step()
    consumer.sink.sink.flush()
    materialize(store, ONLINE)
    landed = _rows(paths.warehouse, "SELECT count(*) FROM stream.records")[0][0]
    assert landed == 36 and store.values([SUBJECT]) and store.states([SUBJECT])[SUBJECT].rows["events"]
    # appended, not yet consumed: the subject's records among them, the last one too; one spells
    # the id with a JSON escape (no byte of the file shows it)
    escaped = stream.subject(1)[0].replace(f'"{SUBJECT}"'.encode(), f'"\\u{ord(SUBJECT[0]):04x}{SUBJECT[1:]}"'.encode())
    transport.append(stream.others(10) + stream.subject(2) + [escaped] + stream.others(5) + stream.subject(1))
    before = {r.position: r.payload for r in FileSegmentTransport(paths.stream).scan(None, 1000)}
    segment = next(paths.stream.glob("events/*.log"))
    size, mtime = segment.stat().st_size, segment.stat().st_mtime_ns
    theirs = {p for p, payload in before.items() if SUBJECT.encode() in payload or payload == escaped}
    assert len(theirs) == 9
    # a copy of one of their lines that the erasure does not know about
    planted = paths.stream / "events" / "copy-of-a-line.txt"
    planted.write_bytes(next(line for line in segment.read_bytes().splitlines(keepends=True) if SUBJECT.encode() in line))

    result = _erase(paths)

    assert [t.describe() for t in result.traces] == ["stream/events/copy-of-a-line.txt: text: 1 x customer id"]
    assert result.counts["streaming: transport file/events"] == 9
    assert result.counts["streaming: stream.records"] == 5  # 3 events, the rejected object, the broken line
    assert result.counts["streaming: stream.quarantine_events"] == 2
    assert result.counts["stream.events"] == 3  # the core's customer_id rule
    assert result.counts["streaming: online store"] >= 5  # rows, profile, values
    planted.unlink()
    subject = erasure.resolve(SUBJECT, paths, world.personal_data(paths.root))
    assert erasure.verify(subject, paths, world.personal_data(paths.root)).traces == []

    # every other record kept its position and bytes; the file its size and modification time
    after = {r.position: r for r in FileSegmentTransport(paths.stream).scan(None, 1000)}
    assert set(after) == set(before)
    assert {p for p, r in after.items() if r.erased} == theirs
    assert all(after[p].payload == before[p] for p in set(before) - theirs)
    assert (segment.stat().st_size, segment.stat().st_mtime_ns) == (size, mtime)

    # both continue after their committed positions: the others' records once, nothing quarantined
    while consumer.step():
        consumer.sink.sink.flush()
    consumer.sink.sink.flush()
    end = transport.end_position()
    assert store.committed() == consumer.sink.sink.position == end == max(before)
    assert consumer.stats.tombstones == 4 and consumer.stats.rejected == 3  # all before the erasure
    positions = [p for (p,) in _rows(paths.warehouse, "SELECT _position FROM stream.records ORDER BY 1")]
    assert positions == sorted(set(before) - theirs)
    assert _rows(paths.warehouse, "SELECT rule, raw_record FROM stream.quarantine_events") == [("malformed_row", OTHER_MALFORMED.decode())]
    assert SUBJECT not in store.customer_ids() and store.search(SUBJECT) == []

    again = _erase(paths)
    assert (again.status, again.counts, again.traces) == ("nothing_found", {}, [])


def test_consumer_and_sink_drop_erased_subjects_events_and_never_quarantine_them(data_dir, monkeypatch):
    monkeypatch.setenv("ADP_PII_HMAC_KEY", KEY)
    monkeypatch.delenv("REDIS_URL", raising=False)
    path = data_dir / "warehouse.duckdb"
    transport = FileSegmentTransport(data_dir / "stream")
    store = SqliteOnlineStore(data_dir / "online" / backends.SQLITE_FILE)
    consumer = Consumer(transport, store, warehouse=path, materialize_budget=0)  # read the (empty) list
    # an erasure records the subject meanwhile: in the warehouse and in the store
    con = warehouse.connect(path)
    warehouse.ensure_schemas(con)
    suppression.record(con, "subject:test", hmac_hex(KEY, SUBJECT), [])
    con.close()
    store.add_erased_subjects({hmac_hex(KEY, SUBJECT)})
    stream = Stream()
    padded = stream.subject(1)[0].replace(f'"{SUBJECT}"'.encode(), f'"  {SUBJECT} "'.encode())
    teleport = json.dumps({"event_id": "ESBAD2", "customer_id": SUBJECT, "event_type": "teleport", "event_time": "2026-11-20T00:00:00Z"}).encode()
    transport.append(stream.others(20) + stream.subject(2) + [padded, teleport, OTHER_MALFORMED])

    consumer.step()  # filtered with the old list, refused by the store, filtered again
    flushed = consumer.sink.sink.flush()

    assert consumer.stats.erased_subject_dropped == 4 and consumer.stats.rejected == 1
    assert consumer.metadata()["erased_subject_records_dropped"] == 4
    assert SUBJECT not in store.customer_ids() and store.committed() == transport.end_position()
    assert (flushed.records, flushed.dropped, flushed.quarantined, flushed.position) == (25, 4, 1, transport.end_position())
    assert _count_subject(path) == 0
    assert _rows(path, "SELECT raw_record FROM stream.quarantine_events") == [(OTHER_MALFORMED.decode(),)]

    # the sink checks the warehouse's list itself, also when it re-reads from the transport; the
    # nightly bootstrap copies that list into the online store
    other = "C0000003"
    con = warehouse.connect(path)
    suppression.record(con, "subject:other", hmac_hex(KEY, other), [])
    con.close()
    transport.append([encode({**json.loads(stream.subject(1)[0]), "customer_id": other})])
    rereading = WarehouseSink(FileSegmentTransport(data_dir / "stream"), path)
    assert (rereading.flush().dropped, rereading.reread) == (1, 1)
    con = warehouse.connect(path)
    try:
        bootstrap(con, store)
    finally:
        con.close()
    assert store.erased_subjects() == {hmac_hex(KEY, SUBJECT), hmac_hex(KEY, other)}


def _count_subject(path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return sum(con.execute(f"SELECT count(*) FROM {t} AS r WHERE contains(CAST(r AS VARCHAR), ?)", [SUBJECT]).fetchone()[0]
                   for t in ("stream.records", "stream.events", "stream.quarantine_events"))
    finally:
        con.close()


def test_erasure_covers_the_redis_stream_and_store_and_a_restarted_consumer_continues(paths, monkeypatch):
    require_service(*REDIS)
    prefix = f"adp-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("REDIS_URL", URL)
    monkeypatch.setenv("ADP_REDIS_PREFIX", prefix)
    try:
        stream = Stream()
        transport, store = backends.transport(), backends.online_store()
        _online_state(paths, store)
        transport.append(stream.others(20) + stream.subject(2))
        consumer = Consumer(transport, store, warehouse=paths.warehouse, materialize_budget=0)
        consumer.step()
        consumer.sink.sink.flush()
        materialize(store, ONLINE)
        assert SUBJECT in store.customer_ids()
        # delivered to a consumer that crashed before committing: pending in the group
        transport.append(stream.others(8) + stream.subject(2) + stream.others(3) + stream.subject(1))
        RedisStreamTransport(URL, prefix).read(store.committed(), 1000)
        everything = {r.position: r.payload for r in transport.scan(None, 1000)}
        theirs = {p for p, payload in everything.items() if SUBJECT.encode() in payload}

        result = _erase(paths)

        assert (result.status, result.traces) == ("erased", [])
        assert result.counts[f"streaming: transport redis/{prefix}:stream:events"] == len(theirs) == 5
        assert result.counts["streaming: online store"] >= 3
        restarted = Consumer(backends.transport(), store, warehouse=paths.warehouse, materialize_budget=0)
        while restarted.step():
            restarted.sink.sink.flush()
        restarted.sink.sink.flush()
        assert store.committed() == restarted.sink.sink.position == transport.end_position() == max(set(everything) - theirs)
        positions = [p for (p,) in _rows(paths.warehouse, "SELECT _position FROM stream.records ORDER BY 1")]
        assert positions == sorted(set(everything) - theirs)
        assert SUBJECT not in store.customer_ids()

        # what arrives or is written after the erasure is found in Redis (the files cannot show it)
        transport.append(stream.subject(1))
        store.r.hset(f"{prefix}:online:notes", "n1", f"call {SUBJECT} back")
        store.r.hset(f"{prefix}:online:notes", "n2", f"call {SUBJECT.lower()} back")  # another customer: ids count case
        subject = erasure.resolve(SUBJECT, paths, world.personal_data(paths.root))
        traces = erasure.verify(subject, paths, world.personal_data(paths.root)).traces
        assert sorted(t.describe() for t in traces) == [
            f"redis/{prefix}:stream:events: entries: 1 x customer id",
            f"redis:{prefix}:online: notes: 1 x customer id",
        ]
        # ... and the consumer and the sink drop the new event
        restarted.step()
        assert restarted.sink.sink.flush().dropped == 1 and restarted.stats.erased_subject_dropped == 1
        assert SUBJECT not in store.customer_ids()
    finally:
        delete_prefix(URL, prefix)
