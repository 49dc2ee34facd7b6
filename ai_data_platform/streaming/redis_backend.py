"""Redis: the stream transport (a Redis Stream read through a consumer group) and the online store.

**Transport.** ``<prefix>:stream:<topic>`` holds one entry per record (field ``e``: the payload).
Appends go through one Lua script that gives each entry an explicit id ``<ms>-<µs within the
ms>`` from the server's clock, strictly increasing (one past the last id when the clock has not
moved), so the id *is* the receipt stamp: ``received_at`` = ms * 1000 + seq µs, and the position
is ms * 10**6 + seq. The online consumer reads with ``XREADGROUP`` (group ``online``); on
restart it first re-reads its pending entries (delivered, not acknowledged), skips and
acknowledges those at or below its committed position, and ``XACK``s after each commit. The
warehouse sink re-reads with ``XRANGE`` from its own committed position. Released entries are
trimmed with ``XTRIM MINID``. An erased subject's entries are deleted (``XDEL``) and acknowledged
in every consumer group, so no restart re-reads them as pending.

**Store.** Per customer a hash of state rows (``<prefix>:rows:<customer>``, field
``<source>|<key>``, first write wins), plus hashes of home countries, materialized values,
offsets and coverage, sorted sets of row expiries and dirty customers, and the set of erased
subjects' id HMACs. ``apply`` writes the rows, the dirty marks, the offset and the coverage in one
``MULTI/EXEC`` (``WATCH`` on coverage, which only rises, and on the erased subjects, which only
grow), so the committed position and its effects are atomic, and nothing filtered with an older
list of erased subjects is written. ``delete_customer`` is one Lua script (atomic).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime

import redis

from ai_data_platform.streaming.online_store import ONLINE_SINK, CustomerState, OnlineStore, StateRow, interpreter_row
from ai_data_platform.streaming.transport import PayloadMatch, Record, Transport, from_us, now_us, to_us

SCAN_CHUNK = 5000

_APPEND = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local seq = tonumber(now[2]) % 1000
local last = redis.call('GET', KEYS[2])
if last then
  local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
  lms, lseq = tonumber(lms), tonumber(lseq)
  if ms < lms or (ms == lms and seq <= lseq) then ms, seq = lms, lseq + 1 end
end
local ids = {}
for i, payload in ipairs(ARGV) do
  if seq >= 1000 then ms, seq = ms + 1, 0 end
  local id = string.format('%d-%d', ms, seq)
  redis.call('XADD', KEYS[1], id, 'e', payload)
  ids[i] = id
  seq = seq + 1
end
redis.call('SET', KEYS[2], string.format('%d-%d', ms, seq - 1))
return ids
"""
_CLEAR_DIRTY = """
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[i + 1]) then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
return 1
"""

_DELETE_CUSTOMER = """
-- KEYS: rows, expiry, customers, values, dirty, customers_seen; ARGV[1]: the customer id
local fields = redis.call('HKEYS', KEYS[1])
for _, f in ipairs(fields) do redis.call('ZREM', KEYS[2], ARGV[1] .. '|' .. f) end
redis.call('DEL', KEYS[1])
local removed = #fields + redis.call('HDEL', KEYS[3], ARGV[1]) + redis.call('HDEL', KEYS[4], ARGV[1])
removed = removed + redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('SREM', KEYS[6], ARGV[1])
return removed
"""


def _split(entry_id: bytes | str) -> tuple[int, int]:
    ms, seq = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-")
    return int(ms), int(seq)


def position_of(entry_id) -> int:
    ms, seq = _split(entry_id)
    return ms * 1_000_000 + seq


def entry_id(position: int) -> str:
    return f"{position // 1_000_000}-{position % 1_000_000}"


def stream_key(prefix: str, topic: str) -> str:
    return f"{prefix}:stream:{topic}"


