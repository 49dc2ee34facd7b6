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
``_row_number`` (1-based record number in the file; for CSV the header is not counted) and
``_raw_line`` (the raw text of a record that could not be split into fields: a CSV row with the
wrong number of fields or a JSON-lines record that is not a JSON object; null otherwise).
Parsing into types and validating happens later, in staging, where failures are quarantined with
a reason. The columns actually found in the file are reported so schema drift can be named.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ai_data_platform.sources.contracts import REGIONS, SourceTable


class LandingFileMissing(FileNotFoundError):
    """The export for a table and day has not landed."""


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

    @property
    def rows(self) -> int:
        return self.table.num_rows


def read_landing_file(contract: SourceTable, path: Path) -> LandedFile:
    if not path.exists():
        raise LandingFileMissing(
            f"no landing file for {contract.source}/{contract.name}: expected {path}"
        )
    reader = {"csv": _read_csv, "parquet": _read_parquet, "jsonl": _read_jsonl}[contract.file_format]
    table, observed = reader(contract, path)
    return LandedFile(path=path, table=table, observed_columns=tuple(observed))


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


def _read_csv(contract: SourceTable, path: Path) -> tuple[pa.Table, list[str]]:
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        observed = next(csv.reader(fh), [])

    invalid: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number, row.text))
        return "skip"

    if not observed:
        empty = pa.array([], pa.int64())
        return _conform(contract, {}, empty, pa.array([], pa.string())), observed
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=False),
        parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in observed},
            strings_can_be_null=True,
            null_values=[""],
            quoted_strings_can_be_null=False,
        ),
    )
    # pyarrow numbers rows by physical line (header = line 1); records are numbered from 1.
    bad_records = {number - 1: text for number, text in invalid}
    total = table.num_rows + len(bad_records)
    good_numbers = [i for i in range(1, total + 1) if i not in bad_records]
    good = {c: table.column(c).combine_chunks() for c in table.column_names}
    good_part = _conform(
        contract, good, pa.array(good_numbers, pa.int64()), pa.nulls(table.num_rows, pa.string())
    )
    if not bad_records:
        return good_part, observed
    bad_numbers = sorted(bad_records)
    bad_part = _conform(
        contract,
        {},
        pa.array(bad_numbers, pa.int64()),
        pa.array([bad_records[i] for i in bad_numbers], pa.string()),
    )
    merged = pa.concat_tables([good_part, bad_part])
    return merged.sort_by("_row_number"), observed


def _read_parquet(contract: SourceTable, path: Path) -> tuple[pa.Table, list[str]]:
    table = pq.read_table(path)
    observed = list(table.column_names)
    columns = {}
    for name in observed:
        col = table.column(name).combine_chunks()
        if pa.types.is_timestamp(col.type):
            # Render timestamps the way the text exports do, so staging parses one format.
            col = pc.strftime(col, format="%Y-%m-%dT%H:%M:%S")
        columns[name] = col
    n = table.num_rows
    return (
        _conform(contract, columns, pa.array(range(1, n + 1), pa.int64()), pa.nulls(n, pa.string())),
        observed,
    )


def _read_jsonl(contract: SourceTable, path: Path) -> tuple[pa.Table, list[str]]:
    lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    values: dict[str, list] = {name: [] for name in contract.column_names}
    raw_lines: list[str | None] = []
    observed: dict[str, None] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
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
    return (
        _conform(contract, columns, pa.array(range(1, n + 1), pa.int64()), pa.array(raw_lines, pa.string())),
        list(observed),
    )
