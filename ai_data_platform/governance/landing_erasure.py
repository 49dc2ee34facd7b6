"""Rewrite landing files without a data subject's records, in every landing zone (the shared
one and each region's, ``sources/landing.LandingZones``): whichever regional file holds them.

Which records are the subject's is ``attribution.py``'s rule: a record split into fields by its
identifier fields (``customer_id``; a CRM table's email; the customers' phone), a record that
cannot be split (a truncated CSV row, a cut-off JSON line) only when it holds one of their
identifiers as a whole quoted JSON string, keyed value or CSV field. Every other record keeps its
exact bytes (CSV and JSON lines are rewritten record by record from the original text; Parquet is
re-encoded with the file's own compression).

Each rewrite is atomic (temp file, fsync, rename) and keeps the file's modification time, so the
late-landing sensor (``sources/sensors.py``), which re-runs a day whose files changed after it was
materialized, does not re-run every day the subject appeared in: the erasure removes their rows
from the warehouse itself.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ai_data_platform.governance.attribution import (
    EMAIL_FIELDS,
    ID_FIELDS,
    PHONE_FIELDS,
    Identifiers,
    canonical_id,
    csv_records,
    csv_split,
    lines,
    written_forms,
)
from ai_data_platform.governance.pii import normalize_phone
from ai_data_platform.private_files import make_private_dir, open_private
from ai_data_platform.sources.contracts import CUSTOMERS, SOURCE_TABLES, SourceTable
from ai_data_platform.sources.landing import LandingZones


def may_hold(t: SourceTable, text: str, subject: Identifiers) -> bool:
    """False when no record of ``text`` can be the subject's: none of their identifiers is in it in
    any written form (``attribution.written_forms``), and no JSON escape could spell one (a cheap
    test before splitting records)."""
    if "\\u" in text or (subject.phones and "phone" in t.column_names):
        return True
    lowered = text.lower() if subject.emails else ""
    return (any(form in text for i in subject.customer_ids for form in written_forms(i))
            or any(form in lowered for e in subject.emails for form in written_forms(e)))


def all_landing_files(zones: LandingZones) -> Iterator[tuple[SourceTable, Path]]:
    """Every landed file of every source table, in every zone it lands in."""
    for t in SOURCE_TABLES:
        for path in zones.landed(t):
            yield t, path


def text_records(t: SourceTable, text: str) -> tuple[str, list[tuple[str, dict | None]]]:
    """A text landing file as ``(header, [(raw record text, record)])``: each record's exact text
    (line ending included) and its fields by column name as text, or ``None`` for a record that
    cannot be split into the header's fields (a truncated CSV row, a cut-off JSON line). JSON
    lines have no header (``""``)."""
    if t.file_format == "csv":
        raw_records = list(csv_records(text))
        if not raw_records:
            return "", []
        header = csv_split(raw_records[0])
        out = []
        for raw in raw_records[1:]:
            fields = csv_split(raw)
            out.append((raw, dict(zip(header, fields)) if len(fields) == len(header) else None))
        return raw_records[0], out
    out = []
    for raw in lines(text):
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        parsed = {k: v if isinstance(v, str) or v is None else str(v) for k, v in record.items()} if isinstance(record, dict) else None
        out.append((raw, parsed))
    return "", out


def _without(t: SourceTable, text: str, subject: Identifiers) -> tuple[str, int]:
    header, records = text_records(t, text)
    kept, removed = [header], 0
    for raw, record in records:
        owned = subject.owns_fields(record) if record is not None else bool(raw.strip()) and subject.owns_line(raw)
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


def _parquet_without(t: SourceTable, path: Path, subject: Identifiers) -> tuple[pa.Table | None, int]:
    keys = [c for c in pq.read_schema(path).names if c in ID_FIELDS | EMAIL_FIELDS | PHONE_FIELDS]
    if not keys:
        return None, 0
    table = pq.read_table(path, columns=keys)  # the key columns first: most files hold nothing of theirs
    masks = []
    for column in table.column_names:
        values = pc.cast(table.column(column), pa.string())
        if column in ID_FIELDS and subject.customer_ids:
            masks.append(pc.is_in(pc.utf8_trim(values, " "), pa.array(sorted(subject.customer_ids))))
        elif column in EMAIL_FIELDS and subject.emails:
            masks.append(pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(values)), pa.array(sorted(subject.emails))))
        elif column in PHONE_FIELDS and subject.phones:
            phones = pa.array([normalize_phone(v) for v in values.to_pylist()], pa.string())
            masks.append(pc.is_in(phones, pa.array(sorted(subject.phones))))
    masks = [pc.fill_null(m, False) for m in masks]
    if not masks:
        return None, 0
    owned = masks[0]
    for m in masks[1:]:
        owned = pc.or_(owned, m)
    removed = pc.sum(owned).as_py() or 0
    return (pq.read_table(path).filter(pc.invert(owned)) if removed else None), removed


def erase_file(t: SourceTable, path: Path, subject: Identifiers) -> int:
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
    if not may_hold(t, text, subject):
        return 0
    kept_text, removed = _without(t, text, subject)
    if removed:
        write_keeping_mtime(path, kept_text.encode("utf-8", errors="surrogateescape"))
    return removed


def erase_landing(zones: LandingZones, subject: Identifiers) -> dict[str, int]:
    """Rewrite every landing file holding the subject's records; {file name: records removed}."""
    counts = {}
    for t, path in all_landing_files(zones):
        removed = erase_file(t, path, subject)
        if removed:
            counts[zones.name(path)] = removed
    return counts


def crm_customer_records(zones: LandingZones) -> Iterator[dict]:
    """Every landed CRM customer record (as text), from every region's zone; a record with too few
    fields (a truncated row) with the fields it has, named by the header in order."""
    for path in zones.landed(CUSTOMERS):
        records = csv_records(path.read_bytes().decode("utf-8", "replace"))
        header = csv_split(next(records, ""))
        for raw in records:
            if raw.strip():
                yield dict(zip(header, csv_split(raw)))


def subject_rows_in_crm_files(zones: LandingZones, customer_id: str) -> list[dict]:
    """Every landed CRM customer record (as text) with this customer id: where erasure finds the
    names, emails and phones of a subject not (yet) loaded into the warehouse."""
    wanted = canonical_id(customer_id)
    return [record for record in crm_customer_records(zones) if wanted and canonical_id(record.get("customer_id")) == wanted]
