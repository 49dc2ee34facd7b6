"""The production profile end to end: `adp prod` (dagster-webserver + dagster-daemon as separate
process groups, Dagster's storage in a fresh PostgreSQL database) runs the nightly job, multi-run
backfills, a load burst with sensor runs, and survives a run process killed mid-write.

One `adp prod` serves every test of this module (module fixture); each test launches its runs the
way users do (GraphQL on the webserver, `dagster job backfill`) and waits for the daemon.
"""

import errno
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
import requests

from ai_data_platform import settings
from ai_data_platform.sources.assets import WAREHOUSE_POOL
from ai_data_platform_tests.services import POSTGRES, require_service
from ai_data_platform_tests.waiting import bound, wait_for

BIN = Path(sys.executable).parent
END = date(2026, 11, 20)
DAYS = [END - timedelta(days=45 - i) for i in range(46)]  # 2026-10-06 .. 2026-11-20
LOADED = DAYS[:6]  # materialized by one nightly run (single-run range) before the tests
# The nightly job's assets have BackfillPolicy.single_run(): a job backfill launches one run per
# contiguous range of days, so days one apart give one run per partition.
BACKFILLED = DAYS[0:10:2]  # a 5-partition multi-run backfill
LATE = DAYS[1:3]  # re-exported late: the sensor burst
LOAD = DAYS[6:46:2]  # 20 partitions, one run each, during the sensor burst
LOAD_TABLES = ("customers", "payments", "events")  # one source per landing format: CSV, Parquet, JSON lines
FAULT_DAY = DAYS[4]
LOCATION = "ai_data_platform"
REPOSITORY = "__repository__"
RAW_TABLES = ("customers", "support_tickets", "subscriptions", "invoices", "payments", "chargebacks", "events")
# Bounds (seconds, times ADP_TEST_TIME_SCALE) of the waits on the profile. An idle 2-core machine
# needs a fraction of each, a busy one several times more; they only end a wait that is stuck.
EVENT_SECONDS = 600  # one awaited event: the profile up, a run started, a sensor's request, an exit
RUNS_STALLED_SECONDS = 300  # runs being waited on whose statuses have not changed for this long are stuck
RUNS_SECONDS = 1800  # the most a series of runs may take while their statuses keep changing
REQUEST_SECONDS = 300  # one HTTP request to the webserver
FINISHED = {s.value for s in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)}


def _iso(days) -> list[str]:
    return [d.isoformat() for d in days]


# ---------------------------------------------------------------- the storage switch (no services)

PG_VARS = [settings.DAGSTER_PG_URL_VAR, *(var for _, var in settings.DAGSTER_PG_PARTS)]


@pytest.fixture()
def no_pg(monkeypatch):
    for var in PG_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def _instance_yaml(data_dir: Path) -> dict:
    import yaml

    home = settings.ensure_dagster_home(settings.Paths(data_dir))
    return yaml.safe_load((home / "dagster.yaml").read_text())


