"""Rewrite landing files without a data subject's records, in every landing zone (the shared
one and each region's, ``sources/landing.LandingZones``): whichever regional file holds them.

Which records are the subject's is ``attribution.py``'s rule: a record split into fields by its
identifier fields (``customer_id``; without one, a CRM table's email or the customers' phone), a
record that cannot be split (a truncated CSV row, a cut-off JSON line) only when it holds one of
their identifiers as a whole quoted JSON string, keyed value or CSV field. Every other record keeps its
exact bytes (CSV and JSON lines are rewritten record by record from the original text; Parquet is
re-encoded with the file's own compression).

Files are read as the loader reads them (``sources/landing.py``): a UTF-8 byte order mark before
the header, LF, CRLF or CR line ends, a blank line no record, a CSV header's repeated name naming
its first column, a JSON line an object only as the stream and loader read one
(``json_object.read_object``); so a record is judged by the fields the warehouse got from it. A
UTF-16 or UTF-32 file, which the loader refuses, is refused here too (naming the file).

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
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ai_data_platform.governance.attribution import (
    EMAIL_FIELDS,
    ID_FIELDS,
    PHONE_FIELDS,
    Identifiers,
    canonical_id,
    csv_split,
    lines,
    written_forms,
)
from ai_data_platform.governance.pii import normalize_phone
from ai_data_platform.private_files import write_private
from ai_data_platform.sources.contracts import CUSTOMERS, SOURCE_TABLES, SourceTable
from ai_data_platform.sources.json_object import read_object
from ai_data_platform.sources.landing import LandingText, LandingZones, as_read, csv_record_texts, read_landing_text


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


class TextRecord(NamedTuple):
    """One record of a text landing file."""

    raw: str  # its exact text, line end included (bytes that are not UTF-8 as surrogate escapes)
    fields: dict[str, str | None] | None  # by column name, as the loader reads them; None: not split
    line: str  # as the loader reads it (its ``_raw_line`` when not split); "" for a blank line, no record


def _field_text(value: object) -> str | None:
    """A JSON value as the loader stores it: a string as it is, anything else as JSON."""
    return value if value is None or isinstance(value, str) else json.dumps(value)


def _csv_fields(header: list[str], values: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in zip(header, values):
        fields.setdefault(name, value)  # a repeated name: the first column holds it, as for the loader
    return fields


def text_records(t: SourceTable, text: str) -> tuple[str, list[TextRecord]]:
    """A text landing file's text (:attr:`LandingText.text`) as ``(header, records)``, read as the
    loader reads it: ``header`` the exact text up to and including the CSV header (blank lines
    before it too; ``""`` for JSON lines); each record its exact text and what the loader reads
    from it (:class:`TextRecord`)."""
    if t.file_format == "csv":
        raw_records = list(csv_record_texts(text))
        first = next((i for i, raw in enumerate(raw_records) if raw.rstrip("\r\n")), len(raw_records))
        if first == len(raw_records):
            return text, []
        header = csv_split(as_read(raw_records[first]))
        out = []
        for raw in raw_records[first + 1:]:
            line = as_read(raw).removesuffix("\n").removesuffix("\r")
            if not line:
                out.append(TextRecord(raw, None, ""))
                continue
            values = csv_split(line)
            out.append(TextRecord(raw, _csv_fields(header, values) if len(values) == len(header) else None, line))
        return "".join(raw_records[:first + 1]), out
    out = []
    for raw in lines(text):
        line = as_read(raw).removesuffix("\n").removesuffix("\r")
        if not line.strip():
            out.append(TextRecord(raw, None, ""))
            continue
        record = read_object(line.encode("utf-8"))
        fields = {k: _field_text(v) for k, v in record.items()} if record is not None else None
        out.append(TextRecord(raw, fields, line))
    return "", out


def read_text_records(t: SourceTable, path: Path) -> tuple[LandingText, str, list[TextRecord]]:
    """A text landing file as ``(its content, header, records)`` (:func:`text_records`)."""
    content = read_landing_text(path)
    return (content, *text_records(t, content.text))


def owned(subject: Identifiers, record: TextRecord) -> bool:
    """Whether a record of a text landing file is the subject's (``attribution.py``'s rule)."""
    if record.fields is not None:
        return subject.owns_fields(record.fields)
    return bool(record.line) and subject.owns_line(record.line)


def _without(t: SourceTable, text: str, subject: Identifiers) -> tuple[str, int]:
    header, records = text_records(t, text)
    kept = [header] + [r.raw for r in records if not owned(subject, r)]
    return "".join(kept), len(records) + 1 - len(kept)


def write_keeping_mtime(path: Path, data: bytes, mtime_ns: int | None = None) -> None:
    """Replace ``path``'s content atomically (owner-only temp file, fsync, rename), keeping its
    modification time (or setting ``mtime_ns``, for a file that did not exist)."""
    stat = path.stat() if path.exists() else None
    mtime = stat.st_mtime_ns if stat is not None else mtime_ns
    write_private(path, data, temp_suffix=".rewriting")
    if mtime is not None:
        os.utime(path, ns=(stat.st_atime_ns if stat is not None else mtime, mtime))


def _parquet_without(t: SourceTable, path: Path, subject: Identifiers) -> tuple[pa.Table | None, int]:
    keys = [c for c in pq.read_schema(path).names if c in ID_FIELDS | EMAIL_FIELDS | PHONE_FIELDS]
    if not keys:
        return None, 0
    table = pq.read_table(path, columns=keys)  # the key columns first: most files hold nothing of theirs
    by_id, by_contact = [], []
    without_id = pa.array([True] * table.num_rows, pa.bool_())  # no customer id (none, or blank): by email or phone
    for column in table.column_names:
        values = pc.cast(table.column(column), pa.string())
        if column in ID_FIELDS:
            ids = pc.utf8_trim(values, " ")
            without_id = pc.and_(without_id, pc.fill_null(pc.equal(ids, ""), True))
            if subject.customer_ids:
                by_id.append(pc.is_in(ids, pa.array(sorted(subject.customer_ids))))
        elif column in EMAIL_FIELDS and subject.emails:
            emails = pc.utf8_lower(pc.utf8_trim_whitespace(values))
            by_contact.append(pc.is_in(emails, pa.array(sorted(subject.emails))))
        elif column in PHONE_FIELDS and subject.phones:
            phones = pa.array([normalize_phone(v) for v in values.to_pylist()], pa.string())
            by_contact.append(pc.is_in(phones, pa.array(sorted(subject.phones))))
    masks = [pc.fill_null(m, False) for m in by_id]
    masks += [pc.and_(without_id, pc.fill_null(m, False)) for m in by_contact]
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
    content = read_landing_text(path)
    if not may_hold(t, as_read(content.text), subject):
        return 0
    kept_text, removed = _without(t, content.text, subject)
    if removed:
        write_keeping_mtime(path, content.encode(kept_text))
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
    """Every landed CRM customer record (as text, read as the loader reads it), from every region's
    zone; a record with too few fields (a truncated row) with the fields it has, named by the
    header in order."""
    for path in zones.landed(CUSTOMERS):
        header, records = text_records(CUSTOMERS, read_landing_text(path).text)
        names = csv_split(as_read(header).lstrip("\r\n")) if header else []
        for record in records:
            if record.fields is not None:
                yield record.fields
            elif record.line:
                yield _csv_fields(names, csv_split(record.line))


def subject_rows_in_crm_files(zones: LandingZones, customer_id: str) -> list[dict]:
    """Every landed CRM customer record (as text) with this customer id: where erasure finds the
    names, emails and phones of a subject not (yet) loaded into the warehouse."""
    wanted = canonical_id(customer_id)
    return [record for record in crm_customer_records(zones) if wanted and canonical_id(record.get("customer_id")) == wanted]
