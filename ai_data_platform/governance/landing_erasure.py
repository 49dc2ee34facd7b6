"""Rewrite landing files without a data subject's records, in every landing zone (the shared
one and each region's, ``sources/landing.LandingZones``): whichever regional file holds them.

A record is the subject's when its ``customer_id`` is the subject's id, or (CRM tables) its email
normalizes to one of the subject's emails; a record that cannot be split into fields (a truncated
CSV row, a cut-off JSON line) is the subject's when its text contains the id (as a whole token)
or one of the emails. Every other record keeps its exact bytes (CSV and JSON lines are rewritten
record by record from the original text; Parquet is re-encoded with the file's own compression).

Each rewrite is atomic (temp file, fsync, rename) and keeps the file's modification time, so the
late-landing sensor (``sources/sensors.py``), which re-runs a day whose files changed after it was
materialized, does not re-run every day the subject appeared in: the erasure removes their rows
from the warehouse itself.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ai_data_platform.governance.personal_data import SUBJECT_EMAIL_COLUMN
from ai_data_platform.governance.pii import normalize_email
from ai_data_platform.private_files import make_private_dir, open_private
from ai_data_platform.sources.contracts import CUSTOMERS, SOURCE_TABLES, SourceTable
from ai_data_platform.sources.landing import LandingZones


@dataclass(frozen=True)
class SubjectRecords:
    """How to recognize a subject's records in landing files."""

    customer_id: str
    emails: frozenset[str]  # normalized

    def _line_pattern(self) -> re.Pattern:
        tokens = [re.escape(self.customer_id)] + [re.escape(e) for e in sorted(self.emails)]
        return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(tokens) + r")(?![A-Za-z0-9])", re.IGNORECASE)

    def owns_record(self, t: SourceTable, record: dict) -> bool:
        if "customer_id" in t.column_names and (record.get("customer_id") or "").strip() == self.customer_id:
            return True
        email_column = SUBJECT_EMAIL_COLUMN.get(t.name)
        return bool(email_column) and normalize_email(record.get(email_column)) in self.emails

    def owns_line(self, text: str) -> bool:
        return bool(self._line_pattern().search(text))


def all_landing_files(zones: LandingZones) -> Iterator[tuple[SourceTable, Path]]:
    """Every landed file of every source table, in every zone it lands in."""
    for t in SOURCE_TABLES:
        for path in zones.landed(t):
            yield t, path


