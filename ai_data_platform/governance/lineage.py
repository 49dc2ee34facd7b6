"""Where did this column come from? Column lineage walked back to the landing files.

:func:`trace` follows the ``dagster/column_lineage`` metadata of the asset definitions (never a
hard-coded map) from a column of any asset - a training-set feature, a mart column - through
features and staging to the raw table, and from the raw table to the landing files it loads
(its ``adp/landing_pattern``, e.g. ``landing/billing/payments/<day>.parquet``). An asset without
column lineage for a column falls back to its upstream assets. Given an asset without a column,
it traces every column of the asset (or, when the asset has no column lineage, its upstream
assets). Each node carries its PII classification. Pure functions over an asset graph.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

import dagster as dg

from ai_data_platform.governance import classification

LANDING_PATTERN_KEY = "adp/landing_pattern"
# {raw column: {"column": landing file column, "pii": its level}} for columns computed at load
LANDING_COLUMNS_KEY = "adp/landing_columns"


class LineageError(ValueError):
    """The asked asset or column does not exist."""


@dataclass
class Node:
    """One step of the walk: an asset column, an asset, or a source file (``asset`` None)."""

    asset: str | None
    column: str | None = None
    pii: str | None = None
    source: str | None = None  # a landing file pattern, for source-file nodes
    inputs: list[Node] = field(default_factory=list)
    repeated: bool = False  # expanded earlier in the same tree

    @property
    def label(self) -> str:
        if self.asset is None:
            return f"{self.source}" + (f" : {self.column}" if self.column else "")
        return self.asset + (f".{self.column}" if self.column else "")

    def to_dict(self) -> dict:
        out: dict = {"asset": self.asset, "column": self.column, "pii": self.pii}
        if self.source:
            out["source_files"] = self.source
        if self.repeated:
            out["expanded_above"] = True
        out["inputs"] = [n.to_dict() for n in self.inputs]
        return out

    def sources(self) -> dict[str, set[str]]:
        """``{landing file pattern: columns}`` reached from this node."""
        found: dict[str, set[str]] = {}
        stack = [self]
        while stack:
            node = stack.pop()
            if node.source:
                found.setdefault(node.source, set()).update([node.column] if node.column else [])
            stack.extend(node.inputs)
        return found


def _metadata_value(value):
    return value.value if isinstance(value, dg.MetadataValue) else value


class _Walker:
    def __init__(self, graph) -> None:
        self.graph = graph
        self.expanded: set[tuple[str, str | None]] = set()

    def _levels(self, key: dg.AssetKey) -> dict[str, str | None]:
        schema = classification.schema_of(self.graph.get(key).metadata)
        return classification.levels(schema) if schema is not None else {}

    def _landing(self, key: dg.AssetKey) -> str | None:
        pattern = _metadata_value(self.graph.get(key).metadata.get(LANDING_PATTERN_KEY))
        return str(pattern).replace("<day>", "*") if pattern else None

    def column(self, key: dg.AssetKey, column: str) -> Node:
        name = key.to_user_string()
        node = Node(name, column, self._levels(key).get(column))
        if (name, column) in self.expanded:
            node.repeated = True
            return node
        self.expanded.add((name, column))
        lineage = classification.lineage_of(self.graph.get(key).metadata)
        landing = self._landing(key)
        if lineage is not None and column in lineage.deps_by_column:
            node.inputs = [self.column(d.asset_key, d.column_name) for d in lineage.deps_by_column[column]]
        elif landing is not None:  # a raw table: its columns are the file's, the _columns are load metadata
            derived = (_metadata_value(self.graph.get(key).metadata.get(LANDING_COLUMNS_KEY)) or {}).get(column)
            if derived is not None:  # a pseudonym computed at load from a file column (email_hash <- email)
                node.inputs = [Node(None, derived["column"], derived["pii"], landing)]
            else:
                node.inputs = [Node(None, None if column.startswith("_") else column, node.pii, landing)]
        else:
            node.inputs = [self.asset(parent) for parent in self._parents(key)]
        return node

    def asset(self, key: dg.AssetKey) -> Node:
        name = key.to_user_string()
        node = Node(name)
        if (name, None) in self.expanded:
            node.repeated = True
            return node
        self.expanded.add((name, None))
        landing = self._landing(key)
        node.inputs = [self.asset(parent) for parent in self._parents(key)]
        if landing is not None:
            node.inputs.append(Node(None, None, None, landing))
        return node

    def _parents(self, key: dg.AssetKey) -> list[dg.AssetKey]:
        return sorted(self.graph.get(key).parent_keys, key=lambda k: k.to_user_string())


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def parse_target(graph, target: str) -> tuple[dg.AssetKey, str | None]:
    """``schema/table.column`` or ``schema/table`` -> (asset key, column or None)."""
    keys = {k.to_user_string(): k for k in graph.get_all_asset_keys()}
    if target in keys:
        return keys[target], None
    asset, dot, column = target.rpartition(".")
    if dot and asset in keys:
        columns = {c.name for c in (classification.schema_of(graph.get(keys[asset]).metadata) or dg.TableSchema(columns=[])).columns}
        if column not in columns:
            raise LineageError(f"{asset} has no column {column!r}{_suggest(column, columns)}")
        return keys[asset], column
    raise LineageError(f"no asset {asset if dot else target!r}{_suggest(asset if dot else target, keys)}")


def trace(graph, target: str) -> Node:
    """The lineage tree of ``target`` (an asset, or ``asset.column``)."""
    key, column = parse_target(graph, target)
    walker = _Walker(graph)
    if column is not None:
        return walker.column(key, column)
    lineage = classification.lineage_of(graph.get(key).metadata)
    if lineage is None:
        return walker.asset(key)
    levels = walker._levels(key)
    root = Node(key.to_user_string())
    root.inputs = [walker.column(key, c) for c in levels if c in lineage.deps_by_column]
    return root


def render(node: Node) -> str:
    """The tree as text, one node per line, with the PII level of each column."""
    lines = [_line(node)]

    def walk(children: list[Node], prefix: str) -> None:
        for i, child in enumerate(children):
            last = i == len(children) - 1
            lines.append(prefix + ("└── " if last else "├── ") + _line(child))
            walk(child.inputs, prefix + ("    " if last else "│   "))

    walk(node.inputs, "")
    sources = node.sources()
    if sources:
        lines.append("source files:")
        for pattern in sorted(sources):
            columns = ", ".join(sorted(sources[pattern]))
            lines.append(f"  {pattern}" + (f"  (columns: {columns})" if columns else ""))
    return "\n".join(lines)


def _line(node: Node) -> str:
    text = node.label
    if node.pii:
        text += f"  [pii: {node.pii}]"
    if node.repeated:
        text += "  (expanded above)"
    return text
