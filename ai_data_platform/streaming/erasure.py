"""Right to erasure on the real-time path: the erasure target of the stream and the online store.

``governance/erasure.py`` loads this module at every erasure (``erasure.TARGET_MODULES``) and
calls its target after the warehouse, the regional stores and the datasets:

``erase(subject)``
  1. **Transport**: the subject's retained records. A segment line becomes a tombstone of the same
     byte length, a Redis entry is deleted (``XDEL``) and acknowledged: every other record keeps
     its position, so the consumer and the warehouse sink, which commit positions, continue
     exactly once after their own offsets, skipping the erased records (``transport.py``).
  2. **Warehouse** (schema ``stream``): every row holding the subject: a payload whose JSON
     ``customer_id`` is theirs (``stream.records._payload``, ``stream.quarantine_events.raw_record``,
     neither has a ``customer_id`` column for the core's rule), or any text column holding one of
     their keys as a whole token. (``stream.events`` is also covered by the core's ``customer_id``
     rule.) The core compacts the warehouse afterwards.
  3. **Online store**: the erased subjects' id HMACs are recorded first (every one in
     ``meta.erased_subjects``, and this subject's), so from then on the consumer drops their events
     and refuses a write filtered with the older list (``erased.py``); then every trace of the
     customer is deleted (a SQLite store is compacted, so the bytes are gone).

``search(subject)``
  With ``REDIS_URL``, every key of the online store and every entry of the stream, for the
  subject's keys: storage the verification's search of files cannot see. (Segment files and the
  SQLite store are files under ``$ADP_DATA_DIR``: the core's search reads them byte by byte.)

A record is the subject's when its payload holds one of their keys (id, emails, phones, names and
their HMACs) as a whole token, any case (as the verification searches), or its JSON
``customer_id`` is their id however it is escaped.
"""

from __future__ import annotations

from pathlib import Path

from ai_data_platform import settings, warehouse
from ai_data_platform.governance import suppression
from ai_data_platform.governance.erasure import ErasureTarget, Subject
from ai_data_platform.governance.search import Trace, any_token_bytes, any_token_re2, search_texts
from ai_data_platform.streaming import backends, warehouse_sink
from ai_data_platform.streaming.erased import customer_id_of
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
    needles = subject.needles()
    tokens = any_token_bytes(needles) if needles else None
    customer_id = subject.customer_id

    def matches(payload: bytes) -> bool:
        if tokens is not None and tokens.search(payload):
            return True
        if customer_id and b"\\u" in payload:  # a JSON escape can spell the id without its bytes
            found = customer_id_of(payload)
            return found is not None and found.strip() == customer_id
        return False

    return matches


def _json_customer_id(column: str) -> str:
    quoted = warehouse.quote(column)
    return (f"CASE WHEN json_valid({quoted}) AND json_type({quoted}) = 'OBJECT' "
            f"THEN trim(json_extract_string({quoted}, '$.customer_id')) END")


def erase_stream_tables(path: Path, subject: Subject) -> dict[str, int]:
    """Delete the subject's rows from every ``stream`` table; {table: rows}."""
    needles = subject.needles()
    if not needles or not path.exists():
        return {}
    pattern = warehouse.sql_literal(any_token_re2(needles))
    counts = {}
    con = warehouse.connect(path)
    try:
        tables = {t: cols for t, cols in warehouse.base_table_columns(con).items() if t.split(".")[0] == warehouse_sink.SCHEMA}
        with warehouse.transaction(con):
            for table, columns in sorted(tables.items()):
                texts = [c for c, dtype in columns if dtype == "VARCHAR"]
                conditions = [f"coalesce(regexp_matches({warehouse.quote(c)}, {pattern}), FALSE)" for c in texts]
                if subject.customer_id:
                    literal = warehouse.sql_literal(subject.customer_id)
                    conditions += [f"coalesce({_json_customer_id(c)} = {literal}, FALSE)" for c in texts if c in PAYLOAD_COLUMNS]
                if conditions:
                    n = con.execute(f"DELETE FROM {table} WHERE {' OR '.join(conditions)}").fetchone()[0]
                    if n:
                        counts[table] = n
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


def erase_online_store(store: OnlineStore, subject: Subject, recorded: frozenset[str], found_elsewhere: bool) -> int:
    """Record the erased subjects in the store, then delete the customer; returns items removed."""
    cid = subject.customer_id
    held_here = bool(cid) and cid in store.customer_ids()
    theirs = {subject.id_hash} if (held_here or found_elsewhere or subject.held or subject.erased_before) else set()
    store.add_erased_subjects(recorded | theirs)  # first: the consumer drops their events from now on
    return store.delete_customer(cid) if cid else 0


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
            counts["online store"] = erase_online_store(store, subject, _erased_id_hashes(paths.warehouse), any(counts.values()))
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
