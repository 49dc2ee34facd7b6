"""The stream consumer: transport -> online store (and, in a background thread, the warehouse).

Each step reads the next batch after the online store's committed position, judges every event
and turns valid ones into state rows (``erased.judge_record``: ``events.judge``, then
``online_store.state_row``, only rows a declaration can use; a tombstone of an erased record and
any event of an erased subject are dropped and counted) and applies them, the new position and the
new coverage in ONE store transaction; the transport is acknowledged after that commit.

No record stops the stream: judging never raises; a rejected record is skipped here and
quarantined by the warehouse sink, and so is a valid one whose state row cannot be built
(``unprocessable_record``, its error in the stats). An error of the store or the transport (Redis
down, a full disk) is no record's fault: nothing is quarantined, it stops the consumer with nothing
of the batch committed, and a restart reads the batch again. Killed at any moment, the consumer
resumes after the committed position: each event's effect is applied exactly once.

Between batches, within a time budget, it materializes the values of customers whose state
changed (exact as of the coverage watermark), prunes rows past their lookback, releases
transport records every sink committed, and reports a runless materialization to Dagster.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ai_data_platform.streaming.erased import ERASED_SUBJECT, TOMBSTONE, ErasedSubjects, judge_record
from ai_data_platform.streaming.online_features import ONLINE, FeatureInterpreter
from ai_data_platform.streaming.online_store import ONLINE_SINK, ErasedSubjectsChanged, OnlineStore
from ai_data_platform.streaming.reporting import Reporter
from ai_data_platform.streaming.transport import Transport
from ai_data_platform.streaming.warehouse_sink import SinkThread, WarehouseSink

# An idle poll proves completeness only up to shortly before it: an append stamps its records
# just before writing them.
COVERAGE_MARGIN = timedelta(seconds=1)
HOUSEKEEPING_SECONDS = 2.0
MATERIALIZE_CHUNK = 100  # customers per materialization transaction


def retention() -> timedelta:
    """How long records stay in the transport after every sink committed them, for replays
    (``ADP_STREAM_RETENTION_SECONDS``, default 3600); memory and disk stay bounded by it."""
    from ai_data_platform import settings

    return timedelta(seconds=settings.env_int("ADP_STREAM_RETENTION_SECONDS", 3600, minimum=0))


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass
class ConsumeStats:
    records: int = 0
    applied_rows: int = 0
    rejected: int = 0
    erased_subject_dropped: int = 0  # events of erased subjects: applied and landed nowhere
    tombstones: int = 0  # records erased from the transport: committed past, nothing else
    batches: int = 0
    materialized: int = 0
    pruned: int = 0
    released: int = 0
    position: int | None = None
    warehouse_position: int | None = None
    warehouse_busy: int = 0
    lag_seconds: float | None = None  # receipt -> commit of the last batch
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return asdict(self) | {"events_per_second": round(self.events_per_second, 1)}


def materialize(store: OnlineStore, interpreter: FeatureInterpreter, limit: int = 500) -> int:
    """Materialize up to ``limit`` dirty customers' values as of the events coverage (0 also when
    an erasure ran meanwhile: the values it read may be an erased customer's; the next call reads
    again)."""
    erased = store.erased_count()
    dirty = store.dirty(limit)
    if not dirty:
        return 0
    as_of = store.coverage().get("events")
    if as_of is None:
        return 0
    states = store.states([c for c, _ in dirty])
    names = interpreter.customer_level()
    items = []
    for cid, mark in dirty:
        state = states[cid]
        values = interpreter.evaluate(state.rows, as_of, {"_txn_home_country": state.home_country})
        items.append((cid, mark, as_of, {n: values[n] for n in names}))
    try:
        store.put_values(items, expect_erased=erased)
    except ErasedSubjectsChanged:
        return 0
    return len(items)


class Consumer:
    def __init__(
        self,
        transport: Transport,
        store: OnlineStore,
        *,
        warehouse: Path | None = None,
        interpreter: FeatureInterpreter = ONLINE,
        batch: int = 5000,
        flush_seconds: float = 1.0,
        flush_records: int = 50_000,
        materialize_budget: float = 0.25,
        materialize_share: float = 0.25,
        reporter: Reporter | None = None,
    ):
        self.transport, self.store, self.interpreter = transport, store, interpreter
        self.batch, self.reporter = batch, reporter
        # materialization gets at most ``materialize_share`` of the time spent applying a batch,
        # and up to ``materialize_budget`` seconds per idle poll: ingestion always comes first
        self.materialize_budget, self.materialize_share = materialize_budget, materialize_share
        sink = WarehouseSink(transport, warehouse, flush_records, interpreter=interpreter) if warehouse else None
        self.sink = SinkThread(sink, flush_seconds) if sink else None
        self.stats = ConsumeStats()
        self.erased = ErasedSubjects(store.erased_subjects())
        self._housekeeping_at = 0.0
        self._idle_coverage_at = 0.0

    def step(self, block_seconds: float = 0.05) -> int:
        """Apply the next batch; returns the number of records consumed (0: caught up)."""
        polled_at = utc_now()
        records = self.transport.read(self.store.committed(ONLINE_SINK), self.batch, block_seconds)
        if not records:
            if time.monotonic() - self._idle_coverage_at >= 1.0:
                self.store.set_coverage({"events": polled_at - COVERAGE_MARGIN})
                self._idle_coverage_at = time.monotonic()
            return 0
        last = records[-1]
        while True:
            judged = [judge_record(r, self.erased, interpreter=self.interpreter) for r in records]
            rows = [j.row for j in judged if j.row is not None]
            try:
                self.store.apply(ONLINE_SINK, last.position, last.received_at, rows, {"events": last.received_at},
                                 expect_erased=len(self.erased))
                break
            except ErasedSubjectsChanged:  # an erasure recorded a subject meanwhile: filter again
                self.erased = ErasedSubjects(self.store.erased_subjects())
        self.transport.ack(records)
        if self.sink is not None:
            self.sink.sink.offer(records, judged)  # the sink lands them without judging again
        self.stats.rejected += sum(j.violation is not None for j in judged)
        self.stats.errors += [f"record {r.position}: {j.error}" for r, j in zip(records, judged) if j.error is not None]
        self.stats.erased_subject_dropped += sum(j.dropped == ERASED_SUBJECT for j in judged)
        self.stats.tombstones += sum(j.dropped == TOMBSTONE for j in judged)
        self.stats.records += len(records)
        self.stats.applied_rows += len(rows)
        self.stats.batches += 1
        self.stats.position = last.position
        self.stats.lag_seconds = (utc_now() - last.received_at).total_seconds()
        return len(records)

    def housekeeping(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._housekeeping_at < HOUSEKEEPING_SECONDS:
            return
        self._housekeeping_at = time.monotonic()
        coverage = self.store.coverage().get("events")
        if coverage is not None:
            self.stats.pruned += self.store.prune(min(coverage, utc_now()))
        online = self.store.committed(ONLINE_SINK)
        floors = [online]
        if self.sink is not None:
            self.stats.warehouse_position = self.sink.sink.position
            self.stats.warehouse_busy = self.sink.sink.busy_count
            floors.append(self.sink.sink.position)
            if self.sink.error is not None:
                self.stats.errors.append(f"warehouse sink: {self.sink.error}")
        if all(f is not None for f in floors):
            self.stats.released += self.transport.release(min(floors), utc_now() - retention())
        if self.reporter is not None:
            self.reporter.maybe_report(self.metadata(), force=force)

    def materialize_some(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            n = materialize(self.store, self.interpreter, limit=MATERIALIZE_CHUNK)
            self.stats.materialized += n
            if n == 0:
                return

    def cycle(self) -> int:
        """One batch, its share of materialization, and housekeeping when due."""
        started = time.monotonic()
        n = self.step()
        spent = time.monotonic() - started
        self.materialize_some(self.materialize_share * spent if n else self.materialize_budget)
        self.housekeeping()
        return n

    def metadata(self) -> dict:
        s = self.stats
        store = self.store.stats()
        return {
            "dagster/row_count": store["rows"],
            "store": self.store.label,
            "transport": self.transport.label,
            "position": -1 if s.position is None else s.position,
            "lag_seconds": -1.0 if s.lag_seconds is None else round(s.lag_seconds, 3),
            "events_per_second": round(s.events_per_second, 1),
            "records_consumed": s.records,
            "rejected_records": s.rejected,
            "erased_subject_records_dropped": s.erased_subject_dropped,
            "erased_records_skipped": s.tombstones,
            "customers_with_state": store["customers_with_rows"],
            "materialized_customers": store["materialized"],
            "dirty_customers": store["dirty"],
            "warehouse_position": -1 if s.warehouse_position is None else s.warehouse_position,
        }

    def run(self, *, max_seconds: float | None = None, until_idle: bool = False, max_records: int | None = None) -> ConsumeStats:
        """Consume until stopped (Ctrl-C), ``max_seconds``, ``max_records``, or — with
        ``until_idle`` — until the transport, the warehouse sink and the materialization are
        caught up."""
        started = time.monotonic()
        if self.sink is not None:
            self.sink.start()
        try:
            while True:
                n = self.cycle()
                self.stats.seconds = time.monotonic() - started
                if max_records is not None and self.stats.records >= max_records:
                    break
                if max_seconds is not None and time.monotonic() - started >= max_seconds:
                    break
                if until_idle and n == 0 and self._drained():
                    break
        finally:
            if self.sink is not None:
                self.sink.stop()
            self.stats.seconds = time.monotonic() - started
            self.housekeeping(force=True)
            if self.reporter is not None:
                self.reporter.wait()
        return self.stats

    def _drained(self) -> bool:
        if self.store.dirty(1):
            return False
        if self.sink is None:
            return True
        end = self.transport.end_position()
        return end is None or (self.sink.sink.position is not None and self.sink.sink.position >= end)
