"""The online feature store: per customer, the source rows the online features need, plus
materialized values; one interface, SQLite (embedded default) and Redis.

What is kept (and nothing else):

* **state rows**: the de-duplicated (by source key: an event id is stored once, first wins)
  source rows within the lookback of a feature they can count for; a row no declaration can use
  (a succeeded payment, with only failed ones counted) is never stored, and a row is pruned once
  its event time is older than the longest lookback it serves (``expires``). Each row keeps its
  event time and ``_available_at``, so a value can be evaluated as of any time inside the window.
* **customers**: the home country (for ``_txn_home_country``), from the nightly bootstrap.
* **coverage**: per source, the time up to which the store is complete (every record received
  by then applied); a feature whose source coverage is older than its online TTL is *expired*.
* **offsets**: per sink, the transport position committed *in the same transaction* as the
  rows it wrote (exactly-once effect).
* **materialized values**: per customer, the online feature values with the as-of time they
  are exact for; ``dirty`` lists customers whose state changed since.

Right to erasure: ``add_erased_subjects`` records erased subjects by the HMAC of their customer id
(no personal data) and ``delete_customer`` then removes every trace of the customer (SQLite is
compacted so the bytes are gone). The consumer drops the events of recorded subjects, and passes the
number of recorded subjects it filtered with to ``apply`` and ``put_values``: if an erasure recorded
another one meanwhile, the write is refused (:class:`ErasedSubjectsChanged`) in the same
transaction, so nothing of a subject can be written after their erasure. ``search`` finds a string
anywhere in the store; ``dump`` lists everything it holds, for the erasure's verification of
storage a search of files cannot see (Redis).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ai_data_platform.features.registry import SOURCES
from ai_data_platform.private_files import make_private_dir, open_private, restrict_database
from ai_data_platform.streaming.online_features import ONLINE, FeatureInterpreter
from ai_data_platform.streaming.transport import from_us, now_us, to_us

ONLINE_SINK = "online"


class ErasedSubjectsChanged(RuntimeError):
    """A write was filtered with an older list of erased subjects than the store now holds."""

    def __init__(self, expected: int, actual: int):
        super().__init__(f"the store records {actual} erased subject(s), the write was filtered with {expected}: filter again")


@dataclass(frozen=True)
class StateRow:
    source: str
    key: str
    customer_id: str
    time_us: int
    available_us: int
    expires_us: int
    data: dict[str, Any]  # the needed columns other than key, time and _available_at


@dataclass
class CustomerState:
    customer_id: str
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # interpreter-ready
    home_country: str | None = None
    known: bool = False  # registered by the nightly bootstrap


def _jsonable(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def state_row(source: str, row: Mapping[str, Any], interpreter: FeatureInterpreter = ONLINE) -> StateRow | None:
    """The state row to keep for a typed source row, or None when no declaration can use it."""
    lookback = interpreter.row_lookback(source, row)
    if lookback is None:
        return None
    spec = SOURCES[source]
    t, k = spec["time"], spec["key"]
    data = {c: _jsonable(row.get(c)) for c in interpreter.needed_columns(source) if c not in (t, k, "_available_at")}
    time_us = to_us(row[t])
    return StateRow(source, row[k], row["customer_id"], time_us, to_us(row["_available_at"]),
                    time_us + lookback // timedelta(microseconds=1), data)


def interpreter_row(source: str, key: str, time_us: int, available_us: int, data: Mapping[str, Any]) -> dict[str, Any]:
    spec = SOURCES[source]
    row = dict(data)
    row[spec["key"]] = key
    row[spec["time"]] = from_us(time_us)
    row["_available_at"] = from_us(available_us)
    return row


class OnlineStore(ABC):
    label: str

    @abstractmethod
    def apply(self, sink: str, position: int, received_at: datetime, rows: Sequence[StateRow],
              coverage: Mapping[str, datetime], expect_erased: int | None = None) -> None:
        """In ONE transaction: store ``rows`` (duplicates by key ignored), mark their customers
        dirty, set ``sink``'s committed position and raise ``coverage``. ``expect_erased``: the
        number of erased subjects the rows were filtered with; if the store records another
        number, nothing is written and :class:`ErasedSubjectsChanged` is raised."""

    @abstractmethod
    def committed(self, sink: str = ONLINE_SINK) -> int | None:
        """The sink's committed transport position (None: nothing yet)."""

    @abstractmethod
    def set_coverage(self, coverage: Mapping[str, datetime]) -> None:
        """Raise per-source coverage (never lowers it)."""

    @abstractmethod
    def coverage(self) -> dict[str, datetime]:
        ...

    @abstractmethod
    def states(self, customer_ids: Sequence[str]) -> dict[str, CustomerState]:
        ...

    @abstractmethod
    def bootstrap(self, rows: Iterable[StateRow], customers: Mapping[str, str | None],
                  coverage: Mapping[str, datetime]) -> int:
        """Upsert warehouse rows (replacing same-key rows) and home countries, raise coverage,
        mark the customers dirty. Idempotent. Returns rows written."""

    @abstractmethod
    def dirty(self, limit: int) -> list[tuple[str, int]]:
        """Customers whose state changed since their values were materialized: (id, mark)."""

    @abstractmethod
    def put_values(self, items: Sequence[tuple[str, int, datetime, Mapping[str, Any]]], expect_erased: int | None = None) -> None:
        """Store (customer, dirty mark, as_of, values); clears the dirty mark unless re-marked.
        ``expect_erased`` as for :meth:`apply`."""

    @abstractmethod
    def values(self, customer_ids: Sequence[str]) -> dict[str, tuple[datetime, dict[str, Any]]]:
        """Materialized values and their as-of time."""

    @abstractmethod
    def customer_ids(self, limit: int | None = None) -> list[str]:
        """Customers with state or values, sorted."""

    @abstractmethod
    def prune(self, now: datetime) -> int:
        """Drop rows older than every lookback they serve; returns how many."""

    @abstractmethod
    def stats(self) -> dict[str, int]:
        ...

    @abstractmethod
    def delete_customer(self, customer_id: str) -> int:
        """Right to erasure: remove the customer's rows, values, profile and marks, so that no
        byte of them is left (SQLite: compacted); returns items removed."""

    @abstractmethod
    def add_erased_subjects(self, id_hashes: Iterable[str]) -> int:
        """Record erased subjects (HMACs of their customer ids); returns how many were new."""

    @abstractmethod
    def erased_subjects(self) -> frozenset[str]:
        """The recorded erased subjects' id HMACs."""

    @abstractmethod
    def erased_count(self) -> int:
        """How many erased subjects are recorded (the list only grows: its version)."""

    @abstractmethod
    def search(self, text: str) -> list[str]:
        """Where ``text`` occurs: one ``<kind>:<customer_id>`` entry per hit (kinds: customer,
        row, value)."""

    @abstractmethod
    def dump(self) -> Iterator[tuple[str, str]]:
        """(place, text) for everything the store holds: the place names a table or key family,
        never a value; the text holds the item's keys and contents."""

    def _check_erased(self, expected: int | None, actual: int) -> None:
        if expected is not None and actual != expected:
            raise ErasedSubjectsChanged(expected, actual)

    def close(self) -> None:
        pass


