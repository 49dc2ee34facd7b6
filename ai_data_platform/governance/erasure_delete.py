"""Deleting exactly a subject's records from the warehouse, the regional stores and the dataset
versions (``attribution.py`` says which records are theirs).

Source tables are deleted by **row key** (``_partition_date``, ``_row_number``): a record found to
be theirs in any layer (``raw``, ``staging``, ``quarantine``, a regional store's personal tables) by
an identifier column or its raw text goes from every layer, so row conservation still holds. Every
other table (marts, features, scores, ``stream.events``, any table added later) loses the rows whose
``customer_id`` is theirs, or, in a row without a customer id (no such column, or a blank one),
whose ``email_hash`` or ``phone_hash`` is. A row under another customer id is never theirs. A raw
text is first filtered in SQL by the subject's identifiers as substrings, then judged in Python.

A source record that carries no customer id (a support ticket: only the email it came from) is
theirs by its email alone, whatever ``customer_id`` staging derived for it (the latest customer
with that email, :data:`DERIVED_ID_COLUMN`): a ticket from an email they share with another
customer is kept, and only its link to them is removed (that ``customer_id`` set to NULL).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import duckdb

from ai_data_platform import warehouse
from ai_data_platform.governance import suppression
from ai_data_platform.governance.attribution import Identifiers, written_forms
from ai_data_platform.governance.erasure_subject import Subject
from ai_data_platform.governance.personal_data import holds_personal_data
from ai_data_platform.governance.pii import normalize_email_sql, normalize_phone_sql
from ai_data_platform.governance.stores import PERSONAL_TABLES, QUARANTINE_PERSONAL, RAW_PERSONAL
from ai_data_platform.sources.contracts import SOURCE_TABLES, SourceTable

SOURCE_LAYERS = ("raw", "staging", "quarantine")
DERIVED_ID_COLUMN = "customer_id"  # in a layer of a table whose records carry none: derived by staging
RAW_TEXT_COLUMNS = ("_raw_line", "raw_record")  # where a record is kept as received


def text_candidates(column: str, ids: Identifiers) -> tuple[str, list[str]]:
    """A SQL condition (and its parameters) true for every raw text in ``column`` that may be the
    subject's: it holds one of their identifiers in a written form (``attribution.written_forms``; a
    phone as digits), or a JSON escape.
    Each candidate is then judged in Python (``Identifiers.owns_line``)."""
    q = warehouse.quote(column)
    digits = f"regexp_replace({q}, '[^0-9]', '', 'g')"
    conds = [(f"contains({q}, ?)", form) for i in sorted(ids.customer_ids) for form in sorted(written_forms(i))]
    conds += [(f"contains(lower({q}), ?)", form) for e in sorted(ids.emails) for form in sorted(written_forms(e))]
    conds += [(f"contains({digits}, ?)", p.lstrip("+")) for p in sorted(ids.phones)]
    condition = " OR ".join([c for c, _ in conds] + [f"contains({q}, '\\u')"])
    return f"{q} IS NOT NULL AND ({condition})", [v for _, v in conds]


_ID = "trim(CAST(customer_id AS VARCHAR))"
_WITHOUT_ID = f"nullif({_ID}, '') IS NULL"  # a row with no customer id: theirs by email or phone


def _keyed_conditions(columns: set[str], subject: Subject) -> tuple[str, list[object]] | None:
    """A condition (and its parameters) selecting the subject's rows by the identifier columns
    present: the customer id; without one, their emails and phones and the HMACs of them."""
    contact: list[tuple[str, object]] = []
    for column in ("email_hash", "customer_email_hash"):
        if column in columns:
            contact.append((f"list_contains(?, {column})", sorted(subject.email_hashes)))
    if "phone_hash" in columns:
        contact.append(("list_contains(?, phone_hash)", sorted(subject.phone_hashes)))
    ids = subject.identifiers()
    for column in ("email", "customer_email"):
        if column in columns and ids.emails:
            contact.append((f"list_contains(?, {normalize_email_sql(column)})", sorted(ids.emails)))
    if "phone" in columns and ids.phones:
        contact.append((f"list_contains(?, {normalize_phone_sql('phone')})", sorted(ids.phones)))
    by_contact = " OR ".join(c for c, _ in contact)
    params = [p for _, p in contact]
    if "customer_id" not in columns:
        return (by_contact, params) if contact else None
    if not contact:
        return f"{_ID} = ?", [subject.customer_id]
    return f"{_ID} = ? OR ({_WITHOUT_ID} AND ({by_contact}))", [subject.customer_id, *params]


def _row_sources(
    con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str]
) -> Iterator[tuple[str, str, set[str], list[str]]]:
    """(source table, relation, columns, raw text columns) of every relation keyed like the
    table's raw rows: raw, staging, quarantine and the regional stores (any of them may be the
    only one left holding a row, e.g. after retention deleted old raw partitions)."""
    for t in SOURCE_TABLES:
        for layer in SOURCE_LAYERS:
            relation = f"{layer}.{t.name}"
            if warehouse.table_exists(con, relation):
                columns = {c for c, _ in warehouse.table_columns(con, relation)}
                # a table holding personal data keeps an HMAC digest of its raw lines here: the
                # lines themselves are in the regional store
                digest_only = layer == "raw" and holds_personal_data(t)
                texts = [c for c in RAW_TEXT_COLUMNS if c in columns and not digest_only]
                yield t.name, relation, columns - _derived_columns(t, columns), texts
        if holds_personal_data(t):
            for table in (RAW_PERSONAL[t.name], QUARANTINE_PERSONAL[t.name]):
                columns = {c for c, _ in table.columns}
                for a in aliases.values():
                    yield t.name, f"{a}.{table.name}", columns, [c for c in RAW_TEXT_COLUMNS if c in columns]


def _derived_columns(t: SourceTable, columns: set[str]) -> set[str]:
    """The identifier columns a layer of ``t`` holds that its records do not carry (derived)."""
    return {DERIVED_ID_COLUMN} & columns - set(t.column_names)


def _unlink_derived(con: duckdb.DuckDBPyConnection, subject: Subject) -> dict[str, int]:
    """Set to NULL the customer id staging derived as theirs for records that are not theirs (kept:
    a ticket from an email they share); {place: records unlinked}."""
    counts = {}
    for t in SOURCE_TABLES:
        for layer in SOURCE_LAYERS:
            relation = f"{layer}.{t.name}"
            if warehouse.table_exists(con, relation):
                columns = {c for c, _ in warehouse.table_columns(con, relation)}
                if _derived_columns(t, columns):
                    n = con.execute(f"UPDATE {relation} SET {DERIVED_ID_COLUMN} = NULL WHERE {_ID} = ?",
                                    [subject.customer_id]).fetchone()[0]
                    if n:
                        counts[f"{relation}.{DERIVED_ID_COLUMN} of records not theirs alone (records kept)"] = n
    return counts


def _subject_row_keys(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], subject: Subject) -> None:
    """Temp table ``_erase_rows(tbl, _partition_date, _row_number)``: the subject's records in every
    source table, by identifier columns and by the raw texts :class:`Identifiers` attributes to them."""
    con.execute("CREATE OR REPLACE TEMP TABLE _erase_rows (tbl VARCHAR, _partition_date DATE, _row_number BIGINT)")
    ids = subject.identifiers()
    for tbl, relation, columns, texts in _row_sources(con, aliases):
        keyed = _keyed_conditions(columns, subject)
        if keyed:
            condition, params = keyed
            con.execute(
                f"INSERT INTO _erase_rows SELECT DISTINCT ?, _partition_date, _row_number FROM {relation} "
                f"WHERE {condition}",
                [tbl, *params],
            )
        for column in texts:
            if not ids:
                continue
            condition, params = text_candidates(column, ids)
            candidates = con.execute(
                f"SELECT _partition_date, _row_number, {warehouse.quote(column)} FROM {relation} WHERE {condition}", params
            ).fetchall()
            owned = [(tbl, day, number) for day, number, text in candidates if ids.owns_line(text)]
            if owned:
                con.executemany("INSERT INTO _erase_rows VALUES (?, ?, ?)", owned)


def _delete_by_keys(con, relation: str, tbl: str) -> int:
    return con.execute(
        f"DELETE FROM {relation} x WHERE EXISTS (SELECT 1 FROM _erase_rows e WHERE e.tbl = ? "
        "AND e._partition_date = x._partition_date AND e._row_number = x._row_number)",
        [tbl],
    ).fetchone()[0]


def _subject_condition(columns: set[str]) -> str | None:
    """A condition selecting the subject's rows of a table with these columns (None: it has none):
    by ``customer_id``; a row without one by its email or phone HMACs."""
    by_hash = " OR ".join(f"{column} IN (SELECT h FROM _erase_hashes)"
                          for column in ("email_hash", "phone_hash", "customer_email_hash") if column in columns)
    if "customer_id" not in columns:
        return by_hash or None
    by_id = f"{_ID} = (SELECT customer_id FROM _erase_subject)"
    return f"{by_id} OR ({_WITHOUT_ID} AND ({by_hash}))" if by_hash else by_id


def erase_databases(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], subject: Subject) -> tuple[dict[str, int], set[str]]:
    """Delete the subject from the warehouse and every regional store. Returns ({place: rows}, the
    regions whose store changed)."""
    counts: dict[str, int] = {}
    con.execute("CREATE OR REPLACE TEMP TABLE _erase_subject AS SELECT ?::VARCHAR AS customer_id", [subject.customer_id])
    con.execute("CREATE OR REPLACE TEMP TABLE _erase_hashes (h VARCHAR)")
    for h in sorted(subject.email_hashes | subject.phone_hashes):
        con.execute("INSERT INTO _erase_hashes VALUES (?)", [h])
    _subject_row_keys(con, aliases, subject)
    main = con.execute("SELECT current_database()").fetchone()[0]
    with warehouse.transaction(con):
        for t in SOURCE_TABLES:
            for layer in SOURCE_LAYERS:
                if warehouse.table_exists(con, f"{layer}.{t.name}"):
                    counts[f"{layer}.{t.name}"] = _delete_by_keys(con, f"{layer}.{t.name}", t.name)
        counts |= _unlink_derived(con, subject)
        handled = {f"{layer}.{t.name}" for layer in SOURCE_LAYERS for t in SOURCE_TABLES} | {suppression.TABLE}
        for table, columns in _tables(con, main).items():
            if table in handled:
                continue
            condition = _subject_condition(columns)
            if condition:
                counts[table] = con.execute(f"DELETE FROM {table} WHERE {condition}").fetchone()[0]
    changed_regions = set()
    for region, a in aliases.items():
        with warehouse.transaction(con):
            for table in PERSONAL_TABLES:
                tbl = table.source.name
                n = _delete_by_keys(con, f"{a}.{table.name}", tbl)
                cond = _subject_condition({c for c, _ in table.columns})
                n += con.execute(f"DELETE FROM {a}.{table.name} WHERE {cond}").fetchone()[0] if cond else 0
                counts[f"{region} store {table.name}"] = n
                if n:
                    changed_regions.add(region)
    return {k: v for k, v in counts.items() if v}, changed_regions


def _tables(con, database: str) -> dict[str, set[str]]:
    return {t: {c for c, _ in cols} for t, cols in warehouse.base_table_columns(con, database).items()}


def erase_datasets(subject: Subject, reason: str, root: Path) -> dict[str, int]:
    from ai_data_platform.ml import datasets

    counts = {}
    for summary in datasets.list_datasets(root=root):
        name, version = summary["name"], summary["version"]
        path = warehouse.sql_literal(str(root / name / version / datasets.DATA_FILE))
        con = duckdb.connect()
        try:
            columns = {c for c, *_ in con.execute(f"DESCRIBE SELECT * FROM read_parquet({path})").fetchall()}
            if "customer_id" not in columns:
                continue
            present = con.execute(
                f"SELECT count(*) FROM read_parquet({path}) WHERE trim(CAST(customer_id AS VARCHAR)) = ?", [subject.customer_id]
            ).fetchone()[0]
        finally:
            con.close()
        if present:
            counts[f"datasets/{name}/{version}"] = datasets.erase_rows(
                name, version, "customer_id", {subject.customer_id}, subject=subject.ref, reason=reason, root=root
            )
    return counts
