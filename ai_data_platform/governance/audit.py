"""The audit trail: an append-only, hash-chained log of what happened to the data.

One JSON object per line in ``$ADP_DATA_DIR/audit/audit.jsonl``. Every record names its action
(``materialization``, ``check``, ``erasure``, ``retention``, ...), the actor, and where known the
run id, asset, partition, row counts, code version and input data versions. Records hold no
personal data: a data subject appears only as :func:`subject_ref` (a keyed HMAC).

Tamper evidence. Each record carries ``seq`` (0, 1, 2, ...), ``prev_hash`` (the previous record's
``hash``; 64 zeros for the first) and ``hash`` = SHA-256 of the record's canonical JSON without
``hash``. Editing, deleting, inserting or reordering a record breaks the chain at that record;
:func:`verify` says where. Cutting records off the end leaves a valid shorter chain, so the head
(``seq`` and ``hash`` of the newest record) is also written to ``audit.head`` on every append;
ship that value somewhere the writer cannot edit (the platform records it in Dagster metadata) to
detect truncation too.

Appends from concurrent processes are serialized with an exclusive ``flock`` on ``audit.lock``:
read the head, write the line, fsync, update the head, release. Pure Python, no Dagster.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ai_data_platform import settings
from ai_data_platform.file_lock import locked
from ai_data_platform.governance import pii
from ai_data_platform.private_files import open_private, write_private

GENESIS_HASH = "0" * 64
AUDIT_FILE = "audit.jsonl"
HEAD_FILE = "audit.head"
LOCK_FILE = "audit.lock"
ACTOR_ENV_VAR = "ADP_ACTOR"

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
CHAIN_FIELDS = ("seq", "prev_hash", "hash")


class AuditError(Exception):
    """The audit log cannot be appended to or read as asked."""


def audit_dir() -> Path:
    """``$ADP_DATA_DIR/audit``, resolved at call time."""
    return settings.data_dir() / "audit"


def audit_path(directory: Path | None = None) -> Path:
    return (directory or audit_dir()) / AUDIT_FILE


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
    """The bytes a record's hash covers: sorted-key compact JSON of every field but ``hash``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


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


def _last_line(path: Path) -> bytes | None:
    """The last non-empty line of ``path``, or None when empty."""
    return next(_reversed_lines(path), None)


def _head_of(path: Path) -> tuple[int, str]:
    """(next seq, prev hash) from the log's last record."""
    line = _last_line(path)
    if line is None:
        return 0, GENESIS_HASH
    try:
        last = json.loads(line)
        return int(last["seq"]) + 1, str(last["hash"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"{path}: the last record is not a valid audit record ({exc}); run `adp audit verify`") from exc


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
    # Normalize through JSON once so the stored bytes and the hashed bytes are the same values.
    return json.loads(json.dumps(record, default=str))


def append(action: str, *, directory: Path | None = None, **fields: Any) -> dict:
    """Append one record and return it (with ``seq``, ``prev_hash`` and ``hash``).

    ``fields`` are the :data:`RECORD_FIELDS` (``actor`` defaults to :func:`default_actor`,
    ``ts`` to now); unknown keyword arguments are an error so a typo never goes unrecorded.
    """
    return append_many([(action, fields)], directory=directory)[0]


def append_many(entries: Iterable[tuple[str, Mapping[str, Any]]], *, directory: Path | None = None) -> list[dict]:
    """Append ``(action, fields)`` records in order, under one lock and one fsync; return them.

    Every record is validated before anything is written, so a bad entry appends nothing.
    """
    pending = [_new_record(action, dict(fields)) for action, fields in entries]
    if not pending:
        return []
    directory = directory or audit_dir()
    path = audit_path(directory)
    with locked(directory / LOCK_FILE):
        seq, prev = _head_of(path)
        lines = []
        for record in pending:
            record["seq"] = seq
            record["prev_hash"] = prev
            record["hash"] = prev = record_hash(record)
            seq += 1
            lines.append(json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
        with open_private(path, "ab") as fh:
            fh.write(b"".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
        _write_atomic(directory / HEAD_FILE, json.dumps({"seq": seq - 1, "hash": prev}).encode() + b"\n")
    return pending


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
            except ValueError as exc:
                raise AuditError(f"{path} line {number}: not JSON ({exc})") from exc


def records_newest_first(directory: Path | None = None) -> Iterator[dict]:
    """Every record from the newest to the oldest, read backwards (no verification)."""
    path = audit_path(directory)
    for line in _reversed_lines(path):
        try:
            yield json.loads(line)
        except ValueError as exc:
            raise AuditError(f"{path}: a line near the end is not JSON ({exc}); run `adp audit verify`") from exc


def head(directory: Path | None = None) -> dict | None:
    """The recorded head ``{"seq", "hash"}``, or None before the first record."""
    path = (directory or audit_dir()) / HEAD_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify`: ``ok``, how many records were read, and the first problem."""

    ok: bool
    records: int
    problem: str | None = None
    line: int | None = None

    def describe(self, path: Path) -> str:
        if self.ok:
            return f"{path}: {self.records} record(s), hash chain intact"
        return f"{path} line {self.line}: {self.problem}"


def verify(directory: Path | None = None, *, expected_head: Mapping[str, Any] | None = None) -> Verification:
    """Recompute the chain; report the first record that breaks it.

    ``expected_head`` (default: the ``audit.head`` file) is compared with the last record, which
    catches records cut off the end.
    """
    directory = directory or audit_dir()
    path = audit_path(directory)
    prev, count, line_no = GENESIS_HASH, 0, 0
    if path.exists():
        with path.open("rb") as fh:
            for line_no, raw in enumerate(fh, start=1):
                if not raw.strip():
                    return Verification(False, count, "empty line inside the log", line_no)
                try:
                    rec = json.loads(raw)
                except ValueError:
                    return Verification(False, count, "not a JSON record", line_no)
                if rec.get("seq") != count:
                    return Verification(False, count, f"seq {rec.get('seq')!r} where {count} was expected (a record was removed, inserted or reordered)", line_no)
                if rec.get("prev_hash") != prev:
                    return Verification(False, count, "prev_hash does not match the previous record's hash (a record before it was changed or removed)", line_no)
                if rec.get("hash") != record_hash(rec):
                    return Verification(False, count, f"hash does not match the record's content (record {count} was edited)", line_no)
                prev = rec["hash"]
                count += 1
    expected = expected_head if expected_head is not None else head(directory)
    if expected is not None:
        if count == 0 or expected.get("seq") != count - 1 or expected.get("hash") != prev:
            return Verification(
                False,
                count,
                f"the log ends at seq {count - 1} but the head says seq {expected.get('seq')} (records were cut off the end, or the head was changed)",
                line_no or None,
            )
    return Verification(True, count)
