"""The online store's contract, for SQLite and Redis alike; the transports' read/ack/retention."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from ai_data_platform.streaming.online_store import ErasedSubjectsChanged, SqliteOnlineStore, state_row
from ai_data_platform.streaming.redis_backend import RedisOnlineStore, RedisStreamTransport, entry_id
from ai_data_platform.streaming.transport import FileSegmentTransport, to_us

from .services import REDIS, require_service
from .test_stream_exactly_once import delete_prefix

T = datetime(2026, 11, 30, 12, 0, 0)
URL = "redis://127.0.0.1:6379/0"


def event(eid: str, cid: str, at: datetime, etype: str = "card_transaction", amount: float | None = 10.0, device="dev-1"):
    return state_row("events", {"event_id": eid, "customer_id": cid, "event_type": etype, "event_time": at,
                                "amount": amount, "device_id": device, "ip_country": "DE", "_available_at": at})


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield SqliteOnlineStore(tmp_path / "s.sqlite")
        return
    require_service(*REDIS)
    prefix = f"adp-test-{uuid.uuid4().hex}"
    s = RedisOnlineStore(URL, prefix)
    try:
        yield s
    finally:
        s.close()
        delete_prefix(prefix)


def test_apply_is_idempotent_by_key_and_commits_offset_and_coverage(store):
    rows = [event("E1", "C1", T), event("E2", "C1", T + timedelta(seconds=1)), event("E3", "C2", T)]
    store.apply("online", 7, T, rows, {"events": T})
    store.apply("online", 9, T, [event("E1", "C1", T, amount=999.0)], {"events": T - timedelta(hours=1)})
    assert store.committed("online") == 9 and store.committed("warehouse") is None
    assert store.coverage()["events"] == T  # never lowered
    states = store.states(["C1", "C2", "C9"])
    assert sorted(r["event_id"] for r in states["C1"].rows["events"]) == ["E1", "E2"]
    assert next(r for r in states["C1"].rows["events"] if r["event_id"] == "E1")["amount"] == 10.0  # first wins
    assert states["C9"].rows == {} and not states["C9"].known
    assert {c for c, _ in store.dirty(10)} == {"C1", "C2"}


def test_rows_no_declaration_uses_are_not_kept_and_old_rows_are_pruned():
    assert state_row("payments", {"payment_id": "P1", "customer_id": "C1", "status": "succeeded", "amount": 5.0,
                                  "created_at": T, "_available_at": T}) is None  # only failed payments count
    failed = state_row("payments", {"payment_id": "P2", "customer_id": "C1", "status": "failed", "amount": 5.0,
                                    "created_at": T, "_available_at": T})
    assert failed.expires_us == to_us(T + timedelta(days=30))
    assert event("E1", "C1", T, etype="login").expires_us == to_us(T + timedelta(days=90))  # device history


def test_prune_dirty_values_delete_and_search(store):
    store.bootstrap([event("E1", "C1", T - timedelta(days=100)), event("E2", "C1", T), event("E3", "C2", T, device="dev-secret")],
                    {"C1": "DE", "C2": "FR"}, {"payments": T})
    assert store.prune(T) == 1  # E1 is past every lookback it serves
    assert [r["event_id"] for r in store.states(["C1"])["C1"].rows["events"]] == ["E2"]
    (cid, mark), *_ = store.dirty(10)
    store.put_values([(cid, mark, T, {"txn_count_1h": 1})])
    assert store.values([cid]) == {cid: (T, {"txn_count_1h": 1})}
    assert cid not in {c for c, _ in store.dirty(10)}
    c1 = store.states(["C1"])["C1"]
    assert c1.known and c1.home_country == "DE"
    assert store.search("dev-secret") == ["row:C2"]
    assert "customer:C2" in store.search("FR")
    assert {place for place, text in store.dump() if "dev-secret" in text} == {"rows"}
    removed = store.delete_customer("C2")
    assert removed >= 2  # its row and its profile (and dirty mark)
    assert store.search("dev-secret") == [] and store.search("C2") == []
    assert not [place for place, text in store.dump() if "C2" in text]  # nothing anywhere in the store
    assert store.states(["C2"])["C2"].rows == {} and "C2" not in store.customer_ids()


def test_a_write_filtered_with_an_older_list_of_erased_subjects_is_refused(store):
    store.apply("online", 1, T, [event("E1", "C1", T)], {"events": T}, expect_erased=0)
    assert store.add_erased_subjects({"h1", "h2"}) == 2 and store.add_erased_subjects({"h2"}) == 0
    assert store.erased_subjects() == {"h1", "h2"} and store.erased_count() == 2
    with pytest.raises(ErasedSubjectsChanged):
        store.apply("online", 2, T, [event("E2", "C2", T)], {"events": T + timedelta(hours=1)}, expect_erased=0)
    (cid, mark), = store.dirty(10)
    with pytest.raises(ErasedSubjectsChanged):
        store.put_values([(cid, mark, T, {"txn_count_1h": 1})], expect_erased=1)
    assert store.committed() == 1 and store.customer_ids() == ["C1"] and store.coverage()["events"] == T  # nothing written
    store.apply("online", 2, T, [event("E2", "C2", T)], {"events": T}, expect_erased=2)
    store.put_values([(cid, mark, T, {"txn_count_1h": 1})], expect_erased=2)
    assert store.committed() == 2 and store.values([cid]) == {cid: (T, {"txn_count_1h": 1})}


def test_sqlite_delete_customer_leaves_no_byte_of_them_whatever_the_build_default(tmp_path):
    store = SqliteOnlineStore(tmp_path / "s.sqlite")
    store._con().execute("PRAGMA secure_delete = OFF")  # some SQLite builds keep deleted bytes by default
    store.bootstrap([event(f"E{i}", "CSECRET9", T, device="dev-CSECRET9") for i in range(50)] + [event("E99", "C2", T)],
                    {"CSECRET9": "DE", "C2": "FR"}, {"events": T})
    store.put_values([("CSECRET9", 0, T, {"txn_count_1h": 50})])
    assert store.delete_customer("CSECRET9") >= 52
    assert all(b"CSECRET9" not in f.read_bytes() for f in tmp_path.iterdir()), sorted(f.name for f in tmp_path.iterdir())
    assert store.customer_ids() == ["C2"]


def test_file_transport_reads_in_order_repairs_a_torn_append_and_releases(tmp_path):
    t = FileSegmentTransport(tmp_path)
    first = t.append([b'{"a":1}', b'{"a":2}'])
    assert [r.position for r in first] == [0, 1] and first[0].received_at < first[1].received_at
    segment = t.dir / first[0].segment
    with open(segment, "ab") as fh:
        fh.write(b"123\t{\"torn")  # a producer killed mid-line
    assert [r.position for r in t.read(None, 10)] == [0, 1]  # readers never see a partial line
    again = t.append([b'{"a":3}'])
    assert again[0].position == 2 and [r.payload for r in t.read(1, 10)] == [b'{"a":3}']
    assert t.release(2, datetime(2100, 1, 1)) == 0  # the active segment is never released


def test_redis_transport_erases_entries_and_a_restart_never_rereads_them():
    require_service(*REDIS)
    prefix = f"adp-test-{uuid.uuid4().hex}"
    try:
        t = RedisStreamTransport(URL, prefix)
        records = t.append([b'{"c":"C1"}', b'{"c":"C2"}', b'{"c":"C1"}', b'{"c":"C3"}'])
        assert len(t.read(None, 10)) == 4  # delivered, never acknowledged (a crash)
        assert t.erase(lambda payload: b"C1" in payload) == 2
        assert t.r.xpending(t.key, "online")["pending"] == 2  # the erased ones acknowledged at once
        assert [r.payload for r in t.scan(None, 10)] == [b'{"c":"C2"}', b'{"c":"C3"}']
        t.r.xdel(t.key, entry_id(records[3].position))  # deleted by someone else, left pending
        assert t.end_position() == records[1].position  # the last entry still there
        restarted = RedisStreamTransport(URL, prefix)
        again = restarted.read(None, 10)
        assert [r.payload for r in again] == [b'{"c":"C2"}']  # the deleted pending entry: acknowledged, not returned
        restarted.ack(again)
        assert t.r.xpending(t.key, "online")["pending"] == 0  # nothing erased is pending any more
    finally:
        delete_prefix(prefix)


def test_file_transport_erases_records_in_place_keeping_every_other_position(tmp_path):
    t = FileSegmentTransport(tmp_path)
    t.append([b'{"c":"C1","n":"a\rb"}', b'{"c":"C2","n":"longer\tpayload"}', b"x", b'{"c":"C2"}'])
    reader = FileSegmentTransport(tmp_path)
    assert [r.position for r in reader.read(None, 1)] == [0]  # a reader with a cursor inside the segment
    segment = next(t.dir.glob("*.log"))
    size = segment.stat().st_size
    with open(segment, "ab") as fh:
        fh.write(b"123\t{\"c\":\"C2\",\"torn")  # a producer killed mid-line: repaired, never read
    stale = segment.with_name(segment.name + ".erasing")
    stale.write_bytes(b'1\t{"c":"C2"}\n')  # left by an erasure killed before it replaced the segment

    assert t.erase(lambda payload: b"C2" in payload or payload == b"x") == 3

    assert segment.stat().st_size == size and b"C2" not in segment.read_bytes() and not stale.exists()
    assert FileSegmentTransport(tmp_path).scan(None, 1)[0].payload == b'{"c":"C1","n":"a\rb"}'  # untouched
    after = reader.read(0, 10)
    assert [(r.position, r.erased, r.payload) for r in after] == [(1, True, b""), (2, True, b""), (3, True, b"")]
    assert [r.received_at for r in after] == [r.received_at for r in FileSegmentTransport(tmp_path).scan(0, 10)]
    assert t.append([b'{"c":"C3"}'])[0].position == 4  # appends continue after the tombstones
    assert [(r.position, r.payload) for r in reader.read(3, 10)] == [(4, b'{"c":"C3"}')]


def test_redis_transport_rereads_unacknowledged_entries_after_a_restart():
    require_service(*REDIS)
    prefix = f"adp-test-{uuid.uuid4().hex}"
    try:
        t = RedisStreamTransport(URL, prefix)
        records = t.append([b"1", b"2", b"3"])
        assert [r.position for r in records] == sorted(r.position for r in records)
        assert len({r.received_at for r in records}) == 3
        assert [r.payload for r in t.read(None, 10)] == [b"1", b"2", b"3"]  # delivered, never acked (crash)
        restarted = RedisStreamTransport(URL, prefix)
        # committed up to the first: it is skipped (and acknowledged), the rest re-read
        assert [r.payload for r in restarted.read(records[0].position, 10)] == [b"2", b"3"]
        restarted.ack(records[1:])
        assert restarted.read(records[2].position, 10) == []
        assert [r.payload for r in restarted.scan(records[0].position, 10)] == [b"2", b"3"]
        assert restarted.release(records[1].position, datetime(2100, 1, 1)) == 2
        assert [r.payload for r in restarted.scan(None, 10)] == [b"3"]
    finally:
        delete_prefix(prefix)
