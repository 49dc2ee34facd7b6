"""Secrets stay secret: the PII key in prod (refused when public, short or guessable, one line naming
the variable, from every ``adp`` command and the code location), the key in Dagster (an EnvVar: the
UI and run config show its name), and listening beyond loopback (a warning)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ai_data_platform import cli, settings
from ai_data_platform.errors import InputError
from ai_data_platform.exposure import exposure_warning, is_loopback
from ai_data_platform.governance.pii import hmac_hex
from ai_data_platform.resources import PiiResource, build_resources, resources_for_environment
from ai_data_platform_tests.waiting import bound

BIN = Path(sys.executable).parent
PROJECT = Path(__file__).resolve().parent.parent
STRONG_KEY = "Zq8v3Lr9Xk2Pw7Nt5Hb1Md4Fg6Jc0Ys8-strong-test-key"
AUDIT_KEY = "m2Kx9Qw4Lr7Tz1Vb8Nc3Hd6Jf0Gs5Yp-audit-mac-key"
DEMO = settings.DEMO_PII_HMAC_KEY

REFUSED_KEYS = {
    "unset": None,
    "empty": "",
    "blank": " ",
    "whitespace": " \t\n ",
    "one character": "x",
    "the demo key": DEMO,
    "the demo key padded": f"  {DEMO}\n",
    "the demo key upper case": DEMO.upper(),
    "the demo key lower case": DEMO.lower(),
    "the demo key spaced": DEMO.replace("-", " "),
    "the demo key as a prefix": DEMO + "-7f3a9c1e5b2d8f4a6c0e9b7d",
    "the demo key inside": "7f3a9c1e" + DEMO.upper() + "5b2d8f4a",
    "31 bytes of ASCII": "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1e",
    "31 bytes of two-byte UTF-8 (16 characters)": "äöüßéèêáàâíìîóò" + "x",
    "31 bytes of three-byte UTF-8 (11 characters)": "€漢字日本語中文한국어"[:10] + "x",
    "32 bytes padded out with spaces": "short-key" + " " * 40,
    "one character repeated": "a" * 64,
    "one multi-byte character repeated": "é" * 40,
    "one space-like character repeated": "\u00a0" * 40,
    "two characters repeated": "ab" * 32,
    "one block repeated": "Zq8v3Lr9" * 6,
    "few different characters": "a" * 40 + "bcdef",
    "not UTF-8": "\udcff" * 40,
    "a repeated block and a short tail": "abcdefgh" * 4 + "X",
    "a repeated block and a longer tail": "Zq8v3Lr9" * 5 + "k2Pw7",
    "a short head and a repeated block": "X" + "abcdefgh" * 4,
    "a repeated block split by a character": "abcdefgh" * 2 + "X" + "abcdefgh" * 2,
    "a block repeated after a random part": "k2Pw7Nt5" + "Hb1Md4Fg" * 4,
    "a run of consecutive characters": "abcdefghijklmnopqrstuvwxyz012345",
    "a run of consecutive characters downwards": "zyxwvutsrqponmlkjihgfedcba987654",
    "a run of every other character": "acegikmoqsuwy13579bdfhjlnprtvxz02",
    "a run of consecutive characters with a short tail": "ABCDEFGHIJKLMNOPQRSTUVWXYZ-k2P",
    "two runs of consecutive characters": "abcdefghijklmnop" + "0123456789ABCDEFG",
    "a run of consecutive non-ASCII characters": "".join(chr(0x3041 + i) for i in range(16)),
    "two runs interleaved": "a0b1c2d3e4f5g6h7i8j9k0l1m2n3o4p5",
    "a run in both cases interleaved": "aAbBcCdDeEfFgGhHiIjJkKlLmMnNoOpP",
    "a walk along the keyboard rows": "qwertyuiopasdfghjklzxcvbnm123456",
    "a walk along the keyboard rows backwards in upper case": "POIUYTREWQLKJHGFDSAMNBVCXZ0987654",
}
ACCEPTED_KEYS = [
    STRONG_KEY,
    "3f9c1e7a5b2d8f4a6c0e9b7d1a3c5e7f9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a",  # openssl rand -hex 32
    "q7SxA0v1Yl8cM3bN6oTz2hRw9kJp4dFe5gUiLrXyWnE=",  # openssl rand -base64 32
    "äöüßéèêáàâíìîóôú",  # 16 characters, 32 bytes
    "correct horse battery staple 2026!",
    "Tr0ub4dor&3-purple-monkey-dishwasher",
    "550e8400-e29b-41d4-a716-446655440000",
    "abcdefgh" + "Zq8v3Lr9Xk2Pw7Nt5Hb1Md4F",  # a short run before a random part
]


def _set_key(monkeypatch, key: str | None) -> None:
    if key is None:
        monkeypatch.delenv("ADP_PII_HMAC_KEY", raising=False)
    else:
        monkeypatch.setenv("ADP_PII_HMAC_KEY", key)


@pytest.fixture()
def prod(monkeypatch, data_dir):
    monkeypatch.setenv("ADP_ENV", "prod")
    monkeypatch.setenv("ADP_AUDIT_KEY", AUDIT_KEY)  # prod needs both keys: these tests are about the PII key
    return data_dir


# -------------------------------------------------------------------------------- the key in prod


@pytest.mark.parametrize("key", REFUSED_KEYS.values(), ids=REFUSED_KEYS.keys())
def test_prod_refuses_a_public_short_or_guessable_key_in_one_line_naming_the_variable(prod, monkeypatch, key):
    assert settings.pii_key_weakness(key) is not None
    _set_key(monkeypatch, key)
    for build in (settings.pii_hmac_key, resources_for_environment):
        with pytest.raises(InputError) as refused:
            build()
        message = str(refused.value)
        assert message.startswith("ADP_PII_HMAC_KEY ") and "\n" not in message and "openssl rand" in message
        if key and len(key.strip()) >= 6:
            assert key.strip() not in message


@pytest.mark.parametrize("key", ACCEPTED_KEYS)
def test_prod_accepts_a_strong_key(prod, monkeypatch, key):
    assert len(key.strip().encode()) >= 32
    _set_key(monkeypatch, key)
    assert settings.pii_hmac_key() == key
    assert resources_for_environment()["pii"].key == key


@given(st.text(max_size=40).filter(lambda k: len(k.strip().encode()) < 32))
def test_every_key_under_32_bytes_is_refused(key):
    assert settings.pii_key_weakness(key) is not None


@given(st.randoms(use_true_random=True), st.integers(32, 600), st.sampled_from(["hex", "base64", "urlsafe"]))
def test_every_random_key_of_32_bytes_or_more_is_accepted(generator, size, encoding):
    import base64

    secret = generator.randbytes(size)  # `openssl rand` (hypothesis would shrink drawn bytes to zeros)
    key = {"hex": secret.hex(), "base64": base64.b64encode(secret).decode(),
           "urlsafe": base64.urlsafe_b64encode(secret).decode().rstrip("=")}[encoding]
    assert settings.pii_key_weakness(key) is None


ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


@given(
    block=st.text(ALPHANUMERIC, min_size=4, max_size=16),
    repeats=st.integers(3, 8),
    tail=st.text(ALPHANUMERIC, max_size=4),
    tail_first=st.booleans(),
)
def test_a_block_repeated_around_a_short_tail_is_refused(block, repeats, tail, tail_first):
    key = tail + block * repeats if tail_first else block * repeats + tail
    assert settings.pii_key_weakness(key) is not None


@given(
    start=st.integers(0x100, 0x3000),
    step=st.sampled_from([1, -1, 2, -2, 3]),
    length=st.integers(24, 48),
    tail=st.text(ALPHANUMERIC, max_size=6),
)
def test_a_run_of_evenly_spaced_characters_with_a_short_tail_is_refused(start, step, length, tail):
    key = "".join(chr(start + step * i) for i in range(length)) + tail
    assert settings.pii_key_weakness(key) is not None


AUDIT_REFUSED = {
    "one character repeated": "a" * 40,
    "the demo key with a suffix": DEMO + "-audit",
    "the demo key upper case inside": "7f3a9c1e" + DEMO.upper(),
    "the PII key": STRONG_KEY,
    "the PII key padded": f"  {STRONG_KEY}\n",
    "the PII key upper case": STRONG_KEY.upper(),
    "the PII key with a suffix": STRONG_KEY + "-audit",
    "a part of the PII key": STRONG_KEY[:-4],
    "a repeated block and a short tail": "abcdefgh" * 4 + "X",
    "a run of consecutive characters": "abcdefghijklmnopqrstuvwxyz012345",
    "one block repeated": "Zq8v3Lr9" * 6,
    "few different characters": "a" * 40 + "bcdef",
}


@pytest.mark.parametrize(("name", "key"), AUDIT_REFUSED.items(), ids=AUDIT_REFUSED.keys())
def test_prod_refuses_a_weak_audit_key_or_the_pii_key_in_one_line_naming_the_variable(prod, monkeypatch, name, key):
    _set_key(monkeypatch, STRONG_KEY)
    monkeypatch.setenv("ADP_AUDIT_KEY", key)
    for check in (settings.audit_key, settings.check_environment):
        with pytest.raises(InputError) as refused:
            check()
        message = str(refused.value)
        assert message.startswith("ADP_AUDIT_KEY ") and "\n" not in message
        assert key.strip() not in message and STRONG_KEY not in message
    if "PII key" in name:
        assert "ADP_AUDIT_KEY is ADP_PII_HMAC_KEY or holds it" in message


def test_every_weak_pii_key_of_32_bytes_is_refused_as_the_audit_key_too(prod, monkeypatch):
    _set_key(monkeypatch, STRONG_KEY)
    for name, key in REFUSED_KEYS.items():
        if key is None or len(key.strip().encode("utf-8", "surrogateescape")) < 32:
            continue  # refused for its length (tests/test_audit.py)
        monkeypatch.setenv("ADP_AUDIT_KEY", key)
        with pytest.raises(InputError, match="^ADP_AUDIT_KEY ") as refused:
            settings.audit_key()
        assert "openssl rand" in str(refused.value), name


@pytest.mark.parametrize("key", [k for k in ACCEPTED_KEYS if k != STRONG_KEY] + [AUDIT_KEY])
def test_prod_accepts_a_strong_audit_key_of_its_own(prod, monkeypatch, key):
    _set_key(monkeypatch, STRONG_KEY)
    monkeypatch.setenv("ADP_AUDIT_KEY", key)
    assert settings.audit_key() == key.strip().encode()
    settings.check_environment()


def test_outside_prod_the_audit_key_is_still_never_the_pii_key(monkeypatch, data_dir):
    monkeypatch.delenv("ADP_ENV", raising=False)
    _set_key(monkeypatch, "a local pii key of 32 bytes or more")
    monkeypatch.setenv("ADP_AUDIT_KEY", "a local pii key of 32 bytes or more")
    with pytest.raises(InputError, match="^ADP_AUDIT_KEY is ADP_PII_HMAC_KEY or holds it"):
        settings.audit_key()
    monkeypatch.setenv("ADP_AUDIT_KEY", "a" * 40)  # outside prod a set key is judged by its length
    assert settings.audit_key() == b"a" * 40


@pytest.mark.parametrize("key", ["a" * 40, "adp-demo-key-NOT-FOR-PRODUCTION-audit", STRONG_KEY])
def test_every_adp_command_stops_in_prod_with_a_weak_audit_key(prod, monkeypatch, capsys, key):
    _set_key(monkeypatch, STRONG_KEY)
    monkeypatch.setenv("ADP_AUDIT_KEY", key)
    monkeypatch.setattr(cli, "build_parser", _parser_that_must_not_run)
    for path, parser in _leaf_commands(cli.build_parser()):
        assert cli.main(_valid_argv(path, parser)) == 2, path
        err = capsys.readouterr().err
        assert err.startswith(f"adp {' '.join(path)}: ADP_AUDIT_KEY ") and err.count("\n") == 1, (path, err)
        assert key not in err


def test_outside_prod_the_demo_key_stands_in_for_an_unset_key(monkeypatch, data_dir):
    monkeypatch.delenv("ADP_ENV", raising=False)
    for unset in (None, "", "  "):
        _set_key(monkeypatch, unset)
        assert settings.pii_hmac_key() == DEMO
        assert build_resources()["pii"].hmac_key == DEMO  # public: it may show in the UI
    _set_key(monkeypatch, "short-local-key")  # local keys are not judged, except as text
    assert settings.pii_hmac_key() == "short-local-key"
    _set_key(monkeypatch, "\udcff")
    with pytest.raises(InputError, match="ADP_PII_HMAC_KEY is not valid UTF-8"):
        settings.pii_hmac_key()


def test_an_unknown_environment_is_refused_in_one_line(monkeypatch, data_dir):
    monkeypatch.setenv("ADP_ENV", "production\nrm -rf /")
    with pytest.raises(InputError, match="^ADP_ENV must be 'local' or 'prod'") as refused:
        settings.check_environment()
    assert "\n" not in str(refused.value)


# -------------------------------------------------------------------------------- every adp command


def _leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subcommands:
        yield prefix, parser
        return
    for name, sub in subcommands[0].choices.items():
        yield from _leaf_commands(sub, (*prefix, name))


def _placeholder(action: argparse.Action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    for candidate in ("1", "2026-01-01", "x"):
        try:
            (action.type or str)(candidate)
            return candidate
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            continue
    raise AssertionError(f"no placeholder for {action}")


def _valid_argv(path: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    """The command with a value for each of its required arguments, so argparse lets it through."""
    required = [a for a in parser._actions if a.required]
    required += [g._group_actions[0] for g in parser._mutually_exclusive_groups if g.required]
    argv = list(path)
    for action in required:
        argv += action.option_strings[:1] + ([_placeholder(action)] if action.nargs != 0 else [])
    return argv


_BUILD_PARSER = cli.build_parser


def _parser_that_must_not_run() -> argparse.ArgumentParser:
    parser = _BUILD_PARSER()
    for path, leaf in _leaf_commands(parser):
        leaf.set_defaults(func=lambda args, path=path: pytest.fail(f"adp {' '.join(path)} ran with an unusable key"))
    return parser


@pytest.mark.parametrize("key", [None, "x", DEMO.upper(), "a" * 64])
def test_every_adp_command_stops_in_prod_without_a_usable_key(prod, monkeypatch, capsys, key):
    _set_key(monkeypatch, key)
    monkeypatch.setattr(cli, "build_parser", _parser_that_must_not_run)
    commands = list(_leaf_commands(cli.build_parser()))
    assert len(commands) >= 20
    for path, parser in commands:
        assert cli.main(_valid_argv(path, parser)) == 2, path
        err = capsys.readouterr().err
        assert err.startswith(f"adp {' '.join(path)}: ADP_PII_HMAC_KEY ") and err.count("\n") == 1, (path, err)
        assert key is None or len(key) < 6 or key not in err


def test_the_adp_command_line_prints_one_line_and_no_key(prod):
    env = dict(os.environ, ADP_ENV="prod", ADP_PII_HMAC_KEY="my-short-secret")
    proc = subprocess.run([str(BIN / "adp"), "summary"], capture_output=True, text=True, timeout=bound(600),
                          env=env)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"adp summary: ADP_PII_HMAC_KEY is 15 bytes long: {settings.PII_KEY_RULE}"]
    assert "my-short-secret" not in proc.stdout + proc.stderr


def test_the_code_location_does_not_load_in_prod_without_a_key(prod):
    env = {k: v for k, v in os.environ.items() if k != "ADP_PII_HMAC_KEY"} | {"ADP_ENV": "prod", "PYTHONPATH": str(PROJECT)}
    proc = subprocess.run([sys.executable, "-c", "import ai_data_platform.definitions"], capture_output=True, text=True,
                          timeout=bound(900), env=env, cwd=PROJECT)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        f"ai_data_platform.errors.InputError: ADP_PII_HMAC_KEY is not set: {settings.PII_KEY_RULE}"
    )


# -------------------------------------------------------------------------------- the key in Dagster


@dg.asset
def _pseudonym(pii: PiiResource) -> str:
    return hmac_hex(pii.key, "ann@example.com")


@pytest.mark.parametrize("environment", ["local", "prod"])
def test_dagster_sees_the_variable_name_never_the_key(monkeypatch, data_dir, environment):
    monkeypatch.setenv("ADP_ENV", environment)
    monkeypatch.setenv("ADP_PII_HMAC_KEY", STRONG_KEY)
    monkeypatch.setenv("ADP_AUDIT_KEY", AUDIT_KEY)
    resources = resources_for_environment()
    pii = resources["pii"]
    assert isinstance(pii.hmac_key, dg.EnvVar) and pii.hmac_key.env_var_name == "ADP_PII_HMAC_KEY"
    assert pii.key == STRONG_KEY  # outside a run, read from the environment (not the variable's name)

    repository = dg.Definitions(assets=[_pseudonym], resources=resources).get_repository_def()
    assert repository.get_env_vars_by_top_level_resource()["ADP_PII_HMAC_KEY"] == {"pii"}
    shown_config = repository.get_top_level_resources()["pii"].config_schema.default_value
    assert shown_config == {"hmac_key": {"env": "ADP_PII_HMAC_KEY"}}

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([_pseudonym], resources=resources, instance=instance)
    assert result.success and result.output_for_node("_pseudonym") == hmac_hex(STRONG_KEY, "ann@example.com")
    run = instance.get_run_by_id(result.run_id)
    recorded = json.dumps(run.run_config) + "".join(
        dg.serialize_value(r.event_log_entry) for r in instance.get_records_for_run(result.run_id, limit=1000).records
    )
    assert STRONG_KEY not in recorded


def test_a_resource_given_a_literal_key_uses_it(data_dir, monkeypatch):
    monkeypatch.setenv("ADP_PII_HMAC_KEY", STRONG_KEY)
    resources = build_resources() | {"pii": PiiResource(hmac_key="another-test-key")}
    assert resources["pii"].key == "another-test-key"
    result = dg.materialize([_pseudonym], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.output_for_node("_pseudonym") == hmac_hex("another-test-key", "ann@example.com")


# -------------------------------------------------------------------------------- listening addresses


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST", " localhost ", "::ffff:127.0.0.1"])
def test_loopback_addresses_are_recognised(host):
    assert is_loopback(host) and exposure_warning(host, "x") is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.5", "10.0.0.1", "example.com", "localhost.example.com", "128.0.0.1", "::2"])
def test_other_addresses_warn(host):
    assert not is_loopback(host)
    warning = exposure_warning(host, "the API")
    assert warning and "\n" not in warning and "the API" in warning and "127.0.0.1" in warning


@pytest.mark.parametrize(("host", "warns"), [("0.0.0.0", True), ("::", True), ("127.0.0.1", False), ("localhost", False)])
def test_adp_serve_warns_on_stderr_when_listening_beyond_loopback(monkeypatch, capsys, data_dir, host, warns):
    from ai_data_platform.streaming import serve

    served = []
    monkeypatch.setattr(serve, "serve", lambda h, p: served.append((h, p)))
    assert cli.main(["serve", "--host", host, "--port", "8123"]) == 0
    assert served == [(host, 8123)]
    err = capsys.readouterr().err
    if warns:
        assert err.startswith(f"adp serve: warning: listening on {host!r} exposes the online features") and err.count("\n") == 1
    else:
        assert err == ""
