"""Vectorized Arrow building blocks: fixed-width strings, ids, timestamps, contract-typed tables.

Formatting millions of ids and timestamps one Python string at a time would dominate the
simulator's run time, so strings of a fixed width are assembled as a ``(rows, width)`` byte
matrix in numpy and handed to Arrow as the data buffer of a ``StringArray``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ai_data_platform.sources.contracts import SourceTable

ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "DOUBLE": pa.float64(),
    "TIMESTAMP": pa.timestamp("us"),
    "BOOLEAN": pa.bool_(),
}
_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_MASK48 = np.uint64((1 << 48) - 1)


def fixed_width_strings(chars: np.ndarray) -> pa.StringArray:
    """A StringArray whose i-th value is the ASCII bytes of row i of a ``(n, width)`` matrix."""
    n, width = chars.shape
    offsets = np.arange(0, n * width + 1, width, dtype=np.int32)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


def decimal_digits(numbers: np.ndarray, width: int) -> np.ndarray:
    """The zero-padded decimal digits of non-negative integers as a ``(n, width)`` byte matrix."""
    numbers = np.asarray(numbers, dtype=np.int64)
    if numbers.size and (numbers.min() < 0 or numbers.max() >= 10**width):
        raise ValueError(f"numbers do not fit in {width} decimal digits")
    out = np.empty((numbers.size, width), dtype=np.uint8)
    rest = numbers.copy()
    for position in range(width - 1, -1, -1):
        out[:, position] = 48 + rest % 10
        rest //= 10
    return out


def prefixed_numbers(prefix: str, numbers: np.ndarray, width: int) -> pa.StringArray:
    """``prefix`` followed by each number zero-padded to ``width`` digits, e.g. ``C0000123``."""
    digits = decimal_digits(numbers, width)
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    chars = np.empty((digits.shape[0], head.size + width), dtype=np.uint8)
    chars[:, : head.size] = head
    chars[:, head.size :] = digits
    return fixed_width_strings(chars)


def scrambled_hex(prefix: str, numbers: np.ndarray) -> pa.StringArray:
    """``prefix`` + 12 hex digits of a bijective 48-bit scramble of each number.

    Distinct numbers below 2**48 always give distinct tokens, so device and session ids look
    random yet can never collide.
    """
    x = np.asarray(numbers, dtype=np.uint64) & _MASK48
    x = (x * np.uint64(0x9E3779B97F4B)) & _MASK48
    x ^= x >> np.uint64(21)
    x = (x * np.uint64(0xC2B2AE3D27D5)) & _MASK48
    x ^= x >> np.uint64(17)
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    chars = np.empty((x.size, head.size + 12), dtype=np.uint8)
    chars[:, : head.size] = head
    for i in range(12):
        nibble = (x >> np.uint64(44 - 4 * i)) & np.uint64(0xF)
        chars[:, head.size + i] = _HEX_DIGITS[nibble.astype(np.intp)]
    return fixed_width_strings(chars)


def iso_timestamps(seconds: np.ndarray) -> pa.StringArray:
    """Epoch seconds as ``YYYY-MM-DDTHH:MM:SSZ`` strings (contracts.TIMESTAMP_FORMAT)."""
    seconds = np.asarray(seconds, dtype=np.int64)
    n = seconds.size
    chars = np.empty((n, 20), dtype=np.uint8)
    if n == 0:
        return fixed_width_strings(chars)
    days = seconds // 86_400
    of_day = seconds - days * 86_400
    first = days.min()
    calendar = np.arange(first, days.max() + 1).astype("datetime64[D]")
    date_chars = np.datetime_as_string(calendar).astype("S10").view(np.uint8).reshape(-1, 10)
    chars[:, :10] = date_chars[days - first]
    hours, minutes, secs = of_day // 3600, (of_day // 60) % 60, of_day % 60
    chars[:, 10] = ord("T")
    for column, value in ((11, hours), (14, minutes), (17, secs)):
        chars[:, column] = 48 + value // 10
        chars[:, column + 1] = 48 + value % 10
    chars[:, 13] = chars[:, 16] = ord(":")
    chars[:, 19] = ord("Z")
    return fixed_width_strings(chars)


def timestamps(seconds: np.ndarray, missing: np.ndarray | None = None) -> pa.TimestampArray:
    """Epoch seconds as a naive-UTC microsecond timestamp array; ``missing`` rows are null."""
    micros = np.asarray(seconds, dtype=np.int64) * 1_000_000
    return pa.array(micros, type=pa.timestamp("us"), mask=missing)


def pick(vocabulary: Sequence[str], index: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """``vocabulary[index]`` for every row as a StringArray; ``missing`` rows are null."""
    indices = pa.array(np.asarray(index, dtype=np.int32), mask=missing)
    return pa.array(list(vocabulary), type=pa.string()).take(indices)


def with_nulls(values: pa.Array, missing: np.ndarray) -> pa.Array:
    """``values`` with the rows flagged in ``missing`` set to null."""
    if not np.any(missing):
        return values
    return pc.if_else(pa.array(missing), pa.scalar(None, values.type), values)


def contract_schema(contract: SourceTable) -> pa.Schema:
    """The Arrow schema of a contract: its columns in order, typed per ARROW_TYPES."""
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.dtype]) for c in contract.columns])


def contract_table(contract: SourceTable, columns: Mapping[str, object], rows: int) -> pa.Table:
    """A table with exactly the contract's columns, in contract order, cast to contract types.

    ``columns`` maps names to Arrow arrays or numpy arrays; a column left out is all null.
    """
    schema = contract_schema(contract)
    unknown = set(columns) - set(schema.names)
    if unknown:
        raise KeyError(f"{contract.name} has no columns {sorted(unknown)}")
    arrays = []
    for field in schema:
        value = columns.get(field.name)
        if value is None:
            arrays.append(pa.nulls(rows, field.type))
            continue
        array = value if isinstance(value, (pa.Array, pa.ChunkedArray)) else pa.array(value)
        if len(array) != rows:
            raise ValueError(f"{contract.name}.{field.name} has {len(array)} rows, expected {rows}")
        arrays.append(array.cast(field.type) if array.type != field.type else array)
    return pa.Table.from_arrays(arrays, schema=schema)
