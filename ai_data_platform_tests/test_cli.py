"""End to end through the command lines users use: `dagster asset materialize --partition-range`,
`dagster job backfill`, and `adp`."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from ai_data_platform import settings, warehouse
from ai_data_platform.cli import build_parser
from ai_data_platform.sources.landing import LandingZones
from ai_data_platform.sources.simulator import generate

from .conftest import END
from .waiting import bound, wait_for

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
# Bounds (seconds, times ADP_TEST_TIME_SCALE): generous, they only stop a command that hangs.
COMMAND_SECONDS = 1800  # a command that materializes (minutes on a busy machine)
QUICK_COMMAND_SECONDS = 300  # a command that answers from its arguments


def _env(data_dir):
    home = settings.ensure_dagster_home(settings.Paths(data_dir))
    return dict(os.environ, ADP_DATA_DIR=str(data_dir), DAGSTER_HOME=str(home)), home


def test_partition_range_backfill_over_three_days(data_dir):
    generate(LandingZones.from_settings(settings.Paths(data_dir)), customers=200, days=3, end=END, seed=3)
    env, home = _env(data_dir)
    start = (END - timedelta(days=2)).isoformat()
    proc = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "ai_data_platform.definitions",
         "--select", "not group:ml and not group:streaming", "--partition-range", f"{start}...{END.isoformat()}"],
        env=env, capture_output=True, text=True, timeout=bound(COMMAND_SECONDS),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert runs[0].tags["dagster/asset_partition_range_start"] == start
        records = instance.fetch_materializations(dg.AssetKey(["features", "customer_daily"]), limit=10).records
        assert sorted(r.partition_key for r in records) == [start, (END - timedelta(days=1)).isoformat(), END.isoformat()]
    con = warehouse.connect(data_dir / "warehouse.duckdb", read_only=True)
    try:
        days = [r[0].isoformat() for r in con.execute("SELECT DISTINCT _partition_date FROM features.customer_daily ORDER BY 1").fetchall()]
    finally:
        con.close()
    assert days == [start, (END - timedelta(days=1)).isoformat(), END.isoformat()]


def test_job_backfill_queues_the_nightly_job_for_the_daemon(data_dir):
    env, home = _env(data_dir)
    days = [(END - timedelta(days=i)).isoformat() for i in (2, 1, 0)]
    proc = subprocess.run(
        [str(BIN / "dagster"), "job", "backfill", "-w", str(settings.PROJECT_ROOT / "workspace.yaml"), "-j", "nightly",
         "--partitions", ",".join(days), "--noprompt"],
        env=env, capture_output=True, text=True, timeout=bound(COMMAND_SECONDS),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        # one run per partition, queued for the daemon (QueuedRunCoordinator), none executed here
        assert sorted(r.tags["dagster/partition"] for r in runs) == days
        assert {r.status for r in runs} == {dg.DagsterRunStatus.QUEUED}
        assert {r.job_name for r in runs} == {"nightly"}
        assert len({r.tags["dagster/backfill"] for r in runs}) == 1
        # queued against the workspace's code location, the one the daemon loads and dequeues from
        assert {r.remote_job_origin.location_name for r in runs} == {"ai_data_platform"}


def _subcommand_paths(parser, prefix=()):
    """Every (sub)command path of the parser: ("generate",), ("stream", "produce"), ..."""
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            yield (*prefix, name)
            yield from _subcommand_paths(sub, (*prefix, name))


def test_every_adp_subcommand_has_help(capsys):
    paths = list(_subcommand_paths(build_parser()))
    names = {p[0] for p in paths}
    assert {"generate", "materialize", "demo", "summary", "env", "ui", "stream", "serve", "erase", "retention",
            "query", "lineage", "audit", "datasets", "features"} <= names
    for path in paths:  # in process: argparse prints the help and exits 0
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([*path, "--help"])
        assert exit_.value.code == 0 and f"usage: adp {' '.join(path)}" in capsys.readouterr().out, path
    # and the installed console script answers
    proc = subprocess.run([str(BIN / "adp"), "--help"], capture_output=True, text=True,
                          timeout=bound(QUICK_COMMAND_SECONDS))
    assert proc.returncode == 0 and "usage: adp" in proc.stdout


def test_generate_rejects_bad_arguments_clearly():
    proc = subprocess.run([str(BIN / "adp"), "generate", "--customers", "10", "--days", "2", "--seed", "1", "--end", "2026-13-01"],
                          capture_output=True, text=True, timeout=bound(QUICK_COMMAND_SECONDS))
    assert proc.returncode == 2 and "expected a date YYYY-MM-DD" in proc.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_adp_ui_serves_the_instance_and_stops_its_whole_process_group(data_dir):
    import json
    import signal
    import urllib.request

    port = _free_port()
    env = dict(os.environ, ADP_DATA_DIR=str(data_dir))
    proc = subprocess.Popen([str(BIN / "adp"), "ui", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    query = json.dumps({"query": "{ assetNodes { assetKey { path } groupName } }"}).encode()
    def asset_nodes():
        assert proc.poll() is None, f"adp ui exited with {proc.returncode}"
        req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query, headers={"content-type": "application/json"})
        try:
            return json.load(urllib.request.urlopen(req, timeout=bound(QUICK_COMMAND_SECONDS)))["data"]["assetNodes"]
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"

    try:
        nodes = wait_for(asset_nodes, "the UI to answer GraphQL", until=lambda n: isinstance(n, list), timeout=600)
        groups = {n["groupName"] for n in nodes}
        assert groups == {"crm", "billing", "behavioral", "marts", "features", "ml", "governance", "streaming"}
        assert ["features", "customer_daily"] in [n["assetKey"]["path"] for n in nodes]
        assert (data_dir / "dagster_home" / "dagster.yaml").exists()
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=bound(QUICK_COMMAND_SECONDS))
    # every process of `dagster dev` (webserver, daemon, code server) is gone
    wait_for(lambda: subprocess.run(["pgrep", "-f", f"-p {port}|--port {port}"], capture_output=True, text=True).stdout.split(),
             "every process of `adp ui` to exit", until=lambda left: not left)


def test_adp_demo_materializes_everything_and_prints_the_summary(data_dir):
    env = dict(os.environ, ADP_DATA_DIR=str(data_dir))
    env.pop("ADP_PARTITION_START", None)  # partitions start at the generated data's first day
    proc = subprocess.run(
        [str(BIN / "adp"), "demo", "--customers", "300", "--days", "4", "--end", END.isoformat()],
        env=env, capture_output=True, text=True, timeout=bound(COMMAND_SECONDS),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert ": SUCCESS" in out
    # the generated files are listed by landing zone: CRM exports in each region's, the rest shared
    assert f"EU     {data_dir / 'regions' / 'EU' / 'landing'}: 8 files" in out and "(customers, support_tickets)" in out
    assert f"shared {data_dir / 'landing'}: 20 files" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("raw/", "staging/", "features/", "marts/"))}
    assert len(lines) == 19  # 7 raw (2 of them with a regional personal table), 7 staging, 2 features, 1 mart
    for key, cols in lines.items():
        assert cols[1] == "4", (key, cols)  # every asset: all 4 partitions
        assert cols[4] == "0", (key, cols)  # no failed check
    assert int(lines["staging/events"][5]) > 0  # quarantined rows reported
    # four days are too few to close a label window: the models are skipped, saying what they need
    assert "model churn: skipped: needs 31 days of history, 4 loaded" in out
    assert "model fraud: skipped: needs 90 days of history, 4 loaded" in out
    online = next(line.split() for line in out.splitlines() if line.startswith("online/customer_features"))
    assert online[3:5] == ["1", "0"]  # bootstrapped, and its online/offline skew check passed
    home = data_dir / "dagster_home"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert sorted(r.job_name for r in runs) == ["nightly", "online_bootstrap"]
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    # a second demo reuses the landing data instead of regenerating it
    again = subprocess.run([str(BIN / "adp"), "demo", "--customers", "300", "--days", "4", "--end", END.isoformat()],
                           env=env, capture_output=True, text=True, timeout=bound(COMMAND_SECONDS))
    assert again.returncode == 0 and "already present" in again.stdout