class RedisStreamTransport(Transport):
    def __init__(self, url: str, prefix: str, topic: str = "events", group: str = "online", consumer: str = "consumer"):
        self.r = redis.Redis.from_url(url)
        self.key = stream_key(prefix, topic)
        self.last_key = f"{self.key}:last-id"
        self.group, self.consumer = group, consumer
        self.label = f"redis/{self.key}"
        self._append = self.r.register_script(_APPEND)
        self._pending_checked = False
        try:
            self.r.xgroup_create(self.key, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _record(self, entry_id, fields) -> Record:
        ms, seq = _split(entry_id)
        return Record(ms * 1_000_000 + seq, from_us(ms * 1000 + min(seq, 999)), fields[b"e"], self.key)

    def append(self, payloads: Sequence[bytes]) -> list[Record]:
        ids = self._append(keys=[self.key, self.last_key], args=list(payloads)) if payloads else []
        return [self._record(i, {b"e": p}) for i, p in zip(ids, payloads)]

    def read(self, after: int | None, limit: int, block_seconds: float = 0.0) -> list[Record]:
        if not self._pending_checked:  # after a restart: entries delivered but never acknowledged
            reply = self.r.xreadgroup(self.group, self.consumer, {self.key: "0"}, count=limit)
            entries = reply[0][1] if reply else []
            if entries:
                deleted = [i for i, f in entries if not f]  # erased while pending: nothing to apply
                if deleted:
                    self.r.xack(self.key, self.group, *deleted)
                records = [self._record(i, f) for i, f in entries if f]
                done = [r for r in records if after is not None and r.position <= after]
                if done:  # applied and committed before the crash, not yet acknowledged
                    self.ack(done)
                fresh = [r for r in records if after is None or r.position > after]
                if fresh:
                    return fresh
                if len(entries) >= limit:
                    return self.read(after, limit, block_seconds)
            self._pending_checked = True
        block = int(block_seconds * 1000) or None
        reply = self.r.xreadgroup(self.group, self.consumer, {self.key: ">"}, count=limit, block=block)
        return [self._record(i, f) for i, f in reply[0][1]] if reply else []

    def ack(self, records: Sequence[Record]) -> None:
        if records:
            self.r.xack(self.key, self.group, *[entry_id(r.position) for r in records])

    def scan(self, after: int | None, limit: int) -> list[Record]:
        start = "-" if after is None else "(" + entry_id(after)
        return [self._record(i, f) for i, f in self.r.xrange(self.key, min=start, max="+", count=limit)]

    def release(self, upto: int, received_before: datetime) -> int:
        cutoff_ms = to_us(received_before) // 1000
        threshold = min(upto + 1, cutoff_ms * 1_000_000)
        return self.r.xtrim(self.key, minid=entry_id(threshold), approximate=False)

    def end_position(self) -> int | None:
        """The last retained entry's position (an erased or released tail is gone: nothing to wait for)."""
        last = self.r.xrevrange(self.key, count=1)
        return position_of(last[0][0]) if last else None

    def erase(self, matches: PayloadMatch) -> int:
        """``XDEL`` every entry whose payload matches, then ``XACK`` them in every group."""
        doomed, start = [], "-"
        while entries := self.r.xrange(self.key, min=start, max="+", count=SCAN_CHUNK):
            doomed += [i for i, f in entries if matches(f[b"e"])]
            start = "(" + entries[-1][0].decode()
        groups = [g["name"] for g in self.r.xinfo_groups(self.key)] if doomed else []
        for i in range(0, len(doomed), SCAN_CHUNK):
            chunk = doomed[i:i + SCAN_CHUNK]
            pipe = self.r.pipeline(transaction=True)
            pipe.xdel(self.key, *chunk)
            for group in groups:
                pipe.xack(self.key, group, *chunk)
            pipe.execute()
        return len(doomed)

    def close(self) -> None:
        self.r.close()


class RedisOnlineStore(OnlineStore):
    def __init__(self, url: str, prefix: str):
        self.r = redis.Redis.from_url(url)
        self.p = f"{prefix}:online"
        self.label = f"redis:{self.p}"
        self._clear_dirty = self.r.register_script(_CLEAR_DIRTY)
        self._delete_customer = self.r.register_script(_DELETE_CUSTOMER)

    def _k(self, name: str) -> str:
        return f"{self.p}:{name}"

    def _rows_key(self, customer_id: str) -> str:
        return f"{self.p}:rows:{customer_id}"

    def _transaction(self, fn, coverage: Mapping[str, datetime], expect_erased: int | None = None) -> None:
        """Run ``fn(pipe)`` in MULTI/EXEC with coverage raised, retried if coverage or the erased
        subjects changed; refused if the erased subjects are not ``expect_erased`` many."""
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(self._k("coverage"), self._k("erased"))
                    if expect_erased is not None:
                        self._check_erased(expect_erased, pipe.scard(self._k("erased")))
                    current = {k.decode(): int(v) for k, v in pipe.hgetall(self._k("coverage")).items()} if coverage else {}
                    pipe.multi()
                    fn(pipe)
                    raised = {s: max(to_us(t), current.get(s, 0)) for s, t in coverage.items()}
                    if raised:
                        pipe.hset(self._k("coverage"), mapping=raised)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def _write_rows(self, pipe, rows: Sequence[StateRow], replace: bool) -> None:
        for r in rows:
            value = json.dumps([r.time_us, r.available_us, r.expires_us, r.data])
            field = f"{r.source}|{r.key}"
            if replace:
                pipe.hset(self._rows_key(r.customer_id), field, value)
            else:
                pipe.hsetnx(self._rows_key(r.customer_id), field, value)
            pipe.zadd(self._k("expiry"), {f"{r.customer_id}|{field}": r.expires_us})

    def apply(self, sink, position, received_at, rows, coverage, expect_erased=None) -> None:
        mark = now_us()
        customers = {r.customer_id for r in rows}

        def write(pipe):
            self._write_rows(pipe, rows, replace=False)
            if customers:
                pipe.sadd(self._k("customers_seen"), *customers)
                pipe.zadd(self._k("dirty"), {c: mark for c in customers})
            pipe.hset(self._k("offsets"), sink, position)

        self._transaction(write, coverage, expect_erased)

    def committed(self, sink: str = ONLINE_SINK) -> int | None:
        v = self.r.hget(self._k("offsets"), sink)
        return None if v is None else int(v)

    def set_coverage(self, coverage) -> None:
        self._transaction(lambda pipe: None, coverage)

    def coverage(self) -> dict[str, datetime]:
        return {k.decode(): from_us(int(v)) for k, v in self.r.hgetall(self._k("coverage")).items()}

    def states(self, customer_ids):
        ids = list(customer_ids)
        pipe = self.r.pipeline(transaction=False)
        for c in ids:
            pipe.hgetall(self._rows_key(c))
        pipe.hmget(self._k("customers"), ids) if ids else None
        replies = pipe.execute() if ids else []
        out = {c: CustomerState(c) for c in ids}
        for c, fields in zip(ids, replies[: len(ids)]):
            for field, value in fields.items():
                source, _, key = field.decode().partition("|")
                t, a, _, data = json.loads(value)
                out[c].rows.setdefault(source, []).append(interpreter_row(source, key, t, a, data))
        if ids:
            for c, home in zip(ids, replies[-1]):
                if home is not None:
                    out[c].home_country, out[c].known = json.loads(home), True
        return out

    def bootstrap(self, rows, customers, coverage) -> int:
        rows = list(rows)
        mark = now_us()
        everyone = set(customers) | {r.customer_id for r in rows}

        def write(pipe):
            self._write_rows(pipe, rows, replace=True)
            if customers:
                pipe.hset(self._k("customers"), mapping={c: json.dumps(h) for c, h in customers.items()})
            if everyone:
                pipe.sadd(self._k("customers_seen"), *everyone)
                pipe.zadd(self._k("dirty"), {c: mark for c in everyone})

        self._transaction(write, coverage)
        return len(rows)

    def dirty(self, limit: int) -> list[tuple[str, int]]:
        return [(c.decode(), int(m)) for c, m in self.r.zrange(self._k("dirty"), 0, limit - 1, withscores=True)]

    def put_values(self, items, expect_erased=None) -> None:
        if not items:
            return
        args = [x for c, m, _, _ in items for x in (c, m)]

        def write(pipe):
            pipe.hset(self._k("values"), mapping={c: json.dumps([to_us(a), v]) for c, _, a, v in items})
            self._clear_dirty(keys=[self._k("dirty")], args=args, client=pipe)

        self._transaction(write, {}, expect_erased)

    def values(self, customer_ids):
        ids = list(customer_ids)
        out = {}
        for c, raw in zip(ids, self.r.hmget(self._k("values"), ids) if ids else []):
            if raw is not None:
                as_of, v = json.loads(raw)
                out[c] = (from_us(as_of), v)
        return out

    def customer_ids(self, limit: int | None = None) -> list[str]:
        ids = sorted(c.decode() for c in self.r.smembers(self._k("customers_seen")))
        return ids[:limit] if limit else ids

    def prune(self, now: datetime) -> int:
        expired = self.r.zrangebyscore(self._k("expiry"), "-inf", f"({to_us(now)}")
        if not expired:
            return 0
        pipe = self.r.pipeline(transaction=True)
        for member in expired:
            customer, _, field = member.decode().partition("|")
            pipe.hdel(self._rows_key(customer), field)
        pipe.zrem(self._k("expiry"), *expired)
        pipe.execute()
        return len(expired)

    def stats(self) -> dict[str, int]:
        return {
            "rows": self.r.zcard(self._k("expiry")),
            "customers_with_rows": self.r.scard(self._k("customers_seen")),
            "customers": self.r.hlen(self._k("customers")),
            "materialized": self.r.hlen(self._k("values")),
            "dirty": self.r.zcard(self._k("dirty")),
        }

    def delete_customer(self, customer_id: str) -> int:
        keys = [self._rows_key(customer_id), *(self._k(n) for n in ("expiry", "customers", "values", "dirty", "customers_seen"))]
        return int(self._delete_customer(keys=keys, args=[customer_id]))

    def add_erased_subjects(self, id_hashes) -> int:
        hashes = sorted(set(id_hashes))
        return self.r.sadd(self._k("erased"), *hashes) if hashes else 0

    def erased_subjects(self) -> frozenset[str]:
        return frozenset(h.decode() for h in self.r.smembers(self._k("erased")))

    def erased_count(self) -> int:
        return self.r.scard(self._k("erased"))

    def dump(self):
        """Every key under the store's prefix, whatever its type: the place is the key's family
        (``rows``, ``values``, ...: the part after the prefix, up to a customer id)."""
        def text(b: bytes) -> str:
            return b.decode("utf-8", "replace")

        for key in sorted(self.r.scan_iter(match=f"{self.p}:*", count=1000)):
            name = text(key)
            family = name[len(self.p) + 1:].split(":", 1)[0]
            kind = text(self.r.type(key))
            if kind == "hash":
                items = [f"{text(k)}\t{text(v)}" for k, v in self.r.hgetall(key).items()]
            elif kind == "set":
                items = [text(m) for m in self.r.smembers(key)]
            elif kind == "zset":
                items = [text(m) for m in self.r.zrange(key, 0, -1)]
            elif kind == "list":
                items = [text(m) for m in self.r.lrange(key, 0, -1)]
            elif kind == "string":
                value = self.r.get(key)
                items = [] if value is None else [text(value)]
            else:  # gone meanwhile
                items = []
            yield family, name  # the key's name holds a customer id (rows:<id>)
            for item in items:
                yield family, item

    def search(self, text: str) -> list[str]:
        hits = []
        for c in self.customer_ids():
            home = self.r.hget(self._k("customers"), c)
            if home is not None and (text in c or text in home.decode()):
                hits.append(f"customer:{c}")
            rows = self.r.hgetall(self._rows_key(c))
            if any(text in c or text in k.decode() or text in v.decode() for k, v in rows.items()):
                hits.append(f"row:{c}")
            value = self.r.hget(self._k("values"), c)
            if value is not None and (text in c or text in value.decode()):
                hits.append(f"value:{c}")
        return sorted(hits)

    def close(self) -> None:
        self.r.close()


def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``<prefix>:`` (a test's or benchmark's namespace); never FLUSHDB."""
    r = redis.Redis.from_url(url)
    try:
        keys = list(r.scan_iter(match=f"{prefix}:*", count=5000))
        for i in range(0, len(keys), 5000):
            r.delete(*keys[i:i + 5000])
        return len(keys)
    finally:
        r.close()
