"""The event stream: one interface, two transports.

A record is an opaque event payload (the bytes a producer sent, possibly malformed) plus what
the transport adds when it appends it: a **position** (an int, strictly increasing in append
order: the offset consumers commit) and **received_at** (the collector's receipt time, naive
UTC, strictly increasing with the position, so "everything received by T" is a prefix).

* ``FileSegmentTransport`` (embedded default): append-only segment files under
  ``$ADP_DATA_DIR/stream/<topic>/``, each line ``<received_at µs>\\t<payload>\\n``, named by the
  position of their first record (``00000000000000000000.log``), rolled every
  ``SEGMENT_RECORDS``. Appends are serialized by an ``flock`` on ``.lock``; ``.head`` records
  the next position, the last stamp and the active segment's size, so a producer killed mid-line
  is repaired (the partial line truncated) by the next append. Readers only see complete lines.
* ``RedisStreamTransport`` (``streaming/redis_backend.py``): a Redis Stream read through a
  consumer group.

Records are retained until every sink has committed past them (``release``).

**Right to erasure** (``erase``): a data subject's retained records are removed so that every
other record keeps its position. A segment line is replaced by a *tombstone* of the same byte
length, ``<received_at µs>~<spaces>\n`` (the transport itself writes a tab after the stamp, so no
payload can look like one); readers return it as a record with ``erased=True`` and no payload, so
consumers commit past it without applying or quarantining anything. A Redis entry is deleted
(``XDEL``); its id is never reused.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from ai_data_platform.file_lock import locked
from ai_data_platform.private_files import make_private_dir, open_private

SEGMENT_RECORDS = 100_000
POLL_SECONDS = 0.005
_EPOCH = datetime(1970, 1, 1)
TOMBSTONE_MARK = b"~"  # in place of the tab after the stamp: an erased record

PayloadMatch = Callable[[bytes], bool]  # erasure: does this payload belong to the subject?


def to_us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def now_us() -> int:
    return time.time_ns() // 1000


def parse_line(line: bytes) -> tuple[int, bytes | None]:
    """(receipt µs, payload) of a segment line without its newline; payload None: a tombstone."""
    stamp, tab, payload = line.partition(b"\t")
    if tab:
        return int(stamp), payload
    stamp, mark, _ = line.partition(TOMBSTONE_MARK)
    if not mark:
        raise ValueError(f"not a stream segment line: {line[:40]!r}")
    return int(stamp), None


def tombstone(line: bytes) -> bytes:
    """The tombstone replacing a segment line (without its newline): its stamp, same length."""
    stamp, _, payload = line.partition(b"\t")
    return stamp + TOMBSTONE_MARK + b" " * len(payload)


@dataclass(frozen=True)
class Record:
    position: int  # strictly increasing in append order: the committed offset
    received_at: datetime  # collector receipt time (naive UTC), strictly increasing
    payload: bytes  # the event as sent (b"" for an erased record)
    segment: str  # where it is stored: segment file or stream key (lineage)
    erased: bool = False  # a tombstone: its subject was erased; nothing to apply or land


class Transport(ABC):
    """Append, read in order from an offset, acknowledge, re-read retained records, release."""

    label: str  # e.g. "file/events" or "redis/adp:stream:events": lineage in the warehouse

    @abstractmethod
    def append(self, payloads: Sequence[bytes]) -> list[Record]:
        """Append payloads (in order); stamps position and received_at."""

    @abstractmethod
    def read(self, after: int | None, limit: int, block_seconds: float = 0.0) -> list[Record]:
        """The primary (online) consumer's read: records with position > ``after``, in order."""

    def ack(self, records: Sequence[Record]) -> None:
        """Called after the records' effects were committed (consumer-group transports)."""

    @abstractmethod
    def scan(self, after: int | None, limit: int) -> list[Record]:
        """A secondary sink's re-read of retained records with position > ``after``."""

    @abstractmethod
    def release(self, upto: int, received_before: datetime) -> int:
        """Drop records at or below ``upto`` (every sink committed them) received before
        ``received_before`` (the retention period passed); returns how many."""

    @abstractmethod
    def end_position(self) -> int | None:
        """Position of the last retained record (None: empty)."""

    @abstractmethod
    def erase(self, matches: PayloadMatch) -> int:
        """Right to erasure: remove every retained record whose payload ``matches``; every other
        record keeps its position, so committed offsets stay valid. Returns how many."""

    def close(self) -> None:
        pass


