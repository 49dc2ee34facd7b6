"""Right to erasure: remove a data subject from every store, prove it by searching, record it.

``erase(customer_id, reason)`` (``adp erase`` and the ``erase_customer`` job call it):

1. **Resolve the subject** from the data: their emails, phones and names from the regional stores
   and the CRM landing files, the HMAC keys from the warehouse. Emails identify a person: CRM rows
   under another id with the subject's email and tickets sent from it (even by an unknown
   customer) are theirs too. A phone or name shared with another customer is not used to select
   or search anything (the report says which were left out and why).
2. **Suppress** them (``suppression.py``): recorded first, so no load running meanwhile and no
   later backfill brings them back.
3. **Delete** their records: landing files of every zone (rewritten, mtime kept,
   ``landing_erasure.py``); in the warehouse the raw rows, and the staging and quarantine rows with the same row keys (so row
   conservation still holds), then every row of any other table whose ``customer_id``,
   ``email_hash`` or ``phone_hash`` is theirs (marts, features, scores, ...); in every regional
   store their personal rows; every dataset version holding their rows is rewritten through
   ``ml/datasets.erase_rows`` (new content hash, an ``erasure`` event in its history naming the
   subject only by ``subject_ref``); then every :class:`ErasureTarget`: the platform's own in
   :data:`TARGET_MODULES` (the stream transport, the ``stream`` tables and the online store:
   ``streaming/erasure.py``) and any registered with :func:`register_target`.
4. **Compact** every DuckDB file that changed, so the deleted rows' bytes are gone.
5. **Verify by searching** (``search.py``): every file under ``$ADP_DATA_DIR`` and every
   regional store and landing zone configured outside it, whatever it is (DuckDB, SQLite such
   as Dagster's event log, Parquet, text), and each target's storage that is not a file (Redis),
   for the id, emails, phones, names and their HMACs. Anything left is a :class:`search.Trace`
   naming the file, table, column and count; the erasure then fails (exit code 1).
6. **Audit**: one record holding no personal data: ``subject_ref``, counts per place, reason,
   actor, time, the verification outcome. The audit trail is checked against its anchor before
   step 2, so an erasure it could not record is refused before anything changes.

Erasing twice is harmless: nothing is found, nothing changes, verification passes, and the audit
record says nothing was found and when the subject was first erased. An id the platform holds
nothing about is reported as unknown (exit code 3) and nothing is recorded as suppressed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from ai_data_platform import settings, warehouse
from ai_data_platform.governance import audit, suppression
from ai_data_platform.governance.landing_erasure import SubjectRecords, crm_customer_records, erase_landing, subject_rows_in_crm_files
from ai_data_platform.governance.personal_data import holds_personal_data, warehouse_raw_columns
from ai_data_platform.governance.pii import hmac_hex, hmac_sql, normalize_email, normalize_phone
from ai_data_platform.governance.search import Needle, Trace, any_token_re2, search
from ai_data_platform.governance.stores import IDENTITY, PERSONAL_TABLES, QUARANTINE_PERSONAL, RAW_PERSONAL, PersonalData
from ai_data_platform.sources.contracts import CUSTOMERS, SOURCE_TABLES
from ai_data_platform.sources.landing import LandingZones

EXIT_ERASED = 0
EXIT_TRACES_REMAIN = 1
EXIT_UNKNOWN_SUBJECT = 3
SOURCE_LAYERS = ("raw", "staging", "quarantine")


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
    held: bool = False  # anything found about them in the warehouse, a store or a CRM file
    erased_before: str | None = None

    @property
    def normalized_emails(self) -> frozenset[str]:
        return frozenset(e for e in (normalize_email(x) for x in self.emails) if e)

    def needles(self) -> list[Needle]:
        out = [Needle("customer id", self.customer_id)] if self.customer_id else []
        for label, values in (("email", self.emails), ("phone", self.phones), ("name", self.names),
                              ("email HMAC", self.email_hashes), ("phone HMAC", self.phone_hashes)):
            out += [Needle(label, v) for v in sorted({v.strip() for v in values if v and v.strip()})]
        return out


def _union(aliases: Mapping[str, str], table: str, columns: str) -> str:
    return " UNION ALL ".join(f"SELECT {columns} FROM {a}.{table}" for a in aliases.values())


def resolve(customer_id: str, paths: settings.Paths, personal: PersonalData) -> Subject:
    """Everything the platform holds that identifies ``customer_id`` (see the module docstring)."""
    cid = customer_id.strip()
    if not cid:
        raise ValueError("a customer id is required")
    key = personal.hmac_key
    subject = Subject(cid, audit.subject_ref(cid, key), hmac_hex(key, cid))
    for row in subject_rows_in_crm_files(LandingZones.from_settings(paths), cid):  # also a subject not loaded yet
        subject.held = True
        _add(subject, row.get("name"), row.get("email"), row.get("phone"))
    con = warehouse.connect(paths.warehouse)
    try:
        with personal.stores.attached(con) as aliases:
            _resolve_from_data(con, aliases, subject, key)
            _leave_out_shared(con, aliases, subject, key)
        subject.erased_before = _erased_at(con, subject)
        subject.email_hashes |= set(suppression.keys(con, subject.ref).get(suppression.KIND_EMAIL, []))
    finally:
        con.close()
    for values in (subject.emails, subject.phones, subject.names, subject.email_hashes, subject.phone_hashes):
        values.discard(None)
        values.discard("")
    return subject


def _add(subject: Subject, name: str | None, email: str | None, phone: str | None) -> None:
    subject.names.add(name)
    subject.emails.add(email)
    subject.phones.add(phone)


def _resolve_from_data(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], subject: Subject, key: str) -> None:
    cid = subject.customer_id
    for t in SOURCE_TABLES:
        if "customer_id" in warehouse_raw_columns(t) and warehouse.table_exists(con, f"raw.{t.name}"):
            if con.execute(f"SELECT count(*) FROM raw.{t.name} WHERE trim(customer_id) = ?", [cid]).fetchone()[0]:
                subject.held = True
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
        subject.held = True
        _add(subject, name, email, phone)
        subject.email_hashes.add(email_hash)
    subject.email_hashes |= {hmac_hex(key, e) for e in subject.normalized_emails}
    personal_rows = _union(aliases, RAW_PERSONAL[CUSTOMERS.name].name, "customer_id, name, email, phone, email_hash")
    hashes = sorted(h for h in subject.email_hashes if h)
    for name, email, phone in con.execute(
        f"SELECT name, email, phone FROM ({personal_rows}) WHERE trim(customer_id) = ? OR list_contains(?, email_hash)", [cid, hashes]
    ).fetchall():
        subject.held = True
        _add(subject, name, email, phone)


def _leave_out_shared(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], subject: Subject, key: str) -> None:
    """Complete the keys (normalized emails and phones, their HMACs), leaving out the phones and
    names other customers have too: they are not this subject's alone (the report says so)."""
    subject.emails |= set(subject.normalized_emails)
    subject.email_hashes |= {hmac_hex(key, e) for e in subject.normalized_emails}
    rows = f"{_union(aliases, IDENTITY.name, 'customer_id, name, phone, email_hash')} UNION ALL " + _union(
        aliases, RAW_PERSONAL[CUSTOMERS.name].name, "customer_id, name, phone, email_hash"
    )
    hashes = sorted(h for h in subject.email_hashes if h)
    shared_phone_hashes = set()
    for label, values in (("phone", subject.phones), ("name", subject.names)):
        for value in sorted(v for v in values if v and v.strip()):
            others = con.execute(
                f"SELECT count(DISTINCT trim(customer_id)) FROM ({rows}) WHERE trim({label}) = trim(?) "
                "AND trim(customer_id) <> ? AND NOT coalesce(list_contains(?, email_hash), FALSE)",
                [value, subject.customer_id, hashes],
            ).fetchone()[0]
            if others:
                values.discard(value)
                subject.not_searched[f"a {label}"] = f"shared with {others} other customer(s): not theirs alone"
                if label == "phone" and normalize_phone(value):
                    shared_phone_hashes.add(hmac_hex(key, normalize_phone(value)))
    normalized = {p for p in (normalize_phone(x) for x in subject.phones) if p}
    subject.phones |= normalized
    subject.phone_hashes = ({h for h in subject.phone_hashes if h} | {hmac_hex(key, p) for p in normalized}) - shared_phone_hashes


