"""Finding PII where it must not be: direct-PII columns, and values that look like emails or phones.

Used by the blocking PII gates (:mod:`ai_data_platform.governance.pii_checks`) on every feature,
dataset and model asset. Three rules on columns and two on values:

- ``direct_pii_column``: a column classified ``direct``, or named like a column the source
  contracts classify ``direct`` (``email``, ``phone``, ...), whatever it is classified as here;
- ``unclassified_column``: a column the asset's column schema does not classify (nobody has
  decided it is safe);
- ``email_value`` / ``phone_value``: a text value matching :data:`EMAIL_PATTERN` /
  :data:`PHONE_PATTERN` anywhere in it.

Values are scanned inside DuckDB, one aggregate query over every VARCHAR column of the relation
(a warehouse partition, or a Parquet file through ``read_parquet``) with RE2 regexes; nothing is
pulled into Python but one sample per finding, which is masked before it is reported. Pure logic
over a DuckDB connection: no Dagster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import duckdb

from ai_data_platform.governance.classification import PII_DIRECT, direct_pii_names
from ai_data_platform.warehouse import quote

# RE2 and Python ``re`` both accept these. An email: local part, @, dotted domain with a TLD.
EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
# A phone: E.164 (+ and 7-15 digits), an international or national number split by spaces or
# hyphens (+1 415 555 0100, 030 1234 5678), or North-American (415) 555-0100. Bounded by
# non-alphanumerics so ids (C0000001, E0000000042), dates (2026-11-20) and IPs do not match.
PHONE_PATTERN = (
    r"(^|[^0-9A-Za-z+])("
    r"\+[1-9][0-9]{6,14}"
    r"|\+?[0-9]{1,4}[ -]\(?[0-9]{2,4}\)?[ -][0-9]{3,4}([ -]?[0-9]{2,4})?"
    r"|\(?[0-9]{3}\)?[ -][0-9]{3}[ -][0-9]{4}"
    r")([^0-9A-Za-z]|$)"
)
VALUE_RULES = {
    "email_value": (EMAIL_PATTERN, "look like an email address"),
    "phone_value": (PHONE_PATTERN, "look like a phone number"),
}
COLUMN_RULES = {
    "direct_pii_column": "is direct PII",
    "unclassified_column": "has no PII classification in the asset's column schema",
}
TEXT_TYPES = ("VARCHAR", "TEXT", "STRING")


@dataclass(frozen=True)
class Finding:
    """One rule broken by one column of one partition (or dataset version / model)."""

    asset: str
    partition: str | None
    column: str
    rule: str
    detail: str
    count: int = 0
    sample: str | None = None  # masked

    def describe(self) -> str:
        where = f"{self.asset}" + (f" partition {self.partition}" if self.partition else "")
        if self.rule in VALUE_RULES:
            text = f"{where}: column {self.column}: {self.count} value(s) {self.detail} (rule {self.rule})"
            return text + (f", e.g. {self.sample}" if self.sample else "")
        return f"{where}: column {self.column} {self.detail} (rule {self.rule})"

    def to_dict(self) -> dict:
        return asdict(self)


def mask(value: str, rule: str) -> str:
    """A sample safe to show: the shape of the value without the value.

    ``jane.doe@example.com`` -> ``j*******@e******.com``; ``+4915112345678`` -> ``+49*********78``.
    """
    if rule == "email_value":
        match = re.search(EMAIL_PATTERN, value)
        if match:
            local, _, domain = match.group(0).partition("@")
            host, _, tld = domain.rpartition(".")
            return f"{local[:1]}{'*' * max(len(local) - 1, 1)}@{host[:1]}{'*' * max(len(host) - 1, 1)}.{tld}"
    if rule == "phone_value":
        match = re.search(PHONE_PATTERN, value)
        if match:
            phone = match.group(2)
            digits = [i for i, ch in enumerate(phone) if ch.isdigit()]
            keep = set(digits[:2] + digits[-2:])
            return "".join(ch if (i in keep or not ch.isdigit()) else "*" for i, ch in enumerate(phone))
    return "*" * min(len(value), 12)


def column_findings(
    asset: str,
    partition: str | None,
    columns: Iterable[str],
    declared: Mapping[str, str | None],
) -> list[Finding]:
    """Column rules for the columns a relation actually has against the asset's classification."""
    named_direct = direct_pii_names()
    out = []
    for column in columns:
        level = declared.get(column)
        if level == PII_DIRECT or column in named_direct:
            why = "is classified direct PII" if level == PII_DIRECT else "is named like a direct identifier of the source contracts"
            out.append(Finding(asset, partition, column, "direct_pii_column", why))
        elif column not in declared or level is None:
            out.append(Finding(asset, partition, column, "unclassified_column", COLUMN_RULES["unclassified_column"]))
    return out


