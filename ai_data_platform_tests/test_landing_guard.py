"""A loaded day is never silently emptied, and hostile landing files are read or refused clearly.

A tiny simulated world (30 customers, three days, with dirt) has its first two days materialized
through the nightly job once per module; each test works on a copy. A re-load whose files would
empty or shrink a loaded day is refused before anything is replaced (the partition stays as it was,
the run fails with one line naming the file, the counts and the force); a first load cut short or
far below the trailing days fails the blocking ``landing_complete`` check (nothing downstream, an
alert); ``adp/allow_shrink=true`` forces either through with an audit record. Byte order marks and
CRLF load; UTF-16, cut Parquet and Parquet columns of the wrong type are named, file and column.
"""

import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from ai_data_platform import settings, warehouse
from ai_data_platform.definitions import defs
from ai_data_platform.errors import InputError
from ai_data_platform.governance import audit
from ai_data_platform.observability.sensors import alert_sensor
from ai_data_platform.quality.tolerances import tolerated_rows
from ai_data_platform.resources import build_resources
from ai_data_platform.runner import failure_messages
from ai_data_platform.sources import landing_guard, raw_load
from ai_data_platform.sources.contracts import CUSTOMERS, EVENTS, INVOICES, PAYMENTS, REGIONS, SUBSCRIPTIONS
from ai_data_platform.sources.landing import LandingFileUnreadable, LandingZones, read_landing_file
from ai_data_platform.sources.landing_guard import FileIntake
from ai_data_platform.sources.simulator import generate

from .conftest import END
from .waiting import bound

pytestmark = pytest.mark.slow

DAY1, DAY2, DAY3 = END - timedelta(days=2), END - timedelta(days=1), END
ASSETS_AND_CHECKS = [*defs.assets, *defs.asset_checks]
BIN = Path(sys.executable).parent
SOURCE_GROUPS = ("crm", "billing", "behavioral")
KEY = "landing-guard-test-key"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three days of 30 customers landed; the sources' first two days materialized in one run."""
    root = tmp_path_factory.mktemp("landing_guard") / "adp"
    paths = settings.Paths(root)
    generate(LandingZones.from_settings(paths), customers=30, days=3, end=END, seed=5, dirty_rate=0.02)
    result = dg.materialize(
        ASSETS_AND_CHECKS,
        selection=dg.AssetSelection.groups(*SOURCE_GROUPS),
        resources=build_resources(paths),
        tags={"dagster/asset_partition_range_start": DAY1.isoformat(), "dagster/asset_partition_range_end": DAY2.isoformat()},
        raise_on_error=False,
    )
    assert result.success, failure_messages(result)
    return root


@pytest.fixture()
def paths(world, tmp_path, monkeypatch) -> settings.Paths:
    root = tmp_path / "adp"
    shutil.copytree(world, root)
    monkeypatch.setenv("ADP_DATA_DIR", str(root))
    return settings.Paths(root)


def _zones(paths) -> LandingZones:
    return LandingZones.from_settings(paths)


def _materialize(paths, day, keys, tags=None, instance=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        ASSETS_AND_CHECKS,
        selection=dg.AssetSelection.assets(*[dg.AssetKey.from_user_string(k) for k in keys]).required_multi_asset_neighbors(),
        partition_key=day.isoformat(),
        resources=build_resources(paths),
        instance=instance,
        tags=tags,
        raise_on_error=False,
    )


def _partition(paths, table, day, columns="*") -> list[tuple]:
    """Every row of a raw partition, load time included: equal lists mean an untouched partition."""
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        return con.execute(f"SELECT {columns} FROM {table} WHERE _partition_date = ? ORDER BY ALL", [day]).fetchall()
    finally:
        con.close()


def _store_bytes(paths) -> dict[str, bytes]:
    return {region: path.read_bytes() for region, path in settings.region_store_paths(paths).items()}


def _check(result, asset, name) -> dg.AssetCheckEvaluation:
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.asset_key.to_user_string() == asset and e.check_name == name
    ]
    return evaluation


def _materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


