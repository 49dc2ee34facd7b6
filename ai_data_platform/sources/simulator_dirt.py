"""Dirt: extra bad rows mixed into a day's clean rows, each caught by exactly one staging rule.

Staging checks rows in the order malformed_row -> not_null -> invalid_timestamp ->
accepted_values -> non_negative -> known_customer -> unique_key (first failing rule wins), so
every injected row is a copy of a clean, non-corrupted row with exactly one defect:

==================  ===============================================================
duplicate           an exact copy (dropped by unique_key; never quarantined)
malformed           CSV: the first three fields only; JSON-lines: a cut-off object;
                    Parquet: a value outside an accepted_values column's set
null_required       one required non-key column null
unknown_customer    a customer reference no CRM row has
bad_timestamp       the time column unparseable (text) or out of range (Parquet)
==================  ===============================================================

All copies but duplicates get a fresh key from a range clean keys never use, so a dirty row
never makes a clean row fail unique_key. Clean rows are never altered — except by the explicit
``corrupt`` option, which rewrites the customer reference of a share of a file's clean rows.
Counts per kind are binomial draws from the number of clean rows.

**Regions.** Given the region of each clean row (the CRM's tables), every row of the file gets one:
a dirty copy is in its original's region, and a record whose customer reference is unknown (the
``unknown_customer`` dirt and ``corrupt``) in :data:`UNKNOWN_CUSTOMER_REGION`. The dirt is drawn
for the whole day first, so a day's rows, dirt and bytes do not depend on the split;
:meth:`FileRows.by_region` then cuts the file into one per region, each counting its own dirt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ai_data_platform.sources.contracts import DIRT_KINDS, REGIONS, SourceTable
from ai_data_platform.sources.simulator_ids import fresh_ids, unknown_customer_ids, unknown_emails
from ai_data_platform.sources.simulator_writers import (
    csv_lines,
    jsonl_lines,
    to_text_table,
    truncated_jsonl_lines,
)

CLEAN = -1
KIND_CODES = {kind: code for code, kind in enumerate(DIRT_KINDS)}
UNPARSEABLE_TIMESTAMPS = ("2026-02-30T25:61:00Z", "not-a-date", "31/12/2025 24:00")
OUT_OF_RANGE_TIMESTAMPS = (datetime(1900, 1, 1), datetime(2999, 1, 1))
INVALID_VALUES = {"plan": "legacy_gold", "currency": "XXX"}
DEFAULT_INVALID_VALUE = "??"
CSV_MALFORMED_FIELDS = 3
# A source cannot attribute a record from an unknown customer (an email no customer has) to a
# region: it exports it to the EU zone, the strictest regime (the platform's own default region,
# governance/stores.DEFAULT_REGION, for records it cannot place).
UNKNOWN_CUSTOMER_REGION = REGIONS.index("EU")


@dataclass
class FileRows:
    """What one landing file will hold: a table (Parquet) or rendered lines (CSV, JSON-lines); for
    a file exported per region (the CRM's), each row's region (index into ``REGIONS``) and the dirt
    it counts as (``CLEAN`` or an index into ``DIRT_KINDS``)."""

    table: pa.Table | None
    lines: pa.Array | None
    rows: int
    dirt: dict[str, int] = field(default_factory=dict)
    kinds: np.ndarray | None = None
    regions: np.ndarray | None = None

    def by_region(self) -> list[tuple[str | None, FileRows]]:
        """``[(region, the rows of that region)]`` for every region in order (a region without rows
        gets an empty file), or ``[(None, self)]`` when rows have no region."""
        if self.regions is None:
            return [(None, self)]
        parts = []
        for index, region in enumerate(REGIONS):
            mask = self.regions == index
            kinds = self.kinds[mask]
            dirt = {kind: int((kinds == code).sum()) for kind, code in KIND_CODES.items()}
            keep = pa.array(mask)
            table = None if self.table is None else self.table.filter(keep)
            lines = None if self.lines is None else self.lines.filter(keep)
            parts.append((region, FileRows(table, lines, int(mask.sum()), dirt, kinds, self.regions[mask])))
        return parts


class DirtInjector:
    """Turns a day's clean table into file contents; owns the fresh-id and unknown counters."""

    def __init__(self, dirty_rate: float):
        self.dirty_rate = dirty_rate
        self._fresh_serials: dict[str, int] = {}
        self._unknown_serial = 0

    def file_rows(
        self,
        contract: SourceTable,
        clean: pa.Table,
        rng: np.random.Generator,
        corrupt_rate: float = 0.0,
        regions: np.ndarray | None = None,
    ) -> FileRows:
        """Corrupt (if asked), add dirt at random positions and render for the file format.
        ``regions``: the region of each clean row, if the file is exported per region."""
        counts = {kind: 0 for kind in DIRT_KINDS}
        clean, usable = self._corrupt(contract, clean, corrupt_rate, rng, counts)
        text = contract.file_format != "parquet"
        base = to_text_table(contract, clean) if text else clean
        pieces, kinds = [base], [np.full(base.num_rows, CLEAN)]
        row_regions = None
        if regions is not None:
            row_regions = np.full(base.num_rows, UNKNOWN_CUSTOMER_REGION, dtype=np.int8)  # corrupted rows stay so
            row_regions[usable] = regions[usable]
            row_regions = [row_regions]
        for kind in DIRT_KINDS:
            size = self._dirt_count(contract, kind, usable.size, rng)
            if size == 0:
                continue
            chosen = rng.choice(usable, size)
            source = base.take(pa.array(chosen))
            pieces.append(self._dirty_copies(contract, kind, source, rng, text))
            kinds.append(np.full(size, KIND_CODES[kind]))
            if row_regions is not None:
                unknown = kind == "unknown_customer"
                row_regions.append(np.full(size, UNKNOWN_CUSTOMER_REGION, dtype=np.int8) if unknown else regions[chosen].astype(np.int8))
            counts[kind] += size
        combined = pa.concat_tables(pieces).combine_chunks()
        kind = np.concatenate(kinds)
        order = _mixed_order(kind, rng)
        ordered_kinds = ordered_regions = None
        if row_regions is not None:  # what each row counts as, to count each region's dirt
            counted = kind.copy()
            if usable.size < base.num_rows:  # corrupted clean rows count as unknown_customer
                counted[np.setdiff1d(np.arange(base.num_rows), usable)] = KIND_CODES["unknown_customer"]
            ordered_kinds, ordered_regions = counted[order], np.concatenate(row_regions)[order]
        if not text:
            table = combined.take(pa.array(order))
            return FileRows(table=table, lines=None, rows=kind.size, dirt=counts, kinds=ordered_kinds, regions=ordered_regions)
        lines = self._render(contract, combined, kind).take(pa.array(order))
        return FileRows(table=None, lines=lines, rows=kind.size, dirt=counts, kinds=ordered_kinds, regions=ordered_regions)

    # --- corruption ---------------------------------------------------------------------

    def _corrupt(self, contract, clean, rate, rng, counts) -> tuple[pa.Table, np.ndarray]:
        """Rewrite the customer reference of ``rate`` of the rows; return the untouched rows."""
        n = clean.num_rows
        size = int(np.floor(rate * n + 0.5)) if rate > 0 else 0
        if size == 0:
            return clean, np.arange(n)
        hit = np.zeros(n, dtype=bool)
        hit[rng.choice(n, size, replace=False)] = True
        ref = contract.customer_ref
        column = clean.column(ref).combine_chunks()
        spread = pa.array(np.cumsum(hit) - 1, mask=~hit)  # k-th hit row -> k-th unknown ref
        replacement = self._unknown_refs(contract, size).take(spread)
        rewritten = pc.if_else(pa.array(hit), replacement, column)
        counts["unknown_customer"] += size
        return _replace(clean, ref, rewritten), np.flatnonzero(~hit)

    def _unknown_refs(self, contract: SourceTable, size: int) -> pa.Array:
        serials = self._unknown_serial + 1 + np.arange(size, dtype=np.int64)
        self._unknown_serial += size
        if contract.customer_ref == "customer_email":
            return unknown_emails(serials)
        return unknown_customer_ids(serials)

    # --- injected rows ------------------------------------------------------------------

    def _dirt_count(self, contract: SourceTable, kind: str, usable: int, rng) -> int:
        draw = int(rng.binomial(usable, self.dirty_rate)) if usable else 0
        if kind == "unknown_customer" and contract.customer_ref is None:
            return 0
        return draw

    def _fresh_keys(self, contract: SourceTable, size: int) -> pa.Array:
        start = self._fresh_serials.get(contract.name, 0)
        self._fresh_serials[contract.name] = start + size
        return fresh_ids(contract.name, start + 1 + np.arange(size, dtype=np.int64))

    def _dirty_copies(self, contract, kind, source: pa.Table, rng, text: bool) -> pa.Table:
        if kind == "duplicate":
            return source
        rows = _replace(source, contract.key, self._fresh_keys(contract, source.num_rows))
        if kind == "malformed":
            return rows if text else _invalid_accepted_value(contract, rows, rng)
        if kind == "null_required":
            return _null_required_column(contract, rows, rng)
        if kind == "unknown_customer":
            refs = self._unknown_refs(contract, rows.num_rows)
            return _replace(rows, contract.customer_ref, refs)
        if kind == "bad_timestamp":
            return _bad_time(contract, rows, rng, text)
        raise ValueError(f"unknown dirt kind {kind!r}")

    def _render(self, contract: SourceTable, combined: pa.Table, kind: np.ndarray) -> pa.Array:
        """Lines of a text file; malformed rows rendered cut short."""
        malformed = kind == KIND_CODES["malformed"]
        whole = np.flatnonzero(~malformed)
        cut = np.flatnonzero(malformed)
        if contract.file_format == "csv":
            whole_lines = csv_lines(combined.take(pa.array(whole)))
            cut_lines = csv_lines(combined.take(pa.array(cut)), fields=CSV_MALFORMED_FIELDS)
        else:
            whole_lines = jsonl_lines(contract, combined.take(pa.array(whole)))
            cut_lines = truncated_jsonl_lines(jsonl_lines(contract, combined.take(pa.array(cut))))
        position = np.empty(kind.size, dtype=np.int64)
        position[whole] = np.arange(whole.size)
        position[cut] = whole.size + np.arange(cut.size)
        return pa.concat_arrays([whole_lines, cut_lines.cast(whole_lines.type)]).take(pa.array(position))


def _mixed_order(kind: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row order with clean rows in sequence and each dirty row slotted in at random."""
    clean = kind == CLEAN
    n_clean = int(clean.sum())
    key = np.empty(kind.size, dtype=np.int64)
    key[clean] = 2 * np.arange(n_clean) + 1
    key[~clean] = 2 * rng.integers(0, n_clean + 1, int((~clean).sum()))
    return np.argsort(key, kind="stable")


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, table.schema.field(index), values.cast(table.schema.field(index).type))


def _null_required_column(contract: SourceTable, rows: pa.Table, rng) -> pa.Table:
    candidates = [c.name for c in contract.columns if c.required and c.name != contract.key]
    choice = rng.integers(0, len(candidates), rows.num_rows)
    for position, name in enumerate(candidates):
        hit = choice == position
        if hit.any():
            column = rows.column(name).combine_chunks()
            rows = _replace(rows, name, pc.if_else(pa.array(hit), pa.scalar(None, column.type), column))
    return rows


def _invalid_accepted_value(contract: SourceTable, rows: pa.Table, rng) -> pa.Table:
    candidates = [c.name for c in contract.columns if c.accepted_values]
    choice = rng.integers(0, len(candidates), rows.num_rows)
    for position, name in enumerate(candidates):
        hit = choice == position
        if hit.any():
            bad = INVALID_VALUES.get(name, DEFAULT_INVALID_VALUE)
            column = rows.column(name).combine_chunks()
            rows = _replace(rows, name, pc.if_else(pa.array(hit), pa.scalar(bad), column))
    return rows


def _bad_time(contract: SourceTable, rows: pa.Table, rng, text: bool) -> pa.Table:
    pool = pa.array(UNPARSEABLE_TIMESTAMPS if text else OUT_OF_RANGE_TIMESTAMPS)
    values = pool.take(pa.array(rng.integers(0, len(pool), rows.num_rows)))
    return _replace(rows, contract.time_column, values)
