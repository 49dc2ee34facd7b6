"""Rewrite landing files without a data subject's records.

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
from ai_data_platform.sources.contracts import SOURCE_TABLES, SourceTable


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


def landing_files(landing_root: Path) -> Iterator[tuple[SourceTable, Path]]:
    for t in SOURCE_TABLES:
        folder = t.landing_dir(landing_root)
        if folder.is_dir():
            for path in sorted(folder.glob(f"*.{t.extension}")):
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


def _without_csv(t: SourceTable, text: str, subject: SubjectRecords) -> tuple[str, int]:
    records = list(_csv_records(text))
    if not records:
        return text, 0
    header = next(csv.reader([records[0]]))
    kept, removed = [records[0]], 0
    for raw in records[1:]:
        fields = next(csv.reader(io.StringIO(raw)), [])
        owned = subject.owns_record(t, dict(zip(header, fields))) if len(fields) == len(header) else subject.owns_line(raw)
        if owned:
            removed += 1
        else:
            kept.append(raw)
    return "".join(kept), removed


def _without_jsonl(t: SourceTable, text: str, subject: SubjectRecords) -> tuple[str, int]:
    kept, removed = [], 0
    for raw in _lines(text):
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if isinstance(record, dict):
            owned = subject.owns_record(t, {k: v if isinstance(v, str) or v is None else str(v) for k, v in record.items()})
        else:
            owned = bool(raw.strip()) and subject.owns_line(raw)
        if owned:
            removed += 1
        else:
            kept.append(raw)
    return "".join(kept), removed


def _write_keeping_mtime(path: Path, data: bytes) -> None:
    stat = path.stat()
    tmp = path.with_name(f".{path.name}.erasing")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


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
            _write_keeping_mtime(path, buffer.getvalue())
        return removed
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    if not subject.owns_line(text):  # neither the id nor an email anywhere: nothing of theirs here
        return 0
    rewrite = _without_csv if t.file_format == "csv" else _without_jsonl
    kept_text, removed = rewrite(t, text, subject)
    if removed:
        _write_keeping_mtime(path, kept_text.encode("utf-8", errors="surrogateescape"))
    return removed


def erase_landing(landing_root: Path, subject: SubjectRecords) -> dict[str, int]:
    """Rewrite every landing file holding the subject's records; {relative path: records removed}."""
    counts = {}
    for t, path in landing_files(landing_root):
        removed = erase_file(t, path, subject)
        if removed:
            counts[path.relative_to(landing_root.parent).as_posix()] = removed
    return counts


def subject_rows_in_crm_files(landing_root: Path, customer_id: str) -> list[dict]:
    """Every landed CRM customer record (as text) with this customer id: where erasure finds the
    names, emails and phones of a subject not (yet) loaded into the warehouse."""
    from ai_data_platform.sources.contracts import CUSTOMERS

    rows = []
    folder = CUSTOMERS.landing_dir(landing_root)
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            for record in csv.DictReader(fh):
                if (record.get("customer_id") or "").strip() == customer_id:
                    rows.append(record)
    return rows
