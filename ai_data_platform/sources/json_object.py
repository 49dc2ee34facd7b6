"""Read one JSON object from hostile bytes, never raising: the one reader of a JSON record for
the event stream, the HTTP API and the batch JSON-lines landing files, so each reads the same
records as objects and refuses the same ones.

A payload holds a record when it is valid UTF-8, one JSON object, nested at most
:data:`MAX_DEPTH` levels, each key once (Python keeps the last of two, DuckDB's JSON the first:
neither is the record), no lone surrogate escape, and at most :data:`MAX_RECORD_BYTES` long.
"""

from __future__ import annotations

import json
from typing import Any

MAX_RECORD_BYTES = 1 << 20  # a larger payload is not a record (events are a few hundred bytes)
MAX_DEPTH = 8  # JSON nesting levels, the record itself the first (an event is one flat object)


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):  # Python keeps the last, DuckDB's JSON the first: neither
        raise _DuplicateKey
    return record


_CHECKED = json.JSONDecoder(object_pairs_hook=_object)  # every object checked for a key twice
_PAIRS = json.JSONDecoder(object_pairs_hook=list)  # an object as its (key, value) pairs: no Python call


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if type(node) is dict else node:
            if type(child) is dict or type(child) is list:
                stack.append((child, depth + 1))
    return False


def _lone_surrogate(record: dict[str, Any]) -> bool:
    """Whether a ``\\ud800``-style escape left a lone surrogate (text no UTF-8 store can hold)."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_object(payload: bytes) -> dict[str, Any] | None:
    """The JSON object ``payload`` holds, or None when it holds none that can be judged: more than
    :data:`MAX_RECORD_BYTES`, not UTF-8, not JSON, not an object, nested deeper than
    :data:`MAX_DEPTH`, a key twice, or a lone surrogate. Never raises."""
    if len(payload) > MAX_RECORD_BYTES:
        return None
    try:
        text = payload.decode("utf-8")  # strict: no invalid bytes, no encoded surrogates, no BOM sniffing
        braces = payload.count(b"{")
        if braces == 1 and text[:1] == "{":  # one object and none inside it (an event): the fast path
            pairs = _PAIRS.decode(text)
            record = dict(pairs)
            if len(record) != len(pairs):
                return None
        else:
            record = _CHECKED.decode(text)
            if type(record) is not dict:
                return None
        if braces + payload.count(b"[") > MAX_DEPTH and _deeper_than(record, MAX_DEPTH):
            return None
        if "\\u" in text and _lone_surrogate(record):
            return None
        return record
    except Exception:  # ValueError, RecursionError, MemoryError, ...: no object to judge
        return None
