"""Where the sources' exports land, and reading them exactly as they landed, without dropping a row.

**Landing zones** (:class:`LandingZones`). A table holding personal data
(``personal_data.holds_personal_data``: the CRM's customers and support tickets) lands per region:
each region's source export goes to that region's zone, ``<zone>/<source>/<table>/<day>.<ext>``
(``$ADP_DATA_DIR/regions/<REGION>/landing`` by default, ``ADP_REGION_LANDING_<REGION>`` to point
it at storage in that region), so a subject's personal data is stored in their region from the
first byte the platform keeps. Every other table lands in the shared ``$ADP_DATA_DIR/landing``. A
table's day is the list of its files, one per zone, in region order (EU, US, APAC):
:func:`landing_files` is the one place that says which files hold a table's day.

**Reading.** Every format is read to the same shape: the contract's columns as text (missing columns null),
``_row_number`` (1-based record number in the file; for CSV the header is not counted, blank lines
are no records) and ``_raw_line`` (the raw text of a record that could not be split into fields: a
CSV row with the wrong number of fields or a JSON-lines record that is not a JSON object; null
otherwise). Parsing into types and validating happens later, in staging, where failures are
quarantined with a reason. The columns actually found in the file (and, for Parquet, their stored
types) are reported so schema drift can be named.

Text files are UTF-8, with or without a byte order mark, with LF or CRLF line ends; a UTF-16 or
UTF-32 file, or a Parquet file that cannot be opened or decoded, is a :class:`LandingFileUnreadable`
naming the file. A file that looks cut short (a CSV without its header, a last record cut off with
no final newline, a quoted field never closed) is read as it is and says why in
:attr:`LandedFile.incomplete`: the load's guard (``landing_guard``) decides what that stops.
Whatever rewrites a landing file (erasure, region moves) decodes it the same way, keeping every
byte (:func:`read_landing_text`, :func:`as_read`), and cuts CSV records where the reader cuts them
(:func:`csv_record_texts`).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ai_data_platform.errors import InputError
from ai_data_platform.sources.contracts import REGIONS, SourceTable
from ai_data_platform.sources.json_object import read_object


class LandingFileMissing(FileNotFoundError):
    """The export for a table and day has not landed."""


class LandingFileUnreadable(InputError):
    """A landing file that cannot be read as its contract's format; the message names the file and why."""


def lands_per_region(t: SourceTable) -> bool:
    """Whether ``t`` lands in each region's zone: it holds personal data (``personal_data.holds_personal_data``)."""
    # imported here: the governance package loads DuckDB, which the simulator (a source system) does not need
    from ai_data_platform.governance.personal_data import holds_personal_data

    return holds_personal_data(t)


@dataclass(frozen=True)
class LandingZones:
    """The landing zones of one deployment: the shared one and one per region (see the module docstring).

    ``root`` is the data directory: files are named relative to it (absolute when a zone lies elsewhere).
    """

    root: Path
    shared: Path
    regional: Mapping[str, Path]  # region -> zone root, every region of contracts.REGIONS

    @classmethod
    def from_settings(cls, p=None) -> LandingZones:
        """The zones of ``p`` (default: ``settings.paths()``), regional roots from ``settings.region_landing_paths``."""
        from ai_data_platform import settings

        p = p or settings.paths()
        return cls(p.root, p.landing, settings.region_landing_paths(p))

    def zones(self, t: SourceTable) -> list[tuple[str | None, Path]]:
        """``(region, zone root)`` of every zone ``t`` lands in: each region in order for a table
        holding personal data, else ``(None, shared root)``."""
        if lands_per_region(t):
            return [(region, self.regional[region]) for region in REGIONS]
        return [(None, self.shared)]

    def file(self, t: SourceTable, day: date | str, region: str | None = None) -> Path:
        """The file of ``t``'s ``day`` in ``region``'s zone (``None``: the shared zone)."""
        if lands_per_region(t) == (region is None):
            where = "a region's zone" if region is None else "the shared zone"
            raise ValueError(f"{t.source}/{t.name} does not land in {where}")
        return t.landing_file(self.shared if region is None else self.regional[region], day)

    def files(self, t: SourceTable, day: date | str) -> list[Path]:
        """The files holding ``t``'s ``day``, in zone order."""
        return [t.landing_file(root, day) for _, root in self.zones(t)]

    def dirs(self, t: SourceTable) -> list[Path]:
        """The directory of ``t`` in each of its zones."""
        return [t.landing_dir(root) for _, root in self.zones(t)]

    def landed(self, t: SourceTable) -> Iterator[Path]:
        """Every file of ``t`` that has landed, zone by zone, each zone's files in name (day) order."""
        for folder in self.dirs(t):
            if folder.is_dir():
                yield from sorted(folder.glob(f"*.{t.extension}"))

    def roots(self) -> list[Path]:
        """Every zone root: the shared one, then each region's."""
        return [self.shared, *(self.regional[r] for r in REGIONS)]

    def name(self, path: Path) -> str:
        """How a landing file is named in the warehouse (``_file``), the manifest and reports:
        relative to the data directory, or absolute when its zone lies outside it."""
        path = Path(path)
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else path.as_posix()