class FileSegmentTransport(Transport):
    def __init__(self, root: Path, topic: str = "events", clock=now_us):
        if not topic.isidentifier():
            raise ValueError(f"topic must be an identifier, got {topic!r}")
        self.dir = make_private_dir(Path(root) / topic)  # events hold customer ids: owner-only
        self.label = f"file/{topic}"
        self.clock = clock  # µs since the epoch (UTC): the receipt stamp
        # per reader ("read": the online consumer, "scan": a secondary sink): where it stopped,
        # (next position, segment, byte offset), so reading on needs no re-scan of the segment
        self._cursors: dict[str, tuple[int, Path, int]] = {}

    # ------------------------------------------------------------ appending

    def _segments(self) -> list[tuple[int, Path]]:
        return sorted((int(p.stem), p) for p in self.dir.glob("*.log") if p.stem.isdigit())

    def _head(self) -> dict:
        path = self.dir / ".head"
        head = json.loads(path.read_text()) if path.exists() else {"next": 0, "segment": 0, "size": 0, "last_us": 0}
        segment = self.dir / f"{head['segment']:020d}.log"
        actual = segment.stat().st_size if segment.exists() else 0
        if actual != head["size"]:  # an append died after writing lines, before .head: recount
            data = segment.read_bytes() if segment.exists() else b""
            complete = data[: data.rfind(b"\n") + 1]
            if len(complete) != len(data):
                with open(segment, "r+b") as fh:
                    fh.truncate(len(complete))
            lines = complete.split(b"\n")[:-1]
            head["next"] = head["segment"] + len(lines)
            head["size"] = len(complete)
            if lines:
                head["last_us"] = parse_line(lines[-1])[0]
        return head

    def append(self, payloads: Sequence[bytes]) -> list[Record]:
        for p in payloads:
            if b"\n" in p:
                raise ValueError("a stream payload must be one line (no newline)")
        with locked(self.dir / ".lock"):
            head = self._head()
            records: list[Record] = []
            if head["next"] - head["segment"] >= SEGMENT_RECORDS:
                head["segment"], head["size"] = head["next"], 0
            segment = self.dir / f"{head['segment']:020d}.log"
            stamp = max(self.clock(), head["last_us"] + 1)
            chunks = []
            for p in payloads:
                chunks.append(b"%d\t%s\n" % (stamp, p))
                records.append(Record(head["next"], from_us(stamp), bytes(p), segment.name))
                head["next"] += 1
                head["last_us"] = stamp
                stamp += 1
            data = b"".join(chunks)
            with open_private(segment, "ab") as fh:
                fh.write(data)
            head["size"] += len(data)
            tmp = self.dir / ".head.tmp"
            with open_private(tmp, "wb") as fh:
                fh.write(json.dumps(head).encode())
            os.replace(tmp, self.dir / ".head")
        return records

    def end_position(self) -> int | None:
        with locked(self.dir / ".lock", shared=True):
            nxt = self._head()["next"] if (self.dir / ".head").exists() else 0
        return nxt - 1 if nxt else None

    # ------------------------------------------------------------ reading

    def _locate(self, position: int) -> tuple[Path, int] | None:
        """The segment holding ``position`` and the byte offset of its line."""
        segments = self._segments()
        start_path = None
        for start, path in segments:
            if start <= position:
                start_path = (start, path)
        if start_path is None:
            if segments and segments[0][0] > position:
                raise LookupError(f"{self.label}: position {position} was released (oldest is {segments[0][0]})")
            return None
        start, path = start_path
        offset = 0
        with open(path, "rb") as fh:
            for _ in range(position - start):
                line = fh.readline()
                if not line.endswith(b"\n"):
                    return None
                offset += len(line)
        return path, offset

    def _read_from(self, reader: str, position: int, limit: int) -> list[Record]:
        cursor = self._cursors.get(reader)
        if cursor is not None and cursor[0] == position and cursor[1].exists():
            _, path, offset = cursor
        else:
            found = self._locate(position)
            if found is None:
                return []
            path, offset = found
        records: list[Record] = []
        while len(records) < limit:
            with open(path, "rb") as fh:
                fh.seek(offset)
                for line in fh:
                    if not line.endswith(b"\n"):
                        break
                    stamp, payload = parse_line(line[:-1])
                    if payload is None:
                        records.append(Record(position, from_us(stamp), b"", path.name, erased=True))
                    else:
                        records.append(Record(position, from_us(stamp), payload, path.name))
                    position += 1
                    offset += len(line)
                    if len(records) >= limit:
                        break
            if len(records) >= limit:
                break
            following = self.dir / f"{position:020d}.log"  # the segment rolled exactly here
            if following.exists() and following != path:
                path, offset = following, 0
                continue
            break
        self._cursors[reader] = (position, path, offset)
        return records

    def read(self, after: int | None, limit: int, block_seconds: float = 0.0) -> list[Record]:
        deadline = time.monotonic() + block_seconds
        while True:
            records = self._read_from("read", 0 if after is None else after + 1, limit)
            if records or time.monotonic() >= deadline:
                return records
            time.sleep(POLL_SECONDS)

    def scan(self, after: int | None, limit: int) -> list[Record]:
        return self._read_from("scan", 0 if after is None else after + 1, limit)

    def erase(self, matches: PayloadMatch) -> int:
        """Replace the matching records' lines by tombstones of the same length, segment by
        segment: the rewritten segment replaces the old one atomically (``os.replace``) under the
        append lock, keeps its modification time (``release`` ages segments by it), and every
        byte offset, so readers' cursors and committed positions stay valid. A torn last line is
        repaired first (as the next append would)."""
        erased = 0
        with locked(self.dir / ".lock"):
            self._head()  # truncates a partial line a killed producer left
            for stale in self.dir.glob("*.erasing"):  # an erasure killed before its os.replace
                stale.unlink()
            for _, path in self._segments():
                *lines, tail = path.read_bytes().split(b"\n")  # only \n ends a line (a payload may hold \r)
                changed = 0
                for i, line in enumerate(lines):
                    _, payload = parse_line(line)
                    if payload is not None and matches(payload):
                        lines[i] = tombstone(line)
                        changed += 1
                if not changed:
                    continue
                stat = path.stat()
                tmp = path.with_name(path.name + ".erasing")
                with open_private(tmp, "wb") as fh:
                    fh.write(b"".join(line + b"\n" for line in lines) + tail)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
                os.replace(tmp, path)
                erased += changed
        return erased

    def release(self, upto: int, received_before: datetime) -> int:
        """Delete whole segments whose every record is at or below ``upto`` and which were last
        appended to before ``received_before`` (never the active one)."""
        segments = self._segments()
        dropped = 0
        cutoff = to_us(received_before) / 1e6
        for (start, path), (following, _) in zip(segments, segments[1:]):
            if following - 1 <= upto and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                dropped += following - start
        return dropped
