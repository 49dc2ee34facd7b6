"""Erased subjects in the stream: their records are dropped before anything stores them.

An erasure records the subject (``governance/suppression.py``: the HMAC of their customer id in
``meta.erased_subjects``; the streaming erasure target copies the list into the online store) and
replaces their retained stream records by tombstones. From then on:

* the consumer drops a tombstone and any event of a recorded subject before the online store, and
  filters with the online store's copy of the list, which a write checks in its own transaction
  (``OnlineStore.apply(expect_erased=...)``): an erasure between the filtering and the write makes
  the write start again with the new list;
* the warehouse sink drops them too, checking ``meta.erased_subjects`` in the DuckDB transaction
  that lands the micro-batch;
* neither quarantines them (a quarantine row would keep the payload): they are counted, and the
  positions are committed past them, exactly once like any record.

A record belongs to a subject by its ``customer_id`` (for a rejected JSON object too); a payload
the judge cannot read as one JSON object (``json_object.read_object``) by the erasure's rule for a
raw line (``governance/attribution.py``): when it holds an erased id as a whole quoted JSON string,
keyed value or CSV field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, NamedTuple

from ai_data_platform.errors import shown
from ai_data_platform.governance.attribution import id_candidates
from ai_data_platform.governance.pii import hmac_hex
from ai_data_platform.sources.json_object import read_object
from ai_data_platform.streaming.events import Violation, judge
from ai_data_platform.streaming.online_features import ONLINE, FeatureInterpreter
from ai_data_platform.streaming.online_store import StateRow, state_row
from ai_data_platform.streaming.transport import Record

CACHE_LIMIT = 1_000_000  # customer ids whose verdict is remembered (one HMAC each otherwise)
TOMBSTONE = "erased_record"  # the transport's tombstone of an erased record
ERASED_SUBJECT = "erased_subject"  # an event of an erased subject
UNPROCESSABLE = "unprocessable_record"  # the rule of a valid event whose online-store row could not be built


class ErasedSubjects:
    """The erased subjects' customer-id HMACs, and whether a customer id is one of them."""

    def __init__(self, id_hashes: Iterable[str], hmac_key: str | None = None):
        self.id_hashes = frozenset(id_hashes)
        self._key = hmac_key
        self._verdicts: dict[str, bool] = {}

    def __len__(self) -> int:
        return len(self.id_hashes)

    @property
    def key(self) -> str:
        if self._key is None:
            from ai_data_platform import settings

            self._key = settings.pii_hmac_key()
        return self._key

    def holds(self, customer_id: str | None) -> bool:
        if not self.id_hashes or customer_id is None:
            return False
        cid = customer_id.strip()
        if not cid:
            return False
        verdict = self._verdicts.get(cid)
        if verdict is None:
            if len(self._verdicts) >= CACHE_LIMIT:
                self._verdicts.clear()
            verdict = self._verdicts[cid] = hmac_hex(self.key, cid) in self.id_hashes
        return verdict


NOBODY = ErasedSubjects(())


class Judged(NamedTuple):  # a tuple: built for every record on the consumer's hot path
    """What the stream does with a record: ``typed`` (a valid event, with its online-store ``row``:
    None when no declaration uses it), ``violation`` (rejected: quarantined; ``error`` says why an
    :data:`UNPROCESSABLE` one could not be applied), or ``dropped`` (:data:`TOMBSTONE` or
    :data:`ERASED_SUBJECT`: stored nowhere)."""

    typed: dict[str, Any] | None
    violation: Violation | None
    dropped: str | None = None
    row: StateRow | None = None
    error: str | None = None


def customer_id_of(payload: bytes) -> str | None:
    """The ``customer_id`` of a payload that is a JSON object (as text), else None."""
    record = read_object(payload)
    value = None if record is None else record.get("customer_id")
    return value if isinstance(value, str) or value is None else json.dumps(value)


def _judged(record: Record, interpreter: FeatureInterpreter) -> Judged:
    typed, violation = judge(record.payload, record.received_at)
    if typed is None:
        return Judged(None, violation)
    try:
        row = state_row("events", {**typed, "_available_at": record.received_at}, interpreter)
    except Exception as exc:  # no record stops the stream: this one is quarantined
        violation = Violation(UNPROCESSABLE, None, record.payload.decode("utf-8", "replace"))
        return Judged(None, violation, error=f"{type(exc).__name__}: {shown(str(exc), 200)}")
    return Judged(typed, None, row=row)


def judge_record(record: Record, erased: ErasedSubjects = NOBODY, known: Judged | None = None,
                 interpreter: FeatureInterpreter = ONLINE) -> Judged:
    """Judge one record (``events.judge``) and build its online-store row, dropping tombstones and
    erased subjects' events; never raises. A valid event whose row cannot be built (a defect, not
    bad input) is quarantined under :data:`UNPROCESSABLE`: every sink judging the record decides
    alike. ``known``: this record's earlier judgement, only checked against ``erased`` again."""
    if record.erased:
        return Judged(None, None, TOMBSTONE)
    judged = known if known is not None else _judged(record, interpreter)
    if judged.dropped is not None or not erased:
        return judged
    if judged.typed is not None:
        theirs = erased.holds(judged.typed["customer_id"])
    elif read_object(record.payload) is not None:
        theirs = erased.holds(customer_id_of(record.payload))
    else:  # no fields: any whole value it could be attributed by
        theirs = any(erased.holds(c) for c in id_candidates(record.payload.decode("utf-8", "surrogateescape")))
    return Judged(None, None, ERASED_SUBJECT) if theirs else judged
