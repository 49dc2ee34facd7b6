"""Right to erasure: remove a data subject from every store, prove it by searching, record it.

``erase(customer_id, reason)`` (``adp erase`` and the ``erase_customer`` job call it;
``erase_matching`` finds the customer by email or phone first):

1. **Resolve the subject.** Only a *known customer* is erased: the platform holds a customer
   record for the id (a CRM landing file of any zone, ``raw``/``staging.customers``, the regional
   stores' identity and personal tables), or erased them before (the suppression list holds the
   id's HMAC). An email or phone must resolve to exactly one customer id. Anything else is
   refused with exit code 3: nothing deleted, nothing suppressed, an audit record
   ``nothing_found``. So rows that only *reference* an id the CRM never had (payments of an
   ``unknown_customer``, quarantined in staging) are no one's known personal data: an erasure
   request for that id deletes nothing, and retention ages those rows out like any other.
   A known subject's keys come from the data: their emails, phones and names from the regional
   stores and the CRM landing files, the HMAC keys from the warehouse. Emails identify a person:
   CRM rows under another id with the subject's email and tickets sent from it are theirs too. A
   phone or name shared with another customer is not used to select or search anything (the
   report says which were left out and why).
2. **Suppress** them (``suppression.py``): recorded first, so no load running meanwhile and no
   later backfill brings them back.
3. **Delete** exactly their records, by ``attribution.py``'s rule (identifier fields, and whole
   values of unparseable raw lines; never a word inside a text): landing files of every zone
   (rewritten, mtime kept, ``landing_erasure.py``); in the warehouse the raw rows, and the staging
   and quarantine rows with the same row keys (so row conservation still holds), then every row of
   any other table whose ``customer_id``, ``email_hash`` or ``phone_hash`` is theirs (marts,
   features, scores, ...); in every regional store their personal rows; every dataset version
   holding their rows is rewritten through ``ml/datasets.erase_rows`` (new content hash, an
   ``erasure`` event in its history naming the subject only by ``subject_ref``); then every
   :class:`ErasureTarget`: the platform's own in :data:`TARGET_MODULES` (the stream transport,
   the ``stream`` tables and the online store: ``streaming/erasure.py``) and any registered with
   :func:`register_target`.
4. **Compact** every DuckDB file that changed, so the deleted rows' bytes are gone.
5. **Verify by searching** (``search.py``): every file under ``$ADP_DATA_DIR`` and every
   regional store and landing zone configured outside it, whatever it is (DuckDB, SQLite such
   as Dagster's event log, compressed blobs, Parquet, text), and each target's storage that is
   not a file (Redis), for the id, emails, phones, names and their HMACs. Anything left is a
   :class:`search.Trace` naming the file, table, column and count; the erasure then fails (exit
   code 1).
6. **Audit**: one record holding no personal data: ``subject_ref``, counts per place, reason,
   actor, time, the verification outcome. It is written whatever happens: a step that fails
   midway leaves a record with status ``error`` naming the step (and what was removed before it),
   and the caller gets an :class:`ErasureFailed`.

Erasing twice is harmless: nothing is found, nothing changes, verification passes, and the audit
record says nothing was found and when the subject was first erased.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ai_data_platform import settings, warehouse
from ai_data_platform.errors import InputError
from ai_data_platform.governance import audit, suppression
from ai_data_platform.governance.attribution import Identifiers, as_bytes, canonical_id
from ai_data_platform.governance.landing_erasure import crm_customer_records, erase_landing, subject_rows_in_crm_files
from ai_data_platform.governance.personal_data import holds_personal_data, warehouse_raw_columns
from ai_data_platform.governance.pii import hmac_sql, normalize_email, normalize_email_sql, normalize_phone, normalize_phone_sql
from ai_data_platform.governance.search import (
    EMAIL,
    EMAIL_HMAC,
    ID,
    NAME,
    PHONE,
    PHONE_HMAC,
    Matcher,
    Needle,
    Trace,
    is_word,
    search,
)
from ai_data_platform.governance.stores import IDENTITY, PERSONAL_TABLES, QUARANTINE_PERSONAL, RAW_PERSONAL, PersonalData
from ai_data_platform.sources.contracts import CUSTOMERS, SOURCE_TABLES
from ai_data_platform.sources.landing import LandingZones

EXIT_ERASED = 0
EXIT_TRACES_REMAIN = 1
EXIT_UNKNOWN_SUBJECT = 3
SOURCE_LAYERS = ("raw", "staging", "quarantine")
SELECTORS = ("customer_id", "email", "phone")
RAW_TEXT_COLUMNS = ("_raw_line", "raw_record")  # where a record is kept as received


class ErasureFailed(RuntimeError):
    """A step of an erasure failed; the audit record (status ``error``) names it. The message holds
    the step and the error's type only (an error's text may quote a value)."""

    def __init__(self, step: str, error: BaseException):
        self.step = step
        super().__init__(f"failed while {step} ({type(error).__name__}); the audit record says what was removed before")


# ---------------------------------------------------------------- targets


@dataclass(frozen=True)
class ErasureTarget:
    """A store the platform core does not know, plugged into every erasure.

    ``erase(subject)`` removes the subject and returns ``{place: records removed}``; ``search``
    (optional) returns traces left in storage the file search cannot see (a Redis server);
    ``paths`` (optional) names files or directories outside ``$ADP_DATA_DIR`` to search too.
    """

    name: str
    erase: Callable[[Subject], Mapping[str, int]]
    search: Callable[[Subject], Iterable[Trace]] | None = None
    paths: Callable[[], Iterable[Path]] | None = None


# The platform's own stores outside the core, each a module with ``erasure_targets() ->
# [ErasureTarget]``: imported and asked at every erasure (so the targets read settings, e.g.
# REDIS_URL, at call time). Listed here, not registered by an import side effect that a code path
# could miss: an erasure never runs without them.
TARGET_MODULES = ("ai_data_platform.streaming.erasure",)

_TARGETS: dict[str, ErasureTarget] = {}


def register_target(target: ErasureTarget) -> None:
    """Add (or replace, by name) a store every erasure removes the subject from (a deployment's
    own store; the platform's are in :data:`TARGET_MODULES`)."""
    _TARGETS[target.name] = target


def registered_targets() -> list[ErasureTarget]:
    """The targets of :data:`TARGET_MODULES`, then those registered with :func:`register_target`."""
    targets: dict[str, ErasureTarget] = {}
    for module in TARGET_MODULES:
        targets |= {t.name: t for t in importlib.import_module(module).erasure_targets()}
    return list((targets | _TARGETS).values())


# ---------------------------------------------------------------- the subject


def _hmac(key: str, value: str) -> str:
    """``pii.hmac_hex`` of a value as typed (an argument's undecodable bytes as they were)."""
    return hmac.new(key.encode(), as_bytes(value), hashlib.sha256).hexdigest()


def subject_hash(customer_id: str, key: str | None = None) -> str:
    """The HMAC of a customer id (``audit.subject_ref`` without its prefix), for any argument."""
    return _hmac(key or settings.pii_hmac_key(), customer_id)


def storable(value: str) -> bool:
    """Whether any store could hold ``value`` (UTF-8 text): an argument with undecodable bytes cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class Subject:
    """A data subject and every key their data can be found by (held in memory only)."""

    customer_id: str
    ref: str  # audit.subject_ref: the only way records name them
    id_hash: str
    emails: set[str] = field(default_factory=set)  # as found, and normalized
    phones: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    email_hashes: set[str] = field(default_factory=set)
    phone_hashes: set[str] = field(default_factory=set)
    not_searched: dict[str, str] = field(default_factory=dict)  # label -> why (never the value)
    known: bool = False  # a customer record holds the id
    erased_before: str | None = None

    @property
    def normalized_emails(self) -> frozenset[str]:
        return frozenset(e for e in (normalize_email(x) for x in self.emails) if e)

    @property
    def erasable(self) -> bool:
        """A known customer, or one erased before (their leftovers, if any, are theirs too)."""
        return self.known or self.erased_before is not None

    def identifiers(self) -> Identifiers:
        """What attributes a record to them (``attribution.py``)."""
        return Identifiers.of([self.customer_id], self.emails, self.phones)

    def needles(self) -> list[Needle]:
        out = [Needle(ID, self.customer_id)] if self.customer_id else []
        for label, values in ((EMAIL, self.emails), (PHONE, self.phones), (NAME, self.names),
                              (EMAIL_HMAC, self.email_hashes), (PHONE_HMAC, self.phone_hashes)):
            out += [Needle(label, v) for v in sorted({v.strip() for v in values if v and v.strip()})]
        return out


@contextmanager
def _reading(paths: settings.Paths, personal: PersonalData) -> Iterator[tuple[duckdb.DuckDBPyConnection, dict[str, str]]]:
    """A warehouse connection (an empty in-memory one while there is no warehouse: looking creates
    none) with every regional store attached. Not read-only: the caller's process may hold the
    same files open for writing, and DuckDB opens a file once per process, in one mode."""
    con = warehouse.connect(paths.warehouse) if paths.warehouse.exists() else duckdb.connect()
    try:
        with personal.stores.attached(con) as aliases:
            yield con, aliases
    finally:
        con.close()


def _union(aliases: Mapping[str, str], table: str, columns: str) -> str:
    return " UNION ALL ".join(f"SELECT {columns} FROM {a}.{table}" for a in aliases.values())


def _customer_tables(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str]) -> list[str]:
    """Relations holding customer records (``customer_id`` as text), warehouse and every store."""
    relations = [f"{layer}.customers" for layer in ("raw", "staging") if warehouse.table_exists(con, f"{layer}.customers")]
    for table in (IDENTITY, RAW_PERSONAL[CUSTOMERS.name], QUARANTINE_PERSONAL[CUSTOMERS.name]):
        relations += [f"{a}.{table.name}" for a in aliases.values()]
    return relations


def _known_in_data(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], cid: str) -> bool:
    return any(
        con.execute(f"SELECT count(*) FROM {relation} WHERE trim(CAST(customer_id AS VARCHAR)) = ?", [cid]).fetchone()[0]
        for relation in _customer_tables(con, aliases)
    )


def resolve(customer_id: str, paths: settings.Paths, personal: PersonalData) -> Subject:
    """Everything the platform holds that identifies ``customer_id`` (see the module docstring)."""
    cid = _required_id(customer_id)
    key = personal.hmac_key
    id_hash = _hmac(key, cid)
    subject = Subject(cid, "subject:" + id_hash, id_hash)
    if not storable(cid):  # no store holds text that is not UTF-8: nobody has this id
        return subject
    for row in subject_rows_in_crm_files(LandingZones.from_settings(paths), cid):  # also a subject not loaded yet
        subject.known = True
        _add(subject, row.get("name"), row.get("email"), row.get("phone"))
    with _reading(paths, personal) as (con, aliases):
        subject.known = subject.known or _known_in_data(con, aliases, cid)
        subject.erased_before = _erased_at(con, subject)
        if subject.known:
            _resolve_from_data(con, aliases, subject, key)
            _leave_out_shared(con, aliases, subject, key)
        subject.email_hashes |= set(suppression.keys(con, subject.ref).get(suppression.KIND_EMAIL, []))
    for values in (subject.emails, subject.phones, subject.names, subject.email_hashes, subject.phone_hashes):
        values.discard(None)
        values.discard("")
    if subject.customer_id and not is_word(Needle(ID, subject.customer_id)):
        subject.not_searched["the customer id as a word in free text"] = (
            "too short or common to search as a word: searched where it stands as a whole value"
        )
    return subject


def _required_id(customer_id: str) -> str:
    cid = customer_id.strip()
    if not cid:
        raise InputError("a customer id is required")
    return cid


def _add(subject: Subject, name: str | None, email: str | None, phone: str | None) -> None:
    subject.names.add(name)
    subject.emails.add(email)
    subject.phones.add(phone)


def _resolve_from_data(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], subject: Subject, key: str) -> None:
    cid = subject.customer_id
    if warehouse.table_exists(con, "raw.customers"):
        for email_hash, phone_hash in con.execute(
            "SELECT DISTINCT email_hash, phone_hash FROM raw.customers WHERE trim(customer_id) = ?", [cid]
        ).fetchall():
            subject.email_hashes.add(email_hash)
            subject.phone_hashes.add(phone_hash)
    identity = con.execute(
        f"SELECT name, email, phone, email_hash, phone_hash FROM ({_union(aliases, IDENTITY.name, '*')}) WHERE trim(customer_id) = ?", [cid]
    ).fetchall()
    for name, email, phone, email_hash, phone_hash in identity:
        _add(subject, name, email, phone)
        subject.email_hashes.add(email_hash)
    subject.email_hashes |= {_hmac(key, e) for e in subject.normalized_emails}
    personal_rows = _union(aliases, RAW_PERSONAL[CUSTOMERS.name].name, "customer_id, name, email, phone, email_hash")
    hashes = sorted(h for h in subject.email_hashes if h)
    for name, email, phone in con.execute(
        f"SELECT name, email, phone FROM ({personal_rows}) WHERE trim(customer_id) = ? OR list_contains(?, email_hash)", [cid, hashes]
    ).fetchall():
        _add(subject, name, email, phone)


def _leave_out_shared(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], subject: Subject, key: str) -> None:
    """Complete the keys (normalized emails and phones, their HMACs), leaving out the phones and
    names other customers have too: they are not this subject's alone (the report says so)."""
    subject.emails |= set(subject.normalized_emails)
    subject.email_hashes |= {_hmac(key, e) for e in subject.normalized_emails}
    rows = f"{_union(aliases, IDENTITY.name, 'customer_id, name, phone, email_hash')} UNION ALL " + _union(
        aliases, RAW_PERSONAL[CUSTOMERS.name].name, "customer_id, name, phone, email_hash"
    )
    hashes = sorted(h for h in subject.email_hashes if h)
    shared_phone_hashes = set()
    for label, values in ((PHONE, subject.phones), (NAME, subject.names)):
        column = "phone" if label == PHONE else "name"
        for value in sorted(v for v in values if v and v.strip()):
            others = con.execute(
                f"SELECT count(DISTINCT trim(customer_id)) FROM ({rows}) WHERE trim({column}) = trim(?) "
                "AND trim(customer_id) <> ? AND NOT coalesce(list_contains(?, email_hash), FALSE)",
                [value, subject.customer_id, hashes],
            ).fetchone()[0]
            if others:
                values.discard(value)
                subject.not_searched[f"a {label}"] = f"shared with {others} other customer(s): not theirs alone"
                if label == PHONE and normalize_phone(value):
                    shared_phone_hashes.add(_hmac(key, normalize_phone(value)))
    normalized = {p for p in (normalize_phone(x) for x in subject.phones) if p}
    subject.phones |= normalized
    subject.phone_hashes = ({h for h in subject.phone_hashes if h} | {_hmac(key, p) for p in normalized}) - shared_phone_hashes


def _erased_at(con, subject: Subject) -> str | None:
    when = suppression.erased_at(con, subject.id_hash)
    return when.isoformat() if when is not None else None


# ---------------------------------------------------------------- finding a customer by email or phone


def customers_matching(kind: str, value: str, paths: settings.Paths, personal: PersonalData) -> set[str]:
    """The customer ids whose CRM record has this email or phone (normalized), in the landing
    files, the warehouse (by HMAC) and the regional stores."""
    normalize = normalize_email if kind == "email" else normalize_phone
    wanted = normalize(value) if storable(value) else None
    if not wanted:
        return set()
    ids = {canonical_id(r.get("customer_id")) for r in crm_customer_records(LandingZones.from_settings(paths))
           if normalize(r.get(kind)) == wanted}
    digest = _hmac(personal.hmac_key, wanted)
    normalized_sql = normalize_email_sql if kind == "email" else normalize_phone_sql
    with _reading(paths, personal) as (con, aliases):
        for layer in ("raw", "staging"):
            if warehouse.table_exists(con, f"{layer}.customers"):
                ids |= {r for (r,) in con.execute(
                    f"SELECT DISTINCT trim(customer_id) FROM {layer}.customers WHERE {kind}_hash = ?", [digest]).fetchall()}
        for table in (IDENTITY, RAW_PERSONAL[CUSTOMERS.name]):
            ids |= {r for (r,) in con.execute(
                f"SELECT DISTINCT trim(customer_id) FROM ({_union(aliases, table.name, f'customer_id, {kind}')}) "
                f"WHERE {normalized_sql(kind)} = ?", [wanted]).fetchall()}
    return {i for i in ids if i}


def _erased_by_email(value: str, paths: settings.Paths, personal: PersonalData) -> str | None:
    """The ``subject_ref`` an email was erased under (its HMAC is on the suppression list), or None."""
    email = normalize_email(value) if storable(value) else None
    if not email:
        return None
    with _reading(paths, personal) as (con, _):
        if not warehouse.table_exists(con, suppression.TABLE):
            return None
        return con.execute(f"SELECT min(subject_ref) FROM {suppression.TABLE} WHERE key_kind = ? AND key_hash = ?",
                           [suppression.KIND_EMAIL, _hmac(personal.hmac_key, email)]).fetchone()[0]


# ---------------------------------------------------------------- deleting


def text_candidates(column: str, ids: Identifiers) -> str:
    """A SQL condition true for every raw text that may be the subject's (then judged in Python)."""
    q = warehouse.quote(column)
    conds = [f"contains({q}, {warehouse.sql_literal(i)})" for i in sorted(ids.customer_ids)]
    conds += [f"contains(lower({q}), {warehouse.sql_literal(e)})" for e in sorted(ids.emails)]
    digits = f"regexp_replace({q}, '[^0-9]', '', 'g')"
    conds += [f"contains({digits}, {warehouse.sql_literal(p.lstrip('+'))})" for p in sorted(ids.phones)]
    conds.append(f"contains({q}, '\\u')")
    return f"{q} IS NOT NULL AND ({' OR '.join(conds)})"


def _keyed_conditions(columns: set[str], subject: Subject) -> list[tuple[str, object]]:
    """(condition, parameter) selecting the subject's rows by the identifier columns present."""
    conds: list[tuple[str, object]] = []
    if "customer_id" in columns:
        conds.append(("trim(CAST(customer_id AS VARCHAR)) = ?", subject.customer_id))
    for column in ("email_hash", "customer_email_hash"):
        if column in columns:
            conds.append((f"list_contains(?, {column})", sorted(subject.email_hashes)))
    if "phone_hash" in columns:
        conds.append(("list_contains(?, phone_hash)", sorted(subject.phone_hashes)))
    ids = subject.identifiers()
    for column in ("email", "customer_email"):
        if column in columns and ids.emails:
            conds.append((f"list_contains(?, {normalize_email_sql(column)})", sorted(ids.emails)))
    if "phone" in columns and ids.phones:
        conds.append((f"list_contains(?, {normalize_phone_sql('phone')})", sorted(ids.phones)))
    return conds


def _row_sources(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str]) -> Iterator[tuple[str, str, set[str], list[str]]]:
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
                texts = [c for c in RAW_TEXT_COLUMNS if c in columns and not (layer == "raw" and holds_personal_data(t))]
                yield t.name, relation, columns, texts
        if holds_personal_data(t):
            for table in (RAW_PERSONAL[t.name], QUARANTINE_PERSONAL[t.name]):
                columns = {c for c, _ in table.columns}
                for a in aliases.values():
                    yield t.name, f"{a}.{table.name}", columns, [c for c in RAW_TEXT_COLUMNS if c in columns]


