"""Where state lives and which environment we run in.

Every path the platform writes is derived from ``ADP_DATA_DIR`` (default ``data/`` under the
current working directory), read at call time so a test or a deployment can relocate all state,
Dagster's instance storage included, by setting one variable.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import SplitResult, quote, urlsplit

from ai_data_platform.errors import InputError, shown

DEFAULT_DATA_DIR = "data"
# Documented as NON-PRODUCTION: the demo key for pseudonymizing email/phone join keys.
DEMO_PII_HMAC_KEY = "adp-demo-key-NOT-FOR-PRODUCTION"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Paths:
    """All locations below one data directory."""

    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def alerts(self) -> Path:
        return self.root / "alerts.jsonl"

    @property
    def landing_manifest(self) -> Path:
        return self.landing / "manifest.json"

    def default_region_store(self, region: str) -> Path:
        """The embedded default location of a region's personal data store."""
        return self.root / "regions" / region / "personal.duckdb"

    def default_region_landing(self, region: str) -> Path:
        """The embedded default landing zone of a region (its exports of tables holding personal data)."""
        return self.root / "regions" / region / "landing"

    @property
    def stream(self) -> Path:
        """Append-only segment files of the embedded event stream."""
        return self.root / "stream"

    @property
    def online(self) -> Path:
        """The embedded (SQLite) online feature store."""
        return self.root / "online"


def data_dir() -> Path:
    """The data directory, from ``ADP_DATA_DIR`` (unset or empty: ``./data``), made absolute."""
    return location(os.environ.get("ADP_DATA_DIR") or str(DEFAULT_DATA_DIR), "ADP_DATA_DIR")


def location(value: str, variable: str) -> Path:
    """The absolute path a location variable names (``~`` expanded): an InputError naming the
    variable when it cannot be resolved (``~nosuchuser/x``, a NUL byte, a symlink loop)."""
    try:
        return Path(value).expanduser().resolve()
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputError(f"{variable}={shown(value, 200)} cannot be resolved to a path: {exc}") from None


def paths() -> Paths:
    return Paths(data_dir())


def environment() -> str:
    """``local`` (embedded default) or ``prod`` (services), from ``ADP_ENV``."""
    env = os.environ.get("ADP_ENV", "local").strip().lower()
    if env not in {"local", "prod"}:
        raise InputError(f"ADP_ENV must be 'local' or 'prod', got {shown(env)}")
    return env


PII_KEY_VAR = "ADP_PII_HMAC_KEY"
MIN_PII_KEY_BYTES = 32
MIN_PII_KEY_DISTINCT_CHARACTERS = 8
PII_KEY_RULE = f"ADP_ENV=prod needs at least {MIN_PII_KEY_BYTES} random bytes, e.g. `openssl rand -hex 32`"
#: The shortest stretch of a key that counts as a copy of an earlier one (see :func:`_predictable_characters`).
MIN_COPIED_STRETCH = 3
#: Earlier occurrences of a 3-character stretch compared with a later one (bounds the work on a long key).
_COPY_CANDIDATES = 16
#: Keyboard rows (US layout): a walk along one (``qwerty``, ``lkjh``, ``7654``) is as guessable as ``abcd``.
_KEYBOARD_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")
_KEY_PLACES = {key: (row, column) for row, keys in enumerate(_KEYBOARD_ROWS) for column, key in enumerate(keys)}


def _alphanumeric_folded(text: str) -> str:
    return "".join(c for c in text.casefold() if c.isalnum())


def _shortest_period(text: str) -> int:
    """The length of the shortest block whose repetition spells ``text`` (``abcab``: 3)."""
    border = [0] * len(text)  # Knuth-Morris-Pratt: longest proper prefix that is also a suffix
    for i in range(1, len(text)):
        k = border[i - 1]
        while k and text[i] != text[k]:
            k = border[k - 1]
        border[i] = k + (text[i] == text[k])
    return len(text) - (border[-1] if text else 0)


def _longest_copy(text: str, at: int, earlier: list[int]) -> int:
    """The length of the longest stretch from ``at`` that repeats ``text`` from one of the ``earlier`` positions
    (the two may overlap, as in ``abababab``)."""
    longest = 0
    for start in earlier:
        length = 0
        while at + length < len(text) and text[start + length] == text[at + length]:
            length += 1
        longest = max(longest, length)
    return longest


