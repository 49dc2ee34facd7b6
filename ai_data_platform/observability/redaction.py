"""Webhook and endpoint URLs as they may be shown: scheme and host only.

A webhook URL is a credential: Slack's path is its token, others carry ``user:password@`` or a
``?token=`` query. Wherever such a URL could reach a log, an alert file, an exception message, a
Dagster event or stderr, it is shown as ``scheme://host[:port]`` (:func:`shown_url`). A failed
request is described by :func:`describe_failure` without the exception's own text (requests,
urllib3 and urllib quote the URL in theirs), and any text that might still echo the URL (a
response body) goes through :func:`scrub`, which removes every secret part of it in the forms it
may take (as given, percent-encoded, decoded). :func:`hide_urls_in_http_client_logs` keeps
urllib3's own debug and retry log lines from quoting request paths.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, quote, unquote, urlsplit

HIDDEN = "…"
# Parts shorter than this are not searched for in error texts (they would mangle ordinary words).
_MIN_SECRET_LENGTH = 3
# What requests keeps unquoted when it re-quotes a URL (``requests.utils.requote_uri``).
_REQUESTS_SAFE = "!#$%&'()*+,/:;=?@[]~"
_HTTP_CLIENT_LOGGERS = (
    "urllib3",
    "urllib3.connection",
    "urllib3.connectionpool",
    "urllib3.poolmanager",
    "urllib3.response",
    "urllib3.util.retry",
)


def shown_url(url: str | None) -> str:
    """``scheme://host[:port]`` of ``url``: never its user, password, path, query or fragment."""
    try:
        parts = urlsplit(str(url or "").strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "<malformed URL>"
    if not host or not parts.scheme:
        return "<malformed URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def _forms(text: str) -> set[str]:
    """``text`` as given, percent-decoded and percent-encoded (as requests and urllib quote)."""
    return {text, unquote(text), quote(text, safe=_REQUESTS_SAFE), quote(unquote(text), safe=_REQUESTS_SAFE), quote(text, safe="")}


def _basic_credentials(user: str, password: str) -> set[str]:
    """``user:password`` as an HTTP Basic ``Authorization`` header carries it (base64), the way
    requests sends a URL's credentials (an error page may echo the header)."""
    pair = f"{unquote(user)}:{unquote(password)}"
    out = set()
    for encoding in ("latin-1", "utf-8"):
        try:
            out.add(base64.b64encode(pair.encode(encoding)).decode())
        except UnicodeEncodeError:
            continue
    return out


def secret_parts(url: str | None) -> set[str]:
    """Every piece of ``url`` that must never be shown: the URL itself, its user information (also
    as a Basic authorization), path, query and fragment, and each path segment, query value and
    credential on its own."""
    raw = str(url or "")
    pieces = {raw, raw.strip()}
    try:
        parts = urlsplit(raw.strip())
    except ValueError:
        parts = None
    if parts is not None:
        userinfo = parts.netloc.rpartition("@")[0]
        pieces |= {userinfo, parts.username or "", parts.password or "", parts.path, parts.query, parts.fragment}
        if userinfo:
            pieces |= _basic_credentials(parts.username or "", parts.password or "")
        pieces.add(parts.path + ("?" + parts.query if parts.query else ""))
        pieces |= set(parts.path.split("/"))
        for text in (parts.query, parts.fragment):
            pieces |= set(re.split(r"[&;]", text))
            for name, value in parse_qsl(text, keep_blank_values=True):
                pieces |= {name, value}
    found: set[str] = set()
    for piece in pieces:
        found |= _forms(piece)
    host = shown_url(raw)
    return {p for p in found if len(p) >= _MIN_SECRET_LENGTH and p not in host}


def scrub(text: str, url: str | None) -> str:
    """``text`` with every secret part of ``url`` replaced by ``…`` (the whole URL by its shown
    form), in one pass, longest parts first."""
    if not text or not url:
        return text
    parts = secret_parts(url)
    if not parts:
        return text
    whole = {str(url), str(url).strip()}
    pattern = re.compile("|".join(re.escape(p) for p in sorted(parts, key=len, reverse=True)))
    return pattern.sub(lambda m: f"{shown_url(url)}/{HIDDEN}" if m.group(0) in whole else HIDDEN, text)


def _causes(exc: BaseException, limit: int = 20) -> Iterator[BaseException]:
    """``exc`` and what it wraps: ``__cause__``, ``__context__``, urllib3's ``reason`` and
    exceptions passed as arguments (requests wraps urllib3's errors that way)."""
    pending, seen = [exc], set()
    while pending and len(seen) < limit:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        pending.extend(e for e in wrapped if isinstance(e, BaseException))


def _status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(exc, "code", None)  # urllib.error.HTTPError
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def describe_failure(exc: BaseException, url: str | None) -> str:
    """``<ExceptionType>: <reasons>`` for a request to ``url`` that raised ``exc``.

    The exception's text is left out (it quotes the URL). The reasons are what the operating system
    said along its causes (``Connection refused``, ``Name or service not known``), an HTTP status,
    or that the URL itself is unusable; all scrubbed of the URL's secret parts.
    """
    reasons: list[str] = []
    for cause in _causes(exc):
        status = _status_of(cause)
        strerror = cause.strerror if isinstance(cause, OSError) else None
        for reason in (f"HTTP {status}" if status is not None else None, strerror if isinstance(strerror, str) else None):
            if reason and reason not in reasons:
                reasons.append(reason)
    if not reasons and isinstance(exc, ValueError):
        reasons.append("the URL is malformed or not http(s)")
    text = type(exc).__name__ + (": " + "; ".join(reasons) if reasons else "")
    return " ".join(scrub(text, url).split())


class _HideRequestPaths(logging.Filter):
    """Replaces the URLs and request paths among a log record's arguments by ``…``."""

    @staticmethod
    def _hidden(value: object) -> object:
        if isinstance(value, (str, bytes)):
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            if "://" in text:
                return f"{shown_url(text)}/{HIDDEN}"
            if text.startswith("/"):
                return f"/{HIDDEN}"
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._hidden(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: self._hidden(v) for k, v in record.args.items()}
        return True


_HIDE_REQUEST_PATHS = _HideRequestPaths()


def hide_urls_in_http_client_logs() -> None:
    """Install (once) the filter that keeps urllib3's log lines from quoting request paths and URLs."""
    for name in _HTTP_CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if _HIDE_REQUEST_PATHS not in logger.filters:
            logger.addFilter(_HIDE_REQUEST_PATHS)