_SCHEMA = """
-- a rowid table (appends at the end) with a unique index on the key: ~3x faster to insert
-- random event ids into than a WITHOUT ROWID table clustered on them
CREATE TABLE IF NOT EXISTS rows (source TEXT NOT NULL, key TEXT NOT NULL, customer_id TEXT NOT NULL,
  time_us INTEGER NOT NULL, available_us INTEGER NOT NULL, expires_us INTEGER NOT NULL, data TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS rows_by_key ON rows (source, key);
CREATE INDEX IF NOT EXISTS rows_by_customer ON rows (customer_id, source);
CREATE INDEX IF NOT EXISTS rows_by_expiry ON rows (expires_us);
CREATE TABLE IF NOT EXISTS customers (customer_id TEXT PRIMARY KEY, home_country TEXT, bootstrapped_us INTEGER);
CREATE TABLE IF NOT EXISTS offsets (sink TEXT PRIMARY KEY, position INTEGER NOT NULL, received_us INTEGER, committed_us INTEGER);
CREATE TABLE IF NOT EXISTS coverage (source TEXT PRIMARY KEY, complete_us INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS feature_values (customer_id TEXT PRIMARY KEY, as_of_us INTEGER NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dirty (customer_id TEXT PRIMARY KEY, mark INTEGER NOT NULL);
-- erased subjects by the HMAC of their customer id: the consumer drops their events
CREATE TABLE IF NOT EXISTS erased_subjects (id_hash TEXT PRIMARY KEY);
"""
CACHE_KIB = 64 * 1024