def _subject_row_keys(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], subject: Subject) -> None:
    """Temp table ``_erase_rows(tbl, _partition_date, _row_number)``: the subject's records in every
    source table, by identifier columns and by the raw texts :class:`Identifiers` attributes to them."""
    con.execute("CREATE OR REPLACE TEMP TABLE _erase_rows (tbl VARCHAR, _partition_date DATE, _row_number BIGINT)")
    ids = subject.identifiers()
    for tbl, relation, columns, texts in _row_sources(con, aliases):
        conds = _keyed_conditions(columns, subject)
        if conds:
            con.execute(
                f"INSERT INTO _erase_rows SELECT DISTINCT ?, _partition_date, _row_number FROM {relation} "
                f"WHERE {' OR '.join(c for c, _ in conds)}",
                [tbl, *(p for _, p in conds)],
            )
        for column in texts:
            if not ids:
                continue
            candidates = con.execute(
                f"SELECT _partition_date, _row_number, {warehouse.quote(column)} FROM {relation} WHERE {text_candidates(column, ids)}"
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
    """A condition selecting the subject's rows of a table with these columns (None: it has none)."""
    conds = []
    if "customer_id" in columns:
        conds.append("trim(CAST(customer_id AS VARCHAR)) = (SELECT customer_id FROM _erase_subject)")
    for column in ("email_hash", "phone_hash", "customer_email_hash"):
        if column in columns:
            conds.append(f"{column} IN (SELECT h FROM _erase_hashes)")
    return " OR ".join(conds) or None


def _erase_databases(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], subject: Subject) -> tuple[dict[str, int], set[str]]:
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


