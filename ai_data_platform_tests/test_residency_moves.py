"""Region moves touch exactly the moving customer's landing records: a record split into fields by
its identifier fields, a line that cannot be split only when it holds their id or email as a whole
value and names nobody of another region (else it stays and is reported), never by a token inside
a text (the id ``42`` is not in ``06:42:49``, ``EUR`` is no currency); files read as the loader
reads them (a byte order mark, CRLF or CR line ends), rewritten byte for byte."""

from __future__ import annotations

import csv
import io
from datetime import date

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ai_data_platform import settings, warehouse
from ai_data_platform.governance import residency_landing
from ai_data_platform.governance.pii import hmac_hex
from ai_data_platform.governance.residency_landing import MIXED_REGIONS, UNPLACED_EMAIL, Relocation, _Movers, _relocate_file
from ai_data_platform.governance.stores import PersonalData, RegionalStores
from ai_data_platform.sources import raw_load
from ai_data_platform.sources.contracts import CUSTOMERS, SUPPORT_TICKETS
from ai_data_platform.sources.landing import LandingZones

KEY = "moves-test-key"
DAY = date(2026, 11, 19)
BOM = b"\xef\xbb\xbf"
# numbers (alone, in a timestamp), two and three letters, a country, a currency, a region, a segment, an event type
ID_SHAPES = st.one_of(
    st.sampled_from(["7", "42", "49", "06", "19", "2026", "EUR", "USD", "US", "DE", "EU", "smb", "login"]),
    st.from_regex(r"[0-9]{1,3}", fullmatch=True),
    st.from_regex(r"[A-Z]{2,3}", fullmatch=True),
)
MOVE, STAY, REPORT = "move", "stay", "report"


def _zones(root) -> LandingZones:
    return LandingZones.from_settings(settings.Paths(root))


def _row(t, end: str, **values) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=end).writerow([values.get(c, "") for c in t.column_names])
    return out.getvalue()


def _customer(end: str, cid: str, email: str, **over) -> str:
    values = {"customer_id": cid, "name": f"Name {cid}", "email": email, "phone": "+49 151 2345678", "country": "DE",
              "region": "EU", "segment": "smb", "signup_at": "2025-01-01T10:00:00Z", "marketing_consent": "true",
              "updated_at": "2026-11-19T06:42:49Z"}
    return _row(CUSTOMERS, end, **(values | over))


def _ticket(end: str, tid: str, email: str, body: str = "please call back") -> str:
    return _row(SUPPORT_TICKETS, end, ticket_id=tid, customer_email=email, created_at="2026-11-19T10:00:00Z",
                channel="email", category="billing", priority="low", status="open", body=body)


def _header(t, end: str) -> str:
    return _row(t, end, **{c: c for c in t.column_names})


def _file(zones, t, region, bom: bool, end: str, records: list[tuple[str, str]], day: date = DAY) -> bytes:
    """Write ``t``'s ``day`` file in ``region``'s zone: the header, then ``records`` ((text, fate))."""
    data = (BOM if bom else b"") + (_header(t, end) + "".join(text for text, _ in records)).encode()
    path = zones.file(t, day, region)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