def landing_files(t: SourceTable, day: date | str, zones: LandingZones | None = None) -> list[Path]:
    """The file(s) holding ``t``'s ``day``: one per region for a table holding personal data (EU,
    US, APAC), else the shared zone's one. ``zones`` defaults to the settings' (``ADP_DATA_DIR``)."""
    return (zones or LandingZones.from_settings()).files(t, day)


@dataclass(frozen=True)
class LandedFile:
    path: Path
    table: pa.Table  # contract columns (string), _row_number (int64), _raw_line (string)
    observed_columns: tuple[str, ...]
    observed_types: Mapping[str, pa.DataType] | None = None  # Parquet: each column's stored type; None for text
    incomplete: str | None = None  # why the file looks cut short (see the module docstring); None when whole

    @property
    def rows(self) -> int:
        return self.table.num_rows

    @property
    def well_formed(self) -> int:
        """Records that could be split into fields (``_raw_line`` null)."""
        return self.table.column("_raw_line").null_count


def read_landing_file(contract: SourceTable, path: Path) -> LandedFile:
    if not path.exists():
        raise LandingFileMissing(
            f"no landing file for {contract.source}/{contract.name}: expected {path}"
        )
    reader = {"csv": _read_csv, "parquet": _read_parquet, "jsonl": _read_jsonl}[contract.file_format]
    return reader(contract, path)