def _erase_datasets(subject: Subject, reason: str, root: Path) -> dict[str, int]:
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


# ---------------------------------------------------------------- the whole erasure


@dataclass
class ErasureResult:
    subject_ref: str | None  # None: an email or phone that named no single customer
    status: str  # erased | nothing_found | unknown_subject | ambiguous_subject | traces_remain | error
    counts: dict[str, int]
    traces: list[Trace]
    not_searched: dict[str, str]
    erased_before: str | None
    files_searched: int
    selector: str = "customer_id"  # what named the subject: customer_id | email | phone | subject_ref
    matches: int | None = None  # for an email or phone: how many customers have it
    failed_step: str | None = None

    @property
    def exit_code(self) -> int:
        if self.status in ("unknown_subject", "ambiguous_subject"):
            return EXIT_UNKNOWN_SUBJECT
        return EXIT_TRACES_REMAIN if self.status in ("traces_remain", "error") else EXIT_ERASED

    def message(self) -> str:
        """One line for a subject that is not erased (unknown, ambiguous); never the value given."""
        nothing = "nothing was erased and nothing recorded as suppressed"
        if self.status == "ambiguous_subject":
            return f"{self.matches} customers have this {self.selector}: erase each by --customer-id; {nothing}"
        if self.selector in ("email", "phone"):
            return f"no customer has this {self.selector}: {nothing}"
        return f"no data about this customer id is held anywhere as a customer's (no CRM record, no erasure): {nothing}"

    def report(self) -> list[str]:
        if self.status in ("unknown_subject", "ambiguous_subject"):
            return [self.message()]
        lines = [f"subject {self.subject_ref}: {self.status.replace('_', ' ')}"]
        if self.erased_before:
            lines.append(f"first erased at {self.erased_before}")
        lines += [f"  removed {n:>7} from {place}" for place, n in sorted(self.counts.items())] or ["  nothing found to remove"]
        lines += [f"  not searched: {what} ({why})" for what, why in sorted(self.not_searched.items())]
        if self.status == "error":
            lines.append(f"ERASURE FAILED while {self.failed_step}: run it again to finish (erasing twice is harmless)")
        elif self.traces:
            lines.append(f"VERIFICATION FAILED: {len(self.traces)} trace(s) remain after searching {self.files_searched} file(s):")
            lines += [f"  {t.describe()}" for t in self.traces]
        else:
            lines.append(f"verified: no trace of the subject in {self.files_searched} file(s) searched")
        return lines