def _erased_at(con, subject: Subject) -> str | None:
    when = suppression.erased_at(con, subject.id_hash)
    return when.isoformat() if when is not None else None


# ---------------------------------------------------------------- deleting


def _re2_tokens(values: Iterable[str]) -> str:
    return any_token_re2([Needle("", v) for v in sorted(values) if v])


def _subject_row_keys(con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], subject: Subject) -> None:
    """Temp table ``_erase_rows(tbl, _partition_date, _row_number)``: the subject's records in every
    source table, found in raw, staging, quarantine and the regional stores (any of them may be
    the only one left holding a row, e.g. after retention deleted old raw partitions)."""
    con.execute("CREATE OR REPLACE TEMP TABLE _erase_rows (tbl VARCHAR, _partition_date DATE, _row_number BIGINT)")
    cid, hashes = subject.customer_id, sorted(subject.email_hashes)
    tokens = warehouse.sql_literal(_re2_tokens([cid, *subject.normalized_emails]))

    def keyed(columns: set[str]) -> list[tuple[str, object]]:
        """(condition, parameter) on the subject's id and email HMACs, for the columns present."""
        conds: list[tuple[str, object]] = [("trim(customer_id) = ?", cid)] if "customer_id" in columns else []
        return conds + [(f"list_contains(?, {c})", hashes) for c in ("email_hash", "customer_email_hash") if c in columns]

    for t in SOURCE_TABLES:
        found: list[tuple[str, list[tuple[str, object]], list[str]]] = []  # (relation, keyed conditions, text conditions)
        if warehouse.table_exists(con, f"raw.{t.name}"):
            lines = [] if holds_personal_data(t) else [f"regexp_matches(coalesce(_raw_line, ''), {tokens})"]
            found.append((f"raw.{t.name}", keyed(set(warehouse_raw_columns(t))), lines))
        if warehouse.table_exists(con, f"staging.{t.name}"):
            found.append((f"staging.{t.name}", keyed({c for c, _ in warehouse.table_columns(con, f"staging.{t.name}")}), []))
        if warehouse.table_exists(con, f"quarantine.{t.name}") and not holds_personal_data(t):
            found.append((f"quarantine.{t.name}", [], [f"regexp_matches(coalesce({c}, ''), {tokens})" for c in ("raw_record", "raw_value")]))
        if holds_personal_data(t):
            for table, text in ((RAW_PERSONAL[t.name], "_raw_line"), (QUARANTINE_PERSONAL[t.name], "raw_record")):
                for a in aliases.values():
                    columns = {c for c, _ in table.columns}
                    found.append((f"{a}.{table.name}", keyed(columns), [f"regexp_matches(coalesce({text}, ''), {tokens})"]))
        for relation, conds, texts in found:
            condition = " OR ".join([c for c, _ in conds] + texts)
            if condition:
                con.execute(
                    f"INSERT INTO _erase_rows SELECT DISTINCT ?, _partition_date, _row_number FROM {relation} WHERE {condition}",
                    [t.name, *(p for _, p in conds)],
                )


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
    for column in ("email_hash", "phone_hash"):
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
        path = root / name / version / datasets.DATA_FILE
        con = duckdb.connect()
        try:
            columns = {c for c, *_ in con.execute(f"DESCRIBE SELECT * FROM read_parquet({warehouse.sql_literal(str(path))})").fetchall()}
            if "customer_id" not in columns:
                continue
            present = con.execute(
                f"SELECT count(*) FROM read_parquet({warehouse.sql_literal(str(path))}) WHERE trim(customer_id) = ?", [subject.customer_id]
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
    subject_ref: str
    status: str  # erased | nothing_found | unknown_subject | traces_remain
    counts: dict[str, int]
    traces: list[Trace]
    not_searched: dict[str, str]
    erased_before: str | None
    files_searched: int

    @property
    def exit_code(self) -> int:
        return {"unknown_subject": EXIT_UNKNOWN_SUBJECT, "traces_remain": EXIT_TRACES_REMAIN}.get(self.status, EXIT_ERASED)

    def report(self) -> list[str]:
        lines = [f"subject {self.subject_ref}: {self.status.replace('_', ' ')}"]
        if self.status == "unknown_subject":
            return lines + ["no data about this customer id is held anywhere: nothing was erased and nothing recorded as suppressed"]
        if self.erased_before:
            lines.append(f"first erased at {self.erased_before}")
        lines += [f"  removed {n:>7} from {place}" for place, n in sorted(self.counts.items())] or ["  nothing found to remove"]
        lines += [f"  not searched: {what} ({why})" for what, why in sorted(self.not_searched.items())]
        if self.traces:
            lines.append(f"VERIFICATION FAILED: {len(self.traces)} trace(s) remain after searching {self.files_searched} file(s):")
            lines += [f"  {t.describe()}" for t in self.traces]
        else:
            lines.append(f"verified: no trace of the subject in {self.files_searched} file(s) searched")
        return lines


def check_reason(reason: str, subject: Subject) -> None:
    if not reason or not reason.strip():
        raise ValueError("a reason is required (e.g. the request's ticket number)")
    if any(n.python_pattern.search(reason) for n in subject.needles()):
        raise ValueError("the reason contains the subject's personal data: it is kept in the audit log for good, use a ticket number instead")


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

    def allowed(file: str, location: str, needle: Needle) -> bool:
        return file == warehouse_name and needle.label.endswith("HMAC") and (
            location.startswith(suppression.TABLE + ".") or location == "bytes on disk"
        )

    traces, searched = search(search_roots(paths, personal), subject.needles(), allowed=allowed)
    for target in registered_targets():
        if target.search is not None:
            traces += list(target.search(subject))
    return traces, searched


def erase(
    customer_id: str,
    reason: str,
    *,
    paths: settings.Paths | None = None,
    personal: PersonalData | None = None,
    actor: str | None = None,
    run_id: str | None = None,
    anchor: audit.Anchor | None = None,
) -> ErasureResult:
    """Erase one data subject everywhere and verify it (see the module docstring)."""
    paths = paths or settings.paths()
    personal = personal or PersonalData.from_settings(paths)
    subject = resolve(customer_id, paths, personal)
    check_reason(reason, subject)
    audit.anchor_pending(directory=paths.root / "audit", anchor=anchor)  # a trail that cannot record it: refused here
    if subject.held:
        _suppress(subject, paths)
    counts = erase_landing(LandingZones.from_settings(paths), SubjectRecords(subject.customer_id, subject.normalized_emails))
    con = warehouse.connect(paths.warehouse)
    try:
        warehouse.ensure_schemas(con)
        with personal.stores.attached(con) as aliases:
            removed, changed_regions = _erase_databases(con, aliases, subject)
    finally:
        con.close()
    counts |= removed
    counts |= _erase_datasets(subject, reason, paths.root / "datasets")
    for target in registered_targets():
        counts |= {f"{target.name}: {place}": n for place, n in target.erase(subject).items() if n}
    if counts and not subject.held:
        _suppress(subject, paths)  # only references (e.g. payments of an id the CRM never had) were held
    if counts:
        warehouse.compact(paths.warehouse)
        for region in changed_regions:
            warehouse.compact(personal.stores.paths[region])
    traces, searched = verify(subject, paths, personal)
    if not counts and not subject.held and subject.erased_before is None and not traces:
        status = "unknown_subject"
    elif traces:
        status = "traces_remain"
    else:
        status = "erased" if counts else "nothing_found"
    result = ErasureResult(subject.ref, status, counts, traces, dict(subject.not_searched), subject.erased_before, searched)
    _audit(result, reason, actor, run_id, paths, anchor)
    return result


def _suppress(subject: Subject, paths: settings.Paths) -> None:
    con = warehouse.connect(paths.warehouse)
    try:
        warehouse.ensure_schemas(con)
        suppression.record(con, subject.ref, subject.id_hash, subject.email_hashes)
    finally:
        con.close()


def _audit(result: ErasureResult, reason: str, actor: str | None, run_id: str | None, paths: settings.Paths,
           anchor: audit.Anchor | None) -> dict:
    return audit.append(
        "erasure",
        directory=paths.root / "audit",
        anchor=anchor,
        actor=actor,
        run_id=run_id,
        row_counts=result.counts,
        status=result.status,
        details={
            "subject": result.subject_ref,
            "reason": reason,
            "first_erased_at": result.erased_before,
            "verification": {
                "passed": not result.traces,
                "files_searched": result.files_searched,
                "traces": [t.describe() for t in result.traces],
                "not_searched": result.not_searched,
            },
            "nothing_found": not result.counts,
        },
    )


def customer_id_for(subject_ref: str, paths: settings.Paths, personal: PersonalData) -> str | None:
    """The customer id a ``subject:<hmac>`` reference stands for, found by hashing the ids the
    platform holds (raw tables, then the CRM landing files); None if none matches."""
    wanted = subject_ref.removeprefix("subject:")
    key = personal.hmac_key
    con = warehouse.connect(paths.warehouse)
    try:
        for t in SOURCE_TABLES:
            if "customer_id" in warehouse_raw_columns(t) and warehouse.table_exists(con, f"raw.{t.name}"):
                row = con.execute(
                    f"SELECT DISTINCT trim(customer_id) FROM raw.{t.name} WHERE {hmac_sql(key, 'trim(customer_id)')} = ? LIMIT 1", [wanted]
                ).fetchone()
                if row:
                    return row[0]
    finally:
        con.close()
    for record in crm_customer_records(LandingZones.from_settings(paths)):
        cid = (record.get("customer_id") or "").strip()
        if cid and hmac_hex(key, cid) == wanted:
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
    anchor: audit.Anchor | None = None,
) -> ErasureResult:
    """:func:`erase` for a subject named by ``subject_ref`` (what the Dagster job takes, so the
    id never enters Dagster's run storage). A subject already erased is verified by their HMACs."""
    if not subject_ref.startswith("subject:") or len(subject_ref) != len("subject:") + 64:
        raise ValueError("expected a subject reference 'subject:<64 hex>' (adp erase --print-ref --customer-id ID prints it)")
    paths = paths or settings.paths()
    personal = personal or PersonalData.from_settings(paths)
    customer_id = customer_id_for(subject_ref, paths, personal)
    if customer_id is not None:
        return erase(customer_id, reason, paths=paths, personal=personal, actor=actor, run_id=run_id, anchor=anchor)
    con = warehouse.connect(paths.warehouse)
    try:
        keys = suppression.keys(con, subject_ref)
        when = con.execute(f"SELECT min(erased_at) FROM {suppression.TABLE} WHERE subject_ref = ?", [subject_ref]).fetchone()[0] if keys else None
    finally:
        con.close()
    subject = Subject("", subject_ref, subject_ref.removeprefix("subject:"), email_hashes=set(keys.get(suppression.KIND_EMAIL, [])))
    traces, searched = verify(subject, paths, personal) if keys else ([], 0)
    status = "unknown_subject" if not keys else ("traces_remain" if traces else "nothing_found")
    result = ErasureResult(subject_ref, status, {}, traces, {}, when.isoformat() if when else None, searched)
    _audit(result, reason, actor, run_id, paths, anchor)
    return result