def _lines(path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# -- ways a landing file gets spoiled ---------------------------------------------------------------


def _zero_bytes(path):
    path.write_bytes(b"")


def _blank_lines(path):
    path.write_bytes(b"\n  \r\n\n")


def _a_tenth(path):
    lines = _lines(path)
    keep = 1 + len(lines) // 10 if path.suffix == ".csv" else len(lines) // 10  # a CSV keeps its header
    path.write_bytes(b"".join(lines[:keep]))


def _cut_mid_record(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - len(_lines(path)[-1]) // 2 - 1])


def _cut_inside_quotes(path):
    path.write_bytes(path.read_bytes() + b'C9999999,"Example, Ann\n')


def _header_only(path):
    path.write_bytes(_lines(path)[0])


def _parquet_without_row_groups(path):
    schema = pq.read_schema(path)
    pq.ParquetWriter(path, schema).close()


def _parquet_a_fifth(path):
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows // 5), path)


RELOADS = [
    pytest.param(EVENTS, DAY2, None, _zero_bytes, id="events-zero-bytes"),
    pytest.param(EVENTS, DAY2, None, _blank_lines, id="events-only-blank-lines"),
    pytest.param(EVENTS, DAY2, None, _a_tenth, id="events-cut-to-a-tenth"),
    pytest.param(EVENTS, DAY2, None, _cut_mid_record, id="events-last-record-cut"),
    pytest.param(CUSTOMERS, DAY1, REGIONS, _header_only, id="customers-header-only-in-every-region"),
    pytest.param(CUSTOMERS, DAY1, REGIONS, _a_tenth, id="customers-cut-in-every-region"),
    pytest.param(CUSTOMERS, DAY1, ("EU",), _zero_bytes, id="customers-one-region-zero-bytes"),
    pytest.param(SUBSCRIPTIONS, DAY1, None, _parquet_without_row_groups, id="subscriptions-no-row-groups"),
    pytest.param(SUBSCRIPTIONS, DAY1, None, _parquet_a_fifth, id="subscriptions-a-fifth"),
]


def _spoil(paths, t, day, regions, spoil) -> list[str]:
    zones = _zones(paths)
    files = [zones.file(t, day, r) for r in regions] if regions else [zones.file(t, day)]
    for path in files:
        spoil(path)
    return [zones.name(path) for path in files]


@pytest.mark.parametrize("t, day, regions, spoil", RELOADS)
def test_a_reload_that_would_empty_or_shrink_a_loaded_day_is_refused_and_the_partition_kept(paths, t, day, regions, spoil):
    table = f"raw.{t.name}"
    before, stores = _partition(paths, table, day), _store_bytes(paths)
    loaded = sum(1 for row in before)
    assert loaded >= 20  # a day with data
    names = _spoil(paths, t, day, regions, spoil)

    result = _materialize(paths, day, [f"raw/{t.name}"])

    assert not result.success
    (message,) = failure_messages(result)
    assert "\n" not in message and f"refused to replace {table} {day}" in message
    assert all(name in message for name in names)
    assert f"its {loaded} loaded row(s)" in message and " -> " in message  # the loaded rows, then what the files hold
    assert "adp/allow_shrink=true" in message and "adp materialize --allow-shrink" in message
    assert _partition(paths, table, day) == before  # every row as it was, load time included
    assert _store_bytes(paths) == stores  # the regional stores untouched too


def test_a_missing_file_of_a_loaded_day_fails_naming_it_and_keeps_the_partition(paths):
    before = _partition(paths, "raw.customers", DAY1)
    missing = _zones(paths).file(CUSTOMERS, DAY1, "US")
    missing.unlink()
    result = _materialize(paths, DAY1, ["raw/customers"])
    assert not result.success
    (message,) = failure_messages(result)
    assert f"no landing file for crm/customers: expected {missing}" in message
    assert _partition(paths, "raw.customers", DAY1) == before


def test_a_reload_of_the_same_files_is_not_refused(paths):
    but_load_time = "* EXCLUDE (_loaded_at)"
    before = _partition(paths, "raw.events", DAY2, but_load_time)
    result = _materialize(paths, DAY2, ["raw/events"])
    assert result.success
    assert _check(result, "raw/events", "landing_complete").passed
    assert _partition(paths, "raw.events", DAY2, but_load_time) == before


def test_a_first_load_far_below_the_trailing_days_stops_at_the_gate_and_alerts(paths):
    before = _partition(paths, "raw.events", DAY2)
    _zero_bytes(_zones(paths).file(EVENTS, DAY3))
    (paths.root / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(paths.root / "dagster_home")) as instance:
        keys = ["raw/events", "staging/events", "raw/payments", "staging/payments", "features/customer_daily"]
        result = _materialize(paths, DAY3, keys, instance=instance)
        assert not result.success
        gate = _check(result, "raw/events", "landing_complete")
        assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
        message = gate.metadata["message"].text
        assert f"raw.events {DAY3}: landing/behavioral/events/{DAY3}.jsonl hold(s) 0 well-formed record(s)" in message
        assert "far below the trailing median" in message and "adp/allow_shrink=true" in message
        materialized = _materialized(result)
        assert "raw/events" in materialized  # loaded, judged ...
        assert not {"staging/events", "features/customer_daily"} & materialized  # ... and stopped there
        assert "staging/payments" in materialized  # the other sources' days go on

        alert_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    alerts = [json.loads(line) for line in paths.alerts.read_text().splitlines()]
    gate_alerts = [a for a in alerts if a["kind"] == "check_failed" and a["asset_key"] == "raw/events"]
    assert len(gate_alerts) == 1 and "landing_complete" in gate_alerts[0]["title"] + gate_alerts[0]["message"]
    assert gate_alerts[0]["partition"] == DAY3.isoformat()
    assert _partition(paths, "raw.events", DAY2) == before  # other days untouched


FIRST_LOADS = [
    pytest.param(EVENTS, None, _a_tenth, "far below the trailing median", id="events-cut-to-a-tenth"),
    pytest.param(EVENTS, None, _cut_mid_record, "ends mid-record", id="events-last-record-cut"),
    pytest.param(EVENTS, None, _blank_lines, "far below the trailing median", id="events-only-blank-lines"),
    pytest.param(CUSTOMERS, ("APAC",), _zero_bytes, "is empty: no CSV header", id="customers-zero-bytes"),
    pytest.param(CUSTOMERS, ("US",), _blank_lines, "holds only blank lines: no CSV header", id="customers-blank"),
    pytest.param(CUSTOMERS, ("EU",), _cut_inside_quotes, "ends inside a quoted field", id="customers-open-quote"),
]


@pytest.mark.parametrize("t, regions, spoil, finding", FIRST_LOADS)
def test_a_first_load_cut_short_fails_the_blocking_gate_naming_the_file(paths, t, regions, spoil, finding):
    (name,) = _spoil(paths, t, DAY3, regions, spoil)
    result = _materialize(paths, DAY3, [f"raw/{t.name}", f"staging/{t.name}", f"quarantine/{t.name}"])
    assert not result.success
    gate = _check(result, f"raw/{t.name}", "landing_complete")
    assert not gate.passed
    assert name in gate.metadata["message"].text and finding in gate.metadata["message"].text
    assert f"staging/{t.name}" not in _materialized(result)


def _audit_records(paths) -> list[dict]:
    return [r for r in audit.records(paths.root / "audit") if r["action"] == landing_guard.AUDIT_ACTION]


def test_the_operator_flag_forces_a_refused_reload_through_with_an_audit_record(paths):
    (name,) = _spoil(paths, EVENTS, DAY2, None, _a_tenth)
    landed = read_landing_file(EVENTS, _zones(paths).file(EVENTS, DAY2)).rows
    loaded = len(_partition(paths, "raw.events", DAY2))
    tags = {landing_guard.ALLOW_SHRINK_TAG: "true", "adp/actor": "ops@example.com"}

    result = _materialize(paths, DAY2, ["raw/events"], tags=tags)

    assert result.success
    gate = _check(result, "raw/events", "landing_complete")
    assert gate.passed and "forced by ops@example.com with adp/allow_shrink=true (audited)" in gate.metadata["message"].text
    assert len(_partition(paths, "raw.events", DAY2)) == landed  # the operator's choice, loaded
    (record,) = _audit_records(paths)
    assert record["actor"] == "ops@example.com" and record["run_id"] == result.run_id
    assert (record["asset"], record["partition"], record["status"]) == ("raw/events", DAY2.isoformat(), "forced")
    assert record["row_counts"]["landed_records"] == landed
    (file,) = record["details"]["files"]
    assert file["file"] == name and file["loaded_rows"] == loaded and file["landed_records"] == landed
    assert "refused to replace raw.events" in record["details"]["refusal"]
    assert audit.verify(paths.root / "audit").ok


def test_the_operator_flag_passes_a_gated_first_load_with_a_warning_and_an_audit_record(paths):
    _spoil(paths, EVENTS, DAY3, None, _zero_bytes)
    tags = {landing_guard.ALLOW_SHRINK_TAG: "TRUE", "adp/actor": "ops@example.com"}
    result = _materialize(paths, DAY3, ["raw/events", "staging/events", "quarantine/events"], tags=tags)
    assert result.success
    assert {"raw/events", "staging/events"} <= _materialized(result)
    assert "forced by ops@example.com" in _check(result, "raw/events", "landing_complete").metadata["message"].text
    (record,) = _audit_records(paths)
    assert record["partition"] == DAY3.isoformat() and "far below the trailing median" in record["details"]["findings"][0]


def test_a_malformed_override_tag_fails_the_run_naming_the_tag(paths):
    result = _materialize(paths, DAY2, ["raw/events"], tags={landing_guard.ALLOW_SHRINK_TAG: "yes please"})
    assert not result.success
    assert failure_messages(result) == ["raw__events: run tag adp/allow_shrink='yes please': must be true or false"]


def test_adp_materialize_refuses_then_allow_shrink_forces_and_audits(paths):
    _spoil(paths, EVENTS, DAY2, None, _zero_bytes)
    argv = [str(BIN / "adp"), "materialize", "--partition", DAY2.isoformat(), "--select", "raw/events"]
    env = dict(os.environ, ADP_DATA_DIR=str(paths.root))
    refused = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=bound(1800))
    assert refused.returncode == 1, refused.stdout[-2000:] + refused.stderr[-2000:]
    (line,) = [line for line in refused.stderr.splitlines() if line.startswith("  failed step raw__events: ")]
    assert f"refused to replace raw.events {DAY2}: its " in line and "would become 0 (0 well-formed)" in line
    assert _audit_records(paths) == []

    forced = subprocess.run([*argv, "--allow-shrink"], env=env, capture_output=True, text=True, timeout=bound(1800))
    assert forced.returncode == 0, forced.stdout[-2000:] + forced.stderr[-2000:]
    assert _partition(paths, "raw.events", DAY2) == []
    (record,) = _audit_records(paths)
    assert record["details"]["flag"] == "adp/allow_shrink=true" and record["row_counts"]["landed_well_formed"] == 0


# -- a day's records belong to the day ----------------------------------------------------------------


def _copy(paths, t, source_day, day, region=None) -> str:
    zones = _zones(paths)
    shutil.copyfile(zones.file(t, source_day, region), zones.file(t, day, region))
    return zones.name(zones.file(t, day, region))


ANOTHER_DAYS_FILE = [
    pytest.param(EVENTS, DAY1, None, ["not timed on", "already loaded on another day: " + DAY1.isoformat()], id="events-of-two-days-before"),
    pytest.param(EVENTS, DAY2, None, ["not timed on", "already loaded on another day: " + DAY2.isoformat()], id="events-of-the-day-before"),
    pytest.param(PAYMENTS, DAY2, None, ["not timed on", "already loaded on another day: " + DAY2.isoformat()], id="payments-parquet"),
    pytest.param(INVOICES, DAY2, None, ["already loaded on another day"], id="invoices-parquet"),
    pytest.param(CUSTOMERS, DAY1, "EU", ["not timed on", "(customer_id + updated_at) are already loaded"], id="customers-full-export"),
]


@pytest.mark.parametrize("t, source_day, region, finding", ANOTHER_DAYS_FILE)
def test_a_first_load_of_another_days_file_stops_at_the_gate_naming_the_file(paths, t, source_day, region, finding):
    name = _copy(paths, t, source_day, DAY3, region)
    result = _materialize(paths, DAY3, [f"raw/{t.name}", f"staging/{t.name}", f"quarantine/{t.name}"])
    assert not result.success
    gate = _check(result, f"raw/{t.name}", "landing_complete")
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    message = gate.metadata["message"].text
    assert f"raw.{t.name} {DAY3}: {name}: " in message and all(f in message for f in finding), message
    assert "adp/allow_shrink=true" in message
    assert f"staging/{t.name}" not in _materialized(result)


def test_the_copied_day_of_the_report_alerts_and_keeps_its_keys_out_of_staging(paths):
    """The reported break: a day's events file replaced by an earlier day's loads nothing downstream,
    and the alert sensor raises an alert for the gate; the other day's rows are untouched."""
    before = _partition(paths, "raw.events", DAY1)
    _copy(paths, EVENTS, DAY1, DAY3)
    (paths.root / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(paths.root / "dagster_home")) as instance:
        result = _materialize(paths, DAY3, ["raw/events", "staging/events", "features/customer_daily"], instance=instance)
        assert not result.success and not {"staging/events", "features/customer_daily"} & _materialized(result)
        alert_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    alerts = [json.loads(line) for line in paths.alerts.read_text().splitlines()]
    (alert,) = [a for a in alerts if a["kind"] == "check_failed" and a["asset_key"] == "raw/events"]
    assert alert["partition"] == DAY3.isoformat() and "already loaded on another day" in alert["message"]
    assert _partition(paths, "raw.events", DAY1) == before
    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        repeated = con.execute(
            "SELECT count(*) - count(DISTINCT event_id) FROM staging.events"
        ).fetchone()[0]
    finally:
        con.close()
    assert repeated == 0


def test_a_reload_with_another_days_file_is_refused_and_the_partition_kept(paths):
    before, stores = _partition(paths, "raw.events", DAY1), _store_bytes(paths)
    name = _copy(paths, EVENTS, DAY2, DAY1)  # more records than DAY1 held: no shrinking, only the wrong day
    result = _materialize(paths, DAY1, ["raw/events"])
    assert not result.success
    (message,) = failure_messages(result)
    assert "\n" not in message and message.startswith(f"raw__events: refused to replace raw.events {DAY1}: {name}: ")
    assert f"not timed on {DAY1}" in message and f"already loaded on another day: {DAY2} (" in message
    assert "would become" not in message  # it does not shrink
    assert "the partition is kept as loaded" in message and "adp/allow_shrink=true" in message
    assert _partition(paths, "raw.events", DAY1) == before and _store_bytes(paths) == stores


def test_a_reload_with_a_later_days_parquet_file_is_refused(paths):
    assert _materialize(paths, DAY3, ["raw/payments"]).success  # DAY3 loaded, then copied over DAY2
    before = _partition(paths, "raw.payments", DAY2)
    name = _copy(paths, PAYMENTS, DAY3, DAY2)
    result = _materialize(paths, DAY2, ["raw/payments"])
    assert not result.success
    (message,) = failure_messages(result)
    assert f"refused to replace raw.payments {DAY2}: {name}: " in message
    assert f"not timed on {DAY2}" in message and f"already loaded on another day: {DAY3} (1)" in message
    assert _partition(paths, "raw.payments", DAY2) == before


def test_the_flag_forces_another_days_file_through_audited_and_staging_shows_the_repeated_keys(paths):
    name = _copy(paths, EVENTS, DAY2, DAY3)
    tags = {landing_guard.ALLOW_SHRINK_TAG: "true", "adp/actor": "ops@example.com"}
    result = _materialize(paths, DAY3, ["raw/events", "staging/events", "quarantine/events"], tags=tags)
    assert result.success  # forced: the raw gate warns, staging's repeated keys warn
    assert "forced by ops@example.com" in _check(result, "raw/events", "landing_complete").metadata["message"].text
    (record,) = _audit_records(paths)
    assert record["partition"] == DAY3.isoformat() and record["details"]["not_of_the_day"]
    (file,) = record["details"]["files"]
    assert file["file"] == name and file["loaded_on_other_days"] == file["distinct_records"] > 0
    assert file["other_days"] == {DAY2.isoformat(): file["distinct_records"]} and file["timed_on_day"] == 0
    repeats = _check(result, "staging/events", "key_unique_across_days")
    assert not repeats.passed and repeats.severity == dg.AssetCheckSeverity.WARN
    assert f"staging.events partition {DAY3}: " in repeats.metadata["message"].text
    assert f"are also staged on {DAY2} (" in repeats.metadata["message"].text


def test_late_events_a_redelivered_day_and_the_first_full_export_load_as_before(paths):
    """What legitimately repeats or lies before a day: a day's export re-delivered with its late
    events (timed up to the contract's lateness before it) re-loads; the first partition, a full
    export of earlier records, re-loads; and every day passes staging's key check."""
    path = _zones(paths).file(EVENTS, DAY2)
    lines = path.read_bytes().splitlines(keepends=True)
    late = []
    for i, line in enumerate(lines[:3]):
        record = json.loads(line)
        if isinstance(record, dict) and record.get("event_time"):
            record |= {"event_id": f"E-LATE-{i}", "event_time": f"{DAY2 - timedelta(days=EVENTS.late_days)}T00:00:01Z"}
            late.append(json.dumps(record).encode() + b"\n")
    path.write_bytes(b"".join(lines + late))  # the day's export, re-delivered with a few more late events
    result = _materialize(paths, DAY2, ["raw/events", "staging/events", "quarantine/events"])
    assert result.success and late
    assert _check(result, "raw/events", "landing_complete").passed
    assert _check(result, "staging/events", "key_unique_across_days").passed
    reload = _materialize(paths, DAY1, ["raw/customers", "raw/subscriptions"])
    assert reload.success and _check(reload, "raw/customers", "landing_complete").passed


# -- encodings, line ends and Parquet types ---------------------------------------------------------


def _reload(paths, t, day):
    con = warehouse.connect(paths.warehouse)
    try:
        personal = build_resources(paths)["regional_stores"].personal_data(build_resources(paths)["pii"])
        (load,) = raw_load.load_days(con, t, _zones(paths), [day], personal)
        rows = con.execute(f"SELECT * EXCLUDE (_loaded_at) FROM raw.{t.name} WHERE _partition_date = ? ORDER BY ALL", [day]).fetchall()
    finally:
        con.close()
    return load, rows


@pytest.mark.parametrize("t, day", [(CUSTOMERS, DAY1), (EVENTS, DAY2)], ids=["csv", "jsonl"])
def test_byte_order_marks_and_crlf_line_ends_load_like_the_plain_file(paths, t, day):
    _, plain = _reload(paths, t, day)
    zones = _zones(paths)
    for path in zones.files(t, day):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    load, rows = _reload(paths, t, day)
    assert rows == plain and not load.drift.drifted
    assert load.guard.findings == () and load.guard.refusal is None


@pytest.mark.parametrize("t, day", [(CUSTOMERS, DAY1), (EVENTS, DAY2)], ids=["csv", "jsonl"])
@pytest.mark.parametrize("encoding, bom", [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"), ("utf-32-le", b"\xff\xfe\x00\x00")])
def test_a_utf16_or_utf32_file_is_an_error_naming_it_and_nothing_is_replaced(paths, t, day, encoding, bom):
    before = _partition(paths, f"raw.{t.name}", day)
    path = _zones(paths).files(t, day)[0]
    path.write_bytes(bom + path.read_text(encoding="utf-8").encode(encoding))
    with pytest.raises(LandingFileUnreadable, match="UTF-(16|32)") as caught:
        _reload(paths, t, day)
    assert str(path) in str(caught.value) and "must be UTF-8" in str(caught.value)
    assert _partition(paths, f"raw.{t.name}", day) == before


def _rewrite_parquet(path, change):
    pq.write_table(change(pq.read_table(path)), path)


def _set(table, name, values):
    return table.set_column(table.schema.get_field_index(name), name, values)


def test_parquet_columns_of_the_wrong_type_are_named_with_file_column_expected_and_found(paths):
    path = _zones(paths).file(SUBSCRIPTIONS, DAY1)
    rows = pq.read_metadata(path).num_rows

    def change(table):
        table = _set(table, "mrr", table.column("mrr").cast(pa.string()))  # string where a double is expected
        table = _set(table, "started_at", table.column("started_at").cast(pa.int64()))  # int where a timestamp is
        table = _set(table, "plan", pa.array([{"tier": p} for p in table.column("plan").to_pylist()]))  # nested
        return table.drop_columns(["currency"]).append_column("legacy_flag", pa.array([True] * table.num_rows))

    _rewrite_parquet(path, change)
    result = _materialize(paths, DAY1, ["raw/subscriptions", "staging/subscriptions", "quarantine/subscriptions"])
    drift = _check(result, "raw/subscriptions", "schema_drift")
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.ERROR
    message = drift.metadata["message"].text
    name = _zones(paths).name(path)
    assert message.startswith(f"schema drift in billing/subscriptions {DAY1}: {name}: missing ['currency']; unexpected ['legacy_flag']")
    assert "column mrr has the wrong type: expected DOUBLE, found string" in message
    assert "column started_at has the wrong type: expected TIMESTAMP, found int64" in message
    assert "column plan has the wrong type: expected VARCHAR, found struct<tier: string>" in message
    assert drift.metadata["drift"].value[DAY1.isoformat()]["wrong_type"]["mrr"] == {"expected": "DOUBLE", "found": "string"}
    partition = _partition(paths, "raw.subscriptions", DAY1)
    assert len(partition) == rows  # nothing lost: every record is in raw, as text
    assert "staging/subscriptions" not in _materialized(result)


def test_parquet_integers_for_doubles_and_all_null_columns_fit_the_contract(paths):
    path = _zones(paths).file(PAYMENTS, DAY2)
    _rewrite_parquet(path, lambda table: _set(
        _set(table, "amount", pa.array([round(v) for v in table.column("amount").to_pylist()], pa.int64())),
        "failure_code", pa.nulls(table.num_rows),
    ))
    load, _ = _reload(paths, PAYMENTS, DAY2)
    assert not load.drift.drifted


@pytest.mark.parametrize("cut", [0, 4, 100, -8, -1])
def test_a_cut_parquet_file_is_an_error_naming_it_not_an_arrow_traceback(paths, cut):
    before = _partition(paths, "raw.subscriptions", DAY1)
    path = _zones(paths).file(SUBSCRIPTIONS, DAY1)
    path.write_bytes(path.read_bytes()[:cut])
    result = _materialize(paths, DAY1, ["raw/subscriptions"])
    assert not result.success
    (message,) = failure_messages(result)
    assert message.startswith(f"raw__subscriptions: {path}: not a readable Parquet file (")
    assert "Traceback" not in message and "ArrowInvalid" not in message
    assert _partition(paths, "raw.subscriptions", DAY1) == before


# -- the readers, on any cut of a well-formed file (no Dagster) -------------------------------------


CUT_RECORD = {"csv": b"C-CUT,Cut Short\n", "jsonl": b'{"event_id": "E-CUT", "custo\n'}


@pytest.fixture(scope="module")
def exports(world, tmp_path_factory) -> dict[str, tuple[object, bytes, list[bool]]]:
    """One export per format: contract, bytes, and whether each record of the whole file is malformed."""
    zones = LandingZones.from_settings(settings.Paths(world))
    out = {}
    for fmt, t, path in (
        ("csv", CUSTOMERS, zones.file(CUSTOMERS, DAY1, "EU")),
        ("jsonl", EVENTS, zones.file(EVENTS, DAY2)),
        ("parquet", SUBSCRIPTIONS, zones.file(SUBSCRIPTIONS, DAY1)),
    ):
        data = path.read_bytes()
        if fmt in CUT_RECORD:  # a record cut short in the middle of the file, as the simulator's dirt has
            lines = data.splitlines(keepends=True)
            data = b"".join([*lines[:3], CUT_RECORD[fmt], *lines[3:]])
        copy = tmp_path_factory.mktemp("exports") / path.name
        copy.write_bytes(data)
        whole = read_landing_file(t, copy)
        out[fmt] = (t, data, [v.is_valid for v in whole.table.column("_raw_line")])
    return out


@hypothesis_settings(max_examples=40)
@given(fmt=st.sampled_from(["csv", "jsonl"]), share=st.floats(0, 1), crlf=st.booleans(), bom=st.booleans())
def test_any_cut_of_a_text_export_reads_whole_records_and_flags_a_cut_one(exports, tmp_path_factory, fmt, share, crlf, bom):
    t, data, malformed = exports[fmt]
    cut = data[: int(len(data) * share)]
    if crlf:
        cut = cut.replace(b"\n", b"\r\n")
    path = tmp_path_factory.mktemp("cut") / f"x.{fmt}"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + cut)
    landed = read_landing_file(t, path)
    lines = [line for line in cut.splitlines() if line.strip()]
    records = len(lines) - (1 if fmt == "csv" and lines else 0)
    assert landed.rows == records
    if not lines and fmt == "csv":
        assert "no CSV header" in landed.incomplete
    elif cut.endswith(b"\n") or not lines:
        assert landed.incomplete is None
        assert landed.rows - landed.well_formed == sum(malformed[:records])  # exactly the file's own dirt
    else:  # the last record is cut: it is malformed and flagged, or it still splits into fields
        last = landed.table.column("_raw_line")[landed.rows - 1] if landed.rows else None
        assert (landed.incomplete is not None) == (last is not None and last.is_valid)
        assert landed.rows - landed.well_formed - (landed.incomplete is not None) == sum(malformed[: records - 1])


@hypothesis_settings(max_examples=30)
@given(share=st.floats(0, 0.999))
def test_any_cut_of_a_parquet_export_is_an_error_naming_the_file(exports, tmp_path_factory, share):
    t, data, _ = exports["parquet"]
    path = tmp_path_factory.mktemp("cut") / "x.parquet"
    path.write_bytes(data[: int(len(data) * share)])
    with pytest.raises(LandingFileUnreadable) as caught:
        read_landing_file(t, path)
    assert str(caught.value).startswith(f"{path}: not a readable Parquet file (") and "\n" not in str(caught.value)


@given(
    t=st.sampled_from([CUSTOMERS, EVENTS, PAYMENTS]),
    data=st.binary(max_size=400) | st.text(max_size=200).map(str.encode),
    header=st.booleans(),
)
def test_any_bytes_are_read_or_refused_naming_the_file_never_an_arrow_error(tmp_path_factory, t, data, header):
    path = tmp_path_factory.mktemp("fuzz") / f"x.{t.extension}"
    path.write_bytes((",".join(t.column_names).encode() + b"\n" if header and t.file_format == "csv" else b"") + data)
    try:
        landed = read_landing_file(t, path)
    except LandingFileUnreadable as exc:
        assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
    else:
        assert 0 <= landed.well_formed <= landed.rows == len(set(landed.table.column("_row_number").to_pylist()))


# -- the guard's rules (pure) -----------------------------------------------------------------------


def _files(loaded, landed, incomplete=None):
    return [FileIntake("f.jsonl", landed, landed, incomplete, loaded, loaded)]


@given(loaded=st.integers(0, 10_000), landed=st.integers(0, 10_000), cut=st.booleans())
def test_a_reload_is_refused_exactly_when_it_loses_a_tenth_or_all_or_rows_to_a_cut_file(loaded, landed, cut):
    verdict = landing_guard.judge("raw.events", DAY2, _files(loaded, landed, "ends mid-record" if cut else None), [])
    loses = landed < loaded
    expected = loaded > 0 and (landed < 0.9 * loaded or (loses and cut))
    assert (verdict.refusal is not None) == expected
    if landed >= loaded:
        assert verdict.refusal is None  # a re-load that keeps every row is never refused


@given(median=st.floats(0, 1e6), landed=st.integers(0, 2_000_000))
def test_the_volume_floor_stops_days_far_below_the_trailing_median_only(median, landed):
    verdict = landing_guard.judge("raw.events", DAY3, _files(0, landed), [median])
    stopped = bool(verdict.findings)
    assert stopped == (landed < landing_guard.volume_floor(median))
    if landed >= median / 2:
        assert not stopped  # half the usual volume is never "far below"


def test_the_floor_spares_small_tables_and_catches_an_empty_day_of_a_busy_one():
    assert landing_guard.volume_floor(8) < 0  # a table of a few records a day is not judged by volume
    assert 0 < landing_guard.volume_floor(35) < 7  # 30 customers' events: an empty or cut day is caught
    assert landing_guard.volume_floor(3071) > 1300


@pytest.mark.parametrize("value, allowed", [(None, False), ("true", True), ("True", True), (" false ", False)])
def test_the_override_tag_is_true_or_false(value, allowed):
    tags = {} if value is None else {landing_guard.ALLOW_SHRINK_TAG: value}
    assert landing_guard.allow_shrink(tags) is allowed


def test_a_bad_override_tag_value_is_an_input_error_naming_it():
    with pytest.raises(InputError, match=r"run tag adp/allow_shrink='1': must be true or false"):
        landing_guard.allow_shrink({landing_guard.ALLOW_SHRINK_TAG: "1"})


def _timed(judged, on_day, late, repeated=0, keys=None, name="f.jsonl"):
    times = landing_guard.RecordTimes(judged, on_day, late)
    repeats = landing_guard.KeyRepeats(judged if keys is None else keys, repeated, ((DAY1, repeated),) if repeated else ())
    return FileIntake(name, judged, judged, times=times, repeats=repeats)


EVENTS_RULE = landing_guard.DayRule("event_time", late_days=3, identity=("event_id",))
PAYMENTS_RULE = landing_guard.DayRule("created_at", identity=("payment_id",))


@given(judged=st.integers(1, 5000), on_share=st.floats(0, 1), late_share=st.floats(0, 1), lateness=st.sampled_from([0, 3]))
def test_a_file_is_of_its_day_when_mostly_timed_on_it_and_within_its_lateness(judged, on_share, late_share, lateness):
    on_day = round(judged * on_share)
    late = round((judged - on_day) * late_share) if lateness else 0
    rule = landing_guard.DayRule("t", late_days=lateness, identity=("k",))
    findings = landing_guard.belonging_findings("raw.x", DAY3, _timed(judged, on_day, late), rule)
    outside = judged - on_day - late
    mostly_elsewhere = on_day < judged / 2 and (lateness == 0 or judged >= landing_guard.ON_DAY_MIN_JUDGED)
    assert bool(findings) == (mostly_elsewhere or outside > tolerated_rows(judged, landing_guard.OUTSIDE_WINDOW_SHARE))
    if on_day == judged:
        assert findings == []  # a day's own records always belong to it
    for finding in findings:
        assert finding.startswith("f.jsonl: ") and "not timed on" in finding


@given(keys=st.integers(1, 5000), share=st.floats(0, 1))
def test_a_file_repeating_more_than_a_twentieth_of_its_records_from_other_days_is_of_another_day(keys, share):
    repeated = round(keys * share)
    findings = landing_guard.belonging_findings("raw.x", DAY3, _timed(keys, keys, 0, repeated), PAYMENTS_RULE)
    assert bool(findings) == (repeated > 0.05 * keys)
    if findings:
        (finding,) = findings
        assert f"{repeated} of its {keys} distinct record(s) (payment_id) are already loaded on another day: {DAY1} ({repeated})" in finding


def test_a_first_full_export_is_not_judged_by_time_and_a_few_late_events_are_no_finding():
    full = landing_guard.DayRule("updated_at", full_export=True, identity=("customer_id", "updated_at"))
    assert landing_guard.belonging_findings("raw.customers", DAY1, _timed(500, 0, 0), full) == []
    assert landing_guard.belonging_findings("raw.events", DAY3, _timed(4, 1, 3), EVENTS_RULE) == []  # too few to judge
    assert landing_guard.belonging_findings("raw.events", DAY3, _timed(100, 98, 2), EVENTS_RULE) == []
    assert landing_guard.belonging_findings("raw.payments", DAY3, _timed(1, 0, 0), PAYMENTS_RULE)  # one record, of another day


def test_a_reload_of_another_days_records_is_refused_and_a_first_load_of_them_is_a_finding():
    copied = dict(times=landing_guard.RecordTimes(40, 0, 0), repeats=landing_guard.KeyRepeats(40, 40, ((DAY1, 40),)))
    reload = landing_guard.judge("raw.events", DAY2, [FileIntake("e.jsonl", 40, 40, None, 38, 38, **copied)], [], EVENTS_RULE)
    assert reload.refusal.startswith(f"refused to replace raw.events {DAY2}: e.jsonl: 40 of 40 record(s)")
    assert "would become" not in reload.refusal and reload.stopped
    first = landing_guard.judge("raw.events", DAY3, [FileIntake("e.jsonl", 40, 40, **copied)], [], EVENTS_RULE)
    assert first.refusal is None and len(first.findings) == 2 and all(f.startswith(f"raw.events {DAY3}: e.jsonl: ") for f in first.findings)
    assert landing_guard.audit_fields(landing_guard.forced(first), "raw/events")["details"]["not_of_the_day"] == list(first.foreign)
