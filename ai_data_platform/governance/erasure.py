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
   A subject is one customer id: their keys come from their own records, their emails, phones and
   names from the regional stores and the CRM landing files, the HMAC keys from the warehouse.
   Records under another customer id are never theirs, whatever they share. An email, phone or name
   another customer id has too (emails and phones compared normalized and by HMAC, names trimmed and
   case-folded) is not theirs alone: it selects nothing, is suppressed nowhere and searched for
   nowhere (the report says which kind was left out and how many other customers have it, never
   the value).
2. **Suppress** them (``suppression.py``): recorded first, so no load running meanwhile and no
   later backfill brings them back.
3. **Delete** exactly their records, by ``attribution.py``'s rule (a record's customer id; without
   one, an email or phone theirs alone, so a ticket from an email they share stays, unlinked from
   them; whole values of unparseable raw lines; never a word inside a text): landing files of every zone
   (rewritten, mtime kept, ``landing_erasure.py``); in the warehouse the raw rows, and the staging
   and quarantine rows with the same row keys (so row conservation still holds), then every row of
   any other table whose ``customer_id`` (or, without one, ``email_hash`` or ``phone_hash``) is
   theirs (marts, features, scores, ...); in every regional store their personal rows; every dataset version
   holding their rows is rewritten through ``ml/datasets.erase_rows`` (new content hash, an
   ``erasure`` event in its history naming the subject only by ``subject_ref``); then every
   :class:`ErasureTarget`: the platform's own in :data:`TARGET_MODULES` (the stream transport,
   the ``stream`` tables and the online store: ``streaming/erasure.py``; then the role databases,
   rebuilt from the warehouse: ``role_databases.py``) and any registered with :func:`register_target`.
