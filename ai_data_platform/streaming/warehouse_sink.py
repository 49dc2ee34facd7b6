"""The warehouse sink: consumed records land in DuckDB in micro-batches, exactly once.

Tables (schema ``stream``; grain in each comment):

* ``stream.records``: one row per consumed record, valid or not: transport, segment, position,
  receipt time and the payload as received. ``raw/events`` for day D includes the records
  received on day D (``_file = 'stream:<transport>/<segment>'``), so the nightly batch stages,
  quarantines and conserves them like the daily export.
* ``stream.events``: one row per valid event, typed as in staging, ``_available_at`` = receipt.
* ``stream.quarantine_events``: one row per rejected record with the staging rule that caught it.
* ``stream.offsets``: per transport, the last position written, committed in the SAME DuckDB
  transaction as the micro-batch: a sink killed at any moment resumes after it, nothing twice;
  and ``complete_at``, the time up to which every received record is landed.

Records of erased subjects and the transport's tombstones of erased records are landed nowhere
(not even in quarantine): the sink checks ``meta.erased_subjects`` in the transaction that lands
the micro-batch (``erased.py``), counts them, and commits its position past them.

DuckDB takes one writer per file and Dagster runs hold it for a whole step, so the sink never
waits for the lock: a flush that meets it is skipped and retried later, while the transport
retains the records (memory stays bounded: a flush reads at most ``max_records``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from ai_data_platform import warehouse as wh
from ai_data_platform.governance import suppression
from ai_data_platform.private_files import restrict_database
from ai_data_platform.sources.contracts import EVENTS
from ai_data_platform.streaming.erased import ErasedSubjects, Judged, judge_record
from ai_data_platform.sources.json_object import read_object
from ai_data_platform.streaming.events import raw_text
from ai_data_platform.streaming.online_features import ONLINE, FeatureInterpreter
from ai_data_platform.streaming.transport import Record, Transport

SCHEMA = "stream"
RECORDS = "stream.records"
EVENTS_TABLE = "stream.events"
QUARANTINE = "stream.quarantine_events"
OFFSETS = "stream.offsets"
COVERAGE_MARGIN = timedelta(seconds=1)  # as consumer.COVERAGE_MARGIN: an append stamps just before it writes
IDLE_MARK_SECONDS = 5.0
_TYPES = {"VARCHAR": pa.string(), "TIMESTAMP": pa.timestamp("us"), "DOUBLE": pa.float64()}
EVENT_COLUMNS = [(c.name, c.dtype) for c in EVENTS.columns] + [("_available_at", "TIMESTAMP")]
LINEAGE = [("_transport", "VARCHAR"), ("_segment", "VARCHAR"), ("_position", "BIGINT")]
RECORD_COLUMNS = LINEAGE + [("received_at", "TIMESTAMP"), ("_payload", "VARCHAR"), ("_consumed_at", "TIMESTAMP")]
QUARANTINE_COLUMNS = LINEAGE + [("received_at", "TIMESTAMP"), ("rule", "VARCHAR"), ("column_name", "VARCHAR"),
                                ("raw_value", "VARCHAR"), ("raw_record", "VARCHAR")]


def ddl() -> list[str]:
    def cols(spec):
        return ", ".join(f"{n} {t}" for n, t in spec)

    return [
        f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
        f"CREATE TABLE IF NOT EXISTS {RECORDS} ({cols(RECORD_COLUMNS)})",
        f"CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} ({cols(EVENT_COLUMNS + LINEAGE)})",
        f"CREATE TABLE IF NOT EXISTS {QUARANTINE} ({cols(QUARANTINE_COLUMNS)})",
        # complete_at: every record received by then is landed (the last receipt, or an idle poll)
        f"CREATE TABLE IF NOT EXISTS {OFFSETS} (_transport VARCHAR PRIMARY KEY, position BIGINT, received_at TIMESTAMP, "
        "committed_at TIMESTAMP, complete_at TIMESTAMP)",
    ]


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for statement in ddl():
        con.execute(statement)


def committed_position(con: duckdb.DuckDBPyConnection, label: str) -> int | None:
    rows = con.execute(f"SELECT position FROM {OFFSETS} WHERE _transport = ?", [label]).fetchall()
    return rows[0][0] if rows else None


def _arrow(columns: list[tuple[str, str]], rows: list[dict]) -> pa.Table:
    types = {"BIGINT": pa.int64(), **_TYPES}
    return pa.table({n: pa.array([r.get(n) for r in rows], types[t]) for n, t in columns})


@dataclass
class FlushResult:
    records: int = 0
    events: int = 0
    quarantined: int = 0
    dropped: int = 0  # tombstones and erased subjects' records: landed nowhere
    position: int | None = None
    busy: bool = False  # the warehouse was locked by another process: retried later


HANDOFF_BATCHES = 64


class WarehouseSink:
    """``offer`` hands over batches the online consumer already read and judged (bounded: when
    the sink falls behind, the oldest are dropped); a flush uses them when they continue its
    committed position exactly, and otherwise re-reads and judges from the transport."""

    def __init__(self, transport: Transport, warehouse: Path, max_records: int = 50_000, hmac_key: str | None = None,
                 interpreter: FeatureInterpreter = ONLINE):
        self.transport, self.warehouse, self.max_records = transport, Path(warehouse), max_records
        self.interpreter = interpreter  # the online consumer's: a re-read record is judged as it judged it
        self.position: int | None = None  # last committed (known after the first flush)
        self.busy_count = 0
        self.reread = 0  # records judged again because no hand-off continued the position
        self.dropped = 0  # tombstones and erased subjects' records committed past
        self._hmac_key = hmac_key
        self._erased = ErasedSubjects((), hmac_key)
        self._idle_marked = 0.0
        self._handoff: deque[list[tuple[Record, Judged]]] = deque(maxlen=HANDOFF_BATCHES)

    def offer(self, records: list[Record], judged: list[Judged]) -> None:
        self._handoff.append(list(zip(records, judged)))

    def _erased_subjects(self, con: duckdb.DuckDBPyConnection) -> ErasedSubjects:
        """The erased subjects recorded in the warehouse, read in the flush's own transaction."""
        hashes = suppression.customer_id_hashes(con)
        if hashes != self._erased.id_hashes:
            self._erased = ErasedSubjects(hashes, self._hmac_key)
        return self._erased

    def _next_batch(self, erased: ErasedSubjects) -> list[tuple[Record, Judged]]:
        batch: list[tuple[Record, Judged]] = []
        expected = None if self.position is None else self.position + 1
        while self._handoff and len(batch) < self.max_records:
            head = self._handoff[0]
            if expected is not None and head[-1][0].position < expected:
                self._handoff.popleft()  # already landed
                continue
            if expected is None or head[0][0].position != expected:
                break
            self._handoff.popleft()
            batch += head
            expected = head[-1][0].position + 1
        if batch:
            return [(r, judge_record(r, erased, known=j)) for r, j in batch]
        records = self.transport.scan(self.position, self.max_records)
        self.reread += len(records)
        return [(r, judge_record(r, erased, interpreter=self.interpreter)) for r in records]

    def flush(self) -> FlushResult:
        """Write the next micro-batch after the committed position; never waits for the lock."""
        polled_at = datetime.now(timezone.utc).replace(tzinfo=None)
        try:
            con = duckdb.connect(str(self.warehouse))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            self.busy_count += 1
            return FlushResult(busy=True, position=self.position)
        try:
            restrict_database(self.warehouse)
            ensure_tables(con)
            with wh.transaction(con):  # the erased subjects read in it hold until the commit
                result = self._land(con, polled_at)
            self.position = result.position
            self.dropped += result.dropped
            return result
        finally:
            con.close()

    def _land(self, con: duckdb.DuckDBPyConnection, polled_at: datetime) -> FlushResult:
        """Land the micro-batch after the committed position and commit the new position (the
        caller holds the transaction)."""
        erased = self._erased_subjects(con)
        position = committed_position(con, self.transport.label)  # fetched to the end: register() follows
        self.position = position
        batch = self._next_batch(erased)
        if not batch:
            if position is not None and time.monotonic() - self._idle_marked >= IDLE_MARK_SECONDS:
                con.execute(f"UPDATE {OFFSETS} SET complete_at = greatest(complete_at, ?) WHERE _transport = ?",
                            [polled_at - COVERAGE_MARGIN, self.transport.label])
                self._idle_marked = time.monotonic()
            return FlushResult(position=position)
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        raw, events, quarantined = [], [], []
        for r, judged in batch:
            if judged.dropped is not None:
                continue
            where = {"_transport": self.transport.label, "_segment": r.segment, "_position": r.position}
            payload = r.payload.decode("utf-8", "replace")
            raw.append({**where, "received_at": r.received_at, "_payload": payload, "_consumed_at": now})
            if judged.typed is not None:
                events.append({**judged.typed, "_available_at": r.received_at, **where})
            else:
                v = judged.violation
                quarantined.append({**where, "received_at": r.received_at, "rule": v.rule, "column_name": v.column,
                                    "raw_value": v.raw_value, "raw_record": payload})
        tables = {"_records": _arrow(RECORD_COLUMNS, raw), "_events": _arrow(EVENT_COLUMNS + LINEAGE, events),
                  "_quarantine": _arrow(QUARANTINE_COLUMNS, quarantined)}
        for name, table in tables.items():
            con.register(name, table)
        con.execute(f"INSERT INTO {RECORDS} BY NAME SELECT * FROM _records")
        con.execute(f"INSERT INTO {EVENTS_TABLE} BY NAME SELECT * FROM _events")
        con.execute(f"INSERT INTO {QUARANTINE} BY NAME SELECT * FROM _quarantine")
        last = batch[-1][0]
        con.execute(f"INSERT OR REPLACE INTO {OFFSETS} VALUES (?, ?, ?, ?, ?)",
                    [self.transport.label, last.position, last.received_at, now, last.received_at])
        return FlushResult(len(batch), len(events), len(quarantined), len(batch) - len(raw), last.position)


