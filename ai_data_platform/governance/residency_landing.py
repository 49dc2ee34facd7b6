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
their landing records in another region's zone are moved into the same day's file of their
current region's zone, as the stores' rows are (``residency.rebalance``), so nothing is left
behind. Which records are theirs is ``attribution.py``'s rule, on files read as the loader reads
them (``landing_erasure.text_records``): a record split into fields follows its ``customer_id``
(and stays where it is when that is another known customer's), one without (a ticket), or with an
id the CRM never placed, follows its email. A record that cannot be split moves only when it holds
a mover's id or email as a whole value (quoted string, keyed value, CSV field; never a word inside
a text: the id ``42`` is not in ``06:42:49``) and every customer it names that way (a known id, an
email, by its HMAC) lives in that one region; one that also names a customer of another region or
an email the CRM never placed stays where it is and is reported (``Relocation.not_moved``, by file
and line, never a value), as is a file that cannot be read or written to. A record keeps its exact
bytes (and a file its byte order mark); both files keep their modification time (the data did not
change, so the late-landing sensor re-runs nothing: the raw rows keep naming the file they were
loaded from until the day is loaded again). The target file is written first, skipping records it
already holds, then the source: a crash in between leaves a copy the next run completes, never a
loss. Only the days on which the warehouse holds a mover's records (split, or unsplit lines
attributed as above, ``attribution_sql``) are read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from ai_data_platform import warehouse
from ai_data_platform.governance import attribution_sql
from ai_data_platform.governance.attribution import canonical_id, line_keys
from ai_data_platform.governance.landing_erasure import TextRecord, read_text_records, text_records, write_keeping_mtime
from ai_data_platform.governance.personal_data import SUBJECT_EMAIL_COLUMN, hash_column, holds_personal_data
from ai_data_platform.governance.pii import hmac_hex, normalize_email
from ai_data_platform.governance.residency import EMAIL_REGION, LANDING_ZONE, SUBJECT_REGION, Violation, valid_crm_rows_sql
from ai_data_platform.governance.stores import RAW_PERSONAL
from ai_data_platform.sources.contracts import CUSTOMERS, SOURCE_TABLES, SourceTable
from ai_data_platform.sources.landing import LandingFileUnreadable, LandingText, LandingZones, read_landing_text

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


# An email as a whole value: something before and after one @, no space (a text mentioning one is none)
_EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+")
MIXED_REGIONS = "names customers of more than one region by whole values: which region it belongs in is not known"
UNPLACED_EMAIL = "names a moving customer and an email the CRM never placed: whose it is, is not known"


