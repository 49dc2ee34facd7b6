"""The audit trail: an append-only log of what happened to the data, hash-chained, MACed and anchored.

One JSON object per line in ``$ADP_DATA_DIR/audit/audit.jsonl``. Every record names its action
(``materialization``, ``check``, ``erasure``, ``retention``, ...), the actor, and where known the
run id, asset, partition, row counts, code version and input data versions. Records hold no
personal data: a data subject appears only as :func:`subject_ref` (a keyed HMAC).

Tamper evidence, in four layers:

- **Chain.** Each record carries ``seq`` (0, 1, 2, ...), ``prev_hash`` (the previous record's
  ``hash``; 64 zeros for the first) and ``hash`` = SHA-256 of its canonical JSON (every field but
  ``hash`` and ``mac``). Editing, deleting, inserting or reordering a record breaks the chain there.
- **MAC.** ``mac`` = HMAC-SHA256 of the same canonical JSON under the audit key
  (:func:`ai_data_platform.settings.audit_key`, ``ADP_AUDIT_KEY``), which is never stored beside
  the log. Anyone can recompute a SHA-256 chain; only a holder of the key can write a record
  whose MAC verifies, so a forged record, or an edit with the chain recomputed, is caught.
- **Trail.** The first record of a log draws a random ``trail_id`` and every later record repeats
  it, under the hash and the MAC: it names the trail a log is, wherever its file lies.
- **Anchor.** A log cut at its end, or rolled back together with ``audit.head`` to an older copy,
  is still a valid chain of valid MACs. So every append also records its new head (``trail_id``,
  ``seq``, ``hash``, ``mac``) with an :class:`Anchor` kept where the log's writer cannot rewrite it
  alone (Dagster's storage: :mod:`ai_data_platform.governance.audit_anchor`), under the name of
  the deployment's trail (:func:`ai_data_platform.settings.audit_trail`, never the log's path: a
  log moved, linked or copied with its storage is the same trail, a log put in its place is not).
  :func:`verify`, given the anchor, requires the log to be the anchored trail and its newest record
  to be the newest anchored head. ``audit.head`` holds the newest ``seq`` and ``hash`` beside the
  log, a local cross-check only.

An append holds an exclusive ``flock`` on ``audit.lock`` (concurrent processes form one chain),
reads the newest head anchored under the trail's name, and compares the log with it:

- the log is another trail (its records name another ``trail_id``), ends before the anchored
  head, or holds another record there: the trail was replaced, or records were removed or
  rewritten (or a second copy of the data directory appends to the same trail in a shared
  storage). Nothing is appended (:class:`AuditError`) and ``adp audit verify`` names the loss.
- nothing is anchored under the name yet (the storage's first use): the log, whole, must verify
  from its first record (an empty one starts a new trail), and its records are anchored late as
  below. An anchored head is never replaced by a gap record: one only covers records after it.
- the log holds records after the anchored head (an earlier append could not reach the anchor, or
  died before it): each must verify (chain and MAC), else nothing is appended; an
  ``audit_anchor_gap`` record naming them is written first, and the new head anchors them all.
- the anchor cannot be reached: the records are written all the same (chained and MACed, so
  nothing is lost), then :class:`AuditAnchorError` is raised; :func:`verify` reports them as not
  anchored until an append reaches the anchor and records the gap.

It then writes the records, fsyncs, writes ``audit.head`` and records the new head with the anchor.
Pure Python: the anchor is passed in (by default, the Dagster storage of this data directory).
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import json
import os
import re
import secrets
import socket
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from ai_data_platform import settings
from ai_data_platform.file_lock import locked
from ai_data_platform.governance import pii
from ai_data_platform.private_files import open_private, write_private

GENESIS_HASH = "0" * 64
AUDIT_FILE = "audit.jsonl"
HEAD_FILE = "audit.head"
LOCK_FILE = "audit.lock"
ACTOR_ENV_VAR = "ADP_ACTOR"
#: The action of the record that names records anchored late (see the module docstring).
GAP_ACTION = "audit_anchor_gap"

# The fields a record may carry besides the chain fields; anything else goes into ``details``.
RECORD_FIELDS = (
    "action",
    "actor",
    "ts",
    "run_id",
    "asset",
    "partition",
    "row_counts",
    "code_version",
    "input_data_versions",
    "status",
    "details",
)
CHAIN_FIELDS = ("trail_id", "seq", "prev_hash", "hash", "mac")
_UNHASHED = ("hash", "mac")
_TRAIL_ID = re.compile(r"[0-9a-f]{32}")


class AuditError(Exception):
    """The audit log cannot be appended to or read as asked."""


class AuditAnchorError(AuditError):
    """Records were written to the log (chained and MACed) but their head could not be anchored."""

    def __init__(self, message: str, records: list[dict]) -> None:
        super().__init__(message)
        self.records = records


class AnchorUnavailable(Exception):
    """An :class:`Anchor` cannot be read or written (its storage is unreachable)."""


@dataclass(frozen=True)
class Head:
    """The newest record of a trail as an anchor holds it: its seq, hash and MAC, and the trail's id."""

    seq: int
    hash: str
    mac: str
    trail_id: str

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Head:
        fields = (record.get(name) for name in ("seq", "hash", "mac", "trail_id"))
        return cls(*fields)  # type: ignore[arg-type]


