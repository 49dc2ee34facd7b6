"""The landing files erasure and region moves rewrite are read exactly as the loader reads them (a
UTF-8 byte order mark, LF, CRLF or CR line ends, blank lines, quoted line ends, a header's repeated
name, bytes that are not UTF-8, JSON lines the stream's reader refuses), and written back byte for
byte where a record is not touched."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_data_platform.governance.attribution import Identifiers, canonical_id
from ai_data_platform.governance.landing_erasure import erase_file, read_text_records, subject_rows_in_crm_files
from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS
from ai_data_platform.sources.landing import LandingFileUnreadable, LandingZones, read_landing_file

BOM = b"\xef\xbb\xbf"
LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r"])
# CSV fields with quotes, commas, spaces, an email's @, a NUL, a non-ASCII letter and a byte that is not UTF-8
CSV_FIELD = st.text(alphabet=[*'a4" ,@\x00é', "\udcff"], max_size=6)
JSON_VALUE = st.one_of(st.text(alphabet='a4" \\é', max_size=4), st.integers(), st.none(), st.booleans())
JSON_LINE = st.one_of(
    st.dictionaries(st.sampled_from(["customer_id", "event_id", "x"]), JSON_VALUE, max_size=3).map(json.dumps),
    st.text(alphabet=[*'{}":,a4 \x00\r', "\udcff"], max_size=10),  # cut off, not JSON, a stray CR
    st.just('{"customer_id":"a","customer_id":"b"}'),  # a key twice: no record to the loader
)
FAST = settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _encoded(bom: bool, text: str) -> bytes:
    return (BOM if bom else b"") + text.encode("utf-8", "surrogateescape")


def _agree(t, path) -> None:
    """What the loader reads from ``path`` is what ``read_text_records`` reads, record by record, and
    the records' texts are the file byte for byte."""
    loaded = read_landing_file(t, path).table.select(["customer_id", "_raw_line"]).to_pylist()
    content, header, records = read_text_records(t, path)
    assert content.encode(header + "".join(r.raw for r in records)) == path.read_bytes()
    read = [r for r in records if r.line]  # a blank line is no record
    assert len(read) == len(loaded)
    for mine, theirs in zip(read, loaded):
        if theirs["_raw_line"] is None:
            assert mine.fields is not None and canonical_id(mine.fields.get("customer_id")) == canonical_id(theirs["customer_id"])
        else:
            assert mine.fields is None and mine.line == theirs["_raw_line"]


@FAST
@given(bom=st.booleans(), before=st.sampled_from(["", "\n", "\r\n\n"]), header_end=LINE_ENDS, final_end=st.booleans(),
       rows=st.lists(st.tuples(st.lists(CSV_FIELD, min_size=1, max_size=4), LINE_ENDS), max_size=6))
def test_a_csv_file_is_read_record_by_record_as_the_loader_reads_it(tmp_path, bom, before, header_end, final_end, rows):
    text = before + "customer_id,name,email" + header_end + "".join(",".join(f) + end for f, end in rows)
    path = tmp_path / "customers.csv"
    path.write_bytes(_encoded(bom, text if final_end else text.rstrip("\r\n")))
    _agree(CUSTOMERS, path)


@FAST
@given(bom=st.booleans(), lines=st.lists(st.tuples(JSON_LINE, st.sampled_from(["\n", "\r\n"])), max_size=6))
def test_a_json_lines_file_is_read_record_by_record_as_the_loader_reads_it(tmp_path, bom, lines):
    path = tmp_path / "events.jsonl"
    path.write_bytes(_encoded(bom, "".join(line + end for line, end in lines)))
    _agree(EVENTS, path)


def _zones(tmp_path) -> LandingZones:
    return LandingZones(tmp_path, tmp_path / "landing", {r: tmp_path / r for r in ("EU", "US", "APAC")})


@pytest.mark.parametrize("end", ["\r\n", "\r"])
def test_erasing_the_first_record_of_a_bom_prefixed_export_keeps_every_other_byte(tmp_path, end):
    zones = _zones(tmp_path)
    path = zones.file(CUSTOMERS, "2026-11-20", "EU")
    path.parent.mkdir(parents=True)
    header = ",".join(CUSTOMERS.column_names) + end
    theirs = f"42,Ann Lee,ann@example.org,,DE,EU,smb,2025-01-01T10:00:00Z,true,2026-11-20T06:42:49Z{end}"
    others = (f"C5,Bo Chen,bo@example.org,,DE,EU,smb,2025-01-01T10:00:00Z,true,2026-11-20T06:42:49Z{end}"
              f'C6,"Lee, 42",cy@example.org,,DE,EU,smb,2025-01-01T10:00:00Z,true,2026-11-20T07:00:42Z{end}'
              f"C7,note 42 at 06:42:49{end}")
    path.write_bytes(BOM + (header + theirs + others).encode())

    assert [r["email"] for r in subject_rows_in_crm_files(zones, "42")] == ["ann@example.org"]  # found by its header
    assert erase_file(CUSTOMERS, path, Identifiers.of(["42"])) == 1
    assert path.read_bytes() == BOM + (header + others).encode()


def test_a_header_naming_a_column_twice_is_read_by_its_first_column_as_the_loader_does(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes(b"customer_id,name,customer_id\r\nC5,Bo,42\r\n42,Ann,C5\r\n")
    _agree(CUSTOMERS, path)
    assert erase_file(CUSTOMERS, path, Identifiers.of(["42"])) == 1
    assert path.read_bytes() == b"customer_id,name,customer_id\r\nC5,Bo,42\r\n"


def test_a_utf16_or_utf32_export_is_refused_naming_the_file_as_the_loader_refuses_it(tmp_path):
    zones = _zones(tmp_path)
    path = zones.file(CUSTOMERS, "2026-11-20", "US")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe" + "customer_id,name\r\n42,Ann\r\n".encode("utf-16-le"))
    with pytest.raises(LandingFileUnreadable, match=f"{path}: the file is UTF-16 \\(little-endian\\)"):
        erase_file(CUSTOMERS, path, Identifiers.of(["42"]))
    with pytest.raises(LandingFileUnreadable, match="UTF-16"):
        subject_rows_in_crm_files(zones, "42")
    assert path.read_bytes().startswith(b"\xff\xfe")
