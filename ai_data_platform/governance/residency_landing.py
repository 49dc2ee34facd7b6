"""Data residency of the landing files: the sources' exports are searched like the stores, and a
subject who moves region takes their landing records along.

**The search** (:func:`landing_violations`). Every name, email and phone the regional stores hold,
with the region of its subject (``residency._identifiers_sql``), is looked for in every file of
every landing zone (``sources/landing.LandingZones``; every file below each zone's root, not only
the contracts' exports, so a stray export is searched too). A file in region R's zone may hold
no value of another region's subject that no subject of R also has (two customers may share a
name); a file in the shared zone no value at all. A value is found when it is a whole field of a
record: a CSV field (quoted or not), a JSON key's value, any column of a Parquet file; compared
trimmed and case-insensitively; a line that cannot be parsed is cut at the same separators, so a
malformed record is searched too. A finding names the zone, the file and the number of records.
A run searches the files of its own days (a file named by a day outside them is left out); files
not named by a day are always searched. Text is read and cut into fields by DuckDB, in batches of
about 64 MiB; a line holding no ``@``, space or ``+`` is not cut when every value looked for holds
one (checked each time: names, emails and phones do), which skips almost all of an event export.

**Moves** (:func:`relocate`). A customer whose CRM history holds more than one region moved:
their landing records (customer rows, tickets sent from their emails, malformed lines naming
their id or an email) in another region's zone are moved into the same day's file of their
current region's zone, as the stores' rows are (``residency.rebalance``), so nothing is left
behind. A record keeps its exact bytes; both files keep their modification time (the data did
not change, so the late-landing sensor re-runs nothing: the raw rows keep naming the file they
were loaded from until the day is loaded again). The target file is written first, skipping
records it already holds, then the source: a crash in between leaves a copy the next run
completes, never a loss. Only the days on which the warehouse holds a mover's records are read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from ai_data_platform import warehouse
from ai_data_platform.governance.landing_erasure import text_records, write_keeping_mtime
from ai_data_platform.governance.personal_data import SUBJECT_EMAIL_COLUMN, hash_column, holds_personal_data
from ai_data_platform.governance.pii import normalize_email
from ai_data_platform.governance.residency import EMAIL_REGION, LANDING_ZONE, SUBJECT_REGION, Violation, valid_crm_rows_sql
from ai_data_platform.governance.search import Needle, any_token_re2
from ai_data_platform.governance.stores import RAW_PERSONAL
from ai_data_platform.sources.contracts import CUSTOMERS, SOURCE_TABLES, SourceTable
from ai_data_platform.sources.landing import LandingZones

SHARED = "shared"
# A record's fields: a quoted string (CSV field with separators inside, JSON string) or a run of
# characters that are no CSV / JSON separator.
_FIELD_RE2 = r'"[^"]*"|[^,"{}\[\]:\t\r]+'
_TEXT_BATCH_BYTES = 64 << 20
_LANDING_IDS = "_landing_ids"
_FOREIGN_IDS = "_landing_foreign_ids"
_LINES = "_landing_lines"


# ---------------------------------------------------------------- the search


def _in_days(path: Path, days: list[date] | None) -> bool:
    if not days:
        return True
    try:
        day = date.fromisoformat(path.stem)
    except ValueError:
        return True  # not a day's export: always searched
    return min(days) <= day <= max(days)


def _zone_files(root: Path, days: list[date] | None) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and _in_days(p, days)) if root.is_dir() else []


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PAR1"


def _table_of(root: Path, path: Path) -> SourceTable | None:
    """The source table whose export ``path`` is, if it lies where one lands in ``root``."""
    for t in SOURCE_TABLES:
        if path.parent == t.landing_dir(root) and path.suffix == f".{t.extension}":
            return t
    return None


def _size_batches(paths: list[Path]) -> Iterator[list[Path]]:
    """``paths`` in groups of about 64 MiB of file size, so no search holds more in memory."""
    batch, size = [], 0
    for path in paths:
        batch.append(path)
        size += path.stat().st_size
        if size >= _TEXT_BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _lines_read_by_duckdb(paths: list[Path]) -> str:
    """(file, record, line) of text files, every line of each (DuckDB reads UTF-8 text only)."""
    listed = ", ".join(warehouse.sql_literal(str(p)) for p in paths)
    return (
        "SELECT filename AS file, unnest(range(1, len(l) + 1)) AS record, unnest(l) AS line "
        f"FROM (SELECT filename, string_split(content, chr(10)) AS l FROM read_text([{listed}]))"
    )


def _register_lines_read_by_python(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> None:
    """The same as the view ``_LINES``, for files that are not UTF-8 (decoded with replacement characters)."""
    file, record, line = [], [], []
    for path in paths:
        lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
        file += [str(path)] * len(lines)
        record += range(1, len(lines) + 1)
        line += lines
    con.register(_LINES, pa.table({"file": file, "record": pa.array(record, pa.int64()), "line": line}))


def _tokens(lines: str, line_filter: str) -> str:
    """(file, record, token): the fields of the lines satisfying ``line_filter``."""
    return f"SELECT file, record, unnest(regexp_extract_all(line, '{_FIELD_RE2}')) AS token FROM ({lines}) WHERE {line_filter}"


def _match(con: duckdb.DuckDBPyConnection, fields: str) -> list[tuple[object, str, str, int]]:
    """``[(file, subjects' region, personal table, records)]`` of ``fields`` (file, record, token)
    whose token is one of the foreign identifiers."""
    return con.execute(
        f"SELECT f.file, v.region, min(v.personal_table), count(DISTINCT f.record) FROM ({fields}) f "
        f"JOIN {_FOREIGN_IDS} v ON lower(trim(trim(f.token, '\"'))) = v.value GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()


def _parquet_fields(paths: list[Path]) -> str:
    """(file, record, token) of every value of every column of Parquet files, one query for all."""
    listed = ", ".join(warehouse.sql_literal(str(p)) for p in paths)
    return (
        "SELECT filename AS file, record, token FROM (UNPIVOT (SELECT row_number() OVER () AS record, filename, "
        f"COLUMNS(* EXCLUDE (filename))::VARCHAR FROM read_parquet([{listed}], union_by_name = true, filename = true)) "
        "ON COLUMNS(* EXCLUDE (record, filename)) INTO NAME _column VALUE token)"
    )


def _hits(con: duckdb.DuckDBPyConnection, files: list[Path], line_filter: str) -> list[tuple[int, str, str, int]]:
    """Every foreign identifier in ``files``: ``[(index in files, region, personal table, records)]``.
    ``line_filter``: a condition every text line holding one satisfies (the others are not cut into fields)."""
    parquet = [p for p in files if _is_parquet(p)]
    text = [p for p in files if p not in set(parquet)]
    try:
        found = _match(con, _parquet_fields(parquet)) if parquet else []
    except duckdb.Error:  # one file is not readable as Parquet: read them one by one
        found = []
        for path in parquet:
            try:
                found += _match(con, _parquet_fields([path]))
            except duckdb.Error:
                text.append(path)  # searched as text, like any other file
    for batch in _size_batches(text):
        try:
            found += _match(con, _tokens(_lines_read_by_duckdb(batch), line_filter))
        except duckdb.Error:  # a file that is not UTF-8 text
            _register_lines_read_by_python(con, batch)
            try:
                found += _match(con, _tokens(f"SELECT * FROM {_LINES}", line_filter))
            finally:
                con.unregister(_LINES)
    index = {str(p): i for i, p in enumerate(files)}
    return [(index[str(f)], region, personal, n) for f, region, personal, n in found]


# Every name, email and phone holds one of these (checked on the identifiers searched for): a line
# holding none of them holds none of them, and is not cut into fields (most of an event export).
_MARKS = ("@", " ", "+")


def _line_filter(con: duckdb.DuckDBPyConnection) -> str:
    """A condition every line holding a foreign identifier satisfies (``TRUE`` if none is known)."""
    marked = " OR ".join(f"contains(value, {warehouse.sql_literal(m)})" for m in _MARKS)
    if con.execute(f"SELECT coalesce(bool_and({marked}), TRUE) FROM {_FOREIGN_IDS}").fetchone()[0]:
        return " OR ".join(f"contains(line, {warehouse.sql_literal(m)})" for m in _MARKS)
    return "TRUE"


def landing_violations(
    con: duckdb.DuckDBPyConnection, zones: LandingZones, identifiers: str, days: list[date] | None = None
) -> list[Violation]:
    """Landing files holding names, emails or phones outside their subjects' region (module docstring).

    ``identifiers``: a relation of ``(value, region, personal_table)``, every direct identifier the
    regional stores hold with its subject's region (``residency._identifiers_sql(aliases, "direct")``).
    """
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_LANDING_IDS} AS SELECT DISTINCT lower(trim(CAST(value AS VARCHAR))) AS value, "
        f"region, personal_table FROM {identifiers} WHERE nullif(trim(CAST(value AS VARCHAR)), '') IS NOT NULL"
    )
    found: list[Violation] = []
    for zone, root in [(SHARED, zones.shared), *zones.regional.items()]:
        files = _zone_files(root, days)
        if not files:
            continue
        if zone == SHARED:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_FOREIGN_IDS} AS SELECT * FROM {_LANDING_IDS}")
        else:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {_FOREIGN_IDS} AS SELECT * FROM {_LANDING_IDS} WHERE region <> ? "
                f"AND value NOT IN (SELECT value FROM {_LANDING_IDS} WHERE region = ?)",
                [zone, zone],
            )
        for i, region, personal, n in _hits(con, files, _line_filter(con)):
            t = _table_of(root, files[i])
            if t is not None and holds_personal_data(t):
                personal = RAW_PERSONAL[t.name].name  # the raw load that reads this file
            belongs = "personal data lands only in its subject's region's zone" if zone == SHARED else f"they belong in the {region} landing zone"
            what = f"holding names, emails or phones of {region} subjects ({belongs})"
            found.append(Violation(LANDING_ZONE + zone, str(files[i]), zones.name(files[i]), n, region, what, personal))
    con.execute(f"DROP TABLE IF EXISTS {_LANDING_IDS}; DROP TABLE IF EXISTS {_FOREIGN_IDS}")
    return found


# ---------------------------------------------------------------- moves


class _Movers:
    """Where the records of customers who changed region belong now. A record with a customer id
    follows that customer (and stays where it is when the id is another known customer's); one
    without (a ticket), or with an id the CRM never placed, follows its email; one that cannot be
    split, an id or email anywhere in its text."""

    def __init__(self, by_id: Mapping[str, str], by_email: Mapping[str, str], known_ids: set[str]):
        self.by_id, self.by_email, self.known_ids = dict(by_id), dict(by_email), known_ids
        self._tokens = {k.lower(): v for k, v in {**self.by_id, **self.by_email}.items()}
        body = "|".join(re.escape(k) for k in sorted(self._tokens, key=len, reverse=True))
        self._line = re.compile(r"(?<![A-Za-z0-9])(" + body + r")(?![A-Za-z0-9])", re.IGNORECASE)

    def needles(self) -> list[Needle]:
        return [Needle("identifier", v) for v in sorted(self._tokens)]

    def region_of(self, t: SourceTable, raw: str, record: dict | None) -> str | None:
        """The region a mover's record belongs in now; None for anybody else's."""
        if record is None:
            match = self._line.search(raw) if raw.strip() else None
            return self._tokens[match.group(1).lower()] if match else None
        if "customer_id" in t.column_names:
            customer_id = (record.get("customer_id") or "").strip()
            if customer_id in self.by_id:
                return self.by_id[customer_id]
            if customer_id in self.known_ids:
                return None
        email = normalize_email(record.get(SUBJECT_EMAIL_COLUMN[t.name]))
        return self.by_email.get(email) if email else None


def _movers(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str]) -> _Movers | None:
    """The customers whose CRM history holds more than one region, with their current region, and
    every email their CRM rows carried with the region of that email's current owner (the routing
    of ``residency.routed_sql``). Needs ``residency.build_region_map`` first."""
    if not warehouse.table_exists(con, "raw.customers"):
        return None
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _movers AS SELECT m.customer_id, s.region FROM ("
        f"SELECT customer_id FROM ({valid_crm_rows_sql()}) GROUP BY 1 HAVING count(DISTINCT region) > 1) m "
        f"JOIN {SUBJECT_REGION} s USING (customer_id)"
    )
    by_id = dict(con.execute("SELECT customer_id, region FROM _movers").fetchall())
    if not by_id:
        return None
    personal = RAW_PERSONAL[CUSTOMERS.name].name
    emails = " UNION ".join(f"SELECT trim(customer_id) AS customer_id, email, email_hash FROM {a}.{personal}" for a in aliases.values())
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _mover_emails AS SELECT DISTINCT p.email, p.email_hash, e.region FROM ({emails}) p "
        f"JOIN _movers m USING (customer_id) JOIN {EMAIL_REGION} e ON e.email_hash = p.email_hash WHERE p.email IS NOT NULL"
    )
    by_email = {}
    for email, region in con.execute("SELECT email, region FROM _mover_emails").fetchall():
        normalized = normalize_email(email)
        if normalized:
            by_email[normalized] = region
    known_ids = {r[0] for r in con.execute(f"SELECT customer_id FROM {SUBJECT_REGION}").fetchall()}
    return _Movers(by_id, by_email, known_ids)


def _candidate_days(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], t: SourceTable, movers: _Movers) -> list[date]:
    """The days whose raw rows (or unsplittable lines, in the stores) hold a mover's records."""
    parts = []
    email_hash = warehouse.quote(hash_column(SUBJECT_EMAIL_COLUMN[t.name]))
    if warehouse.table_exists(con, f"raw.{t.name}"):
        by_id = "trim(customer_id) IN (SELECT customer_id FROM _movers) OR " if "customer_id" in t.column_names else ""
        parts.append(f"SELECT _partition_date FROM raw.{t.name} WHERE {by_id}{email_hash} IN (SELECT email_hash FROM _mover_emails)")
    pattern = warehouse.sql_literal(any_token_re2(movers.needles()))
    for a in aliases.values():
        parts.append(
            f"SELECT _partition_date FROM {a}.{RAW_PERSONAL[t.name].name} WHERE _raw_line IS NOT NULL AND regexp_matches(_raw_line, {pattern})"
        )
    return [r[0] for r in con.execute(f"SELECT DISTINCT _partition_date FROM ({' UNION ALL '.join(parts)}) ORDER BY 1").fetchall()]


def _append(t: SourceTable, target: Path, header: str, moving: list[str], mtime_ns: int) -> int:
    """Add ``moving`` records to ``target`` (created with ``header`` if missing) unless it already
    holds them; returns how many were added."""
    text = target.read_bytes().decode("utf-8", errors="surrogateescape") if target.exists() else header
    held = {raw.rstrip("\r\n") for raw, _ in text_records(t, text)[1]}
    new = [raw if raw.endswith("\n") else raw + "\n" for raw in moving if raw.rstrip("\r\n") not in held]
    if new:
        body = text if not text or text.endswith("\n") else text + "\n"
        write_keeping_mtime(target, (body + "".join(new)).encode("utf-8", errors="surrogateescape"), mtime_ns)
    return len(new)


def _relocate_file(t: SourceTable, zones: LandingZones, day: date, zone: str, movers: _Movers) -> dict[str, int]:
    source = zones.file(t, day, zone)
    if not source.exists():
        return {}
    text = source.read_bytes().decode("utf-8", errors="surrogateescape")
    header, records = text_records(t, text)
    kept, moving = [header], {}
    for raw, record in records:
        region = movers.region_of(t, raw, record)
        if region is not None and region != zone:
            moving.setdefault(region, []).append(raw)
        else:
            kept.append(raw)
    if not moving:
        return {}
    mtime = source.stat().st_mtime_ns
    for region, raws in moving.items():  # the target first: a crash now leaves a copy, never a loss
        _append(t, zones.file(t, day, region), header, raws, mtime)
    write_keeping_mtime(source, "".join(kept).encode("utf-8", errors="surrogateescape"))
    return {f"{t.name} {zone}->{region}": len(raws) for region, raws in moving.items()}


def relocate(
    con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], zones: LandingZones, tables: Iterable[SourceTable]
) -> dict[str, int]:
    """Move the landing records of customers who changed region into their current region's zone
    (see the module docstring). Returns ``{"<table> <FROM>-><TO>": records}``. Needs the stores
    attached (``aliases``) and ``residency.build_region_map`` first."""
    movers = _movers(con, aliases)
    if movers is None:
        return {}
    moved: dict[str, int] = {}
    for t in tables:
        if not holds_personal_data(t):
            continue
        for day in _candidate_days(con, aliases, t, movers):
            for zone in zones.regional:
                for key, n in _relocate_file(t, zones, day, zone, movers).items():
                    moved[key] = moved.get(key, 0) + n
    con.execute("DROP TABLE IF EXISTS _movers; DROP TABLE IF EXISTS _mover_emails")
    return moved