def check_reason(reason: str, subject: Subject) -> None:
    if not reason or not reason.strip():
        raise InputError("a reason is required (e.g. the request's ticket number)")
    if not storable(reason):
        raise InputError("the reason must be text (it holds bytes that are not UTF-8)")
    if canonical_id(reason) == subject.customer_id or Matcher(subject.needles()).in_value(reason, raw_record=True):
        raise InputError("the reason contains the subject's personal data: it is kept in the audit log for good, "
                         "use a ticket number instead")


def search_roots(paths: settings.Paths, personal: PersonalData) -> list[Path]:
    """The data directory, and every regional store and landing zone configured outside it."""
    outside = [*personal.stores.paths.values(), *LandingZones.from_settings(paths).roots()]
    roots = [paths.root] + [p for p in dict.fromkeys(outside) if not p.is_relative_to(paths.root)]
    for target in registered_targets():
        if target.paths is not None:
            roots += [Path(p) for p in target.paths()]
    return roots


def verify(subject: Subject, paths: settings.Paths, personal: PersonalData) -> tuple[list[Trace], int]:
    """Search everything for the subject; (traces, files searched). The suppression list may keep
    their HMAC keys (it is how they stay erased); nothing else may keep anything."""
    warehouse_name = paths.warehouse.relative_to(paths.root).as_posix()

    def allowed(file: str, location: str, label: str) -> bool:
        return file == warehouse_name and label.endswith("HMAC") and (
            location.startswith(suppression.TABLE + ".") or location == "bytes on disk"
        )

    traces, searched = search(search_roots(paths, personal), subject.needles(), allowed=allowed)
    for target in registered_targets():
        if target.search is not None:
            traces += list(target.search(subject))
    return traces, searched


