"""Alerts: what they are, where they go, and when a state change deserves one.

This module is deliberately free of Dagster imports so it can be unit-tested (and reused by a CLI)
without an instance. The Dagster side lives in :mod:`ai_data_platform.observability.sensors`.

* :class:`Alert` is one alert: a flat, JSON-serializable record with a *stable* id derived from
  what happened (kind + subject + a state-change marker), so re-processing the same event yields
  the same id and can be deduplicated.
* :class:`AlertSink` delivers alerts: it appends one JSON line per alert to
  ``$ADP_DATA_DIR/alerts.jsonl`` (append-only, fsynced, never rewritten, owner-only) and, when a webhook URL is
  configured, POSTs a Slack-compatible payload with a few bounded retries. Webhook problems are
  logged and recorded, never raised; the webhook URL (a credential) appears in them only as scheme
  and host (see :mod:`ai_data_platform.observability.redaction`).
* :func:`transitions` is the pure state machine that decides which freshness state changes are
  alert-worthy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import requests

from ai_data_platform.observability.redaction import describe_failure, hide_urls_in_http_client_logs, scrub, shown_url
from ai_data_platform.private_files import make_private_dir, private_fd
from ai_data_platform.settings import paths

AlertKind = Literal["freshness", "check_failed", "run_failed"]
Severity = Literal["info", "warning", "error"]

ALERT_KINDS: tuple[str, ...] = ("freshness", "check_failed", "run_failed")
SEVERITIES: tuple[str, ...] = ("info", "warning", "error")
WEBHOOK_ENV_VAR = "ADP_ALERT_WEBHOOK_URL"

# Freshness states as recorded by Dagster (``dagster.FreshnessState`` values), as plain strings.
FRESHNESS_PASS = "PASS"
FRESHNESS_WARN = "WARN"
FRESHNESS_FAIL = "FAIL"
FRESHNESS_UNKNOWN = "UNKNOWN"
#: States that are a breach: entering one of these raises an alert.
BREACH_STATES = frozenset({FRESHNESS_WARN, FRESHNESS_FAIL})

# Slack limits: header text <= 150 chars, section text <= 3000 chars, context text <= 3000 chars.
_SLACK_HEADER_MAX = 150
_SLACK_TEXT_MAX = 3000
_SEVERITY_EMOJI = {
    "info": ":white_check_mark:",
    "warning": ":warning:",
    "error": ":rotating_light:",
}

logger = logging.getLogger(__name__)

_PERMANENT_REQUEST_ERRORS = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
)
# How much of an error response's body is searched for echoes of the URL, and how much is kept.
_RESPONSE_SCRUB_CHARS = 65536
_RESPONSE_KEEP_CHARS = 200


def utc_iso(timestamp: float | datetime | None = None) -> str:
    """An ISO-8601 UTC timestamp (``2025-01-31T12:00:00.123456+00:00``); now when ``None``."""
    if timestamp is None:
        moment = datetime.now(timezone.utc)
    elif isinstance(timestamp, datetime):
        moment = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=timezone.utc)
        moment = moment.astimezone(timezone.utc)
    else:
        moment = datetime.fromtimestamp(float(timestamp), tz=timezone.utc)
    return moment.isoformat()


def alert_id(kind: str, subject: str, marker: str) -> str:
    """Stable alert id: ``<kind>-<16 hex chars>`` of sha256(kind, subject, marker).

    ``subject`` names what the alert is about (an asset key, a check key, a run id) and ``marker``
    pins the specific state change (e.g. ``FAIL@<timestamp>`` or a check execution id), so the
    same occurrence always maps to the same id and a new occurrence to a new one.
    """
    digest = hashlib.sha256(f"{kind}\x1f{subject}\x1f{marker}".encode()).hexdigest()
    return f"{kind}-{digest[:16]}"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, kw_only=True)
class Alert:
    """One alert, serialized as one JSON line in ``alerts.jsonl``.

    Attributes:
        id: stable id (see :func:`alert_id`); equal ids mean "the same occurrence".
        kind: ``freshness`` | ``check_failed`` | ``run_failed``.
        severity: ``info`` | ``warning`` | ``error``.
        asset_key: slash-separated asset key (``raw/orders``) or ``None``.
        partition: partition key or ``None``.
        title: one-line summary.
        message: human-readable explanation.
        run_id: the Dagster run involved, if any.
        occurred_at: ISO-8601 UTC time of the underlying event (not of the sensor tick).
        details: extra JSON-serializable context (check name, job name, tags, policy, ...).
    """

    id: str
    kind: AlertKind
    severity: Severity
    asset_key: str | None = None
    partition: str | None = None
    title: str = ""
    message: str = ""
    run_id: str | None = None
    occurred_at: str = field(default_factory=utc_iso)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {self.kind!r}; expected one of {ALERT_KINDS}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}; expected one of {SEVERITIES}")

    @classmethod
    def create(cls, *, kind: AlertKind, subject: str, marker: str, **fields: Any) -> Alert:
        """Build an alert whose id is derived from ``kind``, ``subject`` and ``marker``."""
        return cls(id=alert_id(kind, subject, marker), kind=kind, **fields)

    def to_dict(self) -> dict[str, Any]:
        """The alert as a plain dict (field order as declared)."""
        return asdict(self)

    def to_json(self) -> str:
        """The alert as one compact JSON line (no trailing newline)."""
        return json.dumps(self.to_dict(), default=str, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    def slack_payload(self) -> dict[str, Any]:
        """A Slack-compatible (incoming webhook) payload: ``{"text": ..., "blocks": [...]}``.

        ``text`` is the notification fallback; ``blocks`` render a header, the message and a
        context line naming kind, asset, partition, run and alert id.
        """
        emoji = _SEVERITY_EMOJI.get(self.severity, "")
        text = f"{emoji} [{self.severity.upper()}] {self.title}".strip()
        context_bits = [f"*kind:* {self.kind}"]
        if self.asset_key:
            context_bits.append(f"*asset:* `{self.asset_key}`")
        if self.partition:
            context_bits.append(f"*partition:* `{self.partition}`")
        if self.run_id:
            context_bits.append(f"*run:* `{self.run_id}`")
        context_bits.append(f"*at:* {self.occurred_at}")
        context_bits.append(f"*id:* {self.id}")
        header = _truncate(f"[{self.severity.upper()}] {self.title}", _SLACK_HEADER_MAX)
        body = _truncate(self.message or self.title, _SLACK_TEXT_MAX)
        context = _truncate(" | ".join(context_bits), _SLACK_TEXT_MAX)
        return {
            "text": _truncate(text, _SLACK_TEXT_MAX),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": header}},
                {"type": "section", "text": {"type": "mrkdwn", "text": body}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
            ],
        }


def transitions(
    previous: Mapping[str, str], current: Mapping[str, str]
) -> list[tuple[str, str, str]]:
    """Alert-worthy freshness state changes between two snapshots, as ``(subject, old, new)``.

    ``previous``/``current`` map a subject (asset key) to a freshness state string (``PASS``,
    ``WARN``, ``FAIL``, ``UNKNOWN``, ``NOT_APPLICABLE``). A subject missing from ``previous`` counts
    as ``UNKNOWN``; subjects missing from ``current`` are ignored (no longer monitored).

    Alert-worthy:

    * a change *into* ``WARN`` or ``FAIL`` (from anything else, including ``WARN`` <-> ``FAIL``);
    * a recovery: ``WARN``/``FAIL`` -> ``PASS``.

    Everything else (no change, ``UNKNOWN`` -> ``PASS``, ``PASS`` -> ``UNKNOWN``, ...) is silent.
    Results are sorted by subject so callers behave deterministically.
    """
    changes: list[tuple[str, str, str]] = []
    for subject in sorted(current):
        new = current[subject]
        old = previous.get(subject, FRESHNESS_UNKNOWN)
        if new == old:
            continue
        if new in BREACH_STATES or (new == FRESHNESS_PASS and old in BREACH_STATES):
            changes.append((subject, old, new))
    return changes


@dataclass
class DeliveryResult:
    """Outcome of delivering one alert to the webhook.

    ``skipped`` is true when no webhook is configured (nothing was attempted).
    """

    alert_id: str
    delivered: bool
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None
    skipped: bool = False
    elapsed_seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return not self.delivered and not self.skipped


@dataclass
class PostOutcome:
    """What :func:`post_json` achieved."""

    delivered: bool
    attempts: int = 0
    status_code: int | None = None
    error: str | None = None
    elapsed_seconds: float = 0.0


def post_json(
    url: str,
    payload: Any,
    *,
    headers: Mapping[str, str] | None = None,
    attempts: int = 3,
    backoff_seconds: float = 0.25,
    timeout_seconds: float = 2.0,
    max_total_seconds: float = 3.0,
    session: requests.Session | None = None,
    log: logging.Logger | logging.LoggerAdapter | None = None,
    what: str = "POST",
) -> PostOutcome:
    """POST ``payload`` as JSON with bounded retries; never raises.

    Up to ``attempts`` tries with exponential backoff (``backoff_seconds``, doubled each time),
    each with a ``timeout_seconds`` timeout, all within roughly ``max_total_seconds``. Retried on
    connection errors, timeouts, HTTP 429 and 5xx; other 4xx, redirects (never followed: the
    payload goes to the configured host or nowhere) and malformed URLs are permanent. The outcome's
    ``error`` and every log line name the failure without the URL's secret parts (credentials,
    path, query), whatever the exception or the response said.
    """
    hide_urls_in_http_client_logs()
    log = log or logger
    started = time.monotonic()
    deadline = started + max_total_seconds
    tries = 0
    status_code: int | None = None
    error: str | None = None
    poster = session.post if session is not None else requests.post
    while tries < attempts:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            error = f"{error}; time budget exhausted" if error else "time budget exhausted"
            break
        tries += 1
        retryable = True
        try:
            response = poster(
                url, json=payload, headers=dict(headers or {}), timeout=min(timeout_seconds, remaining), allow_redirects=False
            )
            status_code = response.status_code
            if 200 <= status_code < 300:
                return PostOutcome(True, tries, status_code, None, time.monotonic() - started)
            error = _http_error(status_code, response, url)
            retryable = status_code == 429 or status_code >= 500
        except _PERMANENT_REQUEST_ERRORS as exc:  # a malformed URL will not get better
            error = describe_failure(exc, url)
            retryable = False
        except requests.RequestException as exc:  # connection refused, timeout, ...
            error = describe_failure(exc, url)
        except Exception as exc:  # a broken URL or adapter must not crash the caller
            error = describe_failure(exc, url)
            retryable = False
        if not retryable or tries >= attempts:
            break
        delay = backoff_seconds * (2 ** (tries - 1))
        if time.monotonic() + delay >= deadline:
            break
        log.info(f"{what}: attempt {tries}/{attempts} failed ({error}); retrying in {delay:.2f}s")
        time.sleep(delay)
    return PostOutcome(False, tries, status_code, error, time.monotonic() - started)


def _http_error(status_code: int, response: requests.Response, url: str) -> str:
    """``HTTP <status>: <start of the body>`` on one line, the body scrubbed of the URL's secret
    parts (an error page may echo the request path or credentials)."""
    if 300 <= status_code < 400:
        return f"HTTP {status_code}: a redirect, not followed"
    try:
        body = response.text[:_RESPONSE_SCRUB_CHARS]
    except Exception:  # an undecodable body is no reason to fail
        body = ""
    return f"HTTP {status_code}: {' '.join(scrub(body, url).split())[:_RESPONSE_KEEP_CHARS]}"


class AlertSink:
    """Delivers alerts to an append-only JSON-lines file and, optionally, a webhook.

    The file is the system of record and is written *first*: one line per alert, appended with a
    single ``write`` on an ``O_APPEND`` descriptor and ``fsync``-ed; existing content is never
    rewritten. The webhook is best effort: up to ``attempts`` POSTs with exponential backoff
    (``backoff_seconds``, doubled each time), each with a ``timeout_seconds`` timeout, all within
    roughly ``max_total_seconds``. Retried on connection errors, timeouts, HTTP 429 and 5xx; other
    4xx responses are permanent. A failed delivery is logged, kept in :attr:`delivery_failures`
    and returned, never raised.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        webhook_url: str | None = None,
        *,
        attempts: int = 3,
        backoff_seconds: float = 0.25,
        timeout_seconds: float = 2.0,
        max_total_seconds: float = 3.0,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be >= 1")
        self.path = Path(path)
        self.webhook_url = webhook_url or None
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.max_total_seconds = max_total_seconds
        self.log = log or logger
        self._session = session
        self.delivery_failures: list[DeliveryResult] = []

    @classmethod
    def from_env(
        cls, *, log: logging.Logger | logging.LoggerAdapter | None = None, **kwargs: Any
    ) -> AlertSink:
        """A sink writing to ``paths().alerts`` and posting to ``$ADP_ALERT_WEBHOOK_URL`` if set.

        Both are read at call time.
        """
        url = os.environ.get(WEBHOOK_ENV_VAR, "").strip() or None
        return cls(paths().alerts, url, log=log, **kwargs)

    # -- file -------------------------------------------------------------------------------

    def write(self, alert: Alert) -> None:
        """Append ``alert`` as one JSON line and fsync. Never truncates or rewrites the file."""
        make_private_dir(self.path.parent)
        line = (alert.to_json() + "\n").encode("utf-8")
        fd = private_fd(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            written = 0
            while written < len(line):  # os.write may write partially; loop until done
                written += os.write(fd, line[written:])
            os.fsync(fd)
        finally:
            os.close(fd)

    def read_alerts(self) -> list[Alert]:
        """All well-formed alerts in the file, oldest first (malformed lines are skipped)."""
        if not self.path.exists():
            return []
        alerts = []
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    alerts.append(Alert.from_dict(json.loads(line)))
                except (ValueError, TypeError):
                    continue
        return alerts

    def recent_ids(self, max_bytes: int = 1_000_000) -> set[str]:
        """Ids of the alerts in the last ``max_bytes`` of the file (cheap dedup lookup)."""
        if not self.path.exists():
            return set()
        with self.path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            start = max(0, size - max_bytes)
            handle.seek(start)
            chunk = handle.read()
        lines = chunk.split(b"\n")
        if start > 0:
            lines = lines[1:]  # first line is probably cut in the middle
        ids: set[str] = set()
        for raw in lines:
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get("id"), str):
                ids.add(value["id"])
        return ids

    # -- webhook ----------------------------------------------------------------------------

    def post(self, alert: Alert) -> DeliveryResult:
        """POST ``alert.slack_payload()`` to the webhook with bounded retries; never raises."""
        if not self.webhook_url:
            return DeliveryResult(alert_id=alert.id, delivered=False, skipped=True)
        outcome = post_json(
            self.webhook_url,
            alert.slack_payload(),
            attempts=self.attempts,
            backoff_seconds=self.backoff_seconds,
            timeout_seconds=self.timeout_seconds,
            max_total_seconds=self.max_total_seconds,
            session=self._session,
            log=self.log,
            what=f"Alert webhook delivery of {alert.id}",
        )
        result = DeliveryResult(
            alert_id=alert.id,
            delivered=outcome.delivered,
            attempts=outcome.attempts,
            status_code=outcome.status_code,
            error=outcome.error,
            elapsed_seconds=outcome.elapsed_seconds,
        )
        if not outcome.delivered:
            self.delivery_failures.append(result)
            self.log.warning(
                f"Alert webhook delivery to {shown_url(self.webhook_url)} failed for {alert.id} after "
                f"{outcome.attempts} attempt(s) in {outcome.elapsed_seconds:.2f}s: {outcome.error}. "
                f"The alert is recorded in {self.path}."
            )
        return result

    # -- both -------------------------------------------------------------------------------

    def emit(self, alert: Alert) -> DeliveryResult:
        """Record ``alert`` in the file, then deliver it to the webhook (if configured)."""
        self.write(alert)
        return self.post(alert)

    def emit_all(self, alerts: Iterable[Alert]) -> list[DeliveryResult]:
        """:meth:`emit` each alert in order."""
        return [self.emit(alert) for alert in alerts]