def test_dagster_yaml_keeps_sqlite_by_default_and_switches_to_postgres_from_the_environment(data_dir, no_pg):
    config = _instance_yaml(data_dir)
    assert "storage" not in config
    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        assert type(instance.run_storage).__name__ == "SqliteRunStorage"
    # the project's settings survive the switch; the password never reaches the file
    no_pg.setenv("DAGSTER_PG_URL", "postgresql://dagster:s3cret@db.internal:5432/adp_dagster")
    config = _instance_yaml(data_dir)
    assert config["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    # Dagster's storage needs psycopg2 (SQLAlchemy 2.1 would pick psycopg 3 for postgresql://)
    assert os.environ["DAGSTER_PG_URL"] == "postgresql+psycopg2://dagster:s3cret@db.internal:5432/adp_dagster"
    assert "s3cret" not in (data_dir / "dagster_home" / "dagster.yaml").read_text()
    assert config["telemetry"] == {"enabled": False} and config["concurrency"]["pools"]["default_limit"] == 1
    assert config["run_retries"]["enabled"] and config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    # the same from DAGSTER_PG_HOST/USER/PASSWORD/DB, as the Helm chart and most secret stores provide
    no_pg.delenv("DAGSTER_PG_URL")
    for var, value in {"DAGSTER_PG_HOST": "db.internal", "DAGSTER_PG_USER": "dagster",
                       "DAGSTER_PG_PASSWORD": "p@ss:word", "DAGSTER_PG_DB": "adp_dagster"}.items():
        no_pg.setenv(var, value)
    assert _instance_yaml(data_dir)["storage"]["postgres"]["postgres_db"] == {
        "hostname": {"env": "DAGSTER_PG_HOST"}, "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"}, "db_name": {"env": "DAGSTER_PG_DB"},
        "scheme": "postgresql+psycopg2",
    }
    assert settings.dagster_pg_url() == "postgresql+psycopg2://dagster:p%40ss%3Aword@db.internal:5432/adp_dagster"
    # and back: with nothing set, SQLite again
    for var in PG_VARS:
        no_pg.delenv(var, raising=False)
    assert "storage" not in _instance_yaml(data_dir)


def test_incomplete_postgres_settings_are_refused_naming_what_is_wrong(data_dir, no_pg):
    no_pg.setenv("DAGSTER_PG_HOST", "db.internal")
    with pytest.raises(ValueError, match="DAGSTER_PG_USER, DAGSTER_PG_DB missing"):
        settings.ensure_dagster_home(settings.Paths(data_dir))
    no_pg.setenv("DAGSTER_PG_USER", "dagster")
    no_pg.setenv("DAGSTER_PG_DB", "adp")
    no_pg.setenv("DAGSTER_PG_PORT", "54x2")
    with pytest.raises(ValueError, match="DAGSTER_PG_PORT must be a TCP port number, got '54x2'"):
        settings.dagster_pg_url()
    no_pg.setenv("DAGSTER_PG_URL", "mysql://db.internal/adp")
    with pytest.raises(ValueError, match=r"DAGSTER_PG_URL must be a postgresql:// \(or postgresql\+psycopg2://\) URL"):
        settings.dagster_pg_url()


# ---------------------------------------------------------------- the running profile


