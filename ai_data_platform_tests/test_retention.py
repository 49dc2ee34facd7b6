"""Retention: exactly what expired is deleted (a day inside the limit stays, a day past it goes)
across the warehouse, the regional stores, landing files, dataset versions and models; the bytes
are gone after compaction; one audit record has the counts; a dry run changes nothing; the policy
file is validated naming the asset and key."""

import hashlib
import json
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from ai_data_platform import warehouse
from ai_data_platform.governance import audit, retention
from ai_data_platform.governance.stores import alias
from ai_data_platform.ml import datasets, models
from ai_data_platform.sources.contracts import EVENTS, REGIONS, SUPPORT_TICKETS
from ai_data_platform.streaming import warehouse_sink

from . import lifecycle_world as world
from .lifecycle_world import DAYS

AS_OF = date(2026, 11, 20)
OVERRIDES = {  # asset -> days: everything else is kept until erasure
    "raw/events": 2,  # cutoff 11-18: 11-17 (3 days old) goes, 11-18 (2 days, the limit) and 11-19 (1 day) stay
    "staging/events": 2,
    "raw/support_tickets": 2,  # and its landing files, one per region: 11-17 goes from every region's zone
    "raw/support_tickets_personal": 1,  # ticket texts: 11-18 goes, 11-20 stays
    "ml/churn_training_set": 2,
    "ml/churn_model": 2,
}
MARKER = "RETENTION-MARKER-7f3a9c"


def _policy_file(tmp_path, overrides=OVERRIDES, extra=""):
    lines = []
    for asset in sorted(retention.STORAGE):
        lines.append(f'[assets."{asset}"]')
        lines.append(f"days = {overrides[asset]}" if asset in overrides else 'until = "erasure"')
    path = tmp_path / "retention.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@pytest.fixture()
def paths(lifecycle_paths, tmp_path, monkeypatch):
    p = lifecycle_paths
    monkeypatch.setenv("ADP_RETENTION_CONFIG", str(_policy_file(tmp_path)))
    for version in ("2026-11-17", "2026-11-20"):  # a model per dataset version
        d = p.root / "models" / "churn" / version
        d.mkdir(parents=True)
        (d / models.CARD_FILE).write_text(json.dumps({"name": "churn", "version": version, "gate_passed": True}))
    return p


def _per_day(con, relation):
    return dict(con.execute(f"SELECT _partition_date, count(*) FROM {relation} GROUP BY 1").fetchall())


def _fingerprint(root):
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _plant_markers(paths, personal):
    """Uncompressed marker rows on expiring days, so their bytes can be searched in the files."""
    con = warehouse.connect(paths.warehouse)
    con.execute("SET force_compression = 'uncompressed'")
    con.execute("INSERT INTO staging.events (event_id, customer_id, event_type, _partition_date) VALUES (?, 'C0000002', 'login', ?)", [MARKER, DAYS[0]])
    with personal.stores.attached(con):
        con.execute(
            "INSERT INTO personal_us.raw.support_tickets_personal (ticket_id, body, _partition_date, _row_number) VALUES ('T1', ?, ?, 99)",
            [MARKER, DAYS[1]],
        )
    con.execute("CHECKPOINT")
    con.close()
    return [paths.warehouse, personal.stores.paths["US"]]