@example(ids=["42", "EUR", "US"], bom=True, end="\r\n")
@example(ids=["49", "7", "2026"], bom=False, end="\r")
@example(ids=["EU", "US", "DE"], bom=True, end="\n")
@given(ids=st.lists(ID_SHAPES, min_size=3, max_size=3, unique=True), bom=st.booleans(), end=st.sampled_from(["\n", "\r\n", "\r"]))
def test_a_move_touches_exactly_the_moving_customers_records(tmp_path_factory, ids, bom, end):
    mover, eu, us = ids  # the mover now lives in the US; eu and us are customers who stay where they live
    m, e, u = "mover@example.eu", "stays@example.eu", "lives@example.com"
    zones = _zones(tmp_path_factory.mktemp("moves"))
    movers = _Movers({mover: "US"}, {m: "US"}, {mover: "US", eu: "EU", us: "US"},
                     {hmac_hex(KEY, x): r for x, r in ((m, "US"), (e, "EU"), (u, "US"))}, KEY)
    customers = [
        (_customer(end, mover, m), MOVE),
        (_customer(end, eu, e, country=mover, name=f"Ann {mover}", updated_at=f"2026-11-19T06:{mover}:49Z"), STAY),
        (_customer(end, eu, m), STAY),  # another known customer's id: theirs, whatever the email
        (_customer(end, us, u), STAY),  # not a mover: not this move's business
        (f"{mover},Name,{m.upper()}{end}", MOVE),  # cut short: the id and the email as whole CSV fields
        (f'{{"customer_id": "{mover}", "ev{end}', MOVE),  # a cut-off JSON object: a whole quoted string
        (f"{eu},note {mover} at 06:{mover}:49 id{mover}{end}", STAY),  # the id only inside a text
        (f"{mover},{eu},merged{end}", REPORT),  # a customer of each region
        (f"{mover},{us},merged{end}", MOVE),  # both live in the US
        (f"{mover},Name,stranger@example.net{end}", REPORT),  # an email the CRM never placed
        (end, STAY),  # a blank line
    ]
    tickets = [
        (_ticket(end, "T1", f"  {m.upper()}"), MOVE),
        (_ticket(end, "T2", e, body=f"forwarded from {m} re {mover}"), STAY),
        (f"T3,{m}{end}", MOVE),
        (f"T4,{m},{e}{end}", REPORT),
        (f"T5,{mover}x,06:{mover}{end}", STAY),
    ]
    for t, records in ((CUSTOMERS, customers), (SUPPORT_TICKETS, tickets)):
        eu_before = _file(zones, t, "EU", bom, end, records)
        us_before = _file(zones, t, "US", not bom, "\n", [(_customer("\n", us, u), STAY)] if t is CUSTOMERS else [])

        result = _relocate_file(t, zones, DAY, "EU", movers)

        header = eu_before.decode("utf-8-sig" if bom else "utf-8").split(end, 1)[0] + end
        moved = "".join(text for text, fate in records if fate == MOVE)
        kept = "".join(text for text, fate in records if fate != MOVE)
        assert zones.file(t, DAY, "EU").read_bytes() == (BOM if bom else b"") + (header + kept).encode(), (t.name, ids)
        assert zones.file(t, DAY, "US").read_bytes() == us_before + moved.encode(), (t.name, ids)
        assert result.moved == {f"{t.name} EU->US": sum(fate == MOVE for _, fate in records)}
        name = zones.name(zones.file(t, DAY, "EU"))
        reported = {f"{name} line {i}" for i, (_, fate) in enumerate(records, start=2) if fate == REPORT}
        assert set(result.not_moved) == reported, (t.name, ids)
        assert set(result.not_moved.values()) <= {MIXED_REGIONS, UNPLACED_EMAIL}
        assert _relocate_file(t, zones, DAY, "EU", movers).moved == {}  # a second run moves nothing more


def test_a_file_that_cannot_be_read_or_written_to_stays_as_it_is_and_is_reported(tmp_path):
    zones = _zones(tmp_path)
    movers = _Movers({"C1": "US"}, {"m@example.eu": "US"}, {"C1": "US"})
    eu = zones.file(CUSTOMERS, DAY, "EU")
    eu.parent.mkdir(parents=True)
    eu.write_bytes(b"\xff\xfe" + "customer_id\nC1\n".encode("utf-16-le"))
    assert _relocate_file(CUSTOMERS, zones, DAY, "EU", movers) == Relocation(
        {}, {zones.name(eu): f"not read: {eu}: the file is UTF-16 (little-endian) (byte order mark ff fe); "
                               "landing text files must be UTF-8"})

    _file(zones, CUSTOMERS, "EU", False, "\n", [(_customer("\n", "C1", "m@example.eu"), MOVE)])
    eu_before = eu.read_bytes()
    us = zones.file(CUSTOMERS, DAY, "US")
    us.parent.mkdir(parents=True)
    us.write_bytes(b"\xfe\xff" + "customer_id\n".encode("utf-16-be"))
    result = _relocate_file(CUSTOMERS, zones, DAY, "EU", movers)
    assert result.moved == {} and list(result.not_moved) == [zones.name(us)]
    assert result.not_moved[zones.name(us)].startswith(f"not written: its records of moving customers stay in {zones.name(eu)}")
    assert eu.read_bytes() == eu_before