@dataclass
class Prod:
    root: Path
    home: Path
    pg_url: str
    port: int
    env: dict
    proc: subprocess.Popen
    manifest: dict
    instance: dg.DagsterInstance | None = None  # this process's view of the instance (PostgreSQL)

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    def sql(self, query: str, params=()) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.pg_url) as con:
            return con.execute(query, params).fetchall()

    def graphql(self, query: str, variables: dict) -> dict:
        response = requests.post(
            f"http://127.0.0.1:{self.port}/graphql", json={"query": query, "variables": variables},
            timeout=bound(REQUEST_SECONDS),
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_with(marker: str) -> list[int]:
    """Pids of this user's processes whose environment mentions ``marker`` (our data dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


DAEMONS = {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR", "BACKFILL", "MONITORING", "EVENT_LOG_CONSUMER"}


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    require_service(*POSTGRES)
    import psycopg

    from ai_data_platform.sources.landing import LandingZones
    from ai_data_platform.sources.simulator import generate

    root = tmp_path_factory.mktemp("prod")
    manifest = generate(LandingZones.from_settings(settings.Paths(root)), customers=200, days=len(DAYS), end=END, seed=11)
    database = f"adp_test_{uuid.uuid4().hex[:12]}"
    pg_url = f"postgresql://postgres@127.0.0.1:5432/{database}"
    port = _free_port()
    env = dict(os.environ, ADP_DATA_DIR=str(root), DAGSTER_PG_URL=pg_url, DAGSTER_HOME=str(root / "dagster_home"),
               # the sensor burst must land while the 20-run backfill is still executing
               ADP_LATE_SENSOR_INTERVAL_SECONDS="5")
    dagster_url = pg_url.replace("postgresql://", "postgresql+psycopg2://")  # what `dagster` CLI users export
    env.pop("CRM_DATABASE_URL", None)  # every source from the landing files
    log = (root / "adp_prod.log").open("w")
    proc = subprocess.Popen(
        [str(BIN / "adp"), "prod", "--port", str(port)],
        env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    p = Prod(root, root / "dagster_home", pg_url, port, {**env, "DAGSTER_PG_URL": dagster_url}, proc, manifest)
    patch = pytest.MonkeyPatch()
    patch.setenv("DAGSTER_PG_URL", dagster_url)  # this process reads the instance too (runs, events)
    try:
        def state() -> str:
            assert proc.poll() is None, (root / "adp_prod.log").read_text()[-3000:]
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/server_info", timeout=bound(REQUEST_SECONDS))
            except requests.RequestException as exc:
                return f"webserver: {type(exc).__name__}"
            if answer.status_code != 200:
                return f"webserver: HTTP {answer.status_code}"
            try:
                beating = {r[0] for r in p.sql("SELECT daemon_type FROM daemon_heartbeats")}
            except (psycopg.OperationalError, psycopg.errors.UndefinedTable) as exc:
                return f"daemon heartbeats: {type(exc).__name__}"
            return f"no heartbeat yet from {sorted(DAEMONS - beating)}" if DAEMONS - beating else "up"

        wait_for(state, "the webserver to answer and every daemon to heartbeat into PostgreSQL",
                 until=lambda s: s == "up", timeout=EVENT_SECONDS)
        p.instance = dg.DagsterInstance.from_config(str(p.home))
        _materialize_first_days(p)
        yield p
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=bound(EVENT_SECONDS))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for pid in _processes_with(str(root)):  # only if `adp prod` failed to stop its children
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        if p.instance is not None:
            p.instance.dispose()
        patch.undo()
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# ---------------------------------------------------------------- launching and waiting


def _launch_run(p: Prod, tags: dict, assets: list[list[str]] | None = None) -> str:
    """Launch one run of the nightly job (or of its ``assets``) through the webserver's GraphQL,
    as the UI does."""
    selection = {"assetSelection": [{"path": k} for k in assets]} if assets else {}
    data = p.graphql(
        """
        mutation($params: ExecutionParams!) {
          launchRun(executionParams: $params) {
            __typename
            ... on LaunchRunSuccess { run { runId } }
            ... on Error { message }
          }
        }""",
        {
            "params": {
                "selector": {
                    "repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": "nightly", **selection,
                },
                "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
            }
        },
    )["launchRun"]
    assert data["__typename"] == "LaunchRunSuccess", data
    return data["run"]["runId"]


def _launch_backfill(p: Prod, partitions: list[str], asset_selection: list[list[str]], priority: int = 0) -> str:
    """A multi-run backfill of the nightly job (one run per partition), as the UI launches it."""
    data = p.graphql(
        """
        mutation($params: LaunchBackfillParams!) {
          launchPartitionBackfill(backfillParams: $params) {
            __typename
            ... on LaunchBackfillSuccess { backfillId }
            ... on Error { message }
          }
        }""",
        {
            "params": {
                "selector": {
                    "partitionSetName": "nightly_partition_set",
                    "repositorySelector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY},
                },
                "partitionNames": partitions,
                "assetSelection": [{"path": k} for k in asset_selection],
                "tags": [{"key": "dagster/priority", "value": str(priority)}],
            }
        },
    )["launchPartitionBackfill"]
    assert data["__typename"] == "LaunchBackfillSuccess", data
    return data["backfillId"]


def _partition(run) -> str:
    """The one partition a run materialized: a partition tag, or a range of one day (backfill)."""
    tags = run.tags
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start, end = tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]
    assert start == end, f"run {run.run_id} spans {start}..{end}"
    return start


def _runs(p: Prod, **tags):
    return p.instance.get_runs(filters=dg.RunsFilter(tags=tags))


def _wait_for_runs(p: Prod, expected: int, **tags):
    """The runs carrying ``tags`` once ``expected`` of them exist and all have finished. The wait
    lasts while their statuses keep changing: a busy machine runs them slowly, not wrongly."""

    def statuses() -> dict[str, str]:
        return {r.run_id[:8]: r.status.value for r in _runs(p, **tags)}

    wait_for(statuses, f"{expected} finished runs tagged {tags}",
             until=lambda s: len(s) >= expected and set(s.values()) <= FINISHED,
             timeout=RUNS_SECONDS, stalled_after=RUNS_STALLED_SECONDS)
    return _runs(p, **tags)


def _lock_conflicts(p: Prod, run_ids: list[str]) -> list[str]:
    """Events of these runs (read from PostgreSQL's event log) mentioning a DuckDB lock conflict."""
    rows = p.sql(
        "SELECT event FROM event_logs WHERE run_id = ANY(%s) AND (event ILIKE '%%lock on file%%' "
        "OR event ILIKE '%%conflicting lock%%')",
        (run_ids,),
    )
    return [r[0][:500] for r in rows]


def _materialize_first_days(p: Prod) -> None:
    """The first nightly run: one run over LOADED (single-run range), through the daemon."""
    run_id = _launch_run(
        p, {"dagster/asset_partition_range_start": LOADED[0].isoformat(),
            "dagster/asset_partition_range_end": LOADED[-1].isoformat(), "adp/test": "first"},
    )
    (run,) = _wait_for_runs(p, 1, **{"adp/test": "first"})
    assert run.run_id == run_id and run.is_success, _failures(p, [run])


def _failures(p: Prod, runs) -> str:
    """What went wrong in the runs that did not succeed, from their event logs."""
    lines = []
    for run in runs:
        if run.is_success:
            continue
        for event in p.instance.all_logs(run.run_id):
            if event.is_dagster_event and event.dagster_event.event_type_value in ("STEP_FAILURE", "RUN_FAILURE", "ENGINE_EVENT"):
                lines.append(f"{run.run_id[:8]} {run.status.value}: {(event.message or '')[:400]}")
    return "\n".join(lines)[-6000:]


# ---------------------------------------------------------------- warehouse reads


def _counts(p: Prod, table: str, days) -> dict[str, int]:
    from ai_data_platform import warehouse

    con = warehouse.connect(p.warehouse, read_only=True)
    try:
        counts = warehouse.partition_counts(con, table, min(days), max(days))
        return {str(d): n for d, n in counts.items() if d in days}
    finally:
        con.close()


def _rows(p: Prod, table: str, day: date, exclude: str = "") -> list[tuple]:
    from ai_data_platform import warehouse

    con = warehouse.connect(p.warehouse, read_only=True)
    try:
        cols = f"* EXCLUDE ({exclude})" if exclude else "*"
        return con.execute(f"SELECT {cols} FROM {table} WHERE _partition_date = ? ORDER BY ALL", [day]).fetchall()
    finally:
        con.close()


def _landed_rows(p: Prod, table: str, days) -> dict[str, int]:
    """{day: rows landed}, over the day's files (one per region for the CRM's tables)."""
    out: dict[str, int] = {}
    for f in p.manifest["files"].values():
        if f["table"] == table and date.fromisoformat(f["date"]) in days:
            out[f["date"]] = out.get(f["date"], 0) + f["rows"]
    return out


# ---------------------------------------------------------------- tests


@pytest.mark.slow
def test_nightly_run_and_multi_run_backfill_complete_through_the_daemon_with_state_in_postgres(prod):
    # the fixture's nightly run (every batch asset over LOADED, one run) succeeded; now a
    # 5-partition backfill of the nightly job's raw loads, one run per partition
    backfill_id = _launch_backfill(prod, _iso(BACKFILLED), [["raw", t] for t in LOAD_TABLES])
    runs = _wait_for_runs(prod, len(BACKFILLED), **{"dagster/backfill": backfill_id})

    assert sorted(_partition(r) for r in runs) == _iso(BACKFILLED)  # one run per partition
    assert all(r.is_success for r in runs), _failures(prod, runs)
    # the runs and their events are in PostgreSQL, and Dagster made no SQLite storage
    first = _runs(prod, **{"adp/test": "first"})
    run_ids = [r.run_id for r in [*first, *runs]]
    stored = dict(prod.sql("SELECT run_id, status FROM runs WHERE run_id = ANY(%s)", (run_ids,)))
    assert stored == {rid: "SUCCESS" for rid in run_ids}
    materialized = prod.sql(
        "SELECT run_id, partition, count(*) FROM event_logs WHERE run_id = ANY(%s) AND dagster_event_type = "
        "'ASSET_MATERIALIZATION' AND asset_key = %s GROUP BY 1, 2",
        (run_ids, '["raw", "events"]'),
    )
    assert sorted((p, n) for rid, p, n in materialized if rid != first[0].run_id) == [(d, 1) for d in _iso(BACKFILLED)]
    assert sorted(p for rid, p, n in materialized if rid == first[0].run_id) == _iso(LOADED)
    assert not list(prod.home.rglob("*.db"))
    # separate, concurrent runs wrote (or replaced) each partition exactly once
    for t in LOAD_TABLES:
        assert _counts(prod, f"raw.{t}", BACKFILLED) == {d: n for d, n in _landed_rows(prod, t, BACKFILLED).items() if n}


@pytest.mark.slow
def test_twenty_partition_backfill_and_a_sensor_burst_at_once_all_succeed_without_lock_failures(prod):
    staged_before = {t: _counts(prod, f"staging.{t}", LATE) for t in RAW_TABLES}
    events = prod.instance.event_log_storage
    # Hold the warehouse pool at zero slots until both bursts exist, so the sensor's runs are
    # requested while backfill runs are in progress (not after the backfill happened to finish):
    # runs still start meanwhile (op_granularity_run_buffer) and wait inside for a slot.
    events.set_concurrency_slots(WAREHOUSE_POOL, 0)
    try:
        # 20 partitions, one run each (raw loads of the nightly job), at a lower priority so sensor
        # runs overtake their queued runs
        backfill_id = _launch_backfill(prod, _iso(LOAD), [["raw", t] for t in LOAD_TABLES], priority=-1)
        wait_for(lambda: sorted(r.status.value for r in _runs(prod, **{"dagster/backfill": backfill_id})),
                 "a backfill run to start", until=lambda s: "STARTED" in s, timeout=EVENT_SECONDS)
        # late re-exports of two loaded days: at its next tick (within 5 s here,
        # ADP_LATE_SENSOR_INTERVAL_SECONDS) the late-landing sensor requests a nightly run for each
        now = time.time()
        for path in (prod.root / "landing").rglob("*"):
            if path.is_file() and path.stem in _iso(LATE):
                os.utime(path, (now, now))
        sensor = {"adp/trigger": "late_landing_sensor"}
        wait_for(lambda: len(_runs(prod, **sensor)), "the late-landing sensor to request its runs",
                 until=lambda n: n >= len(LATE), timeout=EVENT_SECONDS)
    finally:
        events.set_concurrency_slots(WAREHOUSE_POOL, 1)

    sensor_runs = _wait_for_runs(prod, len(LATE), **sensor)
    backfill_runs = _wait_for_runs(prod, len(LOAD), **{"dagster/backfill": backfill_id})

    assert sorted(_partition(r) for r in sensor_runs) == _iso(LATE)
    assert sorted(_partition(r) for r in backfill_runs) == _iso(LOAD)
    every = [*sensor_runs, *backfill_runs]
    assert all(r.is_success for r in every), _failures(prod, every)
    # the sensor requested its runs while backfill runs were in progress
    records = {rec.dagster_run.run_id: rec for rec in prod.instance.get_run_records(filters=dg.RunsFilter(run_ids=[r.run_id for r in every]))}
    assert any(
        records[b.run_id].start_time < records[s.run_id].create_timestamp.timestamp() < records[b.run_id].end_time
        for s in sensor_runs for b in backfill_runs
    ), "no sensor run was requested while a backfill run was in progress"
    assert _lock_conflicts(prod, [r.run_id for r in every]) == []
    # nothing written twice: each raw partition holds exactly its file's records, the re-run days
    # hold what one run wrote, and each partition was materialized once by the backfill
    for t in LOAD_TABLES:
        assert _counts(prod, f"raw.{t}", LOAD) == {d: n for d, n in _landed_rows(prod, t, LOAD).items() if n}
    for t in RAW_TABLES:
        assert _counts(prod, f"staging.{t}", LATE) == staged_before[t]
    per_partition = prod.sql(
        "SELECT asset_key, partition, count(*) FROM event_logs WHERE run_id = ANY(%s) AND "
        "dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY 1, 2",
        ([r.run_id for r in backfill_runs],),
    )
    assert len(per_partition) == len(LOAD_TABLES) * len(LOAD) and {n for *_, n in per_partition} == {1}


@pytest.mark.slow
def test_a_run_killed_mid_write_leaves_the_partition_untouched_is_marked_failed_and_retried(prod):
    path = prod.root / "landing" / "behavioral" / "events" / f"{FAULT_DAY.isoformat()}.jsonl"
    original, mtime = path.read_bytes(), path.stat().st_mtime
    before = _rows(prod, "raw.events", FAULT_DAY)
    before_values = _rows(prod, "raw.events", FAULT_DAY, exclude="_loaded_at")
    assert before
    # The day's events file becomes a FIFO: raw/events deletes the partition inside its
    # transaction, then blocks reading the file; that is where the run process is killed.
    path.unlink()
    os.mkfifo(path)
    os.utime(path, (mtime, mtime))  # not a late re-export: the sensor must not react
    writer = None
    try:
        run_id = _launch_run(prod, {"dagster/partition": FAULT_DAY.isoformat(), "adp/test": "fault"}, [["raw", "events"]])

        def reader_inside_transaction():
            try:
                return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # nobody has opened it for reading yet
                    return None
                raise

        writer = wait_for(reader_inside_transaction, "raw/events to open the landing file",
                          until=lambda fd: fd is not None, timeout=EVENT_SECONDS, max_interval=0.2)
        started = [e for e in prod.instance.all_logs(run_id) if "Started process for run" in (e.message or "")]
        pid = int(started[0].message.split("pid: ")[1].rstrip(")."))
        os.kill(pid, signal.SIGKILL)
    finally:
        if writer is not None:
            os.close(writer)
        if stat.S_ISFIFO(os.stat(path).st_mode):
            path.unlink()
            path.write_bytes(original)
            os.utime(path, (mtime, mtime))

    # The open transaction died with the process: the partition is exactly as it was.
    assert _rows(prod, "raw.events", FAULT_DAY) == before

    status = wait_for(lambda: prod.instance.get_run_by_id(run_id).status.value, "the killed run to be marked finished",
                      until=lambda s: s in FINISHED, timeout=EVENT_SECONDS)
    assert status == "FAILURE"
    messages = " ".join(e.message or "" for e in prod.instance.all_logs(run_id))
    assert "SIGKILL" in messages, messages[-2000:]
    # run retries relaunch it (from the failed step) once run monitoring freed its pool slot
    (retry,) = _wait_for_runs(prod, 1, **{"dagster/parent_run_id": run_id})
    assert retry.is_success and retry.tags.get("dagster/retry_number") == "1", _failures(prod, [retry])
    assert _rows(prod, "raw.events", FAULT_DAY, exclude="_loaded_at") == before_values


@pytest.mark.slow
def test_adp_prod_stops_the_webserver_and_daemon_process_groups_on_sigterm(prod):
    assert len(_processes_with(str(prod.root))) >= 5  # adp, webserver, daemon and their code servers
    os.killpg(prod.proc.pid, signal.SIGTERM)
    assert prod.proc.wait(timeout=bound(EVENT_SECONDS)) == 0
    wait_for(lambda: _processes_with(str(prod.root)), "every process of the profile to exit",
             until=lambda pids: not pids, timeout=EVENT_SECONDS)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{prod.port}/server_info", timeout=bound(REQUEST_SECONDS))
