"""Who an erasure is about: one known customer, and every key their data can be found by.

A **known customer** is an id the platform holds a customer record for: a CRM landing file of any
zone, ``raw``/``staging.customers``, or a regional store's identity and personal tables. An email
or phone names a customer when exactly one customer id has it in those records. A subject erased
before is known by the HMACs on the suppression list. Rows that only reference an id (a payment of
an id the CRM never had) make no one known.

A known subject's keys come from the data (:func:`resolve`): their emails, phones and names from
the regional stores and the CRM landing files, the HMAC keys from the warehouse. Emails identify a
person: CRM rows under another id with the subject's email are theirs too. A phone or name shared
with another customer is left out (``Subject.not_searched`` says which and why).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb

from ai_data_platform import settings, warehouse
from ai_data_platform.errors import InputError
from ai_data_platform.governance import suppression
from ai_data_platform.governance.attribution import Identifiers, as_bytes, canonical_id
from ai_data_platform.governance.landing_erasure import crm_customer_records, subject_rows_in_crm_files
from ai_data_platform.governance.pii import hmac_sql, normalize_email, normalize_email_sql, normalize_phone, normalize_phone_sql
from ai_data_platform.governance.search_rules import EMAIL, EMAIL_HMAC, ID, NAME, PHONE, PHONE_HMAC, Needle, is_word
from ai_data_platform.governance.stores import IDENTITY, QUARANTINE_PERSONAL, RAW_PERSONAL, PersonalData
from ai_data_platform.sources.contracts import CUSTOMERS
from ai_data_platform.sources.landing import LandingZones


def hmac_of(key: str, value: str) -> str:
    """``pii.hmac_hex`` of a value as typed (an argument's undecodable bytes as they were)."""
    return hmac.new(key.encode(), as_bytes(value), hashlib.sha256).hexdigest()


def subject_hash(customer_id: str, key: str | None = None) -> str:
    """The HMAC of a customer id (``audit.subject_ref`` without its prefix), for any argument."""
    return hmac_of(key or settings.pii_hmac_key(), customer_id)


def storable(value: str) -> bool:
    """Whether any store could hold ``value`` (UTF-8 text): an argument with undecodable bytes cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def required_id(customer_id: str) -> str:
    cid = customer_id.strip()
    if not cid:
        raise InputError("a customer id is required")
    return cid


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
def reading(
    paths: settings.Paths, personal: PersonalData
) -> Iterator[tuple[duckdb.DuckDBPyConnection, dict[str, str]]]:
    """A warehouse connection with every regional store attached, to look things up. Not read-only
    (the caller's process may hold the same files open for writing, and DuckDB opens a file once per
    process, in one mode), except before the first load: then an empty in-memory stand-in and the
    stores read-only, so looking creates no file."""
    fresh = not paths.warehouse.exists()
    con = duckdb.connect() if fresh else warehouse.connect(paths.warehouse)
    try:
        with personal.stores.attached(con, read_only=fresh) as aliases:
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
    cid = required_id(customer_id)
    key = personal.hmac_key
    id_hash = hmac_of(key, cid)
    subject = Subject(cid, "subject:" + id_hash, id_hash)
    if not storable(cid):  # no store holds text that is not UTF-8: nobody has this id
        return subject
    for row in subject_rows_in_crm_files(LandingZones.from_settings(paths), cid):  # also a subject not loaded yet
        subject.known = True
        _add(subject, row.get("name"), row.get("email"), row.get("phone"))
    with reading(paths, personal) as (con, aliases):
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
    subject.email_hashes |= {hmac_of(key, e) for e in subject.normalized_emails}
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
    subject.email_hashes |= {hmac_of(key, e) for e in subject.normalized_emails}
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
                    shared_phone_hashes.add(hmac_of(key, normalize_phone(value)))
    normalized = {p for p in (normalize_phone(x) for x in subject.phones) if p}
    subject.phones |= normalized
    subject.phone_hashes = ({h for h in subject.phone_hashes if h} | {hmac_of(key, p) for p in normalized}) - shared_phone_hashes


def _erased_at(con, subject: Subject) -> str | None:
    when = suppression.erased_at(con, subject.id_hash)
    return when.isoformat() if when is not None else None


def customers_matching(kind: str, value: str, paths: settings.Paths, personal: PersonalData) -> set[str]:
    """The customer ids whose CRM record has this email or phone (normalized), in the landing
    files, the warehouse (by HMAC) and the regional stores."""
    normalize = normalize_email if kind == "email" else normalize_phone
    wanted = normalize(value) if storable(value) else None
    if not wanted:
        return set()
    ids = {canonical_id(r.get("customer_id")) for r in crm_customer_records(LandingZones.from_settings(paths))
           if normalize(r.get(kind)) == wanted}
    digest = hmac_of(personal.hmac_key, wanted)
    normalized_sql = normalize_email_sql if kind == "email" else normalize_phone_sql
    with reading(paths, personal) as (con, aliases):
        for layer in ("raw", "staging"):
            if warehouse.table_exists(con, f"{layer}.customers"):
                ids |= {r for (r,) in con.execute(
                    f"SELECT DISTINCT trim(customer_id) FROM {layer}.customers WHERE {kind}_hash = ?", [digest]
                ).fetchall()}
        for table in (IDENTITY, RAW_PERSONAL[CUSTOMERS.name]):
            ids |= {r for (r,) in con.execute(
                f"SELECT DISTINCT trim(customer_id) FROM ({_union(aliases, table.name, f'customer_id, {kind}')}) "
                f"WHERE {normalized_sql(kind)} = ?", [wanted]).fetchall()}
    return {i for i in ids if i}


def erased_email_ref(value: str, paths: settings.Paths, personal: PersonalData) -> str | None:
    """The ``subject_ref`` an email was erased under (its HMAC is on the suppression list), or None."""
    email = normalize_email(value) if storable(value) else None
    if not email:
        return None
    with reading(paths, personal) as (con, _):
        if not warehouse.table_exists(con, suppression.TABLE):
            return None
        return con.execute(f"SELECT min(subject_ref) FROM {suppression.TABLE} WHERE key_kind = ? AND key_hash = ?",
                           [suppression.KIND_EMAIL, hmac_of(personal.hmac_key, email)]).fetchone()[0]


def customer_id_for(subject_ref: str, paths: settings.Paths, personal: PersonalData) -> str | None:
    """The customer id a ``subject:<hmac>`` reference stands for, found by hashing the ids of the
    platform's customer records (warehouse and regional stores, then the CRM landing files); None
    if none matches."""
    wanted = subject_ref.removeprefix("subject:")
    key = personal.hmac_key
    with reading(paths, personal) as (con, aliases):
        for relation in _customer_tables(con, aliases):
            row = con.execute(
                f"SELECT DISTINCT trim(customer_id) FROM {relation} WHERE {hmac_sql(con, key, 'trim(customer_id)')} = ? LIMIT 1", [wanted]
            ).fetchone()
            if row:
                return row[0]
    for record in crm_customer_records(LandingZones.from_settings(paths)):
        cid = canonical_id(record.get("customer_id"))
        if cid and hmac_of(key, cid) == wanted:
            return cid
    return None
