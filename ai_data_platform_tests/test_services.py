"""The service guard: an unreachable service skips locally and fails when REQUIRE_SERVICES is set."""

import socket

import pytest

from ai_data_platform_tests.services import POSTGRES, REDIS, require_service


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends


def test_unreachable_service_skips_without_require_services(monkeypatch):
    monkeypatch.delenv("REQUIRE_SERVICES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Nothing is not reachable"):
        require_service("Nothing", "127.0.0.1", _closed_port())


def test_unreachable_service_fails_when_services_are_required(monkeypatch):
    monkeypatch.setenv("REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="REQUIRE_SERVICES is set"):
        require_service("Nothing", "127.0.0.1", _closed_port())


@pytest.mark.parametrize("service", [POSTGRES, REDIS], ids=["postgres", "redis"])
def test_the_machines_services_are_reachable(service):
    require_service(*service)  # skips locally when absent; CI sets REQUIRE_SERVICES and fails
    with socket.create_connection(service[1:], timeout=2):
        pass