@dataclass(frozen=True)
class _Movers:
    """Where the records of customers who changed region belong now (see the module docstring)."""

    by_id: Mapping[str, str]  # mover's customer id -> their current region
    by_email: Mapping[str, str]  # email a mover's CRM rows carried (normalized) -> its current owner's region
    known_ids: Mapping[str, str]  # every customer id the CRM placed -> region
    known_emails: Mapping[str, str] = field(default_factory=dict)  # email HMAC -> its current owner's region
    hmac_key: str = ""

    def email_region(self, email: str) -> str | None:
        """The region of the customer whose latest CRM row carries ``email`` (normalized), if any."""
        return self.by_email.get(email) or self.known_emails.get(hmac_hex(self.hmac_key, email))

    def record_region(self, t: SourceTable, fields: Mapping[str, str | None]) -> str | None:
        """The region a record split into fields belongs in now if it is a mover's; else None."""
        if "customer_id" in t.column_names:
            customer_id = canonical_id(fields.get("customer_id"))
            if customer_id in self.by_id:
                return self.by_id[customer_id]
            if customer_id in self.known_ids:
                return None
        email = normalize_email(fields.get(SUBJECT_EMAIL_COLUMN[t.name]))
        return self.by_email.get(email) if email else None

    def line_region(self, line: str, zone: str) -> tuple[str | None, str | None]:
        """``(region, None)`` when an unsplit line in ``zone`` is a mover's and belongs in ``region``
        (another zone); ``(None, why)`` when it names a mover who left ``zone`` but cannot be
        attributed to one region; ``(None, None)`` when it concerns no move out of ``zone``."""
        keys = line_keys(line)
        ids = [i for i in keys.customer_ids if i in self.known_ids]
        movers = {self.by_id[i] for i in ids if i in self.by_id}
        movers |= {self.by_email[e] for e in keys.emails if e in self.by_email}
        if not movers - {zone}:
            return None, None
        regions = {self.known_ids[i] for i in ids}
        for email in keys.emails:
            if _EMAIL_SHAPE.fullmatch(email):
                region = self.email_region(email)
                if region is None:
                    return None, UNPLACED_EMAIL
                regions.add(region)
        if len(regions | movers) > 1:
            return None, MIXED_REGIONS
        return movers.pop(), None

    def region_of(self, t: SourceTable, record: TextRecord, zone: str) -> tuple[str | None, str | None]:
        """Where a record of ``t`` in ``zone`` goes: ``(region, None)`` to move it, ``(None, why)``
        to leave it and report why, ``(None, None)`` to leave it (see :meth:`line_region`)."""
        if record.fields is not None:
            region = self.record_region(t, record.fields)
            return (region, None) if region is not None and region != zone else (None, None)
        return self.line_region(record.line, zone) if record.line else (None, None)

    def tagged_keys(self) -> list[str]:
        """The movers' ids and emails as ``attribution_sql`` tags a line's: a day is read when an
        unsplit line of it holds one."""
        return sorted([*(attribution_sql.tagged(attribution_sql.CUSTOMER_ID, i) for i in self.by_id),
                       *(attribution_sql.tagged(attribution_sql.EMAIL, e) for e in self.by_email)])


@dataclass
class Relocation:
    """What :func:`relocate` moved, and what it left where it was and why."""

    moved: dict[str, int] = field(default_factory=dict)  # "<table> <FROM>-><TO>": records
    not_moved: dict[str, str] = field(default_factory=dict)  # "<file> line <n>" or "<file>": why (never a value)

    def add(self, other: Relocation) -> None:
        for key, n in other.moved.items():
            self.moved[key] = self.moved.get(key, 0) + n
        self.not_moved |= other.not_moved

    def metadata(self) -> dict:
        return {"landing_records_moved": self.moved, "landing_records_not_moved": self.not_moved}


def _movers(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], hmac_key: str) -> _Movers | None:
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
    known_ids = dict(con.execute(f"SELECT customer_id, region FROM {SUBJECT_REGION}").fetchall())
    known_emails = dict(con.execute(f"SELECT email_hash, region FROM {EMAIL_REGION}").fetchall())
    return _Movers(by_id, by_email, known_ids, known_emails, hmac_key)


def _candidate_days(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], t: SourceTable, movers: _Movers) -> list[date]:
    """The days whose raw rows (or unsplit lines, in the stores, holding a mover's id or email as a
    whole value) hold a mover's records."""
    parts, params = [], []
    email_hash = warehouse.quote(hash_column(SUBJECT_EMAIL_COLUMN[t.name]))
    if warehouse.table_exists(con, f"raw.{t.name}"):
        by_id = "trim(customer_id) IN (SELECT customer_id FROM _movers) OR " if "customer_id" in t.column_names else ""
        parts.append(f"SELECT _partition_date FROM raw.{t.name} WHERE {by_id}{email_hash} IN (SELECT email_hash FROM _mover_emails)")
    attribution_sql.register(con)
    keys = attribution_sql.tagged_keys_sql("_raw_line")
    for a in aliases.values():
        parts.append(f"SELECT _partition_date FROM {a}.{RAW_PERSONAL[t.name].name} "
                     f"WHERE _raw_line IS NOT NULL AND list_has_any({keys}, ?::VARCHAR[])")
        params.append(movers.tagged_keys())
    sql = f"SELECT DISTINCT _partition_date FROM ({' UNION ALL '.join(parts)}) ORDER BY 1"
    return [r[0] for r in con.execute(sql, params).fetchall()]


