"""Pure tests of ai_data_platform.observability.alerts (no Dagster involved)."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ai_data_platform.observability.alerts import (
    Alert,
    AlertSink,
    alert_id,
    transitions,
)
from ai_data_platform_tests.waiting import bound

# -- helpers ---------------------------------------------------------------------------------------


def make_alert(n: int = 1, **overrides) -> Alert:
    fields = {
        "kind": "check_failed",
        "subject": f"raw/orders:not_empty[{n}]",
        "marker": f"run-{n}:{n}",
        "severity": "error",
        "asset_key": "raw/orders",
        "partition": "2025-01-01",
        "title": f"Blocking check failed: not_empty on raw/orders ({n})",
        "message": "Blocking check `not_empty` failed on asset `raw/orders`: 0 rows",
        "run_id": f"run-{n}",
        "details": {"check_name": "not_empty", "metadata": {"message": "0 rows"}},
    }
    fields.update(overrides)
    return Alert.create(**fields)


class _Hook:
    """A tiny webhook on 127.0.0.1: fails the first ``fail_first`` POSTs with ``fail_status``."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500, delay: float = 0.0):
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.delay = delay
        self.received: list[dict] = []
        self._lock = threading.Lock()
        self.released = threading.Event()  # ends every ``delay`` early: the server is shutting down


@contextlib.contextmanager
def webhook_server(
    fail_first: int = 0, fail_status: int = 500, delay: float = 0.0
) -> Iterator[tuple[str, _Hook]]:
    """Serve :class:`_Hook` on a free local port; yields ``(url, hook)``."""
    hook = _Hook(fail_first, fail_status, delay)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with hook._lock:
                hook.received.append(
                    {"content_type": self.headers.get("Content-Type"), "body": body.decode()}
                )
                failing = len(hook.received) <= hook.fail_first
            if hook.delay:
                hook.released.wait(hook.delay)
            status = hook.fail_status if failing else 200
            payload = b"nope" if failing else b"ok"
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", hook
    finally:
        hook.released.set()
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# -- transitions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "alerts"),
    [
        (None, "PASS", False),  # UNKNOWN -> PASS: first evaluation, nothing to say
        ("UNKNOWN", "PASS", False),
        (None, "FAIL", True),  # first seen already failing
        (None, "WARN", True),
        ("PASS", "WARN", True),
        ("PASS", "FAIL", True),
        ("WARN", "FAIL", True),
        ("FAIL", "WARN", True),  # a change into WARN
        ("FAIL", "PASS", True),  # recovered
        ("WARN", "PASS", True),  # recovered
        ("FAIL", "FAIL", False),  # no change, no alert (not every tick)
        ("PASS", "PASS", False),
        ("PASS", "UNKNOWN", False),
        ("FAIL", "UNKNOWN", False),
        ("FAIL", "NOT_APPLICABLE", False),
        ("UNKNOWN", "NOT_APPLICABLE", False),
    ],
)
def test_transitions_single_subject(old, new, alerts):
    previous = {} if old is None else {"raw/orders": old}
    expected = [("raw/orders", old or "UNKNOWN", new)] if alerts else []
    assert transitions(previous, {"raw/orders": new}) == expected


def test_transitions_many_subjects_sorted_and_removed_ignored():
    previous = {"b": "PASS", "a": "FAIL", "gone": "PASS", "c": "WARN"}
    current = {"c": "WARN", "b": "FAIL", "a": "PASS", "d": "UNKNOWN"}
    assert transitions(previous, current) == [("a", "FAIL", "PASS"), ("b", "PASS", "FAIL")]
    assert transitions(current, current) == []


# -- Alert -----------------------------------------------------------------------------------------


def test_alert_id_is_stable_and_distinguishes_occurrences():
    assert alert_id("freshness", "a", "FAIL@1") == alert_id("freshness", "a", "FAIL@1")
    assert alert_id("freshness", "a", "FAIL@1") != alert_id("freshness", "a", "FAIL@2")
    assert alert_id("freshness", "a", "FAIL@1") != alert_id("freshness", "b", "FAIL@1")
    assert alert_id("freshness", "a", "x").startswith("freshness-")
    assert make_alert(1).id == make_alert(1).id != make_alert(2).id


def test_alert_validates_kind_and_severity():
    with pytest.raises(ValueError):
        make_alert(kind="disk_full")
    with pytest.raises(ValueError):
        make_alert(severity="catastrophic")


