"""``adp``: the platform's own command line. Every subcommand has ``--help``.

Bad input (an argument, an environment variable, a config file, damaged state) is judged before
any work starts and reported as one line on stderr, ``adp <command>: <message>``, with exit code 2;
see ``cli_args`` for the parser and the argument types.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
import traceback
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from ai_data_platform import settings
from ai_data_platform.cli_args import Parser, day, host, number, one_line, port, seed, whole
from ai_data_platform.errors import EXIT_BAD_INPUT, InputError, shown
from ai_data_platform.sources.simulator import MAX_DAYS
from ai_data_platform.sources.simulator_ids import MAX_CUSTOMERS

EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130
DEBUG_VAR = "ADP_DEBUG"
customers = whole(1, MAX_CUSTOMERS)
history_days = whole(1, MAX_DAYS)
dirty_rate = number(0, 1, high_open=True)
_rate = number(0, 1)


def _corruption(value: str) -> tuple[str, date, float]:
    table, sep, rest = value.partition(":")
    when, sep2, rate = rest.partition(":")
    if not (sep and sep2 and table):
        raise argparse.ArgumentTypeError(f"expected TABLE:YYYY-MM-DD:RATE with RATE in [0, 1], got {shown(value)}")
    return table, day(when), _rate(rate)


def _yesterday() -> date:
    return datetime.now(timezone.utc).date() - timedelta(days=1)


# ---------------------------------------------------------------- generate


def cmd_generate(args: argparse.Namespace) -> int:
    from ai_data_platform.sources.landing import LandingZones
    from ai_data_platform.sources.simulator import check_arguments, generate

    end = args.end or _yesterday()
    corrupt = tuple(args.corrupt or ())
    check_arguments(args.customers, args.days, end, args.dirty_rate, corrupt)
    if args.crm_database_url:
        settings.judge_postgres_url(args.crm_database_url, "--crm-database-url")
    crm_database_url = args.crm_database_url or settings.crm_database_url()
    zones = LandingZones.from_settings()
    started = time.perf_counter()
    manifest = generate(
        zones, customers=args.customers, days=args.days, end=end, seed=args.seed, dirty_rate=args.dirty_rate,
        corrupt=corrupt,
    )
    elapsed = time.perf_counter() - started
    print(f"generated {len(manifest['files'])} files for {manifest['start']}..{manifest['end']} in {elapsed:.1f}s")
    for table, totals in sorted(manifest["totals"].items()):
        dirt = ", ".join(f"{k}={v}" for k, v in sorted(totals["dirt"].items()) if v)
        print(f"  {table:16} {totals['rows']:>10} rows   injected: {dirt or 'none'}")
    print("landing zones (tables holding personal data land in their subjects' region):")
    for region, root in [("shared", zones.shared), *zones.regional.items()]:
        entries = [e for e in manifest["files"].values() if (e["region"] or "shared") == region]
        tables = sorted({e["table"] for e in entries})
        print(f"  {region:6} {root}: {len(entries)} files, {sum(e['rows'] for e in entries)} rows ({', '.join(tables)})")
    if crm_database_url:
        try:
            _seed_crm_database(crm_database_url, zones, manifest)
        except (ValueError, ConnectionError, LookupError) as exc:
            raise InputError(f"cannot seed the CRM database: {exc}") from exc
    return 0


def _seed_crm_database(database_url: str, zones, manifest: dict) -> None:
    """Write the generated CRM customer versions to the CRM database (``customers`` table)."""
    from ai_data_platform.sources import crm_database

    start, end = date.fromisoformat(manifest["start"]), date.fromisoformat(manifest["end"])
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    report = crm_database.seed(database_url, zones, days)
    skipped = ", ".join(f"{k}={v}" for k, v in sorted(report.skipped.items()) if v)
    print(f"seeded {report.versions} customer versions into {report.source} (left out of the database: {skipped or 'none'})")


# ---------------------------------------------------------------- materialize / summary


def _landing_manifest() -> dict | None:
    """``landing/manifest.json`` as ``adp generate`` wrote it (None when there is none); an
    InputError naming the file when it is unreadable or damaged: it is never overwritten unread."""
    path = settings.paths().landing_manifest
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
        for key in ("start", "end"):
            date.fromisoformat(manifest[key])  # a damaged manifest fails here
        if not isinstance(manifest.get("args", {}), dict):
            raise TypeError
    except OSError as exc:
        raise InputError(f"landing manifest {path} cannot be read: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InputError(
            f"landing manifest {path} is damaged (not the JSON object with start and end days that `adp generate` "
            "writes): run `adp generate` again, or remove it"
        ) from None
    return manifest


def _manifest_window() -> tuple[date, date] | None:
    manifest = _landing_manifest()
    if manifest is None:
        return None
    return date.fromisoformat(manifest["start"]), date.fromisoformat(manifest["end"])


def _materialize_window(args: argparse.Namespace) -> tuple[date, date]:
    """The days ``adp materialize`` runs: ``--partition``, else ``--start``/``--end`` (each
    defaulting to the landed window), judged against the daily partitions."""
    if args.partition and (args.start or args.end):
        raise InputError(f"--partition {args.partition} cannot be combined with --start or --end")
    if args.partition:
        start = end = args.partition
    else:
        window = _manifest_window()
        start = args.start or (window[0] if window else None)
        end = args.end or (window[1] if window else None)
    if start is None or end is None:
        raise InputError("no landing data found: run `adp generate` first or pass --start/--end")
    if start > end:
        raise InputError(f"--start {start} is after --end {end} (each defaults to the landed window)")
    from ai_data_platform.partitions import daily_partitions

    first, last = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    if first is None or last is None:
        raise InputError(f"no daily partition has closed yet (they start at {daily_partitions.start.date()})")
    if start < date.fromisoformat(first):
        raise InputError(f"{start} is before the first daily partition {first} ({settings.PARTITION_START_VAR} or "
                         "the first generated day)")
    if end > date.fromisoformat(last):
        raise InputError(f"{end} is after the last daily partition {last} (the last complete day, UTC)")
    return start, end


def cmd_materialize(args: argparse.Namespace) -> int:
    from ai_data_platform import runner

    selection = runner.asset_selection(args.select) if args.select is not None else None
    start, end = _materialize_window(args)
    instance = runner.prepare_instance()
    print(f"materializing {start}..{end} through Dagster (run stored in {instance.root_directory})")
    result = runner.materialize_range(instance, start, end, selection=selection, allow_shrink=args.allow_shrink)
    alerts = runner.run_alert_sensor(instance)
    records, events = runner.run_audit_sensor(instance)
    print(runner.format_summary(runner.summarize(instance), alerts))
    print(f"audit trail: {records} record(s) appended; lineage: {events} OpenLineage event(s) (see `adp audit show`)")
    print(f"run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
    for line in runner.failure_messages(result):
        print(f"  failed step {line}", file=sys.stderr)
    return 0 if result.success else 1


def cmd_summary(args: argparse.Namespace) -> int:
    from ai_data_platform import runner

    instance = runner.prepare_instance()
    print(runner.format_summary(runner.summarize(instance)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ai_data_platform import runner
    from ai_data_platform.sources.simulator import GENERATOR_VERSION, check_arguments

    end = args.end or _yesterday()
    check_arguments(args.customers, args.days, end, args.dirty_rate)
    wanted = {"customers": args.customers, "days": args.days, "end": end.isoformat(), "seed": args.seed}
    manifest = _landing_manifest() or {}
    current = manifest.get("args", {})
    started = time.perf_counter()
    stale = manifest.get("generator_version") != GENERATOR_VERSION
    if stale or any(current.get(k) != v for k, v in wanted.items()) or current.get("corrupt"):
        cmd_generate(argparse.Namespace(customers=args.customers, days=args.days, end=end, seed=args.seed, dirty_rate=args.dirty_rate, corrupt=(), crm_database_url=None))
    else:
        print(f"landing data for {wanted} already present under {settings.paths().landing}")
    instance = runner.prepare_instance()
    window = _manifest_window()
    print(f"materializing every asset for {window[0]}..{window[1]} through Dagster ...")
    result = runner.materialize_range(instance, window[0], window[1])
    models, online = [], None
    if result.success:
        print("training the churn and fraud models on the newest closed label windows ...")
        models = runner.train_models(instance, window[0], window[1])
        if any(m.name == "churn" and m.success for m in models):
            runner.run_job(instance, "churn_scoring", window[1].isoformat())
        print("bootstrapping the online feature store from the warehouse ...")
        online = runner.run_job(instance, "online_bootstrap")
    alerts = runner.run_alert_sensor(instance)
    records, events = runner.run_audit_sensor(instance)
    print()
    print(runner.format_summary(runner.summarize(instance), alerts))
    for m in models:
        print(f"model {m.name}{'@' + m.version if m.version else ''}: {m.message}")
    print(f"audit trail: {records} record(s) appended; lineage: {events} OpenLineage event(s) (see `adp audit show`)")
    ok = result.success and (online is None or online.success) and all(m.success or m.version is None for m in models)
    print(f"\nrun {result.run_id}: {'SUCCESS' if ok else 'FAILURE'} in {time.perf_counter() - started:.0f}s")
    print(DEMO_NEXT_STEPS)
    return 0 if ok else 1


DEMO_NEXT_STEPS = """next:
  make ui                                   the Dagster UI over these runs (http://127.0.0.1:3000)
  .venv/bin/adp serve                       online features and fraud scoring on http://127.0.0.1:8000
  .venv/bin/adp stream produce --rate 200 --duration 30 && .venv/bin/adp stream consume --until-idle
  .venv/bin/adp query --role analyst "SELECT region, count(*) FROM marts.customer_360 GROUP BY 1"
  .venv/bin/adp lineage ml/churn_training_set.payment_failures_30d
  .venv/bin/adp erase --customer-id <id> --reason "subject request"   (then: adp audit show)"""


# ---------------------------------------------------------------- features


def cmd_features_list(args: argparse.Namespace) -> int:
    from ai_data_platform.features.registry import catalog

    entries = catalog(args.entity)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    print(f"{'name':28} {'entity':11} {'source':16} {'aggregation':18} {'window/ttl':10} description")
    for e in entries:
        print(f"{e['name']:28} {e['entity']:11} {e['source'] or '-':16} {e['aggregation']:18} "
              f"{e['window'] or e['ttl'] or '-':10} {e['description']}")
    print(f"{len(entries)} features")
    return 0


# ---------------------------------------------------------------- env / ui


def cmd_env(args: argparse.Namespace) -> int:
    home = settings.ensure_dagster_home()
    print(f"export ADP_DATA_DIR={settings.data_dir()}")
    print(f"export DAGSTER_HOME={home}")
    return 0


def _warn_if_exposed(command: str, host: str) -> None:
    from ai_data_platform.exposure import exposure_warning

    warning = exposure_warning(host, "the Dagster UI")
    if warning:
        print(f"adp {command}: {warning}", file=sys.stderr)


def ui_command(args: argparse.Namespace) -> tuple[str, list[str]]:
    """``dagster dev`` (webserver and daemon), or for viewers a ``dagster-webserver --read-only``
    alone: no runs can be launched, no schedule or sensor toggled, from that UI."""
    workspace = str(settings.PROJECT_ROOT / "workspace.yaml")
    where = ["-h", args.host, "-p", str(args.port)]
    if getattr(args, "read_only", False):
        return "dagster-webserver", [sys.executable, "-m", "dagster_webserver", "-w", workspace, *where, "--read-only"]
    return "dagster dev", [sys.executable, "-m", "dagster", "dev", "-w", workspace, *where]


def cmd_ui(args: argparse.Namespace) -> int:
    """Run `dagster dev` in its own process group and stop the whole group on exit (the same
    process-group handling as `adp prod`)."""
    from ai_data_platform import production

    _warn_if_exposed("ui", args.host)
    home = settings.ensure_dagster_home()
    env = dict(os.environ, DAGSTER_HOME=str(home), ADP_DATA_DIR=str(settings.data_dir()))
    name, cmd = ui_command(args)
    procs = production.start_services({name: cmd}, env, settings.PROJECT_ROOT)
    # SIGTERM only unwinds to the ``finally``: stopping inside the handler would re-enter wait()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        return procs[name].wait()
    except KeyboardInterrupt:
        return 0
    finally:
        production.stop_services(procs)


def cmd_prod(args: argparse.Namespace) -> int:
    """Run the production profile: webserver and daemon as separate processes over PostgreSQL."""
    from ai_data_platform import production

    _warn_if_exposed("prod", args.host)
    try:
        return production.run(args.host, args.port)
    except (RuntimeError, ValueError) as exc:  # no usable PostgreSQL: the message names it, without a password
        raise InputError(str(exc)) from exc


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="adp", description="ai_data_platform command line. State lives under $ADP_DATA_DIR (default ./data).")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write deterministic CRM, billing and behavioral landing files")
    g.add_argument("--customers", type=customers, required=True, help=f"number of customers (1 to {MAX_CUSTOMERS})")
    g.add_argument("--days", type=history_days, required=True, help=f"number of daily exports (1 to {MAX_DAYS})")
    g.add_argument("--end", type=day, help="last export day (default: yesterday, UTC)")
    g.add_argument("--seed", type=seed, required=True, help="random seed (0 to 2**32-1): same arguments and seed give byte-identical files")
    g.add_argument("--dirty-rate", type=dirty_rate, default=0.005, help="rate of each kind of injected dirt, in [0, 1) (default 0.005)")
    g.add_argument("--corrupt", type=_corruption, action="append", metavar="TABLE:DAY:RATE", help="heavily corrupt one table's day: RATE of rows reference unknown customers")
    g.add_argument("--crm-database-url", metavar="URL", help="also seed the CRM PostgreSQL database's customers table (default: $CRM_DATABASE_URL; unset: files only)")
    g.set_defaults(func=cmd_generate)

    m = sub.add_parser("materialize", help="materialize days of every asset through Dagster (one single-run backfill)")
    m.add_argument("--start", type=day, help="first day (default: first landed day)")
    m.add_argument("--end", type=day, help="last day (default: last landed day)")
    m.add_argument("--partition", type=day, help="just this day")
    m.add_argument("--select", help="comma-separated asset keys of the nightly job (e.g. raw/events,staging/events,"
                   "quarantine/events: assets computed together are selected together); default: all")
    m.add_argument(
        "--allow-shrink",
        action="store_true",
        help="load days the landing guard stops (a re-load that would empty or shrink a loaded day, a file cut short, "
        "a day far below the trailing days, a file of another day's records): tags the run adp/allow_shrink=true; "
        "each forced day is audited",
    )
    m.set_defaults(func=cmd_materialize)

    d = sub.add_parser("demo", help="generate the default data set, materialize everything, print a summary")
    d.add_argument("--customers", type=customers, default=3000)
    d.add_argument("--days", type=history_days, default=90, help="days of history (default 90: enough to close the fraud model's 60-day label window)")
    d.add_argument("--end", type=day, help="last day (default: yesterday, UTC)")
    d.add_argument("--seed", type=seed, default=42)
    d.add_argument("--dirty-rate", type=dirty_rate, default=0.005)
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("summary", help="per asset: partitions, rows, checks passed/failed, quarantined rows, alerts")
    s.set_defaults(func=cmd_summary)

    f = sub.add_parser("features", help="the feature registry")
    fsub = f.add_subparsers(dest="features_command", required=True)
    fl = fsub.add_parser("list", help="print the feature catalog")
    fl.add_argument("--json", action="store_true", help="machine-readable output")
    fl.add_argument("--entity", choices=["customer", "transaction"], help="only this entity's features")
    fl.set_defaults(func=cmd_features_list)

    from ai_data_platform.ml.datasets_cli import add_datasets_parser

    add_datasets_parser(sub)
    from ai_data_platform.streaming.cli import add_stream_parsers

    add_stream_parsers(sub)

    from ai_data_platform.governance.lifecycle_cli import add_lifecycle_parser

    add_lifecycle_parser(sub)

    from ai_data_platform.governance.cli import add_governance_parsers

    add_governance_parsers(sub)

    e = sub.add_parser("env", help="print the environment variables for using dagster's own CLI on this data dir")
    e.set_defaults(func=cmd_env)

    u = sub.add_parser("ui", help="start the Dagster UI (dagster dev) over the same instance")
    u.add_argument("--host", type=host, default="127.0.0.1")
    u.add_argument("--port", type=port, default=3000)
    u.add_argument("--read-only", action="store_true", help="for viewers: dagster-webserver --read-only (no launching, no toggling), no daemon")
    u.set_defaults(func=cmd_ui)

    pr = sub.add_parser(
        "prod",
        help="production profile: dagster-webserver and dagster-daemon as separate processes over PostgreSQL "
        "(DAGSTER_PG_URL, default postgresql://postgres@127.0.0.1:5432/adp_dagster)",
    )
    pr.add_argument("--host", type=host, default="127.0.0.1")
    pr.add_argument("--port", type=port, default=3000)
    pr.set_defaults(func=cmd_prod)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``adp`` command with an owner-only umask (inherited by every process it starts):
    its exit code. The environment is checked first (an unknown ADP_ENV or, in prod, an unusable
    PII key stops every command). Bad input (arguments, environment, config, state) is one line
    on stderr and exit 2; anything else unforeseen one line and exit 1."""
    from ai_data_platform.private_files import restrict_umask

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0), or a usage error already printed as one line (2)
        return done.code if isinstance(done.code, int) else 0
    command = " ".join(filter(None, [args.command, getattr(args, f"{args.command}_command", None)]))
    previous_umask = restrict_umask()
    try:
        settings.check_environment()
        return args.func(args)
    except InputError as exc:
        print(f"adp {command}: {one_line(str(exc), 1000)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"adp {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, never a traceback unasked
        return _unforeseen(command, exc)
    finally:
        os.umask(previous_umask)


def _unforeseen(command: str, exc: Exception) -> int:
    """Report an exception no judge foresaw as one line: its type and message with quoted values
    masked (they may hold personal data), bounded. ``ADP_DEBUG=1`` also prints the traceback. An
    OS error on a path under the data directory is the environment's: exit 2 naming it."""
    if os.environ.get(DEBUG_VAR) == "1":
        traceback.print_exception(exc)
    if isinstance(exc, OSError) and exc.filename and _under_data_dir(exc.filename):
        print(f"adp {command}: ADP_DATA_DIR={settings.data_dir()}: cannot use {shown(str(exc.filename), 200)}: "
              f"{exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    message = one_line(re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", str(exc)), 200)
    print(f"adp {command}: unexpected {type(exc).__name__}: {message or '(no message)'} "
          f"(set {DEBUG_VAR}=1 for the traceback)", file=sys.stderr)
    return EXIT_UNEXPECTED


def _under_data_dir(filename: object) -> bool:
    try:
        return Path(str(filename)).resolve().is_relative_to(settings.data_dir())
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