4. **Compact** every DuckDB file that changed, so the deleted rows' bytes are gone.
5. **Verify by searching** (``search.py``): every file under ``$ADP_DATA_DIR`` and every
   regional store and landing zone configured outside it, whatever it is (DuckDB, SQLite such
   as Dagster's event log, compressed blobs, Parquet, text), and each target's storage that is
   not a file (Redis), for the id, emails, phones, names and their HMACs. Anything left in their
   own records, or in a place attributed to no known customer (a log, a Dagster blob, a row of an
   id no customer record holds), is a :class:`search.Trace` naming the file, table, column and
   count; the erasure then fails (exit code 1). A hit inside a record attributed (by its
   identifier fields) to another known customer (the subject named in someone else's support
   ticket) is that customer's record: not erased, and no failure, but reported as a mention kept
   (file, table, column, count) in the report and the audit record. A managed database holding
   such mentions is compacted before it is trusted: the search does not look again in its bytes for
   a value its tables show.
6. **Audit**: one record holding no personal data: ``subject_ref``, counts per place, reason,
   actor, time, the verification outcome. It is written whatever happens: a step that fails
   midway leaves a record with status ``error`` naming the step (and what was removed before it),
   and the caller gets an :class:`ErasureFailed`. The audit trail is checked against its
   anchor first, so an erasure it could not record is refused before anything changes.

Erasing twice is harmless: nothing is found, nothing changes, verification passes, and the audit
record says nothing was found and when the subject was first erased.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ai_data_platform import settings, warehouse
from ai_data_platform.errors import InputError
from ai_data_platform.governance import audit, suppression
from ai_data_platform.governance.attribution import canonical_id
from ai_data_platform.governance.erasure_delete import erase_databases, erase_datasets
from ai_data_platform.governance.erasure_subject import (  # noqa: F401 - Subject, resolve, ...: this module's API too
    CustomerRecords,
    Subject,
    customer_id_for,
    customers_matching,
    erased_email_ref,
    hmac_of,
    reading,
    required_id,
    resolve,
    storable,
    subject_hash,
)
from ai_data_platform.governance.landing_erasure import crm_customer_records, erase_landing
from ai_data_platform.governance.search import Matcher, Trace, search
from ai_data_platform.governance.stores import PersonalData
from ai_data_platform.sources.landing import LandingZones

EXIT_ERASED = 0
EXIT_TRACES_REMAIN = 1
EXIT_UNKNOWN_SUBJECT = 3
SELECTORS = ("customer_id", "email", "phone")
MENTIONS_KEPT = "not theirs: not erased"


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
TARGET_MODULES = ("ai_data_platform.streaming.erasure", "ai_data_platform.governance.role_databases")

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
    mentions_kept: list[Trace] = field(default_factory=list)  # in other customers' records: not theirs

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
        if self.mentions_kept:
            lines.append(f"  mentions kept in other customers' records ({MENTIONS_KEPT}):")
            lines += [f"    {t.describe()}" for t in self.mentions_kept]
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
    if canonical_id(reason) == subject.customer_id or Matcher(subject.every_value()).in_value(reason, raw_record=True):
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


class Verification(NamedTuple):
    """What the search after an erasure found: ``traces`` (in the subject's own records, or in a
    place attributed to no one: a log, a Dagster blob, an orphan row) fail it; ``mentions_kept``
    (inside records attributed to another known customer: not theirs, not erased) are reported."""

    traces: list[Trace]
    files_searched: int
    mentions_kept: list[Trace]


def verify(subject: Subject, paths: settings.Paths, personal: PersonalData) -> Verification:
    """Search everything for the subject. The suppression list may keep their HMAC keys (it is how
    they stay erased); nothing else may keep anything of theirs. A hit inside a record attributed
    (by its identifier fields) to another known customer is that customer's record mentioning
    them: kept, and reported; one in a record of an id no customer record holds is a trace."""
    warehouse_name = paths.warehouse.relative_to(paths.root).as_posix()

    def allowed(file: str, location: str, label: str) -> bool:
        return file == warehouse_name and label.endswith("HMAC") and (
            location.startswith(suppression.TABLE + ".") or location == "bytes on disk"
        )

    found = search(search_roots(paths, personal), subject.needles(), allowed=allowed, attribute=True)
    traces, kept = list(found.traces), []
    if found.in_others_records:
        crm = list(crm_customer_records(LandingZones.from_settings(paths)))
        with reading(paths, personal) as (con, aliases):
            records = CustomerRecords(con, aliases, personal.hmac_key, crm)
            for mention in found.in_others_records:
                (kept if records.others_have(mention.owner, subject.customer_id) else traces).append(mention.trace)
    for target in registered_targets():
        if target.search is not None:
            traces += list(target.search(subject))
    return Verification(_merged(traces), found.files_searched, _merged(kept))


def _merged(traces: list[Trace]) -> list[Trace]:
    """One trace per file, location and label (the counts added up), in order."""
    counts: dict[tuple[str, str, str], int] = {}
    for t in traces:
        counts[(t.file, t.location, t.needle)] = counts.get((t.file, t.location, t.needle), 0) + t.count
    return [Trace(file, location, label, n) for (file, location, label), n in counts.items()]


class _Steps:
    """The step an erasure is at and what it removed so far; :meth:`audited` writes the audit record
    of a failure (status ``error``, the step, the error's type) and raises :class:`ErasureFailed`."""

    def __init__(self, subject_ref: str | None, reason: str, actor: str | None, run_id: str | None, paths: settings.Paths,
                 anchor: audit.Anchor | None):
        self.subject_ref, self.reason, self.actor, self.run_id, self.paths = subject_ref, reason, actor, run_id, paths
        self.anchor = anchor
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
            reason = self.reason if self.reason_checked else None
            _audit(failed, reason, self.actor, self.run_id, self.paths, self.anchor, error=type(exc).__name__)
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
    anchor: audit.Anchor | None = None,
) -> ErasureResult:
    """Erase one data subject everywhere and verify it (see the module docstring)."""
    paths = paths or settings.paths()
    personal = personal or PersonalData.from_settings(paths)
    cid = required_id(customer_id)
    steps = _Steps("subject:" + hmac_of(personal.hmac_key, cid), reason, actor, run_id, paths, anchor)
    with steps.audited():
        subject = resolve(cid, paths, personal)
    check_reason(reason, subject)
    audit.anchor_pending(directory=paths.root / "audit", anchor=anchor)  # a trail that cannot record it: refused here
    steps.reason_checked, steps.erased_before = True, subject.erased_before
    if not subject.erasable:
        result = ErasureResult(subject.ref, "unknown_subject", {}, [], {}, None, 0)
    else:
        with steps.audited():
            result = _erase_known(subject, reason, paths, personal, steps)
    _audit(result, reason, actor, run_id, paths, anchor)
    return result


def _erase_known(
    subject: Subject, reason: str, paths: settings.Paths, personal: PersonalData, steps: _Steps
) -> ErasureResult:
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
                removed, changed_regions = erase_databases(con, aliases, subject)
        finally:
            con.close()
        counts |= removed
    with steps.at("rewriting dataset versions"):
        counts |= erase_datasets(subject, reason, paths.root / "datasets")
    for target in registered_targets():
        with steps.at(f"erasing from {target.name}"):
            counts |= {f"{target.name}: {place}": n for place, n in target.erase(subject).items() if n}
    compacted: set[Path] = set()
    if counts:
        with steps.at("compacting the databases"):
            compacted = {paths.warehouse, *(personal.stores.paths[region] for region in changed_regions)}
            for path in sorted(compacted):
                warehouse.compact(path)
    with steps.at("verifying by searching every store"):
        found = verify(subject, paths, personal)
    stale = _uncompacted(found, paths, personal, compacted)
    if stale:
        with steps.at("compacting the databases"):
            for path in stale:
                warehouse.compact(path)
        with steps.at("verifying by searching every store"):
            found = verify(subject, paths, personal)
    status = "traces_remain" if found.traces else "erased" if counts else "nothing_found"
    return ErasureResult(subject.ref, status, dict(counts), found.traces, dict(subject.not_searched),
                         subject.erased_before, found.files_searched, mentions_kept=found.mentions_kept)