def test_alert_json_round_trip_and_field_order():
    alert = make_alert()
    data = json.loads(alert.to_json())
    assert list(data) == [
        "id", "kind", "severity", "asset_key", "partition", "title", "message",
        "run_id", "occurred_at", "details",
    ]
    assert "\n" not in alert.to_json()
    assert Alert.from_dict(data) == alert
    assert data["occurred_at"].endswith("+00:00")


def test_slack_payload_is_slack_compatible():
    alert = make_alert(title="x" * 500, message="y" * 5000)
    payload = alert.slack_payload()
    json.dumps(payload)  # serializable
    assert set(payload) == {"text", "blocks"}
    assert isinstance(payload["text"], str) and "[ERROR]" in payload["text"]
    types = [block["type"] for block in payload["blocks"]]
    assert types == ["header", "section", "context"]
    assert payload["blocks"][0]["text"]["type"] == "plain_text"
    assert len(payload["blocks"][0]["text"]["text"]) <= 150
    assert len(payload["blocks"][1]["text"]["text"]) <= 3000
    context = payload["blocks"][2]["elements"][0]["text"]
    assert "raw/orders" in context and "2025-01-01" in context and alert.id in context


# -- AlertSink: file -------------------------------------------------------------------------------


def test_sink_appends_one_line_per_alert_and_never_rewrites(tmp_path):
    path = tmp_path / "nested" / "alerts.jsonl"
    sink = AlertSink(path)
    first = make_alert(1)
    assert sink.emit(first).skipped  # no webhook configured: nothing attempted
    before = path.read_bytes()
    sink.emit(make_alert(2))
    sink.write(make_alert(3))
    after = path.read_bytes()
    assert after.startswith(before)  # earlier content untouched
    lines = after.decode().splitlines()
    assert len(lines) == 3
    assert [json.loads(line)["id"] for line in lines] == [make_alert(n).id for n in (1, 2, 3)]
    assert [a.id for a in sink.read_alerts()] == [make_alert(n).id for n in (1, 2, 3)]
    assert sink.recent_ids() == {make_alert(n).id for n in (1, 2, 3)}


def test_sink_keeps_existing_content_and_skips_garbage(tmp_path):
    path = tmp_path / "alerts.jsonl"
    path.write_text("not json\n")
    sink = AlertSink(path)
    sink.write(make_alert(1))
    assert path.read_text().startswith("not json\n")
    assert [a.id for a in sink.read_alerts()] == [make_alert(1).id]
    # A tail read that starts mid-line ignores the cut line.
    for n in range(2, 30):
        sink.write(make_alert(n))
    assert make_alert(29).id in sink.recent_ids(max_bytes=2000)