class SqliteOnlineStore(OnlineStore):
    """SQLite in WAL mode (``$ADP_DATA_DIR/online/features.sqlite``); one connection per thread.

    ``synchronous=NORMAL``: a committed transaction survives the process being killed (the WAL
    is in the OS); after an OS crash the store is consistent, possibly missing its last
    transactions, and the consumer re-applies them from its committed offset.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        make_private_dir(self.path.parent)
        # Created owner-only before SQLite opens it: SQLite gives its -wal and -shm files the
        # database file's mode.
        open_private(self.path, "ab").close()
        restrict_database(self.path)
        self.label = f"sqlite:{self.path}"
        self._local = threading.local()
        self._con().executescript(_SCHEMA)

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # B-tree pages of random keys stay in memory
            self._local.con = con
        return con

    def _write(self, fn) -> Any:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            result = fn(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        return result

    @staticmethod
    def _raise_coverage(con, coverage: Mapping[str, datetime]) -> None:
        con.executemany(
            "INSERT INTO coverage VALUES (?, ?) ON CONFLICT (source) DO UPDATE SET complete_us = max(complete_us, excluded.complete_us)",
            [(s, to_us(t)) for s, t in coverage.items()],
        )

    def _erased_now(self, con) -> int:
        return con.execute("SELECT count(*) FROM erased_subjects").fetchone()[0]

    def apply(self, sink, position, received_at, rows, coverage, expect_erased=None) -> None:
        def write(con):
            if expect_erased is not None:
                self._check_erased(expect_erased, self._erased_now(con))
            con.executemany(
                "INSERT OR IGNORE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.source, r.key, r.customer_id, r.time_us, r.available_us, r.expires_us, json.dumps(r.data)) for r in rows],
            )
            mark = now_us()  # dirty marks are receipt-clock µs, as in the Redis store
            con.executemany("INSERT OR REPLACE INTO dirty VALUES (?, ?)", [(c, mark) for c in {r.customer_id for r in rows}])
            con.execute(
                "INSERT OR REPLACE INTO offsets VALUES (?, ?, ?, CAST(unixepoch('subsec') * 1000000 AS INTEGER))",
                [sink, position, to_us(received_at)],
            )
            self._raise_coverage(con, coverage)

        self._write(write)

    def committed(self, sink: str = ONLINE_SINK) -> int | None:
        row = self._con().execute("SELECT position FROM offsets WHERE sink = ?", [sink]).fetchone()
        return None if row is None else row[0]

    def set_coverage(self, coverage) -> None:
        self._write(lambda con: self._raise_coverage(con, coverage))

    def coverage(self) -> dict[str, datetime]:
        return {s: from_us(us) for s, us in self._con().execute("SELECT source, complete_us FROM coverage")}

    def states(self, customer_ids):
        out = {c: CustomerState(c) for c in customer_ids}
        if not out:
            return out
        con = self._con()
        marks = ",".join("?" * len(out))
        for cid, source, key, t, a, data in con.execute(
            f"SELECT customer_id, source, key, time_us, available_us, data FROM rows WHERE customer_id IN ({marks})", list(out)
        ):
            out[cid].rows.setdefault(source, []).append(interpreter_row(source, key, t, a, json.loads(data)))
        for cid, home in con.execute(f"SELECT customer_id, home_country FROM customers WHERE customer_id IN ({marks})", list(out)):
            out[cid].home_country, out[cid].known = home, True
        return out

    def bootstrap(self, rows, customers, coverage) -> int:
        rows = list(rows)

        def write(con):
            con.executemany(
                "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.source, r.key, r.customer_id, r.time_us, r.available_us, r.expires_us, json.dumps(r.data)) for r in rows],
            )
            con.executemany(
                "INSERT INTO customers VALUES (?, ?, CAST(unixepoch('subsec') * 1000000 AS INTEGER)) "
                "ON CONFLICT (customer_id) DO UPDATE SET home_country = excluded.home_country, bootstrapped_us = excluded.bootstrapped_us",
                list(customers.items()),
            )
            mark = now_us()
            con.executemany("INSERT OR REPLACE INTO dirty VALUES (?, ?)",
                            [(c, mark) for c in set(customers) | {r.customer_id for r in rows}])
            self._raise_coverage(con, coverage)
            return len(rows)

        return self._write(write)

    def dirty(self, limit: int) -> list[tuple[str, int]]:
        return self._con().execute("SELECT customer_id, mark FROM dirty ORDER BY mark, customer_id LIMIT ?", [limit]).fetchall()

    def put_values(self, items, expect_erased=None) -> None:
        def write(con):
            if expect_erased is not None:
                self._check_erased(expect_erased, self._erased_now(con))
            con.executemany("INSERT OR REPLACE INTO feature_values VALUES (?, ?, ?)",
                            [(c, to_us(as_of), json.dumps(v)) for c, _, as_of, v in items])
            con.executemany("DELETE FROM dirty WHERE customer_id = ? AND mark <= ?", [(c, m) for c, m, _, _ in items])

        self._write(write)

    def values(self, customer_ids):
        marks = ",".join("?" * len(customer_ids))
        return {
            c: (from_us(a), json.loads(p))
            for c, a, p in self._con().execute(
                f"SELECT customer_id, as_of_us, payload FROM feature_values WHERE customer_id IN ({marks})", list(customer_ids)
            )
        }

    def customer_ids(self, limit: int | None = None) -> list[str]:
        sql = ("SELECT customer_id FROM (SELECT customer_id FROM rows UNION SELECT customer_id FROM feature_values "
               "UNION SELECT customer_id FROM customers) ORDER BY customer_id")
        return [c for (c,) in self._con().execute(sql + (f" LIMIT {int(limit)}" if limit else ""))]

    def prune(self, now: datetime) -> int:
        return self._write(lambda con: con.execute("DELETE FROM rows WHERE expires_us < ?", [to_us(now)]).rowcount)

    def stats(self) -> dict[str, int]:
        con = self._con()
        return {
            "rows": con.execute("SELECT count(*) FROM rows").fetchone()[0],
            "customers_with_rows": con.execute("SELECT count(DISTINCT customer_id) FROM rows").fetchone()[0],
            "customers": con.execute("SELECT count(*) FROM customers").fetchone()[0],
            "materialized": con.execute("SELECT count(*) FROM feature_values").fetchone()[0],
            "dirty": con.execute("SELECT count(*) FROM dirty").fetchone()[0],
        }

    def delete_customer(self, customer_id: str) -> int:
        def write(con):
            return sum(
                con.execute(f"DELETE FROM {table} WHERE customer_id = ?", [customer_id]).rowcount
                for table in ("rows", "customers", "feature_values", "dirty")
            )

        removed = self._write(write)
        if removed:
            self.compact()
        return removed

    def compact(self) -> None:
        """Rewrite the file (``VACUUM``) and empty the write-ahead log, so deleted rows' bytes are
        gone from both (the checkpoint waits, up to the busy timeout, for readers to move on)."""
        con = self._con()
        con.execute("VACUUM")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def add_erased_subjects(self, id_hashes) -> int:
        rows = [(h,) for h in sorted(set(id_hashes))]
        return self._write(lambda con: sum(con.execute("INSERT OR IGNORE INTO erased_subjects VALUES (?)", r).rowcount for r in rows))

    def erased_subjects(self) -> frozenset[str]:
        return frozenset(h for (h,) in self._con().execute("SELECT id_hash FROM erased_subjects"))

    def erased_count(self) -> int:
        return self._erased_now(self._con())

    def dump(self):
        con = self._con()
        tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            for row in con.execute(f'SELECT * FROM "{table}"').fetchall():
                yield table, "\t".join("" if v is None else str(v) for v in row)

    def search(self, text: str) -> list[str]:
        con = self._con()
        hits = [f"customer:{c}" for (c,) in con.execute(
            "SELECT customer_id FROM customers WHERE instr(customer_id, ?) > 0 OR instr(coalesce(home_country, ''), ?) > 0", [text, text])]
        hits += [f"row:{c}" for (c,) in con.execute(
            "SELECT DISTINCT customer_id FROM rows WHERE instr(customer_id, ?) > 0 OR instr(key, ?) > 0 OR instr(data, ?) > 0",
            [text, text, text])]
        hits += [f"value:{c}" for (c,) in con.execute(
            "SELECT customer_id FROM feature_values WHERE instr(customer_id, ?) > 0 OR instr(payload, ?) > 0", [text, text])]
        return sorted(hits)

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
