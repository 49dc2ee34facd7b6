"""``adp serve``: the online feature and fraud-scoring HTTP API (Starlette on uvicorn, 127.0.0.1).

* ``GET /health``: store, transport coverage, the fraud model in use (or why there is none).
* ``GET /features/{customer_id}[?features=a,b]``: the customer's online features as of now, each
  with its expired flag and freshness; an unknown customer gets the declared defaults with
  ``known: false`` (200, not an error).
* ``POST /score``: a card transaction (``customer_id``, ``amount``, optional ``device_id``,
  ``ip_country``, ``event_time`` ISO 8601, ``transaction_id``) -> fraud probability from the
  latest passing fraud model, the features it used and their freshness. No passing model: 503.

Bad requests get a 4xx whose message names the field.
"""

from __future__ import annotations

import json
import math

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ai_data_platform.streaming.events import parse_timestamp
from ai_data_platform.streaming.online_api import (
    NoPassingModel,
    Scorer,
    Transaction,
    UnknownFeature,
    get_online_features,
    utc_now,
)
from ai_data_platform.streaming.online_store import OnlineStore

MAX_ID_LENGTH = 128


class BadRequest(ValueError):
    pass


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _string(body: dict, name: str, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"field '{name}' is required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_LENGTH:
        raise BadRequest(f"field '{name}' must be a non-empty string of at most {MAX_ID_LENGTH} characters, got {value!r}")
    return value.strip()


def parse_transaction(body: object) -> Transaction:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    amount = body.get("amount")
    if amount is None:
        raise BadRequest("field 'amount' is required")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount < 0:
        raise BadRequest(f"field 'amount' must be a non-negative number, got {amount!r}")
    event_time = None
    if body.get("event_time") is not None:
        raw = body["event_time"]
        event_time = parse_timestamp(raw) if isinstance(raw, str) else None
        if event_time is None:
            raise BadRequest(f"field 'event_time' must be an ISO 8601 timestamp, got {raw!r}")
    unknown = sorted(set(body) - {"customer_id", "amount", "device_id", "ip_country", "event_time", "transaction_id"})
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}")
    return Transaction(
        customer_id=_string(body, "customer_id", True),
        amount=float(amount),
        device_id=_string(body, "device_id", False),
        ip_country=_string(body, "ip_country", False),
        event_time=event_time,
        transaction_id=_string(body, "transaction_id", False),
    )


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
        customer_id = request.path_params["customer_id"]
        if not customer_id.strip() or len(customer_id) > MAX_ID_LENGTH:
            return _error(400, f"path parameter 'customer_id' must be 1..{MAX_ID_LENGTH} characters")
        wanted = request.query_params.get("features")
        names = [n.strip() for n in wanted.split(",") if n.strip()] if wanted else None
        try:
            return JSONResponse(get_online_features([customer_id], names, store=store)[customer_id])
        except UnknownFeature as exc:
            return _error(400, f"query parameter 'features': {exc}")

    async def score(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return _error(400, f"the request body is not valid JSON: {exc}")
        try:
            txn = parse_transaction(body)
        except BadRequest as exc:
            return _error(422, str(exc))
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
