"""A platform state whose customer ids take hostile shapes, for the erasure property test.

The lifecycle world's files (``lifecycle_world``) with the first customers renamed to ids that
collide with everything else the data holds: numbers inside timestamps (``06:42:49``), a
currency, countries, an event type, a year, LIKE and regex metacharacters, characters JSON or CSV
escape (quotes, a backslash, a slash, a comma), a non-ASCII letter, UUIDs, a 100 000-character id.
Around them: records whose fields equal those ids without being theirs (currencies, countries,
timestamps), unparseable landing lines and stream payloads that are and are not theirs, a JSON
line whose ``customer_id`` is a number, a stream with its ``stream`` tables and a SQLite online
store, and Dagster-like storage (a SQLite event log with zlib blobs, a gzip log) holding
``{"US": 10}`` and ``["EUR", "USD"]``. And other customers close to them (:func:`_craft_neighbours`):
one whose id differs from a hostile id only in case, one with a hostile customer's phone written
another way, one with a hostile customer's email in another case, and a ticket of the bystander
mentioning a hostile id and a hostile customer's email in its text, and the bystander's events
(landed and streamed) naming that id in their page. Built once per session without Dagster.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sqlite3
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ai_data_platform import settings, warehouse
from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS, SOURCE_TABLES, SUPPORT_TICKETS
from ai_data_platform.sources.simulator import generate
from ai_data_platform.streaming import backends
from ai_data_platform.streaming.bootstrap import bootstrap
from ai_data_platform.streaming.consumer import Consumer
from ai_data_platform.streaming.online_store import SqliteOnlineStore
from ai_data_platform.streaming.producer import EventProducer, encode
from ai_data_platform.streaming.transport import FileSegmentTransport

from . import lifecycle_world
from .lifecycle_world import DAYS, END

CUSTOMERS_IN_WORLD = 40
LONG_ID = "L" + "0" * 99_999
HOSTILE_IDS = (
    "7", "42", "12", "49", "00", "2026", "EUR", "usd", "US", "DE", "login", "%", "_", "(.*)", 'say "hi"', "a\\b",
    "a/b", "7,8", "Zoë", "f47ac10b-58cc-4372-a567-0e02b2c3d479", "1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed", LONG_ID,
)
RENAMED = {f"C{n:07d}": hostile for n, hostile in enumerate(HOSTILE_IDS, start=1)}
BYSTANDER = f"C{len(HOSTILE_IDS) + 2:07d}"  # an ordinary customer the crafted records belong to
CASE_TWIN = "F47AC10B-58CC-4372-A567-0E02B2C3D479"  # another customer: ids are case-sensitive
PHONE_TWIN, EMAIL_TWIN = "C0000301", "C0000300"  # share a hostile customer's phone / email, written otherwise
MENTIONED_ID = "f47ac10b-58cc-4372-a567-0e02b2c3d479"  # named in the text of the bystander's ticket
MENTIONED_BY_EMAIL = "login"  # their email (theirs alone) is in the text of the bystander's ticket


def _rename(value):
    return RENAMED.get(value, value) if isinstance(value, str) else value


def _rename_csv(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    out = io.StringIO()
    out.write(lines[0])
    writer = csv.writer(out, lineterminator="\n")
    for row in csv.reader(lines[1:]):
        writer.writerow([_rename(row[0]), *row[1:]] if row else row)
    path.write_text(out.getvalue())


def _rename_jsonl(path: Path) -> None:
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a cut-off line: rename an id it shows whole
            out.append(re.sub(r'"customer_id":"(C\d{7})"', lambda m: '"customer_id":' + json.dumps(_rename(m.group(1))), line))
            continue
        out.append(json.dumps({k: _rename(v) if k == "customer_id" else v for k, v in record.items()}, separators=(",", ":")))
    path.write_text("\n".join(out) + "\n")


def _rename_parquet(path: Path) -> None:
    table = pq.read_table(path)
    if "customer_id" in table.column_names:
        index = table.column_names.index("customer_id")
        renamed = pa.array([_rename(v) for v in table.column(index).to_pylist()], pa.string())
        pq.write_table(table.set_column(index, "customer_id", renamed), path, compression="zstd")


def _append(path: Path, text: str) -> None:
    with path.open("a") as fh:
        fh.write(text)


def _craft_landing(paths: settings.Paths) -> None:
    """Records that hold the hostile ids without being theirs, and records that are theirs in odd shapes."""
    zones = lifecycle_world.zones(paths)
    events = zones.file(EVENTS, DAYS[-1])
    base = {"event_type": "card_transaction", "received_at": None, "session_id": "ses-1", "page": None, "feature": None,
            "amount": 42.49, "currency": "EUR", "merchant_category": "grocery", "device_id": "dev-1", "ip_country": "DE"}
    crafted = [
        json.dumps({"event_id": "EX0000000001", "customer_id": BYSTANDER, **base, "event_time": "2026-11-20T06:42:49Z"}),
        json.dumps({"event_id": "EX0000000002", "customer_id": 42, **base, "event_time": "2026-11-20T07:00:00Z"}),  # a number: 42's
        '{"event_id":"EX0000000003","customer_id":"EUR","event_type":"login","event_ti',  # cut off: EUR's
        '{"event_id":"EX0000000004","customer_id":"' + BYSTANDER + '","currency":"usd","amou',  # cut off: "usd" whole: usd's
        "garbage at 06:42:49 for 42 in EUR from DE",  # no whole value: nobody's
        json.dumps({"event_id": "EX0000000005", "customer_id": BYSTANDER, **base, "event_type": "page_view",
                    "page": f"/friends/{MENTIONED_ID}", "event_time": "2026-11-20T08:00:00Z"}),  # the bystander's: a mention
    ]
    _append(events, "\n".join(crafted) + "\n")
    customers = zones.file(CUSTOMERS, DAYS[-1], "EU")
    _append(customers, "DE,Dee Broken\n")  # too few fields: a raw line holding DE as a CSV field: DE's
    _append(customers, f"{BYSTANDER}X,Ann Twelve,ann12@example.org,+4915100000012,DE,EU,consumer,2025-06-12T06:42:49Z,true,"
                       "2026-11-20T06:42:49Z\n")  # a customer of its own, from DE at 06:42:49


def _craft_dagster(paths: settings.Paths) -> None:
    """Storage shaped like Dagster's, holding values equal to hostile ids and nobody's data."""
    runs = paths.root / "dagster_home" / "history" / "runs"
    runs.mkdir(parents=True)
    metadata = {"label": "rows_by_region", "entry_data": {"data": {"APAC": 6, "EU": 14, "US": 10}},
                "value_set": ["EUR", "USD", "DE", "login"], "timestamp": "2026-11-20T06:42:49Z", "rows": 7, "sample": "%_(.*)"}
    con = sqlite3.connect(runs / "index.db")
    con.execute("CREATE TABLE event_logs (id INTEGER, event TEXT, timestamp TIMESTAMP)")
    con.execute("CREATE TABLE snapshots (id INTEGER, snapshot_body BLOB)")
    con.execute("INSERT INTO event_logs VALUES (1, ?, '2026-11-20 06:42:49')", [json.dumps(metadata)])
    con.execute("INSERT INTO snapshots VALUES (1, ?)", [zlib.compress(json.dumps({"snapshot": metadata}).encode())])
    con.commit()
    con.close()
    logs = paths.root / "dagster_home" / "storage" / "compute_logs"
    logs.mkdir(parents=True)
    (logs / "run.log.gz").write_bytes(gzip.compress(b'06:42:49 - rows_by_region {"US": 10} currencies ["EUR", "USD"]\n'))


def _stream(paths: settings.Paths) -> None:
    """Streamed events of the world's customers (renamed), odd payloads among them, consumed into the
    ``stream`` tables and the SQLite online store (bootstrapped from the warehouse first)."""
    producer = EventProducer(CUSTOMERS_IN_WORLD, seed=29)
    payloads = [encode({**e, "customer_id": _rename(e["customer_id"])}) for e in producer.events(120)]
    payloads += [
        b'{"customer_id":"US","amou',  # cut off: US's
        b"42,EUR,DE",  # a CSV record: 42's, EUR's and DE's
        b"garbage 49 at 06:42:49",  # nobody's
        json.dumps({"event_id": "ES1", "customer_id": BYSTANDER, "event_type": "login", "event_time": "yesterday"}).encode(),
        json.dumps({"event_id": "ES2", "customer_id": BYSTANDER, "event_type": "page_view", "event_time": "2026-11-20T08:00:00Z",
                    "page": f"/friends/{MENTIONED_ID}"}).encode(),  # the bystander's, naming a hostile id: a mention
    ]
    transport = FileSegmentTransport(paths.stream)
    store = SqliteOnlineStore(paths.online / backends.SQLITE_FILE)
    con = warehouse.connect(paths.warehouse)
    try:
        bootstrap(con, store)
    finally:
        con.close()
    transport.append(payloads)
    consumer = Consumer(transport, store, warehouse=paths.warehouse, materialize_budget=0)
    while consumer.step():
        consumer.sink.sink.flush()
    consumer.sink.sink.flush()
    store.close()


def _crm(paths: settings.Paths) -> dict[str, dict]:
    """The CRM's latest record of each customer id, from every region's files."""
    records = {}
    for path in lifecycle_world.zones(paths).landed(CUSTOMERS):
        with path.open(newline="") as fh:
            records |= {r["customer_id"]: r for r in csv.DictReader(fh) if None not in r.values()}
    return records


def _append_row(path: Path, row: list[str]) -> None:
    with path.open("a", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerow(row)


def _craft_neighbours(paths: settings.Paths) -> None:
    """Customers whose keys are close to the hostile customers' without being theirs, and a mention
    of two of them in another customer's ticket (see the module docstring)."""
    zones = lifecycle_world.zones(paths)
    crm = _crm(paths)
    emails = [r["email"].strip().lower() for r in crm.values()]
    with_phone = next(r for cid, r in crm.items() if cid in HOSTILE_IDS and len(r["phone"]) > 8)
    with_email = next(r for cid, r in crm.items() if cid in HOSTILE_IDS and cid != MENTIONED_BY_EMAIL
                      and r is not with_phone and emails.count(r["email"].strip().lower()) == 1)
    phone = with_phone["phone"]
    spaced = f"{phone[:3]} {phone[3:6]} {phone[6:10]} {phone[10:]}"  # +4915136411992 -> +49 151 3641 1992
    neighbours = [
        ({**crm[MENTIONED_ID], "customer_id": CASE_TWIN, "name": "Case Twin", "email": "case.twin@example.org",
          "phone": "+4915100000777"}),
        ({**with_phone, "customer_id": PHONE_TWIN, "name": "Phone Twin", "email": "phone.twin@example.org", "phone": spaced}),
        ({**with_email, "customer_id": EMAIL_TWIN, "name": "Email Twin", "email": with_email["email"].upper(),
          "phone": "+4915100000778"}),
    ]
    for record in neighbours:
        _append_row(zones.file(CUSTOMERS, DAYS[-1], record["region"]), [record[c] for c in CUSTOMERS.column_names])
    bystander = crm[BYSTANDER]
    body = f"my flatmate {MENTIONED_ID} ({crm[MENTIONED_BY_EMAIL]['email']}) asked me to cancel for them"
    _append_row(zones.file(SUPPORT_TICKETS, DAYS[-1], bystander["region"]),
                ["T7999990", bystander["email"], "2026-11-20T09:00:00Z", "email", "cancellation", "normal", "open", body])


def build(root: Path) -> settings.Paths:
    paths = settings.Paths(root)
    zones = lifecycle_world.zones(paths)
    generate(zones, customers=CUSTOMERS_IN_WORLD, days=len(DAYS), end=END, seed=31, dirty_rate=0.05)
    for t in SOURCE_TABLES:
        for path in zones.landed(t):
            {"csv": _rename_csv, "jsonl": _rename_jsonl, "parquet": _rename_parquet}[t.file_format](path)
    _craft_landing(paths)
    _craft_neighbours(paths)
    lifecycle_world.load(paths)
    _stream(paths)
    _craft_dagster(paths)
    return paths