def _evenly_spaced(values: list[int], i: int, lag: int) -> bool:
    """Whether ``values[i]`` continues a run in one step at distance ``lag`` (the two values ``lag`` and
    ``2 * lag`` before it: ``a b c`` at distance 1, ``a ? b ? c`` at distance 2)."""
    return i >= 2 * lag and values[i] - values[i - lag] == values[i - lag] - values[i - 2 * lag]


def _walks_a_keyboard_row(text: str, i: int) -> bool:
    """Whether the characters ``i - 2``, ``i - 1`` and ``i`` are neighbours in one direction on one keyboard row."""
    places = [_KEY_PLACES.get(c.lower()) for c in text[max(0, i - 2):i + 1]]
    if len(places) < 3 or None in places:
        return False
    (row_a, column_a), (row_b, column_b), (row_c, column_c) = places  # type: ignore[misc]
    return row_a == row_b == row_c and abs(column_b - column_a) == 1 and column_c - column_b == column_b - column_a


@functools.lru_cache(maxsize=16)
def _predictable_characters(text: str) -> int:
    """How many characters of ``text`` follow from the ones before them: each character of a copy of an
    earlier stretch of at least ``MIN_COPIED_STRETCH`` characters (``Xk2PwXk2Pw``: the second ``Xk2Pw``), and
    from its third character on each character continuing a run of code points in one step (``abcdef``,
    ``9876``, ``acegi``, ``aaaa``: all but the first two), two such runs interleaved (``a1b2c3``, ``aAbBcC``), or
    a walk along a keyboard row (``qwerty``). Read left to right, greedily taking the longest copy."""
    codes = [ord(c) for c in text]
    seen: dict[str, list[int]] = {}  # 3-character stretch -> its latest earlier positions
    predictable, copied_until = 0, 0
    for i in range(len(text)):
        stretch = text[i:i + MIN_COPIED_STRETCH]
        if i < copied_until:
            predictable += 1
        else:
            copied = _longest_copy(text, i, seen.get(stretch, []))
            if copied >= MIN_COPIED_STRETCH:
                copied_until = i + copied
                predictable += 1
            elif _evenly_spaced(codes, i, 1) or _evenly_spaced(codes, i, 2) or _walks_a_keyboard_row(text, i):
                predictable += 1
        if len(stretch) == MIN_COPIED_STRETCH:
            positions = seen.setdefault(stretch, [])
            positions.append(i)
            del positions[:-_COPY_CANDIDATES]
    return predictable