def _line_end(text: str) -> str:
    """The line end a file's text uses (of its first line), LF for a file without one."""
    match = re.search(r"\r\n|\r|\n", text)
    return match.group(0) if match else "\n"


def _append(t: SourceTable, target: Path, content: LandingText, moving: list[str], mtime_ns: int) -> int:
    """Add ``moving`` records to ``target`` (``content``: what it holds, or the header a new file
    starts with) unless it already holds them; returns how many were added."""
    text = content.text
    held = {r.raw.rstrip("\r\n") for r in text_records(t, text)[1]}
    end = _line_end(text)
    new = [raw if raw.endswith(("\n", "\r")) else raw + end for raw in moving if raw.rstrip("\r\n") not in held]
    if new:
        body = text if not text or text.endswith(("\n", "\r")) else text + end
        write_keeping_mtime(target, content.encode(body + "".join(new)), mtime_ns)
    return len(new)


def _line_numbers(t: SourceTable, header: str, records: list[TextRecord]) -> Iterator[int]:
    """The line of its file each record starts on (1-based)."""
    breaks = re.compile(r"\r\n|\r|\n" if t.file_format == "csv" else r"\n")
    line = 1 + len(breaks.findall(header))
    for record in records:
        yield line
        line += len(breaks.findall(record.raw))


def _relocate_file(t: SourceTable, zones: LandingZones, day: date, zone: str, movers: _Movers) -> Relocation:
    """Move the movers' records out of ``t``'s ``day`` file in ``zone`` (see the module docstring)."""
    out = Relocation()
    source = zones.file(t, day, zone)
    if not source.exists():
        return out
    name = zones.name(source)
    try:
        content, header, records = read_text_records(t, source)
    except LandingFileUnreadable as exc:
        out.not_moved[name] = f"not read: {exc}"
        return out
    going: list[str | None] = []
    for record, number in zip(records, _line_numbers(t, header, records)):
        region, why = movers.region_of(t, record, zone)
        going.append(region)
        if why:
            out.not_moved[f"{name} line {number}"] = why
    targets: dict[str, LandingText] = {}
    for region in dict.fromkeys(r for r in going if r is not None):
        target = zones.file(t, day, region)
        try:
            targets[region] = read_landing_text(target) if target.exists() else LandingText(b"", header)
        except LandingFileUnreadable as exc:
            out.not_moved[zones.name(target)] = f"not written: its records of moving customers stay in {name}: {exc}"
    moving: dict[str, list[str]] = {}
    kept = [header]
    for record, region in zip(records, going):
        if region in targets:
            moving.setdefault(region, []).append(record.raw)
        else:
            kept.append(record.raw)
    if not moving:
        return out
    mtime = source.stat().st_mtime_ns
    for region, raws in moving.items():  # the target first: a crash now leaves a copy, never a loss
        _append(t, zones.file(t, day, region), targets[region], raws, mtime)
        out.moved[f"{t.name} {zone}->{region}"] = len(raws)
    write_keeping_mtime(source, content.encode("".join(kept)))
    return out


def relocate(
    con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], zones: LandingZones, tables: Iterable[SourceTable],
    hmac_key: str,
) -> Relocation:
    """Move the landing records of customers who changed region into their current region's zone
    (see the module docstring). Needs the stores attached (``aliases``), the HMAC key (to place an
    email an unsplit line holds) and ``residency.build_region_map`` first."""
    movers = _movers(con, aliases, hmac_key)
    out = Relocation()
    if movers is None:
        return out
    for t in tables:
        if not holds_personal_data(t):
            continue
        for day in _candidate_days(con, aliases, t, movers):
            for zone in zones.regional:
                out.add(_relocate_file(t, zones, day, zone, movers))
    con.execute("DROP TABLE IF EXISTS _movers; DROP TABLE IF EXISTS _mover_emails")
    return out