class Anchor(Protocol):
    """Where the head of every append is recorded, out of reach of the log's writer. ``trail`` is the
    name the deployment's trail is anchored under (:func:`trail_name`); the newest head recorded
    under it is the one that counts. Both methods raise :class:`AnchorUnavailable` when the
    anchor's storage cannot be reached."""

    where: str  # how messages name it ("Dagster")

    def newest(self, trail: str) -> Head | None: ...

    def record(self, trail: str, head: Head) -> None: ...


def audit_dir() -> Path:
    """``$ADP_DATA_DIR/audit``, resolved at call time."""
    return settings.data_dir() / "audit"


def audit_path(directory: Path | None = None) -> Path:
    return (directory or audit_dir()) / AUDIT_FILE


def trail_name() -> str:
    """How anchors name this deployment's trail: ``ADP_AUDIT_TRAIL`` (:func:`ai_data_platform.settings.audit_trail`)."""
    return settings.audit_trail()


def new_trail_id() -> str:
    """A random id for a trail that starts (its first record), 128 bits as 32 hex digits."""
    return secrets.token_hex(16)


def default_actor() -> str:
    """Who acts: ``ADP_ACTOR`` when set (a service account, a ticket), else ``user@host``."""
    explicit = os.environ.get(ACTOR_ENV_VAR, "").strip()
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def subject_ref(customer_id: str, key: str | None = None) -> str:
    """A data subject as the audit log names them: ``subject:`` + HMAC-SHA256 of the id.

    Keyed with the platform's PII key, so the log identifies a subject consistently (erasing twice
    shows twice) without holding the id itself.
    """
    return "subject:" + pii.hmac_hex(key or settings.pii_hmac_key(), str(customer_id))


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's hash and MAC cover: sorted-key compact JSON of every field but ``hash`` and ``mac``."""
    body = {k: v for k, v in record.items() if k not in _UNHASHED}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def record_mac(record: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical_bytes(record), hashlib.sha256).hexdigest()


def encoded_line(record: Mapping[str, Any]) -> bytes:
    """A record as the log holds it: one line of sorted-key compact JSON."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def record_problem(record: Any, seq: int, prev_hash: str, key: bytes, trail_id: str | None = None) -> str | None:
    """Why ``record`` is not a valid record number ``seq`` after a record hashed ``prev_hash`` of the
    trail ``trail_id`` (None for a first record, which starts a trail), or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("seq") != seq or isinstance(record.get("seq"), bool):
        return f"seq {record.get('seq')!r} where {seq} was expected (a record was removed, inserted or reordered)"
    if record.get("prev_hash") != prev_hash:
        return "prev_hash does not match the previous record's hash (a record before it was changed or removed)"
    if record.get("hash") != record_hash(record):
        return f"hash does not match the record's content (record {seq} was edited)"
    mac = record.get("mac")
    if not isinstance(mac, str):
        return f"record {seq} carries no MAC (forged, or written before records were MACed)"
    if not hmac.compare_digest(mac, record_mac(record, key)):
        return (f"the MAC of record {seq} does not verify under {settings.AUDIT_KEY_VAR} (the record was forged or "
                "edited, or the log was written under another key)")
    return _trail_problem(record, seq, trail_id)


