"""Shared fixtures. Tests never touch ./data: every test that writes state gets a temp ADP_DATA_DIR."""

import os
import socket
import tempfile
from datetime import date
from pathlib import Path

import pytest

# Partitions must not depend on whatever ./data holds on the developer's machine, and no test may
# write there by accident: the default data dir for the whole session is a fresh temp dir.
os.environ["ADP_PARTITION_START"] = "2026-01-01"
os.environ["ADP_DATA_DIR"] = tempfile.mkdtemp(prefix="adp-test-session-")
os.environ.pop("ADP_ALERT_WEBHOOK_URL", None)

END = date(2026, 11, 20)


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(host: str, port: int, name: str) -> None:
    """Skip when a service is down, unless REQUIRE_SERVICES is set (CI): then fail."""
    if service_reachable(host, port):
        return
    if os.environ.get("REQUIRE_SERVICES"):
        pytest.fail(f"{name} at {host}:{port} is unreachable and REQUIRE_SERVICES is set")
    pytest.skip(f"{name} at {host}:{port} is unreachable")


@pytest.fixture()
def data_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "adp"
    d.mkdir()
    monkeypatch.setenv("ADP_DATA_DIR", str(d))
    return d
