"""Byte-stable file writers: CSV and JSON-lines rendered with Arrow compute, Parquet via pyarrow.

Text formats go through a *text table*: the contract's columns with every value already
rendered as a string (timestamps as ``YYYY-MM-DDTHH:MM:SSZ``, booleans ``true``/``false``,
doubles in Arrow's shortest round-trip form) and nulls kept as nulls. Lines are then assembled
column-wise, each ending in ``\\n``, so a file's bytes are simply the lines' data buffer.

* CSV: header of contract column names; standard quoting only where a value contains a comma,
  quote, CR or LF; a null is an empty field.
* JSON-lines: every contract key in contract order; strings quoted, numbers and booleans bare,
  nulls as ``null``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ai_data_platform.private_files import make_private_dir, open_private
from ai_data_platform.sources.contracts import SourceTable
from ai_data_platform.sources.simulator_arrow import iso_timestamps

PARQUET_OPTIONS = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "version": "2.6",
}
_BARE_JSON_TYPES = ("DOUBLE", "BOOLEAN")


def to_text_table(contract: SourceTable, table: pa.Table) -> pa.Table:
    """The table with every column rendered to strings the way text files show them."""
    columns = []
    for column in contract.columns:
        values = table.column(column.name).combine_chunks()
        if column.dtype == "TIMESTAMP":
            seconds = pc.fill_null(values.cast(pa.int64()), 0).to_numpy() // 1_000_000
            text = iso_timestamps(seconds)
            values = pc.if_else(values.is_null(), pa.scalar(None, pa.string()), text) if values.null_count else text
        elif column.dtype != "VARCHAR":
            values = values.cast(pa.string())
        columns.append(values)
    return pa.Table.from_arrays(columns, names=list(contract.column_names))


def _value_bytes(values: pa.Array) -> np.ndarray:
    """All bytes of a string array's values, concatenated (a view, no copy)."""
    if len(values) == 0 or values.buffers()[2] is None:
        return np.empty(0, dtype=np.uint8)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1, offset=values.offset * 4)
    return np.frombuffer(values.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]


def _contains_any(values: pa.Array, characters: bytes) -> bool:
    data = _value_bytes(values)
    return bool(np.isin(data, np.frombuffer(characters, dtype=np.uint8)).any()) if data.size else False


def _csv_cell(values: pa.Array) -> pa.Array:
    if not _contains_any(values, b',"\r\n'):
        return values
    needs_quotes = pc.match_substring_regex(values, r'[,"\r\n]')
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.if_else(needs_quotes, quoted, values)


def csv_header(contract: SourceTable) -> bytes:
    return (",".join(contract.column_names) + "\n").encode("utf-8")


def csv_lines(text: pa.Table, fields: int | None = None) -> pa.Array:
    """One CSV line per row (with its newline); ``fields`` keeps only the first few columns."""
    cells = [_csv_cell(text.column(i).combine_chunks()) for i in range(fields or text.num_columns)]
    line = pc.binary_join_element_wise(*cells, ",", null_handling="replace", null_replacement="")
    return pc.binary_join_element_wise(line, "\n", "")


def _json_escaped(values: pa.Array) -> pa.Array:
    """String values escaped for a JSON string literal (quotes not added)."""
    data = _value_bytes(values)
    if data.size and (data < 0x20).any():
        raise ValueError("control characters are not supported in simulated JSON strings")
    if _contains_any(values, b'"\\'):
        values = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    return values


def jsonl_lines(contract: SourceTable, text: pa.Table) -> pa.Array:
    """One JSON object per row (with its newline), keys in contract order, nulls as null.

    Literal text between values (keys, and the quotes of never-null strings) is merged into as
    few pieces as possible, since the row-wise join dominates the cost.
    """
    pieces: list[object] = []
    closing = ""  # what the previous value still needs: its closing quote, if folded in
    for i, column in enumerate(contract.columns):
        values = text.column(column.name).combine_chunks()
        literal = closing + ("{" if i == 0 else ",") + f'"{column.name}":'
        closing = ""
        if column.dtype in _BARE_JSON_TYPES:
            pieces += [literal, pc.fill_null(values, "null") if values.null_count else values]
        elif values.null_count == 0:
            pieces += [literal + '"', _json_escaped(values)]
            closing = '"'
        else:
            quoted = pc.binary_join_element_wise('"', _json_escaped(values), '"', "")
            pieces += [literal, pc.fill_null(quoted, "null")]
    pieces.append(closing + "}\n")
    return pc.binary_join_element_wise(*pieces, "")


def truncated_jsonl_lines(lines: pa.Array, keep_chars: int = 40) -> pa.Array:
    """Cut JSON lines short (no closing brace), leaving lines that are not valid JSON."""
    return pc.binary_join_element_wise(pc.utf8_slice_codeunits(lines, 0, keep_chars), "\n", "")


def _joined_bytes(lines: pa.Array) -> memoryview:
    """The concatenation of all lines: the slice of the data buffer their offsets span."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    if len(lines) == 0:
        return memoryview(b"")
    if lines.null_count:
        raise ValueError("a rendered line is null")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    return memoryview(lines.buffers()[2])[offsets[0] : offsets[-1]]


def write_lines(path: Path, lines: pa.Array, header: bytes = b"") -> None:
    """Write a header then every line; the file is byte-for-byte what the arrays hold (owner-only,
    like its folders: landing files hold personal data)."""
    make_private_dir(path.parent)
    with open_private(path, "wb") as out:
        out.write(header)
        out.write(_joined_bytes(lines))


def write_parquet(path: Path, table: pa.Table) -> None:
    """Write a Parquet file with fixed options (no timestamps or host details in metadata), owner-only."""
    make_private_dir(path.parent)
    with open_private(path, "wb") as out:
        pq.write_table(table, out, **PARQUET_OPTIONS)
