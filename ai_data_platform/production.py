"""The production profile: Dagster's webserver and daemon as separate processes over PostgreSQL.

``adp prod`` (``make prod``) does what Dagster's multi-container deployment does on one machine:

1. picks the PostgreSQL of Dagster's instance storage (``DAGSTER_PG_URL`` or
   ``DAGSTER_PG_HOST/USER/PASSWORD/DB/PORT``, default ``DEFAULT_PG_URL``) and creates its database
   if missing;
2. writes ``$DAGSTER_HOME/dagster.yaml`` (``settings.ensure_dagster_home``: the repo's settings +
   PostgreSQL storage) and creates or migrates the storage tables once, before two processes race
   to create them;
3. starts ``dagster-webserver -w workspace.yaml`` and ``dagster-daemon run -w workspace.yaml``,
   each in its own process group (each spawns its own code server, and the daemon's code server
   spawns the run processes), and stops both groups on Ctrl-C, SIGTERM or when either exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ai_data_platform import settings

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/adp_dagster"
# How long the processes get to exit after SIGTERM before their groups are killed.
STOP_TIMEOUT_SECONDS = 20.0


def pg_url() -> str:
    """The instance storage URL: the configured one (see ``settings.dagster_pg_url``) or the default."""
    return settings.dagster_pg_url() or DEFAULT_PG_URL


def libpq_url(url: str) -> str:
    """The URL as libpq (psycopg) reads it: without SQLAlchemy's ``+driver`` suffix."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}"


def ensure_database(url: str) -> bool:
    """Create the URL's database when it does not exist (connecting to the server's ``postgres``
    maintenance database). Returns True if it was created."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(libpq_url(url))
    name = params.get("dbname")
    if not name:
        raise ValueError(f"the PostgreSQL URL names no database: {redact(url)!r}")
    maintenance = make_conninfo(libpq_url(url), dbname="postgres")
    try:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as con:
            if con.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                return False
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    except psycopg.Error as exc:
        raise RuntimeError(f"cannot prepare database {name!r} for Dagster's storage at {redact(url)}: {exc}") from None


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    return f"{scheme}://{userinfo.split(':', 1)[0]}@{host}"


def prepare_instance(url: str) -> Path:
    """Create the database, write DAGSTER_HOME's dagster.yaml for it and create or migrate the
    storage tables (``dagster instance migrate``). Returns DAGSTER_HOME."""
    if settings.dagster_pg_url() is None:
        os.environ[settings.DAGSTER_PG_URL_VAR] = url
    ensure_database(url)
    home = settings.ensure_dagster_home()
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.upgrade()
    return home


def service_commands(workspace: Path, host: str, port: int) -> dict[str, list[str]]:
    """The two long-running processes, by name, using this interpreter's Dagster entry points."""
    bin_dir = Path(sys.executable).parent
    return {
        "webserver": [str(bin_dir / "dagster-webserver"), "-w", str(workspace), "-h", host, "-p", str(port)],
        "daemon": [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
    }


def _default_signals() -> None:
    """In the child: undo an inherited 'ignore' of SIGINT/SIGTERM so stopping the group works."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_services(commands: Mapping[str, list[str]], env: Mapping[str, str], cwd: Path) -> dict[str, subprocess.Popen]:
    """Start each command as the leader of a new process group."""
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, cmd in commands.items():
            procs[name] = subprocess.Popen(
                cmd, env=dict(env), cwd=cwd, start_new_session=True, preexec_fn=_default_signals
            )
    except BaseException:
        stop_services(procs)
        raise
    return procs


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def stop_services(procs: Mapping[str, subprocess.Popen], timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM every process group, wait up to ``timeout`` for the leaders, then SIGKILL the
    groups (which also takes code servers and run processes left behind)."""
    for proc in procs.values():
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs.values():
        _signal_group(proc, signal.SIGKILL)
        proc.wait()


def wait_for_first_exit(procs: Mapping[str, subprocess.Popen], poll_seconds: float = 0.5) -> tuple[str, int]:
    """Block until one of the processes exits; returns its name and exit code."""
    while True:
        for name, proc in procs.items():
            code = proc.poll()
            if code is not None:
                return name, code
        time.sleep(poll_seconds)


class _Stop(Exception):
    """Raised in the main thread by SIGTERM/SIGINT so the ``finally`` stops the services."""


def run(host: str, port: int, say: Callable[[str], None] = print) -> int:
    """Run the webserver and the daemon until a signal or until one of them exits."""
    url = pg_url()
    say(f"Dagster instance storage: PostgreSQL {redact(url)}")
    home = prepare_instance(url)
    env = dict(os.environ, DAGSTER_HOME=str(home), ADP_DATA_DIR=str(settings.data_dir()))
    workspace = settings.PROJECT_ROOT / "workspace.yaml"

    def on_signal(signum, _frame):
        raise _Stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs = start_services(service_commands(workspace, host, port), env, settings.PROJECT_ROOT)
        say(f"webserver on http://{host}:{port} (pid {procs['webserver'].pid}), daemon (pid {procs['daemon'].pid}); "
            f"DAGSTER_HOME={home}; Ctrl-C stops both")
        name, code = wait_for_first_exit(procs)
        say(f"{name} exited with code {code}; stopping the other process")
        return code or 1
    except _Stop as stop:
        say(f"{stop}: stopping the webserver and the daemon")
        return 0
    finally:
        for sig in previous:  # a second Ctrl-C must not interrupt the shutdown
            signal.signal(sig, signal.SIG_IGN)
        stop_services(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
