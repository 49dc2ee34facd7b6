"""Bad input on the command line: every ``adp`` command, given bad arguments, a bad environment, a
bad config or damaged state, exits 2 with one line on stderr naming the bad value, prints nothing
on stdout, writes nothing and shows no traceback. In process (``main``), except for a few through
the installed ``adp`` script, which prove no traceback reaches a terminal. No case starts work."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ai_data_platform import cli

from .conftest import END
from .waiting import bound

BIN = Path(sys.executable).parent / "adp"
ROOT_POLICY = Path(cli.settings.PROJECT_ROOT) / "ai_data_platform" / "governance" / "retention.toml"
# Variables a case may set: cleared first, so the machine's environment cannot decide a case.
PLATFORM_VARIABLES = (
    "ADP_ENV", "ADP_PII_HMAC_KEY", "ADP_RETENTION_CONFIG", "REDIS_URL", "CRM_DATABASE_URL", "CRM_OVERLAP_MINUTES",
    "DAGSTER_PG_URL", "DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB", "DAGSTER_PG_PORT",
    "ADP_LATE_SENSOR_INTERVAL_SECONDS", "ADP_DEBUG", "ADP_REGION_STORE_EU", "ADP_REGION_LANDING_US",
)
GEN = ["generate", "--customers", "10", "--days", "2", "--seed", "1", "--end", END.isoformat()]
DAYS = ["--start", "2026-01-02", "--end", "2026-01-03"]
SECRET = "s3cr3t-pw"


@dataclass(frozen=True)
class Case:
    """``adp <argv>`` with ``env`` set (``{tmp}`` is a scratch directory outside the data dir) and
    ``files`` written first (``{data}/...`` inside the data dir, ``{tmp}/...`` outside it): exit 2
    and one stderr line containing ``names``."""

    argv: list[str]
    names: str
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes | None] = field(default_factory=dict)  # None: a directory


def policy(old: str, new: str) -> bytes:
    """The shipped retention policy with one edit."""
    text = ROOT_POLICY.read_text()
    assert old in text
    return text.replace(old, new, 1).encode()


def policy_file(content: bytes, names: str) -> Case:
    """``adp retention --dry-run`` with ADP_RETENTION_CONFIG pointing at a file holding ``content``."""
    return Case(["retention", "--dry-run"], names, env={"ADP_RETENTION_CONFIG": "{tmp}/p.toml"},
                files={"{tmp}/p.toml": content})


RAW_EVENTS = '[assets."raw/events"]\ndays = 90\n'
BAD_MANIFEST = {"{data}/landing/manifest.json": b"{not json"}

CASES: dict[str, Case] = {
    # ------------------------------------------------------------ generate
    # (argparse keeps an option's last value: GEN followed by an option replaces GEN's value)
    "generate customers negative": Case([*GEN, "--customers", "-1"], "--customers"),
    "generate customers zero": Case([*GEN, "--customers", "0"], "'0'"),
    "generate customers huge": Case([*GEN, "--customers", str(10**12)], str(10**12)),
    "generate customers not a number": Case([*GEN, "--customers", "ten"], "'ten'"),
    "generate customers fraction": Case([*GEN, "--customers", "1.5"], "'1.5'"),
    "generate days zero": Case([*GEN, "--days", "0"], "--days"),
    "generate days huge": Case([*GEN, "--days", "100000"], "'100000'"),
    "generate seed negative": Case([*GEN, "--seed", "-1"], "--seed"),
    "generate seed 2**64": Case([*GEN, "--seed", str(2**64)], str(2**64)),
    "generate end year 1": Case([*GEN, "--end", "0001-01-01"], "'0001-01-01'"),
    "generate end year 9999": Case([*GEN, "--end", "9999-12-31"], "'9999-12-31'"),
    "generate end february 30": Case([*GEN, "--end", "2026-02-30"], "'2026-02-30'"),
    "generate end month 13": Case([*GEN, "--end", "2026-13-01"], "expected a date YYYY-MM-DD"),
    "generate end a word": Case([*GEN, "--end", "yesterday"], "'yesterday'"),
    "generate end without room for history": Case([*GEN, "--end", "2000-02-01"], "end 2000-02-01"),
    "generate dirty rate one": Case([*GEN, "--dirty-rate", "1"], "--dirty-rate"),
    "generate dirty rate negative": Case([*GEN, "--dirty-rate", "-0.1"], "'-0.1'"),
    "generate dirty rate nan": Case([*GEN, "--dirty-rate", "nan"], "'nan'"),
    "generate dirty rate infinite": Case([*GEN, "--dirty-rate", "inf"], "'inf'"),
    "generate corrupt without rate": Case([*GEN, "--corrupt", "events:2026-11-20"], "'events:2026-11-20'"),
    "generate corrupt unknown table": Case([*GEN, "--corrupt", "evnts:2026-11-20:0.5"], "'evnts'"),
    "generate corrupt rate above one": Case([*GEN, "--corrupt", "events:2026-11-20:2"], "'2'"),
    "generate corrupt bad day": Case([*GEN, "--corrupt", "events:2026-11-31:0.5"], "'2026-11-31'"),
    "generate corrupt day outside window": Case([*GEN, "--corrupt", "events:2026-01-01:0.5"], "2026-01-01"),
    "generate corrupt table without customers": Case([*GEN, "--corrupt", "customers:2026-11-20:0.5"], "customers"),
    "generate corrupt twice": Case([*GEN, "--corrupt", "events:2026-11-20:0.5", "--corrupt", "events:2026-11-20:0.1"],
                                   "listed twice"),
    "generate crm url not postgres": Case([*GEN, "--crm-database-url", "mysql://h/db"], "--crm-database-url"),
    "generate crm url bad port": Case([*GEN, "--crm-database-url", f"postgresql://u:{SECRET}@h:99999/db"], "h:99999"),
    "generate missing seed": Case(["generate", "--customers", "10", "--days", "2"], "--seed"),
    "generate unknown option": Case([*GEN, "--colour", "red"], "--colour"),
    # ------------------------------------------------------------ materialize
    "materialize select part of a multi-asset": Case(["materialize", "--select", "staging/events", *DAYS],
                                                      "quarantine/events"),
    "materialize select unknown asset": Case(["materialize", "--select", "raw/evnts", *DAYS], "'raw/evnts'"),
    "materialize select empty item": Case(["materialize", "--select", "raw/events,,raw/payments", *DAYS], "item 2"),
    "materialize select empty": Case(["materialize", "--select", "", *DAYS], "item 1 is empty"),
    "materialize select trailing comma": Case(["materialize", "--select", "raw/events,", *DAYS], "item 2 is empty"),
    "materialize select key with a space": Case(["materialize", "--select", "raw/ events", *DAYS], "'raw/ events'"),
    "materialize select a check by path": Case(["materialize", "--select", "staging/events/row_conservation", *DAYS],
                                               "is a check"),
    "materialize select a check by name": Case(["materialize", "--select", "row_conservation", *DAYS],
                                               "'row_conservation' is a check"),
    "materialize select outside the nightly job": Case(["materialize", "--select", "ml/churn_model", *DAYS],
                                                       "ml/churn_model"),
    "materialize select punctuation": Case(["materialize", "--select", "raw/events;drop", *DAYS], "'raw/events;drop'"),
    "materialize start after end": Case(["materialize", "--start", "2026-02-01", "--end", "2026-01-03"], "2026-02-01"),
    "materialize before the partitions": Case(["materialize", "--start", "2025-06-01", "--end", "2026-01-03"],
                                              "2025-06-01"),
    "materialize after the partitions": Case(["materialize", "--start", "2026-01-02", "--end", "2999-01-01"],
                                             "2999-01-01"),
    "materialize partition and range": Case(["materialize", "--partition", "2026-01-02", "--start", "2026-01-01"],
                                            "--partition"),
    "materialize partition february 30": Case(["materialize", "--partition", "2026-02-30"], "'2026-02-30'"),
    "materialize nothing landed": Case(["materialize"], "adp generate"),
    "materialize manifest not json": Case(["materialize"], "manifest.json", files=BAD_MANIFEST),
    "materialize manifest not utf-8": Case(["materialize"], "manifest.json",
                                           files={"{data}/landing/manifest.json": b"\xff\xfe{}"}),
    "materialize manifest a list": Case(["materialize"], "manifest.json",
                                        files={"{data}/landing/manifest.json": b"[]"}),
    "materialize manifest bad days": Case(["materialize"], "manifest.json",
                                          files={"{data}/landing/manifest.json": b'{"start": "x", "end": 3}'}),
    "materialize manifest a directory": Case(["materialize"], "manifest.json",
                                             files={"{data}/landing/manifest.json": None}),
    # ------------------------------------------------------------ demo, summary, features, env
    "demo customers zero": Case(["demo", "--customers", "0"], "--customers"),
    "demo days huge": Case(["demo", "--days", "100000"], "'100000'"),
    "demo end year 9999": Case(["demo", "--end", "9999-12-31"], "'9999-12-31'"),
    "demo seed negative": Case(["demo", "--seed", "-1"], "'-1'"),
    "demo manifest not json": Case(["demo", "--customers", "30", "--days", "3", "--end", END.isoformat()],
                                   "manifest.json", files=BAD_MANIFEST),
    "summary extra argument": Case(["summary", "now"], "now"),
    "summary partition start not a date": Case(["summary"], "ADP_PARTITION_START", env={"ADP_PARTITION_START": "soon"}),
    "features without subcommand": Case(["features"], "{list}"),
    "features unknown subcommand": Case(["features", "lsit"], "'lsit'"),
    "features unknown entity": Case(["features", "list", "--entity", "merchant"], "'merchant'"),
    "env data dir is a file": Case(["env"], "ADP_DATA_DIR", env={"ADP_DATA_DIR": "{tmp}/file"},
                                   files={"{tmp}/file": b"x"}),
    "data dir of an unknown user's home": Case(["summary"], "ADP_DATA_DIR", env={"ADP_DATA_DIR": "~nosuchuser-adp/x"}),
    "retention config of an unknown user's home": Case(["retention", "--dry-run"], "ADP_RETENTION_CONFIG",
                                                       env={"ADP_RETENTION_CONFIG": "~nosuchuser-adp/r.toml"}),
    "env data dir under a file": Case(["env"], "ADP_DATA_DIR", env={"ADP_DATA_DIR": "{tmp}/file/data"},
                                      files={"{tmp}/file": b"x"}),
    "env unknown environment": Case(["env"], "'bogus'", env={"ADP_ENV": "bogus"}),
    # ------------------------------------------------------------ datasets
    "datasets unknown name": Case(["datasets", "show", "churn", "2026-01-01"], "'churn'"),
    "datasets unknown version": Case(["datasets", "show", "churn", "2026-01-02"], "'2026-01-02'",
                                     files={"{data}/datasets/churn/2026-01-01/manifest.json": b"{}"}),
    "datasets path traversal": Case(["datasets", "show", "../../etc", "v1"], "'../../etc'"),
    "datasets diff missing version": Case(["datasets", "diff", "churn", "v1"], "new"),
    "datasets damaged manifest": Case(["datasets", "show", "churn", "2026-01-01"], "manifest.json",
                                      files={"{data}/datasets/churn/2026-01-01/manifest.json": b"{not json"}),
    "datasets list damaged manifest": Case(["datasets", "list"], "manifest.json",
                                           files={"{data}/datasets/churn/2026-01-01/manifest.json": b"[1]"}),
    "datasets unknown subcommand": Case(["datasets", "remove"], "'remove'"),
    # ------------------------------------------------------------ stream, serve
    "stream without subcommand": Case(["stream"], "{produce,consume}"),
    "stream produce without rate": Case(["stream", "produce"], "--rate"),
    "stream produce negative rate": Case(["stream", "produce", "--rate", "-5"], "'-5'"),
    "stream produce zero rate": Case(["stream", "produce", "--rate", "0"], "--rate"),
    "stream produce nan rate": Case(["stream", "produce", "--rate", "nan"], "'nan'"),
    "stream produce huge customers": Case(["stream", "produce", "--rate", "1", "--customers", str(10**12)],
                                          str(10**12)),
    "stream produce seed 2**64": Case(["stream", "produce", "--rate", "1", "--seed", str(2**64)], "--seed"),
    "stream produce zero duration": Case(["stream", "produce", "--rate", "1", "--duration", "0"], "--duration"),
    "stream consume zero batch": Case(["stream", "consume", "--batch", "0"], "--batch"),
    "stream consume infinite flush": Case(["stream", "consume", "--flush-seconds", "inf"], "'inf'"),
    "stream consume negative max records": Case(["stream", "consume", "--max-records", "-1"], "--max-records"),
    "stream bad redis url scheme": Case(["stream", "produce", "--rate", "1", "--count", "1"], "REDIS_URL",
                                        env={"REDIS_URL": "http://cache:6379"}),
    "stream bad redis url port": Case(["stream", "consume", "--until-idle"], "REDIS_URL",
                                      env={"REDIS_URL": f"redis://:{SECRET}@cache:port/0"}),
    "serve port too high": Case(["serve", "--port", "70000"], "'70000'"),
    "serve port zero": Case(["serve", "--port", "0"], "--port"),
    "serve host with a space": Case(["serve", "--host", "local host"], "'local host'"),
    # ------------------------------------------------------------ erase, retention
    "erase without customer": Case(["erase", "--reason", "t-1"], "--customer-id"),
    "erase empty customer": Case(["erase", "--customer-id", "", "--reason", "t-1"], "--customer-id"),
    "erase blank customer": Case(["erase", "--customer-id", "   ", "--reason", "t-1"], "--customer-id"),
    "erase empty email": Case(["erase", "--email", "", "--reason", "t-1"], "--email"),
    "erase reason too long": Case(["erase", "--customer-id", "C0000001", "--reason", SECRET * 100], "--reason"),
    "erase in prod without a key": Case(["erase", "--customer-id", "C0000001", "--reason", "t-1"], "ADP_PII_HMAC_KEY",
                                        env={"ADP_ENV": "prod"}),
    "retention as of february 30": Case(["retention", "--as-of", "2026-02-30"], "'2026-02-30'"),
    "retention as of year 1": Case(["retention", "--dry-run", "--as-of", "0001-01-01"], "'0001-01-01'"),
    "retention as of the future": Case(["retention", "--as-of", "2999-01-01"], "2999-01-01"),
    "retention config missing": Case(["retention", "--dry-run"], "ADP_RETENTION_CONFIG",
                                     env={"ADP_RETENTION_CONFIG": "{tmp}/none.toml"}),
    "retention config not utf-8": policy_file(b"\xff\xfe[assets]", "UTF-8"),
    "retention config a directory": Case(["retention", "--dry-run"], "directory",
                                         env={"ADP_RETENTION_CONFIG": "{tmp}/dir"}, files={"{tmp}/dir": None}),
    "retention config not toml": policy_file(b"[assets", "not valid TOML"),
    "retention config unknown top-level key": policy_file(b"[policy]\n" + ROOT_POLICY.read_bytes(), "'policy'"),
    "retention config assets not a table": policy_file(b"assets = 5\n", "assets must be a table"),
    "retention config unknown key": policy_file(policy(RAW_EVENTS, RAW_EVENTS + "keep = 1\n"), "'keep'"),
    "retention config huge days": policy_file(policy(RAW_EVENTS, RAW_EVENTS.replace("90", "800000")), "800000"),
    "retention config negative days": policy_file(policy(RAW_EVENTS, RAW_EVENTS.replace("90", "-3")), "-3"),
    "retention config days as text": policy_file(policy(RAW_EVENTS, RAW_EVENTS.replace("90", '"90"')), "'90'"),
    "retention config days a fraction": policy_file(policy(RAW_EVENTS, RAW_EVENTS.replace("90", "2.5")), "2.5"),
    "retention config unknown asset": policy_file(policy(RAW_EVENTS, RAW_EVENTS.replace("events", "evnts")),
                                                  "raw/evnts"),
    "retention config empty": policy_file(b"", "missing"),
    # ------------------------------------------------------------ audit, lineage, query
    "audit without subcommand": Case(["audit"], "{verify,show}"),
    "audit show negative limit": Case(["audit", "show", "--limit", "-1"], "'-1'"),
    "audit show limit not a number": Case(["audit", "show", "--limit", "all"], "'all'"),
    "audit show malformed asset": Case(["audit", "show", "--asset", "staging payments"], "'staging payments'"),
    "audit show malformed action": Case(["audit", "show", "--action", "DROP TABLE"], "'DROP TABLE'"),
    "lineage malformed target": Case(["lineage", "features/customer daily"], "'features/customer daily'"),
    "lineage unknown asset": Case(["lineage", "features/customer_dialy"], "features/customer_dialy"),
    "query unknown role": Case(["query", "--role", "root", "SELECT 1"], "'root'"),
    "query empty statement": Case(["query", "--role", "analyst", "  "], "SQL"),
    "query without statement": Case(["query", "--role", "analyst"], "SQL"),
    # ------------------------------------------------------------ ui, prod
    "ui port too high": Case(["ui", "--port", "70000"], "'70000'"),
    "ui port not a number": Case(["ui", "--port", "http"], "'http'"),
    "ui host malformed": Case(["ui", "--host", "host name"], "'host name'"),
    "prod port zero": Case(["prod", "--port", "0"], "--port"),
    "prod pg url not postgres": Case(["prod"], "DAGSTER_PG_URL", env={"DAGSTER_PG_URL": "mysql://db/adp"}),
    "prod pg url without database": Case(["prod"], "DAGSTER_PG_URL",
                                         env={"DAGSTER_PG_URL": f"postgresql://u:{SECRET}@db/"}),
    "prod pg url bad host": Case(["prod"], "DAGSTER_PG_URL",
                                 env={"DAGSTER_PG_URL": f"postgresql://u:{SECRET}@[::1/adp"}),
    "prod pg port not a number": Case(["prod"], "'54x2'", env={"DAGSTER_PG_HOST": "db", "DAGSTER_PG_USER": "u",
                                                             "DAGSTER_PG_DB": "adp", "DAGSTER_PG_PORT": "54x2"}),
    # ------------------------------------------------------------ every command: the environment
    "no command": Case([], "required"),
    "unknown command": Case(["generat"], "'generat'"),
    "crm url in the environment": Case(GEN, "CRM_DATABASE_URL",
                                       env={"CRM_DATABASE_URL": f"postgres://u:{SECRET}@h:x/db"}),
    "crm overlap negative": Case(GEN, "CRM_OVERLAP_MINUTES", env={"CRM_OVERLAP_MINUTES": "-5"}),
    "late sensor interval huge": Case(["summary"], "ADP_LATE_SENSOR_INTERVAL_SECONDS",
                                      env={"ADP_LATE_SENSOR_INTERVAL_SECONDS": str(10**40)}),
    "region store is a directory": Case(["features", "list"], "ADP_REGION_STORE_EU",
                                        env={"ADP_REGION_STORE_EU": "{tmp}/dir"}, files={"{tmp}/dir": None}),
    "region landing is a file": Case(GEN, "ADP_REGION_LANDING_US", env={"ADP_REGION_LANDING_US": "{tmp}/file"},
                                     files={"{tmp}/file": b"x"}),
}


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def _prepare(case: Case, data_dir: Path, tmp: Path, monkeypatch) -> None:
    for name in PLATFORM_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for template, content in case.files.items():
        path = Path(template.format(data=data_dir, tmp=tmp))
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir()
        else:
            path.write_bytes(content)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp))


def _assert_one_clean_line(code: int, out: str, err: str, names: str) -> None:
    assert code == 2, err
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("adp") and "Traceback" not in err
    assert names in err, err
    assert SECRET not in err and len(err) < 1100


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_and_exit_2(case, data_dir, tmp_path, monkeypatch, capsys):
    tmp = tmp_path / "scratch"
    tmp.mkdir()
    _prepare(case, data_dir, tmp, monkeypatch)
    before = _tree(data_dir)
    code = cli.main(case.argv)
    out, err = capsys.readouterr()
    _assert_one_clean_line(code, out, err, case.names)
    assert _tree(data_dir) == before, "bad input must write nothing"


THROUGH_THE_SCRIPT = [
    "generate end year 1", "materialize select part of a multi-asset", "retention config huge days",
    "retention config not utf-8", "erase in prod without a key",
]


@pytest.mark.parametrize("name", THROUGH_THE_SCRIPT)
def test_the_installed_script_prints_no_traceback(name, data_dir, tmp_path, monkeypatch):
    case = CASES[name]
    tmp = tmp_path / "scratch"
    tmp.mkdir()
    _prepare(case, data_dir, tmp, monkeypatch)
    proc = subprocess.run([str(BIN), *case.argv], env=dict(os.environ), capture_output=True, text=True,
                          timeout=bound(600))
    _assert_one_clean_line(proc.returncode, proc.stdout, proc.stderr, case.names)


def _parsers(parser, path=()):
    """(command path, parser) of ``parser`` and every subcommand under it."""
    yield path, parser
    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for name, sub in action.choices.items():
            yield from _parsers(sub, (*path, name))


# What every typed option refuses, whatever its type (numbers, days, hosts, keys, free text) ...
GARBAGE = ["", " ", "\x00", "\x1b[2J", "x" * 1000]
# ... and what every option that is not free text refuses as well.
NOT_A_NUMBER_OR_DAY = ["abc", "nan", "-inf", "1e999", "1_000", "0x10", "\u0661\u0662", "9" * 50, "2026-02-30"]
FREE_TEXT = {"--customer-id", "--reason", "--asset", "--action", "--host"}
REQUIRED = {("generate",): GEN[1:], ("stream", "produce"): ["--rate", "1"],
            ("erase",): ["--customer-id", "C0000001", "--reason", "t-1"], ("query",): ["--role", "analyst", "SELECT 1"]}


def _every_typed_option():
    for path, parser in _parsers(cli.build_parser()):
        for action in parser._actions:
            if action.option_strings and action.type is not None:
                free = action.option_strings[0] in FREE_TEXT
                for value in GARBAGE + ([] if free else NOT_A_NUMBER_OR_DAY):
                    yield path, action.option_strings[0], value


def test_every_typed_option_of_every_command_refuses_garbage(data_dir, monkeypatch, capsys):
    build = cli.build_parser

    def never_started(args):
        raise AssertionError(f"a command started with {args}")

    def parser_whose_commands_never_start():
        parser = build()
        for _, sub in _parsers(parser):
            if sub.get_default("func"):
                sub.set_defaults(func=never_started)
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_whose_commands_never_start)
    cases = list(_every_typed_option())
    assert len({(path, option) for path, option, _ in cases}) >= 35  # every typed option of every command
    for path, option, value in cases:
        code = cli.main([*path, *REQUIRED.get(path, []), option, value])
        out, err = capsys.readouterr()
        assert code == 2 and out == "" and err.count("\n") == 1, (path, option, value, err)
        assert err.startswith(f"adp {' '.join(path)}: argument {option}") and len(err) < 600, err


def test_a_data_dir_this_user_cannot_write_is_named(data_dir, monkeypatch, capsys):
    monkeypatch.setattr(cli.settings.os, "access", lambda path, mode: False)  # root may write anywhere
    assert cli.main(["env"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"adp env: ADP_DATA_DIR={str(data_dir)!r} is not a directory this user can write to\n"
    assert not (data_dir / "dagster_home").exists()


def test_help_still_answers_through_main(capsys):
    assert cli.main(["generate", "--help"]) == 0
    assert "usage: adp generate" in capsys.readouterr().out


def _raising(exc: BaseException):
    def command(args):
        raise exc

    return command


def _with_command(monkeypatch, command) -> None:
    build = cli.build_parser

    def patched():
        parser = build()
        for action in parser._subparsers._group_actions:
            action.choices["summary"].set_defaults(func=command)
        return parser

    monkeypatch.setattr(cli, "build_parser", patched)


def test_an_unforeseen_error_is_one_line_exit_1_without_personal_data(data_dir, monkeypatch, capsys):
    _with_command(monkeypatch, _raising(KeyError("no row for 'alice@example.com'")))
    assert cli.main(["summary"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("adp summary: unexpected KeyError") and "ADP_DEBUG=1" in err
    assert "alice" not in err


def test_adp_debug_shows_the_traceback(data_dir, monkeypatch, capsys):
    _with_command(monkeypatch, _raising(RuntimeError("boom")))
    monkeypatch.setenv("ADP_DEBUG", "1")
    assert cli.main(["summary"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("(set ADP_DEBUG=1 for the traceback)")


def test_an_os_error_in_the_data_dir_names_it_with_exit_2(data_dir, monkeypatch, capsys):
    target = data_dir / "dagster_home"
    _with_command(monkeypatch, _raising(PermissionError(13, "Permission denied", str(target))))
    assert cli.main(["summary"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ADP_DATA_DIR" in err and "dagster_home" in err and "Permission denied" in err


def test_ctrl_c_is_one_line(data_dir, monkeypatch, capsys):
    _with_command(monkeypatch, _raising(KeyboardInterrupt()))
    assert cli.main(["summary"]) == 130
    assert capsys.readouterr().err == "adp summary: interrupted\n"