def describe_relation(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    """(name, type) of every column of a relation (a table name or a table function call)."""
    return [(row[0], row[1]) for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]


def _is_text(dtype: str) -> bool:
    return dtype.upper().split("(")[0] in TEXT_TYPES


def value_findings(
    con: duckdb.DuckDBPyConnection,
    asset: str,
    relation: str,
    columns: Sequence[tuple[str, str]],
    *,
    partition_column: str | None = None,
    where: str = "TRUE",
    partition: str | None = None,
) -> list[Finding]:
    """Value rules over every text column of ``relation`` in one aggregate query.

    With ``partition_column`` the findings are per value of that column (one query, grouped);
    otherwise they are labelled ``partition``. ``where`` restricts the rows scanned.
    """
    text = [name for name, dtype in columns if _is_text(dtype)]
    if not text:
        return []
    select = []
    for i, name in enumerate(text):
        col = quote(name)
        for rule, (pattern, _) in VALUE_RULES.items():
            hit = f"regexp_matches({col}, '{pattern}')"
            select.append(f"count(*) FILTER (WHERE {hit}) AS n_{rule}_{i}")
            select.append(f"min({col}) FILTER (WHERE {hit}) AS s_{rule}_{i}")
    group = f"CAST({quote(partition_column)} AS VARCHAR)" if partition_column else "NULL"
    sql = f"SELECT {group} AS _p, {', '.join(select)} FROM {relation} WHERE {where} GROUP BY ALL ORDER BY 1"
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    out = []
    for row in cursor.fetchall():
        values = dict(zip(names, row))
        label = values["_p"] if partition_column else partition
        for i, name in enumerate(text):
            for rule, (_, detail) in VALUE_RULES.items():
                count = values[f"n_{rule}_{i}"]
                if count:
                    out.append(Finding(asset, label, name, rule, detail, int(count), mask(str(values[f"s_{rule}_{i}"]), rule)))
    return out


def scan_relation(
    con: duckdb.DuckDBPyConnection,
    asset: str,
    relation: str,
    declared: Mapping[str, str | None],
    *,
    partition_column: str | None = None,
    where: str = "TRUE",
    partition: str | None = None,
    partitions: Sequence[str] = (),
) -> list[Finding]:
    """Every column and value finding for a relation. Column findings are reported for each of
    ``partitions`` (the partitions the run wrote) or ``partition``."""
    columns = describe_relation(con, relation)
    labels = list(partitions) or [partition]
    found = [f for label in labels for f in column_findings(asset, label, (n for n, _ in columns), declared)]
    return found + value_findings(con, asset, relation, columns, partition_column=partition_column, where=where, partition=partition)


def text_findings(asset: str, partition: str | None, values: Mapping[str, object]) -> list[Finding]:
    """Value rules over a small JSON-like document (a model card): ``{path: value}`` flattened."""
    out = []
    for path, value in _flatten(values):
        if not isinstance(value, str):
            continue
        for rule, (pattern, detail) in VALUE_RULES.items():
            if re.search(pattern, value):
                out.append(Finding(asset, partition, path, rule, detail, 1, mask(value, rule)))
    return out


def _flatten(value: object, prefix: str = "") -> Iterable[tuple[str, object]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def summarize(findings: Sequence[Finding], scanned: str) -> str:
    """The check's message: every finding, or what was scanned and found clean."""
    if not findings:
        return f"no PII found: {scanned}"
    return f"{len(findings)} PII finding(s): " + "; ".join(f.describe() for f in findings)