def test_a_move_reads_a_bom_prefixed_crlf_export_and_finds_a_day_holding_only_an_unsplit_line(tmp_path):
    """End to end through the CRM load: the mover's record is the first line of a BOM-prefixed CRLF
    export; on another day their only record is a cut-off ticket line (found through the stores'
    raw lines); a line naming them and a customer who stays in the EU is left and reported."""
    zones = _zones(tmp_path)
    day1, day2, day3 = DAY, date(2026, 11, 20), date(2026, 11, 21)
    mover = "mover@example.eu"
    eu_day1 = [(_customer("\r\n", "42", mover, updated_at="2026-11-19T08:00:00Z"), MOVE),
               (_customer("\r\n", "C2", "stay@example.eu", updated_at="2026-11-19T06:42:49Z"), STAY),
               ("42,C2,merged\r\n", REPORT)]
    files = {("customers", day1, "EU"): (True, "\r\n", eu_day1),
             ("support_tickets", day2, "EU"): (False, "\n", [(f"T9,{mover}\n", MOVE)]),
             ("customers", day3, "US"): (False, "\n", [(_customer("\n", "42", mover, region="US", updated_at="2026-11-21T08:00:00Z"), STAY)])}
    for t in (CUSTOMERS, SUPPORT_TICKETS):
        for day in (day1, day2, day3):
            for region in ("EU", "US", "APAC"):
                bom, end, records = files.get((t.name, day, region), (False, "\n", []))
                _file(zones, t, region, bom, end, records, day)
    personal = PersonalData(KEY, RegionalStores.from_settings(settings.Paths(tmp_path)))
    eu1 = zones.file(CUSTOMERS, day1, "EU")
    mtime = eu1.stat().st_mtime_ns
    con = warehouse.connect(tmp_path / "warehouse.duckdb")
    try:
        warehouse.ensure_schemas(con)
        for t in (CUSTOMERS, SUPPORT_TICKETS):
            raw_load.load_days(con, t, zones, [day1, day2], personal)

        placed = raw_load.load_days(con, CUSTOMERS, zones, [day3], personal)[0].extra["residency"]
    finally:
        con.close()
    assert placed["landing_records_moved"] == {"customers EU->US": 1, "support_tickets EU->US": 1}
    assert placed["landing_records_not_moved"] == {f"regions/EU/landing/crm/customers/{day1}.csv line 4": MIXED_REGIONS}
    assert eu1.read_bytes() == BOM + (_header(CUSTOMERS, "\r\n") + eu_day1[1][0] + eu_day1[2][0]).encode()
    assert eu1.stat().st_mtime_ns == mtime
    assert zones.file(CUSTOMERS, day1, "US").read_bytes() == (_header(CUSTOMERS, "\n") + eu_day1[0][0]).encode()  # its CRLF kept
    assert zones.file(SUPPORT_TICKETS, day2, "US").read_bytes() == (_header(SUPPORT_TICKETS, "\n") + f"T9,{mover}\n").encode()
    assert zones.file(SUPPORT_TICKETS, day2, "EU").read_bytes() == _header(SUPPORT_TICKETS, "\n").encode()


@pytest.mark.parametrize(
    ("line", "verdict"),
    [
        ("C2,note at 06:42:49", (None, None)),  # 42 inside a timestamp
        ("EUR,note", ("US", None)),  # the mover EUR as a whole CSV field
        ('{"customer_id":"C2","currency":"EUR"}', (None, None)),  # a JSON object: judged by its identifier keys
        ('{"customer_id":"C2","currency":"EUR","amou', (None, MIXED_REGIONS)),  # cut off: "EUR" is a whole value, C2's too
        ("EUR", (None, None)),  # a lone value is no record
        ("42,C2,merged", (None, MIXED_REGIONS)),
        ("42,EUR,merged", ("US", None)),
    ],
)
def test_an_unsplit_line_is_a_movers_only_by_whole_values(line, verdict):
    movers = _Movers({"42": "US", "EUR": "US"}, {}, {"42": "US", "EUR": "US", "C2": "EU"})
    assert movers.line_region(line, "EU") == verdict
