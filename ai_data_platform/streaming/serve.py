"""``adp serve``: the online feature and fraud-scoring HTTP API (Starlette on uvicorn, 127.0.0.1).

* ``GET /health``: store, transport coverage, the fraud model in use (or why there is none).
* ``GET /features/{customer_id}[?features=a,b]``: the customer's online features as of now, each
  with its expired flag and freshness; an unknown customer gets the declared defaults with
  ``known: false`` (200, not an error).
* ``POST /score``: a card transaction (``customer_id``, ``amount``, optional ``device_id``,
  ``ip_country``, ``event_time`` ISO 8601, ``transaction_id``) -> fraud probability from the
  latest passing fraud model, the features it used and their freshness. No passing model: 503.

The body of ``POST /score`` is judged by the stream's judge (``events.judge``) against
:data:`SCORE_REQUEST`, the EVENTS contract's fields of a card transaction, with the staging rules:
an id is an id, an amount a finite non-negative number no larger than ``contracts.MAX_AMOUNT``, an
event time a timestamp in the range staging accepts. Bad requests get a 4xx, never a 500: 400 for a
body that is not one JSON object, 413 above :data:`MAX_BODY_BYTES`, 415 for a content type other
than JSON, 422 for a field that breaks a rule (``{"error", "rule", "field"}``, the message naming
the field and echoing at most a short prefix of its value). A client that disconnects before its
whole body arrived leaves one warning line in the server's log (how many bytes came), never a
traceback.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ai_data_platform.errors import shown
from ai_data_platform.sources.contracts import EVENTS
from ai_data_platform.sources.value_grammar import ID_RULE_TEXT, is_id, sql_trim
from ai_data_platform.sources.json_object import MAX_DEPTH
from ai_data_platform.streaming.events import Form, Violation, judge
from ai_data_platform.streaming.online_api import (
    NoPassingModel,
    Scorer,
    Transaction,
    UnknownFeature,
    get_online_features,
    utc_now,
)
from ai_data_platform.streaming.online_store import OnlineStore

MAX_BODY_BYTES = 64 * 1024  # a transaction is a few hundred bytes
_log = logging.getLogger("uvicorn.error")  # the server's log: printed at adp serve's level (warning)
SCORE_REQUEST = Form(
    (
        EVENTS.column("customer_id"),
        replace(EVENTS.column("amount"), required=True),
        EVENTS.column("device_id"),
        EVENTS.column("ip_country"),
        replace(EVENTS.column("event_time"), required=False),  # absent: now
        replace(EVENTS.column("event_id"), name="transaction_id", required=False),
    ),
    time_column="event_time",
    ids=("customer_id", "transaction_id"),
    closed=True,
)
_RULE_TEXT = {
    "unknown_field": "is not a field of a transaction",
    "not_null": "is required",
    "invalid_id": f"must be {ID_RULE_TEXT}",
    "invalid_timestamp": "must be an ISO 8601 timestamp (YYYY-MM-DD[THH:MM[:SS[.f]]][Z|+HH:MM]) "
                         "in [2000-01-01, today + 2 days)",
    "invalid_number": "must be a finite number",
    "non_negative": "must not be negative",
}
_LIMITS = dict(SCORE_REQUEST.maximums)


class BadRequest(ValueError):
    """A request the API refuses: its status and its answer."""

    def __init__(self, status: int, message: str, rule: str | None = None, field: str | None = None):
        super().__init__(message)
        self.status, self.rule, self.field = status, rule, field

    def response(self) -> JSONResponse:
        return JSONResponse({"error": str(self), "rule": self.rule, "field": self.field}, status_code=self.status)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _refusal(v: Violation) -> BadRequest:
    if v.rule == "malformed_row":
        message = f"the request body must be one JSON object (UTF-8, at most {MAX_DEPTH} levels deep, each key once)"
        return BadRequest(400, message, v.rule)
    got = "" if v.raw_value is None else f", got {shown(v.raw_value)}"
    field = v.column if v.column in SCORE_REQUEST.names else shown(v.column)  # an unknown one is input
    if v.rule == "out_of_range" and v.column in _LIMITS:
        rule_text = f"must be at most {_LIMITS[v.column]:g}"
    else:
        rule_text = _RULE_TEXT.get(v.rule, f"breaks rule {v.rule}")
    return BadRequest(422, f"field {shown(v.column)} {rule_text}{got}", v.rule, field)


def parse_transaction(body: bytes) -> Transaction:
    """The transaction a request body holds, judged as the stream judges an event (BadRequest if not)."""
    typed, violation = judge(body, utc_now(), SCORE_REQUEST)
    if violation is not None:
        raise _refusal(violation)
    return Transaction(
        customer_id=typed["customer_id"],
        amount=typed["amount"],
        device_id=typed["device_id"],
        ip_country=typed["ip_country"],
        event_time=typed["event_time"],
        transaction_id=typed["transaction_id"],
    )


def _json_content(content_type: str | None) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


class ClientGone(Exception):
    """The client disconnected before its request body arrived whole: nobody is left to answer."""

    def __init__(self, received: int):
        super().__init__(f"the client disconnected after {received} byte(s) of the request body")
        self.received = received


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed ``limit`` bytes;
    :class:`ClientGone` when the client disconnects before sending all of it."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise BadRequest(413, f"the request body exceeds {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(413, f"the request body exceeds {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone(size) from None
    return b"".join(chunks)


def _customer_id(value: str) -> str:
    """A path's customer id, trimmed as staging trims ids (BadRequest unless it is one)."""
    value = sql_trim(value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no store holds it
        value = ""
    if not is_id(value):
        raise BadRequest(400, f"path parameter 'customer_id' must be {ID_RULE_TEXT}", "invalid_id", "customer_id")
    return value


def create_app(store: OnlineStore, scorer: Scorer | None = None) -> Starlette:
    scorer = scorer or Scorer()

    async def health(request: Request) -> JSONResponse:
        coverage = store.coverage()
        try:
            version = scorer.model()[0]
            model = {"name": scorer.name, "version": version}
        except NoPassingModel as exc:
            model = {"name": scorer.name, "version": None, "message": str(exc)}
        return JSONResponse({
            "status": "ok",
            "store": store.label,
            "now": utc_now().isoformat() + "Z",
            "complete_as_of": {s: t.isoformat() + "Z" for s, t in coverage.items()},
            "model": model,
        })

    async def features(request: Request) -> JSONResponse:
        try:
            customer_id = _customer_id(request.path_params["customer_id"])
        except BadRequest as exc:
            return exc.response()
        wanted = request.query_params.get("features")
        names = [n.strip() for n in wanted.split(",") if n.strip()] if wanted else None
        try:
            return JSONResponse(get_online_features([customer_id], names, store=store)[customer_id])
        except UnknownFeature as exc:
            return _error(400, f"query parameter 'features': {exc}")

    async def score(request: Request) -> JSONResponse:
        try:
            content_type = request.headers.get("content-type")
            if not _json_content(content_type):
                raise BadRequest(415, f"the request body must be JSON (application/json), not {shown(content_type)}")
            txn = parse_transaction(await read_body(request))
        except BadRequest as exc:
            return exc.response()
        except ClientGone as exc:  # one line, no traceback: a client hanging up is not the server's error
            _log.warning(f"POST /score: {exc}; nothing scored")
            return Response(status_code=400)  # sent to nobody (the server drops it), but a complete answer
        try:
            return JSONResponse(scorer.score(txn, store))
        except NoPassingModel as exc:
            return _error(503, str(exc))

    return Starlette(routes=[
        Route("/health", health, methods=["GET"]),
        Route("/features/{customer_id:str}", features, methods=["GET"]),
        Route("/score", score, methods=["POST"]),
    ])


def serve(host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    import uvicorn

    from ai_data_platform.streaming.backends import online_store

    uvicorn.run(create_app(online_store()), host=host, port=port, log_level=log_level, access_log=False)
