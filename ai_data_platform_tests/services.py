"""Reaching the real services tests need (PostgreSQL, Redis): skip when absent, fail in CI."""

from __future__ import annotations

import os
import socket

import pytest

POSTGRES = ("PostgreSQL", "127.0.0.1", 5432)
REDIS = ("Redis", "127.0.0.1", 6379)


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is unreachable, unless ``REQUIRE_SERVICES`` is set (CI): then fail.

    Usage in a test or fixture: ``require_service(*POSTGRES)``.
    """
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{name} is not reachable on {host}:{port} ({exc})"
        if os.environ.get("REQUIRE_SERVICES"):
            pytest.fail(f"{message}; REQUIRE_SERVICES is set, so this fails instead of skipping")
        pytest.skip(message)