def _uncompacted(
    found: Verification, paths: settings.Paths, personal: PersonalData, compacted: set[Path]
) -> list[Path]:
    """The databases the erasure manages (the warehouse, the regional stores) to compact before
    verifying again: where the subject is found only in the bytes of deleted rows (an interrupted
    erasure, any delete), and, unless compacted in this erasure, where other customers' records
    mention them (the search does not look for a value in the bytes of a file whose tables show
    it, so deleted rows of theirs holding it must be gone first)."""
    managed = {}
    for path in (paths.warehouse, *personal.stores.paths.values()):
        managed[path.relative_to(paths.root).as_posix() if path.is_relative_to(paths.root) else str(path)] = path
    on_disk = {t.file for t in found.traces if t.location == "bytes on disk"}
    elsewhere = {t.file for t in found.traces if t.location != "bytes on disk"}
    mentioned = {t.file for t in found.mentions_kept} - {f for f, path in managed.items() if path in compacted}
    return [managed[f] for f in sorted((on_disk - elsewhere) | (mentioned - elsewhere)) if f in managed]


def erase_matching(
    selector: str,
    value: str,
    reason: str,
    *,
    paths: settings.Paths | None = None,
    personal: PersonalData | None = None,
    actor: str | None = None,
    run_id: str | None = None,
    anchor: audit.Anchor | None = None,
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
    steps = _Steps(None, reason, actor, run_id, paths, anchor)
    steps.reason_checked = True
    with steps.audited(selector):
        matches = sorted(customers_matching(selector, value, paths, personal))
        erased_ref = erased_email_ref(value, paths, personal) if not matches and selector == "email" else None
    if len(matches) == 1:
        return erase(matches[0], reason, paths=paths, personal=personal, actor=actor, run_id=run_id, anchor=anchor)
    if erased_ref is not None:
        return erase_by_ref(erased_ref, reason, paths=paths, personal=personal, actor=actor, run_id=run_id, anchor=anchor)
    status = "ambiguous_subject" if matches else "unknown_subject"
    result = ErasureResult(None, status, {}, [], {}, None, 0, selector=selector, matches=len(matches))
    _audit(result, reason, actor, run_id, paths, anchor)
    return result


def _suppress(subject: Subject, paths: settings.Paths) -> None:
    con = warehouse.connect(paths.warehouse)
    try:
        warehouse.ensure_schemas(con)
        suppression.record(con, subject.ref, subject.id_hash, subject.email_hashes)
    finally:
        con.close()


def _audit(result: ErasureResult, reason: str | None, actor: str | None, run_id: str | None, paths: settings.Paths,
           anchor: audit.Anchor | None, error: str | None = None) -> dict:
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
            "mentions_kept_in_other_customers_records": [t.describe() for t in result.mentions_kept],
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
        anchor=anchor,
        actor=actor,
        run_id=run_id,
        row_counts=result.counts,
        status="nothing_found" if refused else result.status,
        details=details | ({"outcome": result.status} if refused else {}),
    )


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
        raise InputError("expected a subject reference 'subject:<64 hex>' (adp erase --print-ref --customer-id ID prints it)")
    if not reason or not reason.strip():
        raise InputError("a reason is required (e.g. the request's ticket number)")
    paths = paths or settings.paths()
    personal = personal or PersonalData.from_settings(paths)
    steps = _Steps(subject_ref, reason, actor, run_id, paths, anchor)
    steps.reason_checked = True  # kept as given: nothing to check it against before the subject is found
    with steps.audited("subject_ref"):
        customer_id = customer_id_for(subject_ref, paths, personal)
        keys, when = _erased_keys(subject_ref, paths, personal) if customer_id is None else ({}, None)
    if customer_id is not None:
        return erase(customer_id, reason, paths=paths, personal=personal, actor=actor, run_id=run_id, anchor=anchor)
    if not keys:
        result = ErasureResult(subject_ref, "unknown_subject", {}, [], {}, None, 0, selector="subject_ref")
        _audit(result, reason, actor, run_id, paths, anchor)
        return result
    subject = Subject("", subject_ref, subject_ref.removeprefix("subject:"), email_hashes=set(keys.get(suppression.KIND_EMAIL, [])))
    subject.erased_before = steps.erased_before = when
    with steps.audited("subject_ref"), steps.at("verifying by searching every store"):
        found = verify(subject, paths, personal)
    status = "traces_remain" if found.traces else "nothing_found"
    result = ErasureResult(subject_ref, status, {}, found.traces, {}, subject.erased_before, found.files_searched,
                           selector="subject_ref", mentions_kept=found.mentions_kept)
    _audit(result, reason, actor, run_id, paths, anchor)
    return result


def _erased_keys(subject_ref: str, paths: settings.Paths, personal: PersonalData) -> tuple[dict[str, list[str]], str | None]:
    """The HMAC keys the suppression list holds for a subject, and when they were first erased."""
    with reading(paths, personal) as (con, _):
        keys = suppression.keys(con, subject_ref)
        if not keys:
            return {}, None
        when = con.execute(f"SELECT min(erased_at) FROM {suppression.TABLE} WHERE subject_ref = ?", [subject_ref]).fetchone()[0]
    return keys, when.isoformat() if when else None