class _Steps:
    """The step an erasure is at and what it removed so far; :meth:`audited` writes the audit record
    of a failure (status ``error``, the step, the error's type) and raises :class:`ErasureFailed`."""

    def __init__(self, subject_ref: str, reason: str, actor: str | None, run_id: str | None, paths: settings.Paths):
        self.subject_ref, self.reason, self.actor, self.run_id, self.paths = subject_ref, reason, actor, run_id, paths
        self.step = "resolving the subject"
        self.counts: dict[str, int] = {}
        self.erased_before: str | None = None
        self.reason_checked = False

    @contextmanager
    def at(self, step: str):
        self.step = step
        yield

    @contextmanager
    def audited(self, selector: str = "customer_id"):
        try:
            yield
        except BaseException as exc:
            failed = ErasureResult(self.subject_ref, "error", dict(self.counts), [], {}, self.erased_before, 0,
                                   selector=selector, failed_step=self.step)
            # an unchecked reason may hold personal data: it is left out
            _audit(failed, self.reason if self.reason_checked else None, self.actor, self.run_id, self.paths, error=type(exc).__name__)
            if isinstance(exc, Exception):
                raise ErasureFailed(self.step, exc) from exc
            raise


def erase(
    customer_id: str,
    reason: str,
    *,
    paths: settings.Paths | None = None,
    personal: PersonalData | None = None,
    actor: str | None = None,
    run_id: str | None = None,
) -> ErasureResult:
    """Erase one data subject everywhere and verify it (see the module docstring)."""
    paths = paths or settings.paths()
    personal = personal or PersonalData.from_settings(paths)
    cid = _required_id(customer_id)
    steps = _Steps("subject:" + _hmac(personal.hmac_key, cid), reason, actor, run_id, paths)
    with steps.audited():
        subject = resolve(cid, paths, personal)
    check_reason(reason, subject)
    steps.reason_checked, steps.erased_before = True, subject.erased_before
    if not subject.erasable:
        result = ErasureResult(subject.ref, "unknown_subject", {}, [], {}, None, 0)
    else:
        with steps.audited():
            result = _erase_known(subject, reason, paths, personal, steps)
    _audit(result, reason, actor, run_id, paths)
    return result