def read_landing_day(contract: SourceTable, paths: list[Path]) -> list[LandedFile]:
    """Read every file of one table's day (:func:`landing_files`) as one partition: each file as it
    landed, ``_row_number`` continuing across the files in the order given, so it stays unique
    within the day. A missing file is an error naming it; nothing is read then."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise LandingFileMissing(f"no landing file for {contract.source}/{contract.name}: expected {', '.join(missing)}")
    out, offset = [], 0
    for path in paths:
        landed = read_landing_file(contract, path)
        if offset:
            index = landed.table.schema.get_field_index("_row_number")
            numbers = pc.add(landed.table.column(index), pa.scalar(offset, pa.int64()))
            landed = replace(landed, table=landed.table.set_column(index, "_row_number", numbers))
        out.append(landed)
        offset += landed.rows
    return out


def _conform(
    contract: SourceTable,
    columns: dict[str, pa.Array],
    row_numbers: pa.Array,
    raw_lines: pa.Array,
) -> pa.Table:
    n = len(row_numbers)
    arrays = []
    for name in contract.column_names:
        arr = columns.get(name)
        arrays.append(pa.nulls(n, pa.string()) if arr is None else pc.cast(arr, pa.string()))
    arrays += [row_numbers, raw_lines]
    return pa.Table.from_arrays(
        arrays, names=[*contract.column_names, "_row_number", "_raw_line"]
    )


# Byte order marks of encodings other than UTF-8; UTF-32 LE begins like UTF-16 LE, so it is tried first.
_FOREIGN_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"),
    (b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"),
    (b"\xfe\xff", "UTF-16 (big-endian)"),
    (b"\xff\xfe", "UTF-16 (little-endian)"),
)
_UTF8_BOM = b"\xef\xbb\xbf"
_NEWLINES = (b"\n", b"\r")


def _split_bom(path: Path, data: bytes) -> tuple[bytes, bytes]:
    """``(UTF-8 byte order mark or b"", the bytes after it)`` of a text file; a UTF-16 or UTF-32
    mark is an error naming the file."""
    for bom, encoding in _FOREIGN_BOMS:
        if data.startswith(bom):
            raise LandingFileUnreadable(
                f"{path}: the file is {encoding} (byte order mark {bom.hex(' ')}); landing text files must be UTF-8"
            )
    return (_UTF8_BOM, data[len(_UTF8_BOM):]) if data.startswith(_UTF8_BOM) else (b"", data)


def _utf8(path: Path) -> tuple[bytes, str]:
    """The file's bytes as UTF-8 without a byte order mark, and their text. A UTF-16 or UTF-32 mark
    is an error naming the file; bytes that are not UTF-8 become U+FFFD, as in every text format."""
    _, data = _split_bom(path, path.read_bytes())
    try:
        return data, data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        return text.encode("utf-8"), text


@dataclass(frozen=True)
class LandingText:
    """A text landing file as text that writes back byte for byte, for the readers that rewrite
    landing files (erasure, region moves): ``bom`` the UTF-8 byte order mark it starts with (or
    ``b""``), ``text`` the rest decoded as UTF-8, bytes that are not UTF-8 kept as surrogate
    escapes. :func:`as_read` gives any part of ``text`` as the loader reads it."""

    bom: bytes
    text: str

    def encode(self, text: str) -> bytes:
        """``text`` (this file's text, rewritten) as the file's bytes, its byte order mark kept."""
        return self.bom + text.encode("utf-8", "surrogateescape")


def read_landing_text(path: Path) -> LandingText:
    """A text landing file decoded as the loader decodes it (see the module docstring), kept byte
    for byte; a UTF-16 or UTF-32 file is a :class:`LandingFileUnreadable`, as for the loader."""
    bom, data = _split_bom(path, path.read_bytes())
    return LandingText(bom, data.decode("utf-8", "surrogateescape"))


def as_read(text: str) -> str:
    """Part of a :attr:`LandingText.text` as the loader reads it: bytes that are not UTF-8 as U+FFFD.
    (Cut at line ends, parts decode as the whole file does: an invalid sequence never spans one.)"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


_CSV_LINE = re.compile("[^\r\n]*(?:\r\n|\r|\n|$)")
_CSV_QUOTE_OR_COMMA = re.compile('[",]')


def csv_record_texts(text: str) -> Iterator[str]:
    """The text of each record of CSV ``text``, its line end included, cut where the CSV reader cuts:
    at a line end (LF, CRLF or a lone CR) outside a quoted field, a quote opening a field only at the
    field's start and ``""`` standing for a quote inside one. A blank line is a record of its own
    (which the reader skips)."""
    start = field = 0  # where the pending record and its current field start
    quoted = False
    for line in _CSV_LINE.finditer(text):
        if line.start() == line.end():
            break
        if quoted or '"' in line.group():
            end = line.start() + len(line.group().rstrip("\r\n"))
            quoted, field = _csv_quotes(text, line.start(), end, quoted, field)
        if not quoted:
            yield text[start:line.end()]
            start = field = line.end()
    if start < len(text):
        yield text[start:]


def _csv_quotes(text: str, begin: int, end: int, quoted: bool, field: int) -> tuple[bool, int]:
    """Whether ``text[begin:end]`` (part of one record) leaves a quoted field open, and where the
    field open at its end starts, given the same at ``begin``."""
    position = begin
    while (match := _CSV_QUOTE_OR_COMMA.search(text, position, end)) is not None:
        i = match.start()
        position = i + 1
        if quoted:
            if text[i] == '"':
                if position < end and text[position] == '"':
                    position += 1
                else:
                    quoted = False
        elif text[i] == '"':
            quoted = i == field
        else:
            field = position
    return quoted, field


def _cut_last_record(data: bytes, table: pa.Table) -> str | None:
    """Why a text file's end looks cut: its last record could not be split and no newline ends it."""
    if table.num_rows == 0 or data.endswith(_NEWLINES):
        return None
    last = table.column("_raw_line")[table.num_rows - 1]
    if not last.is_valid:
        return None
    return f"ends mid-record: its last record ({table.num_rows}) is cut off, with no final newline"


def _read_csv(contract: SourceTable, path: Path) -> LandedFile:
    data, text = _utf8(path)
    if not data.strip():
        empty = pa.array([], pa.int64())
        why = "is empty" if not data else "holds only blank lines"
        return LandedFile(
            path, _conform(contract, {}, empty, pa.array([], pa.string())), (), incomplete=f"{why}: no CSV header"
        )
    try:
        observed = next((row for row in csv.reader(io.StringIO(text, newline="")) if row), [])
    except csv.Error as exc:
        raise LandingFileUnreadable(f"{path}: not a readable CSV header ({exc})") from None

    invalid: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data if data.endswith(_NEWLINES) else data + b"\n"),  # a header alone needs its line end
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in observed},
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowException as exc:
        raise LandingFileUnreadable(f"{path}: not a readable CSV file ({_arrow_problem(exc)})") from None
    # pyarrow numbers the rows it hands the handler by record (header = 1); records are numbered from 1.
    bad_records = {number - 1: line for number, line in invalid}
    total = table.num_rows + len(bad_records)
    good_numbers = [i for i in range(1, total + 1) if i not in bad_records]
    good: dict[str, pa.Array] = {}
    for i, name in enumerate(table.column_names):
        good.setdefault(name, table.column(i).combine_chunks())  # a repeated name: the first column holds it
    merged = _conform(
        contract, good, pa.array(good_numbers, pa.int64()), pa.nulls(table.num_rows, pa.string())
    )
    if bad_records:
        bad_numbers = sorted(bad_records)
        bad_part = _conform(
            contract,
            {},
            pa.array(bad_numbers, pa.int64()),
            pa.array([bad_records[i] for i in bad_numbers], pa.string()),
        )
        merged = pa.concat_tables([merged, bad_part]).sort_by("_row_number")
    incomplete = (
        "ends inside a quoted field that is never closed: cut mid-record"
        if _ends_in_open_quote(text)
        else _cut_last_record(data, merged)
    )
    return LandedFile(path, merged, tuple(observed), incomplete=incomplete)