def _trail_problem(record: dict, seq: int, trail_id: str | None) -> str | None:
    found = record.get("trail_id")
    if not isinstance(found, str) or not _TRAIL_ID.fullmatch(found):
        return f"record {seq} names no trail (written before records named their trail_id, or not by the audit writer)"
    if trail_id is not None and found != trail_id:
        return (f"record {seq} names trail {found} but the log's first record names trail {trail_id} (records of "
                "another trail were put into this one)")
    return None


def _reversed_lines(path: Path) -> Iterator[bytes]:
    """The non-empty lines of ``path`` from the last to the first, read backwards in blocks."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        position = fh.tell()
        pending = b""
        while position > 0:
            step = min(65536, position)
            position -= step
            fh.seek(position)
            lines = (fh.read(step) + pending).split(b"\n")
            pending = lines[0]  # may continue in the block before
            for line in reversed(lines[1:]):
                if line.strip():
                    yield line
        if pending.strip():
            yield pending


def _ends_cleanly(path: Path) -> bool:
    """Whether the log is empty or ends with a newline (a write cut short leaves half a line)."""
    if not path.exists() or path.stat().st_size == 0:
        return True
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def _write_atomic(path: Path, data: bytes) -> None:
    write_private(path, data)


def _new_record(action: str, fields: dict[str, Any]) -> dict[str, Any]:
    if not action or not isinstance(action, str):
        raise AuditError("an audit record needs an action")
    unknown = sorted(set(fields) - set(RECORD_FIELDS))
    if unknown:
        raise AuditError(f"unknown audit record field(s) {unknown}; allowed: {list(RECORD_FIELDS)}")
    fields = dict(fields)
    record: dict[str, Any] = {"action": action, "actor": fields.pop("actor", None) or default_actor(), "ts": fields.pop("ts", None) or _utc_now()}
    record.update({k: v for k, v in fields.items() if v is not None})
    # Normalize through JSON once so the stored bytes and the hashed bytes are the same values; a
    # lone surrogate (an undecodable byte in an error message or a file name) becomes "?".
    return json.loads(json.dumps(record, default=str, ensure_ascii=False).encode("utf-8", "replace"))


def _anchor_in_use(anchor: Anchor | None) -> AbstractContextManager[Anchor]:
    """``anchor``, or the Dagster storage of this data directory (opened for the block)."""
    if anchor is not None:
        return nullcontext(anchor)
    from ai_data_platform.governance.audit_anchor import data_dir_anchor  # the Dagster layer, loaded on use

    return data_dir_anchor()


def append(action: str, *, directory: Path | None = None, anchor: Anchor | None = None, **fields: Any) -> dict:
    """Append one record, anchor it, and return it (with ``seq``, ``prev_hash``, ``hash`` and ``mac``).

    ``fields`` are the :data:`RECORD_FIELDS` (``actor`` defaults to :func:`default_actor`,
    ``ts`` to now); unknown keyword arguments are an error so a typo never goes unrecorded.
    """
    return append_many([(action, fields)], directory=directory, anchor=anchor)[0]


def append_many(
    entries: Iterable[tuple[str, Mapping[str, Any]]], *, directory: Path | None = None, anchor: Anchor | None = None
) -> list[dict]:
    """Append ``(action, fields)`` records in order, under one lock and one fsync, anchor their
    head (default anchor: the Dagster storage of this data directory); return them.

    Every record is validated before anything is written, so a bad entry appends nothing. Raises
    :class:`AuditError` (nothing written) when the log does not match its anchor, and
    :class:`AuditAnchorError` (written, not anchored) when the anchor cannot be reached.
    """
    pending = [_new_record(action, dict(fields)) for action, fields in entries]
    if not pending:
        return []
    key = settings.audit_key()
    directory = directory or audit_dir()
    with _unreadable_as_audit_error(directory), locked(directory / LOCK_FILE), _anchor_in_use(anchor) as store:
        _append_locked(directory, pending, store, key)
    return pending


def anchor_pending(*, directory: Path | None = None, anchor: Anchor | None = None) -> Head | None:
    """Anchor records the log holds after its anchored head, recording them as anchored late (an
    ``audit_anchor_gap`` record); return the anchored head. Raises as :func:`append_many` does."""
    key = settings.audit_key()
    directory = directory or audit_dir()
    with _unreadable_as_audit_error(directory), locked(directory / LOCK_FILE), _anchor_in_use(anchor) as store:
        return _append_locked(directory, [], store, key)


@contextmanager
def _unreadable_as_audit_error(directory: Path) -> Iterator[None]:
    """A file of the log that cannot be read, written or locked (a directory, a dangling link, a
    full disk, JSON nested past the parser's depth) as an AuditError naming it."""
    try:
        yield
    except OSError as exc:
        raise AuditError(f"{exc.filename or directory}: {exc.strerror or exc}; run `adp audit verify`") from exc
    except RecursionError as exc:
        raise AuditError(f"{audit_path(directory)}: a record is nested too deep to read; run `adp audit verify`") from exc


def _append_locked(directory: Path, pending: list[dict], store: Anchor, key: bytes) -> Head | None:
    """The body of an append, under the log's lock (see the module docstring); the head anchored."""
    path, trail = audit_path(directory), trail_name()
    if not _ends_cleanly(path):
        raise AuditError(f"{path}: the last line is incomplete (a write was cut short, or the file was cut); "
                         "nothing appended: run `adp audit verify`")
    try:
        anchored: Head | None = store.newest(trail)
    except AnchorUnavailable as exc:
        unreachable: AnchorUnavailable | None = exc
        late: Late | None = None
        last = _last_record(path)
    else:
        unreachable = None
        late = _after_anchor(path, anchored, key, store.where, trail)
        last = late.last if late else (None if anchored is None else _head_as_record(anchored))
    written = ([_gap_record(late, anchored)] if late else []) + pending
    if not written:
        if unreachable is not None:
            raise AuditAnchorError(f"{path}: cannot read the head recorded in {store.where} ({unreachable})", [])
        return anchored
    if last is None:  # the first record: a new trail starts
        seq, prev, trail_id = 0, GENESIS_HASH, new_trail_id()
    else:
        seq, prev, trail_id = last["seq"] + 1, last["hash"], last["trail_id"]
    for record in written:
        record.update(trail_id=trail_id, seq=seq, prev_hash=prev)
        record["hash"] = prev = record_hash(record)
        record["mac"] = record_mac(record, key)
        seq += 1
    lines = [encoded_line(record) for record in written]
    with open_private(path, "ab") as fh:
        fh.write(b"".join(lines))
        fh.flush()
        os.fsync(fh.fileno())
    head = Head.of(written[-1])
    _write_atomic(directory / HEAD_FILE, json.dumps({"seq": head.seq, "hash": head.hash}).encode() + b"\n")
    try:
        if unreachable is not None:
            raise unreachable
        store.record(trail, head)
    except AnchorUnavailable as exc:
        raise AuditAnchorError(
            f"{path}: record(s) seq {written[0]['seq']}..{head.seq} written but not anchored in {store.where} ({exc}); "
            "`adp audit verify` reports them until an append reaches it and records the gap",
            pending,
        ) from exc
    return head


def _head_as_record(head: Head) -> dict:
    return {"seq": head.seq, "hash": head.hash, "trail_id": head.trail_id}


def _last_record(path: Path) -> dict | None:
    """The log's last record (unverified: the anchor that would vouch for it is out of reach)."""
    line = next(_reversed_lines(path), None)
    if line is None:
        return None
    try:
        last = json.loads(line)
        found = {"seq": int(last["seq"]), "hash": str(last["hash"]), "trail_id": last.get("trail_id")}
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise AuditError(f"{path}: the last record is not a valid audit record ({exc}); run `adp audit verify`") from exc
    if _named_trail(found) is None:
        raise AuditError(f"{path}: the last record names no trail; nothing appended: run `adp audit verify`")
    return found


@dataclass(frozen=True)
class Late:
    """Records a log holds after its anchored head: the first one's seq and the last one."""

    first_seq: int
    last: dict


def _named_trail(record: Any) -> str | None:
    """The trail id a record names, when it names one in the writer's form (unverified)."""
    found = record.get("trail_id") if isinstance(record, dict) else None
    return found if isinstance(found, str) and _TRAIL_ID.fullmatch(found) else None


def _trail_of(record: Any) -> str:
    """How messages name the trail a record says it belongs to."""
    found = _named_trail(record)
    return "no trail" if found is None else f"trail {found}"


def _another_trail(where: str, trail: str, anchored: Head) -> str:
    return (f"{where} anchors trail {anchored.trail_id} (head seq {anchored.seq}) under the name {trail!r}: the trail "
            f"was replaced by another log, or another data directory anchors its own trail in the same storage under "
            f"the same {settings.AUDIT_TRAIL_VAR}")


def _after_anchor(path: Path, anchored: Head | None, key: bytes, where: str, trail: str) -> Late | None:
    """The records after the anchored head, each verified, or None; AuditError when the log is
    another trail, does not hold the anchored head as its record of that seq, or a record after it
    does not verify."""
    if anchored is None:
        return _verified_from_genesis(path, key, where)
    newest_first: list[Any] = []
    for line in _reversed_lines(path):  # back to the anchored head: a few records at most
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            problem = "a line near the end is not JSON"
            raise AuditError(f"{path}: {problem}; nothing appended: run `adp audit verify`") from None
        newest_first.append(record)
        seq = record.get("seq") if isinstance(record, dict) else None
        if isinstance(seq, int) and not isinstance(seq, bool) and seq <= anchored.seq:
            break
    chain = newest_first[::-1]
    found = chain[0] if chain and isinstance(chain[0], dict) else {}
    newest_trail = _named_trail(chain[-1]) if chain else None
    if Head.of(found) != anchored and newest_trail not in (None, anchored.trail_id):  # a log of another trail
        raise AuditError(f"{path}: the log's newest record names trail {newest_trail} but "
                         f"{_another_trail(where, trail, anchored)}; nothing appended: run `adp audit verify`")
    if found.get("seq") != anchored.seq:
        ends = f"ends at seq {chain[-1].get('seq')!r}" if chain and isinstance(chain[-1], dict) else "holds no records"
        raise AuditError(f"{path}: {where} recorded head seq {anchored.seq} but the log {ends}: records were removed "
                         "or the log was replaced; nothing appended: run `adp audit verify`")
    if Head.of(found) != anchored:
        raise AuditError(f"{path}: record seq {anchored.seq} is not the one recorded in {where} (the log was "
                         "rewritten, or a copy of this data directory appends to the same trail); nothing appended: "
                         "run `adp audit verify`")
    seq, prev = anchored.seq + 1, anchored.hash
    for record in chain[1:]:
        _refuse_unless_valid(path, record, seq, prev, key, f"after the head recorded in {where}", anchored.trail_id)
        seq, prev = seq + 1, record["hash"]
    return Late(anchored.seq + 1, chain[-1]) if len(chain) > 1 else None


def _verified_from_genesis(path: Path, key: bytes, where: str) -> Late | None:
    """A log none of whose records is anchored yet, read from its start and verified, or None when empty."""
    seq, prev, last, trail_id = 0, GENESIS_HASH, None, None
    for record in records(path.parent):
        context = f"of a log nothing of which is recorded in {where}"
        _refuse_unless_valid(path, record, seq, prev, key, context, trail_id)
        seq, prev, last, trail_id = seq + 1, record["hash"], record, record["trail_id"]
    return None if last is None else Late(0, last)


def _refuse_unless_valid(
    path: Path, record: Any, seq: int, prev: str, key: bytes, context: str, trail_id: str | None
) -> None:
    problem = record_problem(record, seq, prev, key, trail_id)
    if problem:
        raise AuditError(f"{path}: record seq {seq}, {context}: {problem}; nothing appended: run `adp audit verify`")


def _gap_record(late: Late, anchored: Head | None) -> dict:
    details = {
        "first_seq": late.first_seq,
        "last_seq": late.last["seq"],
        "anchored_seq": None if anchored is None else anchored.seq,
    }
    return _new_record(GAP_ACTION, {"status": "anchored_late", "details": details})


def records(directory: Path | None = None) -> Iterator[dict]:
    """Every record in order (no verification; see :func:`verify`)."""
    path = audit_path(directory)
    if not path.exists():
        return
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise AuditError(f"{path} line {number}: not JSON ({exc})") from exc


def records_newest_first(directory: Path | None = None) -> Iterator[dict]:
    """Every record from the newest to the oldest, read backwards (no verification)."""
    path = audit_path(directory)
    for line in _reversed_lines(path):
        try:
            yield json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise AuditError(f"{path}: a line near the end is not JSON ({exc}); run `adp audit verify`") from exc


def head(directory: Path | None = None) -> dict | None:
    """The head written beside the log ``{"seq", "hash"}``, or None before the first record."""
    path = (directory or audit_dir()) / HEAD_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify`: ``ok``, how many records were read, the first problem (and
    its line), the anchored head the log matched (when checked against an anchor), notes on
    records anchored late, and whether the check could be made at all."""

    ok: bool
    records: int
    problem: str | None = None
    line: int | None = None
    anchored_seq: int | None = None
    notes: tuple[str, ...] = ()
    checked: bool = True  # False: the anchor was out of reach, so the log could not be checked against it

    def describe(self, path: Path) -> str:
        if self.ok:
            return f"{path}: {self.records} record(s), hash chain intact, every MAC valid"
        return f"{path}{f' line {self.line}' if self.line else ''}: {self.problem}"


def verify(directory: Path | None = None, *, anchor: Anchor | None = None) -> Verification:
    """Check the chain, every record's MAC and ``audit.head``; given ``anchor``, also that the
    log's newest record is the newest head it recorded. Reports the first problem.

    Holds the log's lock (shared) so that a concurrent append is seen whole or not at all.
    """
    key = settings.audit_key()
    directory = directory or audit_dir()
    guard = locked(directory / LOCK_FILE, shared=True) if directory.exists() else nullcontext()
    with _unreadable_as_audit_error(directory), guard:
        return _verify_locked(directory, anchor, key)


def _verify_locked(directory: Path, anchor: Anchor | None, key: bytes) -> Verification:
    path, trail = audit_path(directory), trail_name()
    anchored, unreachable = None, None
    if anchor is not None:
        try:
            anchored = anchor.newest(trail)
        except AnchorUnavailable as exc:
            unreachable = str(exc)
    prev, count, line_no, last, at_anchor, gaps = GENESIS_HASH, 0, 0, None, None, []
    trail_id: str | None = None  # the trail of the log's first record, which every later one must name
    if path.exists():
        with path.open("rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                if not raw.endswith(b"\n"):
                    problem = "the last line is incomplete (a write was cut short, or the file was cut)"
                    return Verification(False, count, problem, line_no)
                if not raw.strip():
                    return Verification(False, count, "empty line inside the log", line_no)
                try:
                    rec = json.loads(raw)
                except (ValueError, RecursionError):
                    return Verification(False, count, "not a JSON record", line_no)
                problem = record_problem(rec, count, prev, key, trail_id)
                if not problem and raw != encoded_line(rec):
                    problem = (f"record {count} is not written as the audit writer writes it (re-encoded: repeated "
                               "keys, spacing or key order)")
                if problem:
                    return Verification(False, count, problem, line_no)
                if rec.get("action") == GAP_ACTION:
                    gaps.append(_gap_note(rec))
                if anchored is not None and count == anchored.seq:
                    at_anchor = rec
                prev, last, count, trail_id = rec["hash"], rec, count + 1, rec["trail_id"]
    last_line, notes = line_no or None, tuple(gaps)
    if anchor is not None and unreachable is None:  # the anchor first: it names what was lost
        problem = _anchor_problem(anchored, last, at_anchor, count, anchor.where, trail)
        if problem:
            return Verification(False, count, problem, last_line, notes=notes)
    problem = _head_file_problem(directory, last, count)
    if problem:
        return Verification(False, count, problem, last_line, notes=notes)
    if anchor is None:
        return Verification(True, count, notes=notes)
    if unreachable is not None:
        problem = f"cannot read the head recorded in {anchor.where} ({unreachable}): the log is not verified against it"
        return Verification(False, count, problem, notes=notes, checked=False)
    return Verification(True, count, anchored_seq=None if anchored is None else anchored.seq, notes=notes)


def _head_file_problem(directory: Path, last: dict | None, count: int) -> str | None:
    try:
        written = head(directory)
    except (ValueError, OSError, RecursionError):
        return f"{HEAD_FILE} is not a head record (it was changed)"
    if written is None:
        return None if last is None else f"{HEAD_FILE} is missing but the log holds {count} record(s) (it was removed)"
    if not isinstance(written, dict):
        return f"{HEAD_FILE} is not a head record (it was changed)"
    if last is None:
        return (f"the log holds no records but {HEAD_FILE} says seq {written.get('seq')!r} (the log was removed or "
                "emptied)")
    if written.get("seq") != last["seq"] or written.get("hash") != last["hash"]:
        return (f"the log ends at seq {last['seq']} but {HEAD_FILE} says seq {written.get('seq')!r} (records were cut "
                "off the end, or the head was changed)")
    return None


def _anchor_problem(
    anchored: Head | None, last: dict | None, at_anchor: dict | None, count: int, where: str, trail: str
) -> str | None:
    if anchored is None:
        if last is None:
            return None
        return (f"no head recorded in {where} under the trail name {trail!r}: the log's {count} record(s) "
                f"(seq 0..{count - 1}) are not anchored; the next append records them as anchored late")
    if last is not None and last["trail_id"] != anchored.trail_id:
        return f"the log is {_trail_of(last)} but {_another_trail(where, trail, anchored)}"
    if last is None or anchored.seq > last["seq"]:
        ends = "the log holds no records" if last is None else f"the log ends at seq {last['seq']}"
        missing = anchored.seq + 1 - count
        return (f"{where} recorded head seq {anchored.seq} but the log has no such record: the newest {missing} "
                f"record(s) are missing ({ends}): they were removed, or another data directory (a copy of this one, "
                f"or another deployment) wrote them to the same storage under the same {settings.AUDIT_TRAIL_VAR}")
    if at_anchor is None or Head.of(at_anchor) != anchored:
        return (f"record seq {anchored.seq} is not the one recorded in {where} (the log was rewritten, or a copy of "
                "this data directory appends to the same trail)")
    if anchored.seq < last["seq"]:
        return (f"record(s) seq {anchored.seq + 1}..{last['seq']} are not anchored in {where} (written while it was "
                "unreachable, or not by the audit writer); the next append records them as anchored late")
    return None


def _gap_note(record: dict) -> str:
    details = record.get("details") or {}
    return (f"record(s) seq {details.get('first_seq')}..{details.get('last_seq')} were not anchored when written "
            f"(the anchor was out of reach, or the writer died first); noted at seq {record.get('seq')} "
            f"({record.get('ts')})")