def test_retention_deletes_exactly_what_expired_everywhere_and_the_bytes_go(paths):
    personal = world.personal_data(paths.root)
    marked = _plant_markers(paths, personal)
    assert all(MARKER.encode() in f.read_bytes() for f in marked)
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    raw_before, staging_before = _per_day(con, "raw.events"), _per_day(con, "staging.events")
    customers_before = con.execute("SELECT count(*) FROM raw.customers").fetchone()[0]
    con.close()
    assert set(raw_before) == set(DAYS)

    report = retention.run(retention.load_policy(), AS_OF, paths=paths, actor="test")

    con = warehouse.connect(paths.warehouse, read_only=True)
    try:
        raw_after = _per_day(con, "raw.events")
        assert raw_after == {d: n for d, n in raw_before.items() if d > DAYS[0]}  # 11-17 gone, 11-18 (the limit) stays
        assert _per_day(con, "staging.events") == {d: n for d, n in staging_before.items() if d > DAYS[0]}
        assert con.execute("SELECT count(*) FROM raw.customers").fetchone()[0] == customers_before  # until erasure
        with personal.stores.attached(con, read_only=True):
            tickets = {}
            for region in REGIONS:
                for day, n in _per_day(con, f"{alias(region)}.raw.support_tickets_personal").items():
                    tickets[day] = tickets.get(day, 0) + n
    finally:
        con.close()
    assert DAYS[1] not in tickets and tickets.get(DAYS[3], 0) >= 1  # the subject's 11-20 ticket text stays

    counts = report.counts_by_asset()
    assert counts["raw/events"] == raw_before[DAYS[0]] + 1  # the rows and the day's landing file
    assert counts["staging/events"] == staging_before[DAYS[0]]  # the marker row included
    zones = world.zones(paths)
    assert not zones.file(EVENTS, DAYS[0]).exists() and zones.file(EVENTS, DAYS[1]).exists()
    for region in REGIONS:  # a regional export ages like any other
        assert not zones.file(SUPPORT_TICKETS, DAYS[0], region).exists() and zones.file(SUPPORT_TICKETS, DAYS[1], region).exists()
    ticket_files = [e for e in report.expired if e.asset == "raw/support_tickets" and e.unit == "file"]
    assert sorted(e.place for e in ticket_files) == [f"regions/{r}/landing/crm/support_tickets/2026-11-17.csv" for r in sorted(REGIONS)]
    assert counts["ml/churn_training_set"] == 1 and counts["ml/churn_model"] == 1

    with pytest.raises(datasets.DatasetDeleted, match=r"version '2026-11-17' was deleted on .* by retention \(retention: ml/churn_training_set keeps 2 days"):
        datasets.load_dataset("churn", "2026-11-17")
    assert [d["version"] for d in datasets.list_datasets()] == ["2026-11-20"]
    assert len(datasets.load_dataset("churn", "2026-11-20")) > 0
    with pytest.raises(FileNotFoundError, match="model churn@2026-11-17 was deleted on .* by retention"):
        models.load_model("churn", "2026-11-17")
    assert (paths.root / "models" / "churn" / "2026-11-20").is_dir()

    assert all(MARKER.encode() not in f.read_bytes() for f in marked)  # compacted: the bytes are gone
    assert {"warehouse.duckdb", str(personal.stores.paths["US"])} <= set(report.compacted)
    record = list(audit.records())[-1]
    assert record["action"] == "retention" and record["actor"] == "test"
    assert record["row_counts"] == counts and record["details"]["as_of"] == AS_OF.isoformat()
    assert audit.verify().ok


def test_a_dry_run_prints_exactly_what_would_go_and_changes_nothing(paths, capsys):
    from ai_data_platform import cli

    before = _fingerprint(paths.root)
    assert cli.main(["retention", "--dry-run", "--as-of", AS_OF.isoformat()]) == 0
    printed = capsys.readouterr().out
    assert _fingerprint(paths.root) == before  # no file touched, no audit record

    dry = retention.run(retention.load_policy(), AS_OF, dry_run=True, paths=paths)
    assert printed.splitlines() == dry.lines()
    assert "(dry run: nothing changed)" in printed and "raw/events: warehouse raw.events:" in printed
    assert "raw/events: landing/behavioral/events/2026-11-17.jsonl: 1 file(s) from before 2026-11-18" in printed
    assert "ml/churn_training_set: datasets/churn/2026-11-17: 1 version(s)" in printed
    real = retention.run(retention.load_policy(), AS_OF, paths=paths)
    assert [e.describe() for e in real.expired] == [e.describe() for e in dry.expired]


def test_stream_rows_age_by_the_day_they_were_received(paths, tmp_path, monkeypatch):
    shipped = retention.load_policy(Path(retention.__file__).with_name("retention.toml"))
    assert [shipped[a].days for a in ("stream/records", "stream/events", "stream/quarantine_events")] == [90, 90, 90]
    overrides = {**OVERRIDES, "stream/records": 90, "stream/events": 90, "stream/quarantine_events": 30}
    monkeypatch.setenv("ADP_RETENTION_CONFIG", str(_policy_file(tmp_path, overrides)))
    midnight = datetime.combine(AS_OF, time())
    received = {  # per table: the received_at of each row (the cutoff day's first µs stays, the day before goes)
        warehouse_sink.RECORDS: [midnight - timedelta(days=90, microseconds=1), midnight - timedelta(days=90), midnight + timedelta(hours=12)],
        warehouse_sink.EVENTS_TABLE: [midnight - timedelta(days=91), midnight - timedelta(days=90) + timedelta(hours=23)],
        warehouse_sink.QUARANTINE: [midnight - timedelta(days=30, seconds=1), midnight - timedelta(days=30), midnight],
    }
    con = warehouse.connect(paths.warehouse)
    warehouse_sink.ensure_tables(con)
    for table, stamps in received.items():
        con.executemany(f"INSERT INTO {table} (_transport, _position, received_at) VALUES ('file/events', ?, ?)", list(enumerate(stamps)))
    con.close()
    before = _fingerprint(paths.root)

    dry = retention.run(retention.load_policy(), AS_OF, dry_run=True, paths=paths)
    assert _fingerprint(paths.root) == before  # a dry run changes nothing
    report = retention.run(retention.load_policy(), AS_OF, paths=paths)

    expected = {"stream/records": 1, "stream/events": 1, "stream/quarantine_events": 1}
    assert {a: n for a, n in dry.counts_by_asset().items() if a.startswith("stream/")} == expected
    assert {a: n for a, n in report.counts_by_asset().items() if a.startswith("stream/")} == expected
    assert "stream/records: warehouse stream.records: 1 row(s) from before 2026-08-22" in "\n".join(dry.lines())
    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        for table, stamps in received.items():
            kept = [r for (r,) in con.execute(f"SELECT received_at FROM {table} ORDER BY 1").fetchall()]
            assert kept == stamps[1:], table
    finally:
        con.close()