def _erase_known(subject: Subject, reason: str, paths: settings.Paths, personal: PersonalData, steps: _Steps) -> ErasureResult:
    counts = steps.counts
    with steps.at("recording the subject as suppressed"):
        _suppress(subject, paths)
    with steps.at("rewriting landing files"):
        counts |= erase_landing(LandingZones.from_settings(paths), subject.identifiers())
    with steps.at("deleting from the warehouse and the regional stores"):
        con = warehouse.connect(paths.warehouse)
        try:
            warehouse.ensure_schemas(con)
            with personal.stores.attached(con) as aliases:
                removed, changed_regions = _erase_databases(con, aliases, subject)
        finally:
            con.close()
        counts |= removed
    with steps.at("rewriting dataset versions"):
        counts |= _erase_datasets(subject, reason, paths.root / "datasets")
    for target in registered_targets():
        with steps.at(f"erasing from {target.name}"):
            counts |= {f"{target.name}: {place}": n for place, n in target.erase(subject).items() if n}
    if counts:
        with steps.at("compacting the databases"):
            warehouse.compact(paths.warehouse)
            for region in changed_regions:
                warehouse.compact(personal.stores.paths[region])
    with steps.at("verifying by searching every store"):
        traces, searched = verify(subject, paths, personal)
    stale = _uncompacted(traces, paths, personal)
    if stale:  # deleted rows an interrupted erasure (or any delete) left in a database's bytes
        with steps.at("compacting the databases"):
            for path in stale:
                warehouse.compact(path)
        with steps.at("verifying by searching every store"):
            traces, searched = verify(subject, paths, personal)
    status = "traces_remain" if traces else "erased" if counts else "nothing_found"
    return ErasureResult(subject.ref, status, dict(counts), traces, dict(subject.not_searched), subject.erased_before, searched)