def test_sink_from_env_reads_environment_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("ADP_DATA_DIR", str(tmp_path / "d1"))
    monkeypatch.delenv("ADP_ALERT_WEBHOOK_URL", raising=False)
    sink = AlertSink.from_env()
    assert sink.path == (tmp_path / "d1" / "alerts.jsonl").resolve()
    assert sink.webhook_url is None
    monkeypatch.setenv("ADP_DATA_DIR", str(tmp_path / "d2"))
    monkeypatch.setenv("ADP_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    sink = AlertSink.from_env()
    assert sink.path == (tmp_path / "d2" / "alerts.jsonl").resolve()
    assert sink.webhook_url == "http://127.0.0.1:9/hook"


# -- AlertSink: webhook ----------------------------------------------------------------------------


def test_webhook_retries_then_succeeds(tmp_path):
    with webhook_server(fail_first=2) as (url, hook):
        sink = AlertSink(tmp_path / "alerts.jsonl", url, backoff_seconds=0.05)
        alert = make_alert()
        result = sink.emit(alert)
    assert result.delivered and result.attempts == 3 and result.status_code == 200
    assert not sink.delivery_failures
    assert len(hook.received) == 3
    for request in hook.received:
        assert request["content_type"] == "application/json"
        assert json.loads(request["body"]) == alert.slack_payload()
    assert len(sink.read_alerts()) == 1


def test_webhook_always_failing_is_logged_recorded_and_not_raised(tmp_path, caplog):
    with webhook_server(fail_first=10**6) as (url, hook):
        sink = AlertSink(tmp_path / "alerts.jsonl", url, backoff_seconds=0.05)
        with caplog.at_level(logging.WARNING):
            result = sink.emit(make_alert())
    assert not result.delivered and result.failed
    assert result.attempts == 3 and len(hook.received) == 3
    assert result.status_code == 500 and "HTTP 500" in result.error
    assert sink.delivery_failures == [result]
    assert "webhook delivery" in caplog.text and "/hook" not in caplog.text  # URL path redacted
    assert [a.id for a in sink.read_alerts()] == [make_alert().id]  # still recorded


def test_webhook_client_error_is_not_retried(tmp_path):
    with webhook_server(fail_first=10**6, fail_status=400) as (url, hook):
        result = AlertSink(tmp_path / "alerts.jsonl", url, backoff_seconds=0.05).emit(make_alert())
    assert not result.delivered and result.attempts == 1 and len(hook.received) == 1


def test_webhook_closed_port_does_not_raise(tmp_path, caplog):
    sink = AlertSink(tmp_path / "alerts.jsonl", closed_port_url(), backoff_seconds=0.05)
    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        result = sink.emit(make_alert())
        elapsed = time.monotonic() - started
    assert not result.delivered and result.attempts == 3
    assert result.status_code is None and "ConnectionError" in result.error
    assert sink.delivery_failures == [result]
    assert elapsed < sink.max_total_seconds + bound(10)  # within its time budget, give or take a busy machine
    assert "webhook delivery" in caplog.text
    assert len(sink.read_alerts()) == 1


def test_webhook_total_time_is_bounded_for_a_hanging_server(tmp_path):
    # the server hangs far longer than the client's budget plus any slowness of a busy machine
    with webhook_server(fail_first=0, delay=bound(60)) as (url, _hook):
        sink = AlertSink(
            tmp_path / "alerts.jsonl", url, timeout_seconds=0.2, max_total_seconds=0.7,
            backoff_seconds=0.05,
        )
        started = time.monotonic()
        result = sink.emit(make_alert())
        elapsed = time.monotonic() - started
    assert not result.delivered and result.failed
    assert "Timeout" in result.error
    assert elapsed < sink.max_total_seconds + bound(10)  # gave up long before the server answered
    assert len(sink.read_alerts()) == 1


def test_webhook_invalid_url_does_not_raise(tmp_path):
    result = AlertSink(tmp_path / "alerts.jsonl", "not a url").emit(make_alert())
    assert result.failed and result.error and result.attempts == 1  # permanent: not retried


# -- the webhook URL is a secret -------------------------------------------------------------------

TOKEN = "T0KEN-of-the-webhook-4f2a9c"
PASSWORD = "hunter2-webhook-pass"


def secret_url(base: str = "https://hooks.example.com") -> str:
    """A webhook URL carrying secrets everywhere a URL can: credentials, path and query."""
    scheme, _, host = base.partition("://")
    return f"{scheme}://alerts:{PASSWORD}@{host}/services/T000/B000/{TOKEN}?token={TOKEN}&sig=s1gn4ture-{TOKEN}"


BASIC_CREDENTIALS = base64.b64encode(f"alerts:{PASSWORD}".encode()).decode()  # as requests sends them


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (TOKEN, PASSWORD, "s1gn4ture", "/services/T000", BASIC_CREDENTIALS):
            assert secret not in text, (secret, text)


class RaisingSession:
    """A requests-like session whose post raises ``exc``; records the calls it got."""

    def __init__(self, exc: BaseException):
        self.exc = exc
        self.calls: list[dict] = []

    def post(self, url, **kwargs):
        self.calls.append(kwargs)
        raise self.exc


def _failures(url: str) -> dict[str, BaseException]:
    import urllib.error

    import requests

    response = requests.Response()
    response.status_code, response.url = 404, url
    http_error = requests.HTTPError(f"404 Client Error: Not Found for url: {url}", response=response)
    wrapped = requests.ConnectionError(f"HTTPSConnectionPool(host='hooks.example.com', port=443): Max retries exceeded with url: {url}")
    wrapped.__context__ = ConnectionRefusedError(111, "Connection refused")
    return {
        "ConnectionError": wrapped,
        "Timeout": requests.Timeout(f"HTTPSConnectionPool: Read timed out. url: {url}"),
        "ConnectTimeout": requests.ConnectTimeout(f"connect timeout to {url}"),
        "InvalidURL": requests.exceptions.InvalidURL(f"Invalid URL {url!r}: No host supplied"),
        "MissingSchema": requests.exceptions.MissingSchema(f"Invalid URL {url!r}: No scheme supplied"),
        "HTTPError": http_error,
        "TooManyRedirects": requests.TooManyRedirects(f"Exceeded 30 redirects: {url}"),
        "urllib URLError": urllib.error.URLError(OSError(111, f"refused by {url}")),
        "urllib HTTPError": urllib.error.HTTPError(url, 403, f"Forbidden: {url}", {}, None),
        "OSError quoting the URL": OSError(5, f"I/O error on {url}"),
        "anything else": RuntimeError(f"adapter broke on {url}"),
    }


@pytest.mark.parametrize("failure", list(_failures(secret_url())))
def test_a_failing_post_never_shows_the_webhook_secrets(tmp_path, caplog, capsys, failure):
    url = secret_url()
    session = RaisingSession(_failures(url)[failure])
    sink = AlertSink(tmp_path / "alerts.jsonl", url, session=session, backoff_seconds=0.01)
    with caplog.at_level(logging.DEBUG):
        result = sink.emit(make_alert())
    assert result.failed and result.error and session.calls
    assert all(call["allow_redirects"] is False for call in session.calls)
    captured = capsys.readouterr()
    assert_no_secret(result.error, caplog.text, captured.out, captured.err, (tmp_path / "alerts.jsonl").read_text())
    assert f"Alert webhook delivery to https://hooks.example.com failed for {make_alert().id}" in caplog.text
    assert result.error.startswith(type(_failures(url)[failure]).__name__)


@contextlib.contextmanager
def echoing_server(status: int) -> Iterator[tuple[str, list[str]]]:
    """A local server answering every request with ``status`` and a body (and for 3xx a Location)
    quoting the request's path; yields (base URL, request lines received)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = f"no such hook: {self.path} ({self.headers.get('Authorization')})".encode()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", self.path + "/moved")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "attempts"), [(500, 3), (404, 1), (302, 1), (307, 1)])
def test_an_error_page_echoing_the_path_is_scrubbed_and_redirects_are_not_followed(tmp_path, caplog, capsys, status, attempts):
    with echoing_server(status) as (base, seen), caplog.at_level(logging.DEBUG):
        url = secret_url(base)
        result = AlertSink(tmp_path / "alerts.jsonl", url, backoff_seconds=0.01).emit(make_alert())
    assert result.failed and result.status_code == status and result.attempts == attempts
    assert len(seen) == attempts and all(line.startswith("POST /services/T000/B000/") for line in seen)  # never the Location
    assert result.error.startswith(f"HTTP {status}: ")
    assert ("not followed" in result.error) == (status in (302, 307))
    captured = capsys.readouterr()
    assert_no_secret(result.error, caplog.text, captured.out, captured.err, (tmp_path / "alerts.jsonl").read_text())
    assert f"delivery to {base} failed" in caplog.text


def test_an_unreachable_secret_webhook_is_logged_as_scheme_and_host(tmp_path, caplog, capsys):
    url = secret_url(closed_port_url().rsplit("/", 1)[0])
    with caplog.at_level(logging.DEBUG):
        result = AlertSink(tmp_path / "alerts.jsonl", url, backoff_seconds=0.01).emit(make_alert())
    assert result.error == "ConnectionError: Connection refused"
    captured = capsys.readouterr()
    assert_no_secret(result.error, caplog.text, captured.out, captured.err)


def test_lineage_delivery_never_shows_its_endpoint_secrets(tmp_path, caplog):
    from ai_data_platform.governance.openlineage import LineageSink

    url = secret_url(closed_port_url().rsplit("/", 1)[0])
    sink = LineageSink(tmp_path / "lineage", url, backoff_seconds=0.01)
    sink.write([{"eventType": "START"}])
    with caplog.at_level(logging.DEBUG):
        report = sink.deliver()
    assert report.error and report.pending == 1
    assert_no_secret(report.error, caplog.text)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T/B/x", "https://hooks.slack.com"),
        ("https://u:p@Hooks.Example.com:8443/x?token=t#f", "https://hooks.example.com:8443"),
        ("http://[::1]:9000/x", "http://[::1]:9000"),
        ("not a url", "<malformed URL>"),
        ("http://host:99999/x", "<malformed URL>"),
        ("", "<malformed URL>"),
    ],
)
def test_shown_url_is_scheme_and_host_only(url, shown):
    from ai_data_platform.observability.redaction import shown_url

    assert shown_url(url) == shown
