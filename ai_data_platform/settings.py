"""Where state lives and which environment we run in.

Every path the platform writes is derived from ``ADP_DATA_DIR`` (default ``data/`` under the
current working directory), read at call time so a test or a deployment can relocate all state,
Dagster's instance storage included, by setting one variable.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

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


def data_dir() -> Path:
    """The data directory, from ``ADP_DATA_DIR`` or ``./data``, made absolute."""
    return Path(os.environ.get("ADP_DATA_DIR", DEFAULT_DATA_DIR)).expanduser().resolve()


def paths() -> Paths:
    return Paths(data_dir())


def environment() -> str:
    """``local`` (embedded default) or ``prod`` (services), from ``ADP_ENV``."""
    env = os.environ.get("ADP_ENV", "local").strip().lower()
    if env not in {"local", "prod"}:
        raise ValueError(f"ADP_ENV must be 'local' or 'prod', got {env!r}")
    return env


def pii_hmac_key() -> str:
    """The HMAC key for pseudonymized join keys (``ADP_PII_HMAC_KEY``).

    Outside ``prod`` the documented demo key is used when none is set; in ``prod`` a missing key
    is an error, so no production data is ever hashed with a public key.
    """
    key = os.environ.get("ADP_PII_HMAC_KEY")
    if key:
        return key
    if environment() == "prod":
        raise RuntimeError("ADP_PII_HMAC_KEY must be set when ADP_ENV=prod")
    return DEMO_PII_HMAC_KEY


def ensure_dagster_home(p: Paths | None = None) -> Path:
    """Create ``$ADP_DATA_DIR/dagster_home`` holding the project's ``dagster.yaml``.

    Dagster reads its instance config from ``$DAGSTER_HOME/dagster.yaml`` and, with no storage
    configured there, keeps runs, events and schedules in SQLite under the same directory, so all
    Dagster state follows ``ADP_DATA_DIR``. The repo's ``dagster.yaml`` is the single source; it
    is copied whenever it changed.
    """
    p = p or paths()
    home = p.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    source = PROJECT_ROOT / "dagster.yaml"
    target = home / "dagster.yaml"
    if source.exists() and (not target.exists() or target.read_bytes() != source.read_bytes()):
        shutil.copyfile(source, target)
    elif not target.exists():
        target.write_text("telemetry:\n  enabled: false\n")
    return home