def test_the_retention_job_and_its_daily_schedule(paths):
    import dagster as dg

    from ai_data_platform.definitions import defs
    from ai_data_platform.resources import build_resources

    schedule = next(s for s in defs.schedules if s.name == "retention_schedule")
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 21, 5, 30, tzinfo=timezone.utc))
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.run_config == {"ops": {"apply_retention": {"config": {"as_of": "2026-11-21"}}}}
    before = _fingerprint(paths.root)
    result = defs.resolve_job_def("retention").execute_in_process(
        run_config={"ops": {"apply_retention": {"config": {"as_of": AS_OF.isoformat(), "dry_run": True}}}},
        instance=dg.DagsterInstance.ephemeral(), resources=build_resources(paths),
    )
    assert result.success and result.output_for_node("apply_retention") > 0
    assert _fingerprint(paths.root) == before


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"raw/events": "'90'"}, '[assets."raw/events"].days must be a whole number of days >= 1, got \'90\''),
        ({"raw/events": "0"}, '[assets."raw/events"].days must be a whole number of days >= 1, got 0'),
    ],
)
def test_malformed_days_are_refused_naming_asset_and_key(tmp_path, edit, message):
    with pytest.raises(retention.RetentionConfigError) as err:
        retention.load_policy(_policy_file(tmp_path, overrides=edit))
    assert message in str(err.value)


def test_the_policy_file_is_validated_at_load(tmp_path):
    assert retention.load_policy()["identity/customer_pii"].days is None  # the shipped policy loads
    assert retention.load_policy()["raw/events"].days == 90
    path = _policy_file(tmp_path, extra='[assets."raw/evnts"]\ndays = 3\n')
    with pytest.raises(retention.RetentionConfigError, match=r'\[assets."raw/evnts"\]: unknown asset'):
        retention.load_policy(path)
    text = _policy_file(tmp_path).read_text()
    missing = text.replace('[assets."raw/events"]\ndays = 2\n', "")
    path.write_text(missing)
    with pytest.raises(retention.RetentionConfigError, match=r'\[assets."raw/events"\]: missing'):
        retention.load_policy(path)
    path.write_text(text.replace('[assets."raw/events"]\ndays = 2\n', '[assets."raw/events"]\ndays = 2\nuntil = "erasure"\n'))
    with pytest.raises(retention.RetentionConfigError, match=r'\[assets."raw/events"\]: give exactly one of'):
        retention.load_policy(path)
    path.write_text(text.replace('[assets."raw/events"]\ndays = 2\n', '[assets."raw/events"]\ndays = 2\nkeep_latest = 1\n'))
    with pytest.raises(retention.RetentionConfigError, match=r"keep_latest applies to dataset versions and models only"):
        retention.load_policy(path)
    path.write_text(text.replace('[assets."raw/events"]\ndays = 2\n', '[assets."raw/events"]\ndays = 2\nkeep = 1\n'))
    with pytest.raises(retention.RetentionConfigError, match=r"unknown key\(s\) \['keep'\]"):
        retention.load_policy(path)
    path.write_text(text.replace('[assets."raw/customers"]\nuntil = "erasure"\n', '[assets."raw/customers"]\ndays = 400\n'))
    with pytest.raises(retention.RetentionConfigError, match=r'\[assets."raw/customers"\].days: raw/customers must be until = "erasure": every customer\'s region'):
        retention.load_policy(path)