def _lines(text: str) -> Iterator[str]:
    """Lines split on newline only, each with its newline (the last one may have none)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _csv_records(text: str) -> Iterator[str]:
    """The raw text of each CSV record (a quoted field may span lines), line endings included."""
    pending = ""
    for line in _lines(text):
        pending += line
        if pending.count('"') % 2 == 0:
            yield pending
            pending = ""
    if pending:
        yield pending


def text_records(t: SourceTable, text: str) -> tuple[str, list[tuple[str, dict | None]]]:
    """A text landing file as ``(header, [(raw record text, record)])``: each record's exact text
    (line ending included) and its fields by column name as text, or ``None`` for a record that
    cannot be split into the header's fields (a truncated CSV row, a cut-off JSON line). JSON
    lines have no header (``""``)."""
    if t.file_format == "csv":
        raw_records = list(_csv_records(text))
        if not raw_records:
            return "", []
        header = next(csv.reader([raw_records[0]]))
        out = []
        for raw in raw_records[1:]:
            fields = next(csv.reader(io.StringIO(raw)), [])
            out.append((raw, dict(zip(header, fields)) if len(fields) == len(header) else None))
        return raw_records[0], out
    out = []
    for raw in _lines(text):
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        parsed = {k: v if isinstance(v, str) or v is None else str(v) for k, v in record.items()} if isinstance(record, dict) else None
        out.append((raw, parsed))
    return "", out


def _without(t: SourceTable, text: str, subject: SubjectRecords) -> tuple[str, int]:
    header, records = text_records(t, text)
    kept, removed = [header], 0
    for raw, record in records:
        owned = subject.owns_record(t, record) if record is not None else bool(raw.strip()) and subject.owns_line(raw)
        if owned:
            removed += 1
        else:
            kept.append(raw)
    return "".join(kept), removed


def write_keeping_mtime(path: Path, data: bytes, mtime_ns: int | None = None) -> None:
    """Replace ``path``'s content atomically (owner-only temp file, fsync, rename), keeping its
    modification time (or setting ``mtime_ns``, for a file that did not exist)."""
    stat = path.stat() if path.exists() else None
    mtime = stat.st_mtime_ns if stat is not None else mtime_ns
    make_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.rewriting")
    with open_private(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    if mtime is not None:
        os.utime(path, ns=(stat.st_atime_ns if stat is not None else mtime, mtime))


def _parquet_without(t: SourceTable, path: Path, subject: SubjectRecords) -> tuple[pa.Table | None, int]:
    keys = [c for c in ("customer_id", SUBJECT_EMAIL_COLUMN.get(t.name)) if c and c in pq.read_schema(path).names]
    if not keys:
        return None, 0
    table = pq.read_table(path, columns=keys)  # the key columns first: most files hold nothing of theirs
    masks = []
    if "customer_id" in table.column_names:
        ids = pc.utf8_trim_whitespace(pc.cast(table.column("customer_id"), pa.string()))
        masks.append(pc.fill_null(pc.equal(ids, subject.customer_id), False))
    email_column = SUBJECT_EMAIL_COLUMN.get(t.name)
    if email_column in table.column_names and subject.emails:
        emails = pc.utf8_lower(pc.utf8_trim_whitespace(pc.cast(table.column(email_column), pa.string())))
        masks.append(pc.fill_null(pc.is_in(emails, pa.array(sorted(subject.emails))), False))
    if not masks:
        return None, 0
    owned = masks[0]
    for m in masks[1:]:
        owned = pc.or_(owned, m)
    removed = pc.sum(owned).as_py() or 0
    return (pq.read_table(path).filter(pc.invert(owned)) if removed else None), removed


def erase_file(t: SourceTable, path: Path, subject: SubjectRecords) -> int:
    """Rewrite one landing file without the subject's records; returns how many were removed."""
    if t.file_format == "parquet":
        kept, removed = _parquet_without(t, path, subject)
        if removed:
            metadata = pq.ParquetFile(path).metadata
            codec = metadata.row_group(0).column(0).compression.lower() if metadata.num_row_groups else "zstd"
            buffer = io.BytesIO()
            pq.write_table(kept, buffer, compression="none" if codec == "uncompressed" else codec)
            write_keeping_mtime(path, buffer.getvalue())
        return removed
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    if not subject.owns_line(text):  # neither the id nor an email anywhere: nothing of theirs here
        return 0
    kept_text, removed = _without(t, text, subject)
    if removed:
        write_keeping_mtime(path, kept_text.encode("utf-8", errors="surrogateescape"))
    return removed


def erase_landing(zones: LandingZones, subject: SubjectRecords) -> dict[str, int]:
    """Rewrite every landing file holding the subject's records; {file name: records removed}."""
    counts = {}
    for t, path in all_landing_files(zones):
        removed = erase_file(t, path, subject)
        if removed:
            counts[zones.name(path)] = removed
    return counts


def crm_customer_records(zones: LandingZones) -> Iterator[dict]:
    """Every landed CRM customer record (as text), from every region's zone."""
    for path in zones.landed(CUSTOMERS):
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            yield from csv.DictReader(fh)


def subject_rows_in_crm_files(zones: LandingZones, customer_id: str) -> list[dict]:
    """Every landed CRM customer record (as text) with this customer id: where erasure finds the
    names, emails and phones of a subject not (yet) loaded into the warehouse."""
    return [record for record in crm_customer_records(zones) if (record.get("customer_id") or "").strip() == customer_id]