def _uncompacted(traces: list[Trace], paths: settings.Paths, personal: PersonalData) -> list[Path]:
    """The databases the erasure manages (the warehouse, the regional stores) where the subject is
    found only in the bytes of deleted rows: compacting them removes the traces."""
    managed = {}
    for path in (paths.warehouse, *personal.stores.paths.values()):
        managed[path.relative_to(paths.root).as_posix() if path.is_relative_to(paths.root) else str(path)] = path
    on_disk = {t.file for t in traces if t.location == "bytes on disk"}
    elsewhere = {t.file for t in traces if t.location != "bytes on disk"}
    return [managed[f] for f in sorted(on_disk - elsewhere) if f in managed]


def erase_matching(
    selector: str,
    value: str,
    reason: str,
    *,
    paths: settings.Paths | None = None,
    personal: PersonalData | None = None,
    actor: str | None = None,
    run_id: str | None = None,
) -> ErasureResult:
    """:func:`erase` for the one customer whose CRM record has this email or phone (``selector``);
    none or several: nothing is erased, the audit record says so (without the value). An email
    erased before (its HMAC on the suppression list) is verified by its HMACs."""
    if selector not in ("email", "phone"):
        raise InputError(f"cannot select a subject by {selector!r}: expected one of {list(SELECTORS)}")
    if not value or not value.strip():
        raise InputError(f"--{selector} must not be empty")
    paths = paths or settings.paths()
    personal = personal or PersonalData.from_settings(paths)
    check_reason(reason, Subject("", "", "", **{f"{selector}s": {value}}))
    matches = sorted(customers_matching(selector, value, paths, personal))
    if len(matches) == 1:
        return erase(matches[0], reason, paths=paths, personal=personal, actor=actor, run_id=run_id)
    if not matches and selector == "email":
        ref = _erased_by_email(value, paths, personal)
        if ref is not None:
            return erase_by_ref(ref, reason, paths=paths, personal=personal, actor=actor, run_id=run_id)
    status = "ambiguous_subject" if matches else "unknown_subject"
    result = ErasureResult(None, status, {}, [], {}, None, 0, selector=selector, matches=len(matches))
    _audit(result, reason, actor, run_id, paths)
    return result


