"""Who an erasure is about: one known customer, and every key their data can be found by.

A **known customer** is an id the platform holds a customer record for: a CRM landing file of any
zone, ``raw``/``staging.customers``, or a regional store's identity and personal tables. An email
or phone names a customer when exactly one customer id has it in those records. A subject erased
before is known by the HMACs on the suppression list. Rows that only reference an id (a payment of
an id the CRM never had) make no one known.

A subject is **one customer id**. Their keys come from their own customer records
(:func:`resolve`): their emails, phones and names from the regional stores and the CRM landing
files, the HMAC keys from the warehouse, all under their id. Records under another customer id
are never theirs, whatever they share. An email, phone or name another customer id has too
(compared as the platform compares them: emails normalized, ``pii.normalize_email``, and by their
HMAC; phones by ``pii.normalize_phone`` and their HMAC; names trimmed and case-folded) is *not
theirs alone*: it selects nothing and is searched for nowhere, and ``Subject.not_searched`` says
which kind and how many other customers have it, never the value. :class:`CustomerRecords` is the
one place these look-ups are made (also for the verification: whose record a trace is in).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import duckdb
from duckdb.sqltypes import VARCHAR

from ai_data_platform import settings, warehouse
from ai_data_platform.errors import InputError
from ai_data_platform.governance import suppression
from ai_data_platform.governance.attribution import Identifiers, as_bytes, canonical_id
from ai_data_platform.governance.landing_erasure import crm_customer_records
from ai_data_platform.governance.pii import hmac_sql, normalize_email, normalize_phone
from ai_data_platform.governance.search_rules import (
    EMAIL,
    EMAIL_HMAC,
    ID,
    NAME,
    PHONE,
    PHONE_HMAC,
    Needle,
    Owner,
    is_word,
)
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
    left_out: list[Needle] = field(default_factory=list)  # their values not theirs alone: kept out of every search
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

    def every_value(self) -> list[Needle]:
        """Every value known of them, those not theirs alone too (what a reason must not hold)."""
        return self.needles() + self.left_out

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
    crm = list(crm_customer_records(LandingZones.from_settings(paths)))
    for row in crm:  # also a subject not loaded yet
        if canonical_id(row.get("customer_id")) == cid:
            subject.known = True
            _add(subject, row.get("name"), row.get("email"), row.get("phone"))
    with reading(paths, personal) as (con, aliases):
        subject.known = subject.known or _known_in_data(con, aliases, cid)
        subject.erased_before = _erased_at(con, subject)
        if subject.known:
            _resolve_from_data(con, aliases, subject, key)
        subject.email_hashes |= set(suppression.keys(con, subject.ref).get(suppression.KIND_EMAIL, []))
        for values in (subject.emails, subject.phones, subject.names, subject.email_hashes, subject.phone_hashes):
            values.discard(None)
            values.discard("")
        if subject.known:
            _leave_out_shared(CustomerRecords(con, aliases, key, crm), subject)
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
    """Their names, emails, phones and HMACs from the records under their id."""
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
        subject.phone_hashes.add(phone_hash)
    personal_rows = _union(aliases, RAW_PERSONAL[CUSTOMERS.name].name, "customer_id, name, email, phone")
    for name, email, phone in con.execute(
        f"SELECT name, email, phone FROM ({personal_rows}) WHERE trim(customer_id) = ?", [cid]
    ).fetchall():
        _add(subject, name, email, phone)
    subject.emails |= set(subject.normalized_emails)
    subject.email_hashes |= {hmac_of(key, e) for e in subject.normalized_emails}
    normalized = {p for p in (normalize_phone(x) for x in subject.phones) if p}
    subject.phones |= normalized
    subject.phone_hashes |= {hmac_of(key, p) for p in normalized}


def name_key(value: str | None) -> str | None:
    """A name as names are compared: trimmed and case-folded."""
    key = value.strip().casefold() if isinstance(value, str) else None
    return key or None


_NAME_KEY = "adp_name_key"
_PHONE_KEY = "adp_phone_key"
_EMAIL_KEY = "adp_email_key"


class CustomerRecords:
    """Every customer record the platform holds (the CRM landing files ``crm``, ``raw``/``staging``
    customers, the regional stores' identity and personal customer tables), looked up by key:
    which customer ids have an email or phone (by value and by HMAC), a name, and whether an id is
    a known customer. Values are compared as the platform compares them (see the module docstring)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, aliases: Mapping[str, str], key: str, crm: list[dict]):
        self.con, self.aliases, self.key = con, aliases, key
        self.crm = [(canonical_id(r.get("customer_id")), r) for r in crm]
        self._crm_hashes: dict[str, dict[str, set[str]]] = {}  # kind -> HMAC -> customer ids
        self._known: dict[str, bool] = {}
        for name, function in ((_NAME_KEY, name_key), (_PHONE_KEY, normalize_phone), (_EMAIL_KEY, normalize_email)):
            listed = con.execute("SELECT count(*) FROM duckdb_functions() WHERE function_name = ?", [name]).fetchall()
            if not listed[0][0]:
                con.create_function(name, function, [VARCHAR], VARCHAR)

    def known(self, customer_id: str) -> bool:
        if customer_id not in self._known:
            self._known[customer_id] = (any(i == customer_id for i, _ in self.crm)
                                        or _known_in_data(self.con, self.aliases, customer_id))
        return self._known[customer_id]

    def _ids(self, relations: list[str], condition: str, params: list) -> set[str]:
        """The customer ids of the rows of ``relations`` meeting ``condition``."""
        ids: set[str] = set()
        for relation in relations:
            rows = self.con.execute(
                f"SELECT DISTINCT trim(CAST(customer_id AS VARCHAR)) FROM {relation} WHERE {condition}", params
            ).fetchall()
            ids |= {r for (r,) in rows}
        return ids - {None, ""}

    def with_hash(self, kind: str, digest: str) -> set[str]:
        """Who has an email or phone (``kind``) with this HMAC: the warehouse's and the stores' HMAC
        columns, and the CRM landing records' values hashed."""
        if kind not in self._crm_hashes:
            normalize = normalize_email if kind == EMAIL else normalize_phone
            hashes: dict[str, set[str]] = {}
            for i, r in self.crm:
                value = normalize(r.get(kind))
                if i and value:
                    hashes.setdefault(hmac_of(self.key, value), set()).add(i)
            self._crm_hashes[kind] = hashes
        column = f"{kind}_hash"
        relations = [f"{layer}.customers" for layer in ("raw", "staging")
                     if warehouse.table_exists(self.con, f"{layer}.customers")]
        relations += [f"{a}.{IDENTITY.name}" for a in self.aliases.values()]
        if kind == EMAIL:
            relations += [f"{a}.{RAW_PERSONAL[CUSTOMERS.name].name}" for a in self.aliases.values()]
        return self._crm_hashes[kind].get(digest, set()) | self._ids(relations, f"{column} = ?", [digest])

    def _in_stores(self, column: str, function: str, value: str) -> set[str]:
        relations = [f"{a}.{table.name}" for a in self.aliases.values()
                     for table in (IDENTITY, RAW_PERSONAL[CUSTOMERS.name])]
        return self._ids(relations, f"{function}({column}) = ?", [value])

    def with_email(self, email: str) -> set[str]:
        """Who has this (normalized) email: by its HMAC, and by the stores' values normalized."""
        return self.with_hash(EMAIL, hmac_of(self.key, email)) | self._in_stores("email", _EMAIL_KEY, email)

    def with_phone(self, phone: str) -> set[str]:
        """Who has this (normalized) phone: by its HMAC, and by the stores' values normalized."""
        return self.with_hash(PHONE, hmac_of(self.key, phone)) | self._in_stores("phone", _PHONE_KEY, phone)

    def with_name(self, key: str) -> set[str]:
        """Who has this name (:func:`name_key`)."""
        in_crm = {i for i, r in self.crm if i and name_key(r.get("name")) == key}
        return in_crm | self._in_stores("name", _NAME_KEY, key)

    def others_have(self, owner: Owner, subject_id: str) -> bool:
        """Whether a record of ``owner`` is a known customer's other than the subject: every customer
        id it holds is one; without one, its email (or email HMAC) is one's."""
        if owner.customer_ids:
            return all(i != subject_id and self.known(i) for i in owner.customer_ids)
        digests = {*owner.email_hashes, *(hmac_of(self.key, e) for e in owner.emails)}
        return any(self.with_hash(EMAIL, d) - {subject_id} for d in sorted(digests))