class SinkThread(threading.Thread):
    """Flushes in the background: immediately while there is backlog, every ``interval`` when
    caught up or when the warehouse is busy. Errors other than the lock are kept in ``error``."""

    def __init__(self, sink: WarehouseSink, interval: float = 1.0):
        super().__init__(name="warehouse-sink", daemon=True)
        self.sink, self.interval = sink, interval
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.flushed = 0
        self.idle = threading.Event()  # set when a flush found nothing new

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                result = self.sink.flush()
            except BaseException as exc:  # reported by the consumer; the sink retries
                self.error = exc
                self.stop_event.wait(self.interval)
                continue
            self.error = None
            self.flushed += result.records
            if result.records == 0 and not result.busy:
                self.idle.set()
            else:
                self.idle.clear()
            if result.records < self.sink.max_records:
                self.stop_event.wait(self.interval)

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self.join(timeout)


def wait_until(predicate, timeout: float, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()


STREAM_DAY_PAGE = 20_000  # stream records the raw load reads into Python at a time


def _stream_day_sql() -> str:
    """The stream records received on day ``?`` numbered ``_n`` 1.. in stream order, each with
    whether the stream's judge found it no JSON object (it quarantined it as ``malformed_row``)."""
    malformed = f"SELECT DISTINCT _transport, _position FROM {QUARANTINE} WHERE rule = 'malformed_row'"
    return (
        "SELECT row_number() OVER (ORDER BY r._transport, r._segment, r._position) AS _n, r._transport, r._segment, "
        "strftime(r.received_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS received_at, r._payload, "
        f"m._position IS NOT NULL AS _malformed FROM {RECORDS} r LEFT JOIN ({malformed}) m "
        "ON m._transport = r._transport AND m._position = r._position WHERE CAST(r.received_at AS DATE) = ?"
    )


def _raw_page(rows: list[tuple], contract_columns: tuple[str, ...], first_row: int) -> pa.Table:
    """Stream records as raw rows, read as the stream's judge reads them (``json_object.read_object``,
    values as text the way ``events.judge`` and a landing file's reader render them)."""
    columns: dict[str, list] = {c: [] for c in contract_columns}
    files, raw_lines = [], []
    for _, transport, segment, received_at, payload, malformed in rows:
        record = None if malformed else read_object(payload.encode("utf-8"))
        files.append(f"stream:{transport}/{segment}")
        raw_lines.append(payload if record is None else None)
        for c in contract_columns:
            value = None if record is None else raw_text(record.get(c))
            columns[c].append(received_at if c == "received_at" else value)
    arrays = {c: pa.array(v, pa.string()) for c, v in columns.items()}
    return pa.table({**arrays, "_file": pa.array(files, pa.string()),
                     "_row_number": pa.array(range(first_row + 1, first_row + len(rows) + 1), pa.int64()),
                     "_raw_line": pa.array(raw_lines, pa.string())})


def load_into_raw(
    con: duckdb.DuckDBPyConnection, raw_table: str, contract_columns: tuple[str, ...], day, first_row: int, keep: str = "TRUE"
) -> tuple[int, int, int]:
    """Insert the stream records received on ``day`` into ``raw_table`` like a landing file's
    records, except those failing the SQL condition ``keep`` (the records of erased subjects:
    ``governance/suppression.py``). Returns (records inserted, records dropped, unsplittable
    records inserted).

    Every contract column as text (``received_at`` = the transport's stamp), ``_raw_line`` = the
    payload when it is not one JSON object, ``_file`` = ``stream:<transport>/<segment>``.
    ``_row_number`` continues the day's numbering after the day's first ``first_row`` records (the
    landing file's), in stream order, so ``(_partition_date, _row_number)`` stays the one key of a
    raw record (erasure and quarantine address records by it). Payloads are read by the stream's
    own reader, not DuckDB's JSON functions (which take ``nan`` literals, trailing commas and a key
    twice, and render numbers their own way), so the nightly batch judges each record as the
    stream did; a payload the stream found no JSON object (its bytes may not have been UTF-8,
    which the stored text no longer shows) is no object here either.

    Results are fetched to the end: DuckDB refuses ``register`` on a connection with a
    partially fetched result, and the caller registers the next day's file next."""
    exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                         RECORDS.split(".")).fetchall()[0][0]
    if not exists:
        return 0, 0, 0
    columns = ", ".join(f"{wh.quote(c)} VARCHAR" for c in contract_columns)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _stream_records AS {_stream_day_sql()}", [day]).fetchall()
        con.execute(f"CREATE OR REPLACE TEMP TABLE _stream_day ({columns}, _partition_date DATE, _file VARCHAR, "
                    "_row_number BIGINT, _raw_line VARCHAR, _loaded_at TIMESTAMP)").fetchall()
        done = 0
        while rows := con.execute("SELECT * FROM _stream_records WHERE _n > ? ORDER BY _n LIMIT ?",
                                  [done, STREAM_DAY_PAGE]).fetchall():
            con.register("_stream_page", _raw_page(rows, contract_columns, first_row + done))
            try:
                con.execute("INSERT INTO _stream_day BY NAME SELECT *, ?::DATE AS _partition_date, "
                            "now()::TIMESTAMP AS _loaded_at FROM _stream_page", [day]).fetchall()
            finally:
                con.unregister("_stream_page")
            done += len(rows)
        received = con.execute("SELECT count(*) FROM _stream_day").fetchall()[0][0]
        inserted, malformed = con.execute(f"SELECT count(*), count(_raw_line) FROM _stream_day WHERE {keep}").fetchall()[0]
        con.execute(f"INSERT INTO {raw_table} BY NAME SELECT * FROM _stream_day WHERE {keep}").fetchall()
    finally:
        con.execute("DROP TABLE IF EXISTS _stream_day").fetchall()
        con.execute("DROP TABLE IF EXISTS _stream_records").fetchall()
    return inserted, received - inserted, malformed