def _suppress(subject: Subject, paths: settings.Paths) -> None:
    con = warehouse.connect(paths.warehouse)
    try:
        warehouse.ensure_schemas(con)
        suppression.record(con, subject.ref, subject.id_hash, subject.email_hashes)
    finally:
        con.close()


def _audit(result: ErasureResult, reason: str | None, actor: str | None, run_id: str | None, paths: settings.Paths,
           error: str | None = None) -> dict:
    refused = result.status in ("unknown_subject", "ambiguous_subject")
    details = {
        "subject": result.subject_ref,
        "selector": result.selector,
        "reason": reason if reason is not None and storable(reason) else None,
        "first_erased_at": result.erased_before,
        "known_subject": not refused,
        "verification": {
            "passed": not result.traces and result.status not in ("error",) and not refused,
            "files_searched": result.files_searched,
            "traces": [t.describe() for t in result.traces],
            "not_searched": result.not_searched,
        },
        "nothing_found": not result.counts,
    }
    if result.matches is not None:
        details["customers_matching"] = result.matches
    if result.status == "error":
        details["failed_step"] = result.failed_step
        details["error"] = error
    return audit.append(
        "erasure",
        directory=paths.root / "audit",
        actor=actor,
        run_id=run_id,
        row_counts=result.counts,
        status="nothing_found" if refused else result.status,
        details=details | ({"outcome": result.status} if refused else {}),
    )


def customer_id_for(subject_ref: str, paths: settings.Paths, personal: PersonalData) -> str | None:
    """The customer id a ``subject:<hmac>`` reference stands for, found by hashing the ids of the
    platform's customer records (warehouse and regional stores, then the CRM landing files); None
    if none matches."""
    wanted = subject_ref.removeprefix("subject:")
    key = personal.hmac_key
    with _reading(paths, personal) as (con, aliases):
        for relation in _customer_tables(con, aliases):
            row = con.execute(
                f"SELECT DISTINCT trim(customer_id) FROM {relation} WHERE {hmac_sql(key, 'trim(customer_id)')} = ? LIMIT 1", [wanted]
            ).fetchone()
            if row:
                return row[0]
    for record in crm_customer_records(LandingZones.from_settings(paths)):
        cid = canonical_id(record.get("customer_id"))
        if cid and _hmac(key, cid) == wanted:
            return cid
    return None


def erase_by_ref(
    subject_ref: str,
    reason: str,
    *,
    paths: settings.Paths | None = None,
    personal: PersonalData | None = None,
    actor: str | None = None,
    run_id: str | None = None,
) -> ErasureResult:
    """:func:`erase` for a subject named by ``subject_ref`` (what the Dagster job takes, so the
    id never enters Dagster's run storage). A subject already erased is verified by their HMACs."""
    if not subject_ref.startswith("subject:") or len(subject_ref) != len("subject:") + 64:
        raise InputError("expected a subject reference 'subject:<64 hex>' (adp erase --print-ref --customer-id ID prints it)")
    if not reason or not reason.strip():
        raise InputError("a reason is required (e.g. the request's ticket number)")
    paths = paths or settings.paths()
    personal = personal or PersonalData.from_settings(paths)
    customer_id = customer_id_for(subject_ref, paths, personal)
    if customer_id is not None:
        return erase(customer_id, reason, paths=paths, personal=personal, actor=actor, run_id=run_id)
    with _reading(paths, personal) as (con, _):
        keys = suppression.keys(con, subject_ref)
        when = con.execute(f"SELECT min(erased_at) FROM {suppression.TABLE} WHERE subject_ref = ?", [subject_ref]).fetchone()[0] if keys else None
    subject = Subject("", subject_ref, subject_ref.removeprefix("subject:"), email_hashes=set(keys.get(suppression.KIND_EMAIL, [])))
    subject.erased_before = when.isoformat() if when else None
    if not keys:
        result = ErasureResult(subject_ref, "unknown_subject", {}, [], {}, None, 0, selector="subject_ref")
        _audit(result, reason, actor, run_id, paths)
        return result
    steps = _Steps(subject_ref, reason, actor, run_id, paths)
    steps.reason_checked, steps.erased_before = True, subject.erased_before
    with steps.audited("subject_ref"), steps.at("verifying by searching every store"):
        traces, searched = verify(subject, paths, personal)
    result = ErasureResult(subject_ref, "traces_remain" if traces else "nothing_found", {}, traces, {}, subject.erased_before, searched,
                           selector="subject_ref")
    _audit(result, reason, actor, run_id, paths)
    return result