def _ends_in_open_quote(text: str) -> bool:
    """Whether CSV text ends inside a quoted field, read as Arrow reads it: a quote opens a field
    only at the field's start (elsewhere it is a character), and inside one ``""`` is a quote."""
    inside, escaped = False, -1
    for match in re.finditer('"', text):
        i = match.start()
        if i == escaped:
            continue
        if inside:
            if text.startswith('"', i + 1):
                escaped = i + 1
            else:
                inside = False
        elif i == 0 or text[i - 1] in ",\r\n":
            inside = True
    return inside


def _arrow_problem(exc: Exception) -> str:
    """The reason an Arrow error gives, without the path it repeats, on one bounded line."""
    lines = re.sub(r"^Could not open Parquet input source '.*?': ", "", str(exc)).splitlines()
    reason = lines[0] if lines else type(exc).__name__
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _as_text(values: pa.Array) -> pa.Array:
    """A Parquet column as the text exports write it: timestamps as UTC ``YYYY-MM-DDTHH:MM:SS``,
    anything Arrow cannot cast to text (nested values, bytes that are not UTF-8) as JSON or
    decoded text, so a column of the wrong type is still loaded whole."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_timestamp(values.type):
        if values.type.tz is not None:
            values = values.cast(pa.timestamp(values.type.unit, "UTC"))
        return pc.strftime(values, format="%Y-%m-%dT%H:%M:%S")
    try:
        return pc.cast(values, pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return pa.array([_json_text(v) for v in values.to_pylist()], pa.string())


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return json.dumps(value, default=str, ensure_ascii=False)


def _read_parquet(contract: SourceTable, path: Path) -> LandedFile:
    try:
        table = pq.ParquetFile(path).read()
    except (pa.ArrowException, OSError) as exc:
        raise LandingFileUnreadable(f"{path}: not a readable Parquet file ({_arrow_problem(exc)})") from None
    columns: dict[str, pa.Array] = {}
    types: dict[str, pa.DataType] = {}
    for i, field in enumerate(table.schema):
        if field.name not in columns:  # a repeated name: the first column holds it
            columns[field.name] = _as_text(table.column(i).combine_chunks())
            types[field.name] = field.type
    n = table.num_rows
    return LandedFile(
        path,
        _conform(contract, columns, pa.array(range(1, n + 1), pa.int64()), pa.nulls(n, pa.string())),
        tuple(columns),
        observed_types=types,
    )


def _read_jsonl(contract: SourceTable, path: Path) -> LandedFile:
    data, text = _utf8(path)
    # a line end is LF or CRLF; a blank line holds no record
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    lines = [line for line in lines if line.strip()]
    values: dict[str, list] = {name: [] for name in contract.column_names}
    raw_lines: list[str | None] = []
    observed: dict[str, None] = {}
    for line in lines:
        record = read_object(line.encode("utf-8"))  # None: not one readable JSON object (too deep, a key twice, ...)
        if record is None:
            raw_lines.append(line)
            for name in contract.column_names:
                values[name].append(None)
            continue
        raw_lines.append(None)
        for key in record:
            observed.setdefault(key, None)
        for name in contract.column_names:
            v = record.get(name)
            values[name].append(None if v is None else (v if isinstance(v, str) else json.dumps(v)))
    n = len(lines)
    columns = {name: pa.array(vals, pa.string()) for name, vals in values.items() if name in observed}
    table = _conform(contract, columns, pa.array(range(1, n + 1), pa.int64()), pa.array(raw_lines, pa.string()))
    return LandedFile(path, table, tuple(observed), incomplete=_cut_last_record(data, table))