def _leave_out_shared(records: CustomerRecords, subject: Subject) -> None:
    """Leave out the emails, phones and names another customer id has too: they are not this
    subject's alone (``not_searched`` says which kind and how many others, never the value)."""
    cid, key = subject.customer_id, records.key
    shared: dict[str, tuple[int, set[str]]] = {}  # label -> (how many of their values, the other customer ids)

    def others(label: str, who: set[str]) -> bool:
        who = who - {cid}
        if who:
            n, ids = shared.get(label, (0, set()))
            shared[label] = (n + 1, ids | who)
        return bool(who)

    for label, values, hashes, normalize, with_value in (
        (EMAIL, subject.emails, subject.email_hashes, normalize_email, records.with_email),
        (PHONE, subject.phones, subject.phone_hashes, normalize_phone, records.with_phone),
    ):
        normalized = {v: hmac_of(key, v) for v in sorted({normalize(v) for v in values} - {None})}
        gone = {digest for value, digest in normalized.items() if others(label, with_value(value))}
        # an HMAC of theirs no value of theirs explains (a store kept only the HMAC)
        gone |= {digest for digest in sorted(hashes - set(normalized.values()))
                 if others(label, records.with_hash(label, digest))}
        hashes -= gone
        _drop(subject, label, values, lambda v: (n := normalize(v)) is not None and hmac_of(key, n) in gone)
    names = {n for n in sorted({name_key(v) for v in subject.names} - {None}) if others(NAME, records.with_name(n))}
    _drop(subject, NAME, subject.names, lambda v: name_key(v) in names)
    for label, (n, ids) in shared.items():
        what = (f"an {label}" if label == EMAIL else f"a {label}") if n == 1 else f"{n} {label}s"
        subject.not_searched[what] = f"shared with {len(ids)} other customer(s): not theirs alone"


def _drop(subject: Subject, label: str, values: set[str], shared) -> None:
    """Remove the values ``shared`` holds for from ``values``, keeping them in ``subject.left_out``."""
    gone = {v for v in values if shared(v)}
    values -= gone
    subject.left_out.extend(Needle(label, v) for v in sorted(gone))


def _erased_at(con, subject: Subject) -> str | None:
    when = suppression.erased_at(con, subject.id_hash)
    return when.isoformat() if when is not None else None


def customers_matching(kind: str, value: str, paths: settings.Paths, personal: PersonalData) -> set[str]:
    """The customer ids whose CRM record has this email or phone (normalized), in the landing
    files, the warehouse (by HMAC) and the regional stores (:class:`CustomerRecords`)."""
    normalize = normalize_email if kind == "email" else normalize_phone
    wanted = normalize(value) if storable(value) else None
    if not wanted:
        return set()
    crm = list(crm_customer_records(LandingZones.from_settings(paths)))
    with reading(paths, personal) as (con, aliases):
        records = CustomerRecords(con, aliases, personal.hmac_key, crm)
        return records.with_email(wanted) if kind == "email" else records.with_phone(wanted)


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
