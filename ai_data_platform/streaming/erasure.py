"""Right to erasure on the real-time path: the erasure target of the stream and the online store.

``governance/erasure.py`` loads this module at every erasure (``erasure.TARGET_MODULES``) and
calls its target after the warehouse, the regional stores and the datasets:

``erase(subject)``
  1. **Transport**: the subject's retained records. A segment line becomes a tombstone of the same
     byte length, a Redis entry is deleted (``XDEL``) and acknowledged: every other record keeps
     its position, so the consumer and the warehouse sink, which commit positions, continue
     exactly once after their own offsets, skipping the erased records (``transport.py``).
  2. **Warehouse** (schema ``stream``): every row holding the subject: a row whose identifier
     column (``customer_id``) is theirs, or whose payload (``stream.records._payload``,
     ``stream.quarantine_events.raw_record``: neither table has a ``customer_id`` column for the
     core's rule) is theirs. (``stream.events`` is also covered by the core's ``customer_id``
     rule.) The core compacts the warehouse afterwards.
  3. **Online store**: the erased subjects' id HMACs are recorded first (every one in
     ``meta.erased_subjects``, and this subject's), so from then on the consumer drops their events
     and refuses a write filtered with the older list (``erased.py``); then every trace of the
     customer is deleted (a SQLite store is compacted, so the bytes are gone).

``search(subject)``
  With ``REDIS_URL``, the online store's customers and every key and entry of the store and the
  stream, for the subject's keys, by the verification's rules (``governance/search.py``):
  storage the search of files cannot see. (Segment files and the SQLite store are files under
  ``$ADP_DATA_DIR``: the core's search reads them.)

A record is the subject's by ``governance/attribution.py``'s rule: a payload that is a JSON
object by its identifier fields (``customer_id``, however it is escaped), any other payload only
when it holds one of their identifiers as a whole quoted JSON string, keyed value or CSV field.
A word inside a payload (``EUR`` in another customer's card transaction) never makes it theirs.
"""

from __future__ import annotations

from pathlib import Path

from ai_data_platform import settings, warehouse
from ai_data_platform.governance import suppression
from ai_data_platform.governance.erasure import ErasureTarget, Subject
from ai_data_platform.governance.erasure_delete import text_candidates
from ai_data_platform.governance.search import Trace, search_texts
from ai_data_platform.governance.search_rules import ID
from ai_data_platform.streaming import backends, warehouse_sink
from ai_data_platform.streaming.online_store import OnlineStore
from ai_data_platform.streaming.transport import PayloadMatch, Transport

NAME = "streaming"
PAYLOAD_COLUMNS = ("_payload", "raw_record")  # stream columns holding a record as received
SCAN_CHUNK = 5000


def erasure_targets() -> list[ErasureTarget]:
    """The targets ``governance/erasure.py`` runs at every erasure."""
    return [ErasureTarget(NAME, erase=erase, search=search)]


def payload_matcher(subject: Subject) -> PayloadMatch:
    """Whether a stream payload is the subject's (see the module docstring)."""
    return subject.identifiers().owns_payload


def erase_stream_tables(path: Path, subject: Subject) -> dict[str, int]:
    """Delete the subject's rows from every ``stream`` table; {table: rows}."""
    ids = subject.identifiers()
    if not ids or not path.exists():
        return {}
    counts = {}
    con = warehouse.connect(path)
    try:
        tables = {t: {c for c, _ in cols} for t, cols in warehouse.base_table_columns(con).items()
                  if t.split(".")[0] == warehouse_sink.SCHEMA}
        with warehouse.transaction(con):
            for table, columns in sorted(tables.items()):
                doomed = set()
                if "customer_id" in columns and subject.customer_id:
                    doomed |= {r for (r,) in con.execute(
                        f"SELECT rowid FROM {table} WHERE trim(CAST(customer_id AS VARCHAR)) = ?", [subject.customer_id]
                    ).fetchall()}
                for column in sorted(columns & set(PAYLOAD_COLUMNS)):
                    condition, params = text_candidates(column, ids)
                    candidates = con.execute(f"SELECT rowid, {warehouse.quote(column)} FROM {table} WHERE {condition}", params)
                    doomed |= {rowid for rowid, text in candidates.fetchall() if ids.owns_line(text)}
                if doomed:
                    con.execute(f"DELETE FROM {table} WHERE list_contains(?, rowid)", [sorted(doomed)])
                    counts[table] = len(doomed)
    finally:
        con.close()
    return counts


def _erased_id_hashes(path: Path) -> frozenset[str]:
    if not path.exists():
        return frozenset()
    con = warehouse.connect(path, read_only=True)
    try:
        return suppression.customer_id_hashes(con)
    finally:
        con.close()


def erase_online_store(store: OnlineStore, subject: Subject, recorded: frozenset[str]) -> int:
    """Record the erased subjects in the store (a known customer's erasure: theirs too), then
    delete the customer; returns items removed."""
    store.add_erased_subjects(recorded | {subject.id_hash})  # first: the consumer drops their events from now on
    return store.delete_customer(subject.customer_id) if subject.customer_id else 0


def erase(subject: Subject) -> dict[str, int]:
    """Remove the subject from the transport, the ``stream`` tables and the online store."""
    paths = settings.paths()
    counts: dict[str, int] = {}
    transport = backends.existing_transport()
    if transport is not None:
        try:
            counts[f"transport {transport.label}"] = transport.erase(payload_matcher(subject))
        finally:
            transport.close()
    counts |= erase_stream_tables(paths.warehouse, subject)
    store = backends.existing_online_store()
    if store is not None:
        try:
            counts["online store"] = erase_online_store(store, subject, _erased_id_hashes(paths.warehouse))
        finally:
            store.close()
    return counts


def _records(transport: Transport):
    after = None
    while batch := transport.scan(after, SCAN_CHUNK):
        for record in batch:
            if not record.erased:
                yield "entries", record.payload.decode("utf-8", "replace")
        after = batch[-1].position


def search(subject: Subject) -> list[Trace]:
    """Traces in Redis (the online store's keys, the stream's entries); files are the core's."""
    if not backends.in_redis():
        return []
    needles = subject.needles()
    traces: list[Trace] = []
    store = backends.existing_online_store()
    try:
        if subject.customer_id and subject.customer_id in store.customer_ids():
            traces.append(Trace(store.label, "customers", ID, 1))
        traces += search_texts(store.label, store.dump(), needles)
    finally:
        store.close()
    transport = backends.existing_transport()
    if transport is not None:
        try:
            traces += search_texts(transport.label, _records(transport), needles)
        finally:
            transport.close()
    return traces