def pii_key_weakness(key: str | None) -> str | None:
    """Why ``key`` must not pseudonymize production data (or MAC its audit trail), or None when it may.

    Refused: unset or blank, not UTF-8, the public demo key in any case or spacing or inside a
    longer value, fewer than ``MIN_PII_KEY_BYTES`` bytes (UTF-8, surrounding whitespace not
    counted), fewer than ``MIN_PII_KEY_DISTINCT_CHARACTERS`` different characters, one block
    repeated, or mostly predictable: at least half of its characters follow from the ones before
    them (a repeated block with a short tail, a run of consecutive characters, a keyboard walk:
    :func:`_predictable_characters`) and fewer than ``MIN_PII_KEY_BYTES`` do not. ``openssl rand
    -hex 32``, base64 keys and passphrases of several words pass. The reason never quotes the key.
    """
    stripped = (key or "").strip()
    if not stripped:
        return "is not set"
    try:
        size = len(stripped.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if _alphanumeric_folded(DEMO_PII_HMAC_KEY) in _alphanumeric_folded(stripped):
        return "holds the public demo key"
    if size < MIN_PII_KEY_BYTES:
        return f"is {size} byte{'' if size == 1 else 's'} long"
    distinct = len(set(stripped))
    if distinct < MIN_PII_KEY_DISTINCT_CHARACTERS:
        return f"has only {distinct} different character(s)"
    period = _shortest_period(stripped)
    if period <= len(stripped) // 2:
        return f"repeats one block of {period} character(s)"
    predictable = _predictable_characters(stripped)
    if 2 * predictable >= len(stripped) and len(stripped) - predictable < MIN_PII_KEY_BYTES:
        return (f"is mostly predictable: {predictable} of its {len(stripped)} characters repeat an earlier stretch, "
                "continue a run of evenly spaced characters or walk along a keyboard row")
    return None


def pii_key_is_set() -> bool:
    """Whether ``ADP_PII_HMAC_KEY`` holds a key (not blank)."""
    return bool(os.environ.get(PII_KEY_VAR, "").strip())


def pii_hmac_key() -> str:
    """The HMAC key for pseudonymized join keys (``ADP_PII_HMAC_KEY``).

    In ``prod`` the key must be set and strong (see :func:`pii_key_weakness`): anything else is an
    InputError naming the variable, so no production data is ever hashed with a public or
    guessable key. Outside ``prod`` the documented demo key is used when none is set.
    """
    key = os.environ.get(PII_KEY_VAR, "")
    if environment() == "prod":
        weakness = pii_key_weakness(key)
        if weakness:
            raise InputError(f"{PII_KEY_VAR} {weakness}: {PII_KEY_RULE}")
        return key
    if not key.strip():
        return DEMO_PII_HMAC_KEY
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{PII_KEY_VAR} is not valid UTF-8") from None
    return key


AUDIT_KEY_VAR = "ADP_AUDIT_KEY"
AUDIT_KEY_MIN_BYTES = 32
_AUDIT_KEY_LABEL = b"adp audit log record MAC key, derived from ADP_PII_HMAC_KEY outside prod"


def _one_secret(key: str, other: str) -> bool:
    """Whether two keys are one secret: equal, or one holding the other in any case or spacing (a
    stretch of at least half ``MIN_PII_KEY_BYTES`` letters and digits), so that knowing one gives the other away."""
    if key.strip() == other.strip():
        return True
    shorter, longer = sorted((_alphanumeric_folded(key), _alphanumeric_folded(other)), key=len)
    return len(shorter) >= MIN_PII_KEY_BYTES // 2 and shorter in longer


def audit_key() -> bytes:
    """The key of the audit log's record MACs (``ADP_AUDIT_KEY``), a secret kept out of ``$ADP_DATA_DIR``.

    Set, it must hold at least 32 bytes (surrounding whitespace ignored) and be a secret of its own,
    neither ``ADP_PII_HMAC_KEY`` nor holding it (whoever holds the PII key could otherwise write records
    that verify). In ``prod`` it must be set and pass the rules of the PII key (:func:`pii_key_weakness`).
    Outside ``prod`` an unset key is derived from the PII key under its own label: weaker, since
    whoever holds the PII key (anyone, with the demo key) can then write records that verify.
    Every refusal is an InputError naming the variable, never quoting a key.
    """
    text = os.environ.get(AUDIT_KEY_VAR, "").strip()
    key = text.encode("utf-8", "surrogateescape")
    if key:
        if len(key) < AUDIT_KEY_MIN_BYTES:
            raise InputError(
                f"{AUDIT_KEY_VAR} must hold at least {AUDIT_KEY_MIN_BYTES} bytes, got {len(key)}: use a long random secret"
            )
        if environment() == "prod":
            weakness = pii_key_weakness(text)
            if weakness:
                raise InputError(f"{AUDIT_KEY_VAR} {weakness}: {PII_KEY_RULE}, kept out of $ADP_DATA_DIR")
        pii_key = os.environ.get(PII_KEY_VAR, "")
        if pii_key.strip() and _one_secret(text, pii_key):
            raise InputError(
                f"{AUDIT_KEY_VAR} is {PII_KEY_VAR} or holds it (or is held in it): the audit key must be a secret of "
                "its own, else whoever holds the PII key can write audit records that verify"
            )
        return key
    if environment() == "prod":
        raise InputError(
            f"{AUDIT_KEY_VAR} must be set when ADP_ENV=prod: a secret of at least {AUDIT_KEY_MIN_BYTES} bytes, "
            "kept out of $ADP_DATA_DIR"
        )
    return hmac.new(pii_hmac_key().encode(), _AUDIT_KEY_LABEL, hashlib.sha256).digest()


AUDIT_TRAIL_VAR = "ADP_AUDIT_TRAIL"
DEFAULT_AUDIT_TRAIL = "adp"
_AUDIT_TRAIL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def audit_trail() -> str:
    """The name this deployment's audit trail is anchored under in Dagster's storage (``ADP_AUDIT_TRAIL``,
    default ``adp``): 1 to 64 letters, digits, ``.``, ``_`` or ``-``.

    One Dagster storage serves one deployment, whose trail is anchored under this name wherever its
    data directory is mounted or copied. Data directories that must share one storage (a staging
    copy beside production, tests on one instance) each need a name of their own: under one name,
    the second is refused as another trail.
    """
    name = os.environ.get(AUDIT_TRAIL_VAR, "").strip()
    if not name:
        return DEFAULT_AUDIT_TRAIL
    if not _AUDIT_TRAIL_NAME.fullmatch(name):
        raise InputError(
            f"{AUDIT_TRAIL_VAR} must be 1 to 64 letters, digits, '.', '_' or '-' starting with a letter or digit, "
            f"got {shown(name)}"
        )
    return name


REGION_STORE_VAR_PREFIX = "ADP_REGION_STORE_"
REGION_LANDING_VAR_PREFIX = "ADP_REGION_LANDING_"


def _per_region(variable_prefix: str, default: Callable[[str], Path]) -> dict[str, Path]:
    """{region: location}: ``<variable_prefix><REGION>`` when set, else ``default(region)``."""
    from ai_data_platform.sources.contracts import REGIONS

    out = {}
    for region in REGIONS:
        explicit = os.environ.get(variable_prefix + region, "").strip()
        out[region] = location(explicit, variable_prefix + region) if explicit else default(region)
    return out


def region_store_paths(p: Paths | None = None) -> dict[str, Path]:
    """{region: DuckDB file} of every region's personal data store: the one place they are configured.

    ``ADP_REGION_STORE_EU`` / ``_US`` / ``_APAC`` point a region's store at storage located in
    that region (a mounted volume, say); unset, it is ``$ADP_DATA_DIR/regions/<region>/personal.duckdb``.
    """
    return _per_region(REGION_STORE_VAR_PREFIX, (p or paths()).default_region_store)


def region_landing_paths(p: Paths | None = None) -> dict[str, Path]:
    """{region: landing zone root} of every region, next to the regional stores and configured the
    same way: the root each region's source systems export their tables holding personal data to
    (``<root>/<source>/<table>/<day>.<ext>``).

    ``ADP_REGION_LANDING_EU`` / ``_US`` / ``_APAC`` point a region's zone at storage located in that
    region; unset, it is ``$ADP_DATA_DIR/regions/<region>/landing``. Tables without personal data
    land in the shared ``$ADP_DATA_DIR/landing`` (see ``sources/landing.LandingZones``).
    """
    return _per_region(REGION_LANDING_VAR_PREFIX, (p or paths()).default_region_landing)


RETENTION_CONFIG_VAR = "ADP_RETENTION_CONFIG"


def retention_config_path() -> Path:
    """The retention policy file: ``ADP_RETENTION_CONFIG`` or the repo's ``governance/retention.toml``."""
    explicit = os.environ.get(RETENTION_CONFIG_VAR, "").strip()
    if explicit:
        return location(explicit, RETENTION_CONFIG_VAR)
    return PROJECT_ROOT / "ai_data_platform" / "governance" / "retention.toml"


def env_int(name: str, default: int, *, minimum: int, maximum: int = 10**9) -> int:
    """A whole-number setting from the environment (``default`` when unset or blank), from
    ``minimum`` to ``maximum``; anything else is an InputError naming the variable."""
    raw = os.environ.get(name, "").strip() or str(default)
    if not re.fullmatch(r"[+-]?[0-9]{1,30}", raw):
        raise InputError(f"{name} must be a whole number, got {shown(raw)}")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise InputError(f"{name} must be from {minimum} to {maximum}, got {shown(raw)}")
    return value


CRM_DATABASE_URL_VAR = "CRM_DATABASE_URL"


def crm_database_url() -> str | None:
    """The CRM's PostgreSQL connection string (``CRM_DATABASE_URL``), or None.

    Set, ``raw/customers`` is extracted from that database's ``customers`` table by an
    ``updated_at`` watermark; unset (the embedded default), from the daily CRM export files.
    """
    url = os.environ.get(CRM_DATABASE_URL_VAR, "").strip() or None
    return None if url is None else judge_postgres_url(url, CRM_DATABASE_URL_VAR)


def crm_overlap() -> timedelta:
    """How far below the watermark each CRM extraction reaches for late commits
    (``CRM_OVERLAP_MINUTES``, default 60, at most a year)."""
    return timedelta(minutes=env_int("CRM_OVERLAP_MINUTES", 60, minimum=0, maximum=366 * 24 * 60))


# Dagster's instance storage moves to PostgreSQL when one of these is set (DAGSTER_PG_URL wins);
# otherwise it stays in SQLite under DAGSTER_HOME. Pairs: (Dagster `postgres_db` field, variable).
DAGSTER_PG_URL_VAR = "DAGSTER_PG_URL"
# Dagster's PostgreSQL storage needs the psycopg2 driver: SQLAlchemy 2.1 maps a bare
# postgresql:// URL to psycopg 3, under which Dagster's `NOTIFY run_events, ...` is a syntax error.
DAGSTER_PG_SCHEME = "postgresql+psycopg2"
_BARE_PG_SCHEMES = ("postgresql", "postgres")
DAGSTER_PG_PARTS = (
    ("hostname", "DAGSTER_PG_HOST"),
    ("username", "DAGSTER_PG_USER"),
    ("password", "DAGSTER_PG_PASSWORD"),
    ("db_name", "DAGSTER_PG_DB"),
    ("port", "DAGSTER_PG_PORT"),
)
_REQUIRED_PG_PARTS = ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_DB")


def _pg_parts() -> dict[str, str]:
    """The DAGSTER_PG_* variables that are set, validated: {variable: value}."""
    present = {var: os.environ[var] for _, var in DAGSTER_PG_PARTS if os.environ.get(var)}
    if not present:
        return {}
    missing = [var for var in _REQUIRED_PG_PARTS if var not in present]
    if missing:
        raise InputError(
            f"{', '.join(sorted(present))} set but {', '.join(missing)} missing: set all of "
            f"{', '.join(_REQUIRED_PG_PARTS)} (DAGSTER_PG_PASSWORD, DAGSTER_PG_PORT optional) or DAGSTER_PG_URL"
        )
    port = present.get("DAGSTER_PG_PORT")
    if port is not None and not (port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536):
        raise InputError(f"DAGSTER_PG_PORT must be a TCP port number, got {shown(port)}")
    return present


def dagster_pg_url() -> str | None:
    """The PostgreSQL URL of Dagster's instance storage (with the psycopg2 driver), or None when
    Dagster uses SQLite.

    From ``DAGSTER_PG_URL``, or assembled from ``DAGSTER_PG_HOST/USER/PASSWORD/DB/PORT``.
    """
    url = os.environ.get(DAGSTER_PG_URL_VAR)
    if url:
        judge_postgres_url(url, DAGSTER_PG_URL_VAR, driver=DAGSTER_PG_SCHEME, database_required=True)
        return f"{DAGSTER_PG_SCHEME}://{url.partition('://')[2]}"
    parts = _pg_parts()
    if not parts:
        return None
    user = quote(parts["DAGSTER_PG_USER"], safe="")
    password = parts.get("DAGSTER_PG_PASSWORD")
    userinfo = f"{user}:{quote(password, safe='')}" if password else user
    port = parts.get("DAGSTER_PG_PORT", "5432")
    return f"{DAGSTER_PG_SCHEME}://{userinfo}@{parts['DAGSTER_PG_HOST']}:{port}/{quote(parts['DAGSTER_PG_DB'], safe='')}"


def dagster_storage_config() -> dict | None:
    """The value of dagster.yaml's ``storage:`` key for PostgreSQL, or None for the SQLite default.

    Every value is an ``{env: VAR}`` reference that Dagster resolves when it loads the instance,
    so no password is ever written to disk and every process (webserver, daemon, run workers,
    ``dagster`` CLI) needs the same variables in its environment. ``DAGSTER_PG_URL`` must name the
    psycopg2 driver for Dagster; ``ensure_dagster_home`` rewrites a bare ``postgresql://`` in
    this process's environment (inherited by every process ``adp`` starts).
    """
    if dagster_pg_url() is None:
        return None
    if os.environ.get(DAGSTER_PG_URL_VAR):
        postgres = {"postgres_url": {"env": DAGSTER_PG_URL_VAR}}
    else:
        parts = _pg_parts()
        fields = {field: {"env": var} for field, var in DAGSTER_PG_PARTS if var in parts}
        postgres = {"postgres_db": {**fields, "scheme": DAGSTER_PG_SCHEME}}
    return {"postgres": postgres}


def dagster_instance_yaml() -> str:
    """The instance config for this environment: the repo's ``dagster.yaml`` (SQLite storage by
    default) plus, when PostgreSQL is configured, a ``storage: postgres`` key (a JSON flow
    mapping, which is YAML)."""
    source = PROJECT_ROOT / "dagster.yaml"
    base = source.read_text() if source.exists() else "telemetry:\n  enabled: false\n"
    storage = dagster_storage_config()
    if storage is None:
        return base
    header = "\n# Written by ai_data_platform.settings.ensure_dagster_home because DAGSTER_PG_* is set.\n"
    return base.rstrip("\n") + "\n" + header + f"storage: {json.dumps(storage)}\n"


def ensure_dagster_home(p: Paths | None = None) -> Path:
    """Create ``$ADP_DATA_DIR/dagster_home`` holding this environment's ``dagster.yaml``.

    Dagster reads its instance config from ``$DAGSTER_HOME/dagster.yaml``. The repo's
    ``dagster.yaml`` is the single source of every setting; with no storage configured there,
    runs, events and schedules live in SQLite under the same directory, so all Dagster state
    follows ``ADP_DATA_DIR``. When ``DAGSTER_PG_URL`` (or ``DAGSTER_PG_HOST/USER/DB``) is set, a
    PostgreSQL ``storage`` section is appended (see ``dagster_instance_yaml``). The file is
    rewritten whenever either changed, so switching needs no edit by hand. The folder is
    owner-only (0700): Dagster's run and event storage lives in it.
    """
    from ai_data_platform.private_files import make_private_dir, write_private  # (it imports settings)

    p = p or paths()
    home = make_private_dir(p.dagster_home)
    if os.environ.get(DAGSTER_PG_URL_VAR):
        os.environ[DAGSTER_PG_URL_VAR] = dagster_pg_url()  # the psycopg2 driver, see DAGSTER_PG_SCHEME
    target = home / "dagster.yaml"
    wanted = dagster_instance_yaml()
    if not target.exists() or target.read_text() != wanted:
        write_private(target, wanted.encode())
    return home


def late_landing_interval_seconds() -> int:
    """How often the late-landing sensor may look for re-exported files (``ADP_LATE_SENSOR_INTERVAL_SECONDS``,
    default 60): lower it to pick late data up sooner, raise it to look less often."""
    return env_int("ADP_LATE_SENSOR_INTERVAL_SECONDS", 60, minimum=1, maximum=7 * 24 * 3600)


REDIS_URL_VAR = "REDIS_URL"


def redis_url() -> str | None:
    """The Redis of the stream transport and the online store (``REDIS_URL``), or None.

    Set, events travel through a Redis Stream and online features live in Redis; unset (the
    embedded default), segment files under ``$ADP_DATA_DIR/stream`` and SQLite under
    ``$ADP_DATA_DIR/online``. ``streaming.backends`` is the one place that reads it.
    """
    url = os.environ.get(REDIS_URL_VAR, "").strip() or None
    return None if url is None else judge_redis_url(url)


def redis_prefix() -> str:
    """Key prefix of everything the platform keeps in Redis (``ADP_REDIS_PREFIX``, default ``adp``)."""
    return os.environ.get("ADP_REDIS_PREFIX", "").strip() or "adp"


# ---------------------------------------------------------------- judging the environment

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _url_shown(url: str) -> str:
    """A connection URL as a message may show it: scheme, host and path, never user or password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "a value without scheme://"
    netloc, slash, path = rest.partition("/")
    return shown(f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path.partition('?')[0]}")


def _split_url(url: str, name: str, schemes: tuple[str, ...], kind: str, expected: str) -> SplitResult:
    """``url`` split, its scheme one of ``schemes`` (``expected`` says which) and its port (if any)
    a TCP port number."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in schemes:
        raise InputError(f"{name} must be a {expected} URL, got {_url_shown(url)}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise InputError(
            f"{name} is not a valid {kind} URL (its host or port is malformed): {_url_shown(url)}"
        ) from None
    return parts


def judge_postgres_url(url: str, name: str, *, driver: str | None = None, database_required: bool = False) -> str:
    """``url`` if it is a PostgreSQL URL libpq can parse, else an InputError naming ``name`` (the
    variable or option) that never shows the password."""
    schemes = (*_BARE_PG_SCHEMES, driver) if driver else _BARE_PG_SCHEMES
    expected = "postgresql://" + (f" (or {driver}://)" if driver else "")
    parts = _split_url(url, name, schemes, "PostgreSQL", expected)
    if database_required and not parts.path.strip("/"):
        raise InputError(f"{name} names no database (postgresql://host:port/DATABASE): {_url_shown(url)}")
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(f"{parts.scheme.split('+')[0]}://{url.partition('://')[2]}")
    except Exception:  # psycopg's message may quote the whole URL, password included
        raise InputError(f"{name} is not a valid PostgreSQL connection string: {_url_shown(url)}") from None
    return url


def judge_redis_url(url: str, name: str = REDIS_URL_VAR) -> str:
    """``url`` if it is a Redis URL (``redis://``, ``rediss://``, ``unix://``; the path a database
    number), else an InputError naming ``name`` that never shows the password."""
    parts = _split_url(url, name, ("redis", "rediss", "unix"), "Redis", "redis://, rediss:// or unix://")
    if parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise InputError(f"{name}: the path must be a database number (redis://host:port/0): {_url_shown(url)}")
    return url


PARTITION_START_VAR = "ADP_PARTITION_START"


def partition_start_override() -> str | None:
    """``ADP_PARTITION_START`` (a day ``YYYY-MM-DD`` from 2000-01-01 on) when set, else None."""
    explicit = os.environ.get(PARTITION_START_VAR, "").strip()
    if not explicit:
        return None
    try:
        day = date.fromisoformat(explicit) if _DAY.fullmatch(explicit) else None
    except ValueError:
        day = None
    if day is None or not date(2000, 1, 1) <= day <= date.today():
        raise InputError(
            f"{PARTITION_START_VAR} must be a day YYYY-MM-DD from 2000-01-01 to today, got {shown(explicit)}"
        )
    return explicit


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_directory(path: Path, name: str) -> None:
    """``path`` (named by the variable ``name``) is a writable directory, or can be created as one."""
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{name}={shown(str(path), 200)} is not a directory")
        if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            raise InputError(f"{name}={shown(str(path), 200)} is not a directory this user can write to")
        return
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(
            f"{name}={shown(str(path), 200)} cannot be created: {shown(str(ancestor), 200)} is not a writable directory"
        )


def _check_region_locations() -> None:
    """The region variables that are set: a store is a file, a landing zone a directory."""
    from ai_data_platform.sources.contracts import REGIONS

    for region in REGIONS:
        store = os.environ.get(REGION_STORE_VAR_PREFIX + region, "").strip()
        if store and Path(store).expanduser().is_dir():
            raise InputError(
                f"{REGION_STORE_VAR_PREFIX}{region}={shown(store, 200)} is a directory; it names a DuckDB file"
            )
        landing = os.environ.get(REGION_LANDING_VAR_PREFIX + region, "").strip()
        if landing:
            check_directory(location(landing, REGION_LANDING_VAR_PREFIX + region), REGION_LANDING_VAR_PREFIX + region)


def check_environment() -> None:
    """Judge every platform variable that is set, before a command does any work: an InputError
    names the first bad one. In ``prod`` the pseudonymization key and the audit key must be usable."""
    if environment() == "prod":
        try:
            pii_hmac_key()
        except (RuntimeError, ValueError) as exc:
            raise InputError(str(exc)) from None
    audit_key()  # set: long enough, not the PII key; in prod: set and strong
    audit_trail()
    check_directory(data_dir(), "ADP_DATA_DIR")
    partition_start_override()
    crm_database_url()
    redis_url()
    dagster_pg_url()
    crm_overlap()
    late_landing_interval_seconds()
    _check_region_locations()
