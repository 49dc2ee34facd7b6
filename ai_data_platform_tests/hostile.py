"""Hostile records for the judge's tests: stream payloads and ``POST /score`` bodies.

A seeded generator (``random.Random``; the tests seed it from hypothesis) fast enough for
thousands of records per test. Most records are a valid event or transaction with one to three
fields replaced by hostile values, the rest hostile in their bytes. Every class of input a
producer or a client can send appears: bytes that are not UTF-8 (and encoded or escaped lone
surrogates, a BOM, UTF-16), JSON that is not an object, nested thousands deep, a key twice,
non-standard literals (``NaN``, ``nan``, trailing commas), numbers that are ``NaN``, infinite,
overflowing (``1e999``, an integer of 5000 digits), finite but huge (``1e308``) or at either side of
the amounts' bound (``contracts.MAX_AMOUNT``), booleans, ``-0`` or exponent strings, times
in year 0, 1 (with an offset: overflow), 9999 (``-14:00``), 10000, a leap second, ``24:00``,
``+99:00`` offsets, ids that are objects, arrays, 129 characters long or hold NUL bytes, text with
control characters, and records larger than the judge reads. No payload holds a newline byte (the
transport stores one record per line).
"""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta

from ai_data_platform.sources.contracts import EVENT_TYPES, MAX_AMOUNT
from ai_data_platform.sources.json_object import MAX_DEPTH, MAX_RECORD_BYTES

_CHARS = ["a", "Z", "0", "9", " ", "\t", "\n", "\r", "\x00", "\x1f", "\x7f", "\x85", "\xa0", "\u2028", "\u3000", "\u200b",
          "\ufeff", "{", "[", "]", "}", '"', "\\", ":", ",", "é", "\U0001f600", "\u0663", "-", ".", "e", "_"]
_TEXTS = ["", " ", "  ", "\t", "\xa0", "\u3000", "null", "true", "C0000001", " C0000001 ", "\tC0000001", "C0000001\x00",
          "x" * 128, "x" * 129, " " + "x" * 128 + " ", '{"a": 1}', "[1]", "{", "[", "a\x00b", "\U0001f600", "\u0663\u0664"]
_NUMBER_TEXTS = ["12.5", " 3 ", "\t3", "3\t", "\xa03\xa0", "1e3", "1E5", "1e999", "-1e999", "1e-999", "1e308", "2e308", "NaN",
                 "nan", "-nan", "Infinity", "-Infinity", "inf", "+inf", "1_000", "\u0661\u0662", "\uff11", "0x10", ".5", "5.",
                 "+5", "-0", "-0.0", "00012", "1,5", "1 000", "", "  ", "e5", "1e", "--1", "1e+5", "4.9e-324", "lots",
                 "1e8", "100000000", "100000000.00000002", "1.0000000000000001e8", " 1e8 "]
_NUMBERS = [0, 1, -1, 0.0, -0.0, 12.5, -0.5, 1e308, -1e308, 5e-324, float("nan"), float("inf"), float("-inf"), 2**53 + 1,
            2**63 - 1, 2**63, -(2**63), 10**30, 10**400, True, False,
            MAX_AMOUNT, int(MAX_AMOUNT), int(MAX_AMOUNT) + 1, math.nextafter(MAX_AMOUNT, math.inf)]  # the amounts' bound
_TIMES = ["0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00-01:00", "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59+14:00",
          "0000-01-01", "0000-01-01T00:00:00Z", "10000-01-01", "2026-11-30T23:59:60Z", "2026-11-30T24:00:00", "2026-11-30T10:00:00+24:00",
          "2026-11-30T10:00:00+99:00", "2026-11-30T10:00:00\x00", "2026-11-30T10", "2026-11-30T1000", "2026-11-30T10:00:00,5",
          "2026-11-30T10:00:00 UTC", "2026-11-30T10:00:00 Europe/Berlin", "2026-11-30T10:00:00+02:00:30", "2026-11-30 10:00:00.",
          "2026-1-30", "2026-02-29", "infinity", "-infinity", "epoch", "now", "yesterday", "20261130", "2026-W48-1", "", " ",
          "2026-11-30T10:00:00 +02:00", "\t2026-11-30T10:00:00", "\xa02026-11-30T10:00:00\xa0", "1999-12-31T23:59:59.999999Z",
          "2000-01-01T00:00:00", "2000-01-01T00:30:00+01:00", "\u0662\u0660\u0662\u0666-11-30"]


def _text(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(_TEXTS)
    n = rng.choice([0, 1, 2, 5, 10, 20]) if rng.random() < 0.95 else rng.choice([127, 128, 129, 5000])
    return "".join(rng.choice(_CHARS) for _ in range(n))


def _nested(rng: random.Random, depth: int) -> object:
    value: object = rng.choice([1, "x", None])
    for _ in range(depth):
        value = [value] if rng.random() < 0.5 else {"k": value}
    return value


def _value(rng: random.Random) -> object:
    """Any JSON value: text, numbers, booleans, null, arrays, objects."""
    r = rng.random()
    if r < 0.45:
        return _text(rng)
    if r < 0.7:
        return rng.choice(_NUMBERS)
    if r < 0.8:
        return rng.choice(_NUMBER_TEXTS)
    if r < 0.85:
        return None
    return _nested(rng, rng.choice([1, 2, MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH]))


def _number(rng: random.Random) -> object:
    r = rng.random()
    if r < 0.4:
        return rng.choice(_NUMBERS)
    if r < 0.8:
        return rng.choice(_NUMBER_TEXTS)
    if r < 0.9:
        return round(rng.uniform(-10, 10_000), rng.choice([0, 2, 9]))
    return _value(rng)


def _time(rng: random.Random, now: datetime) -> object:
    """An event time: valid ones near every edge of the range staging accepts, in every form the
    grammar allows, and the times the grammar or the calendar refuses."""
    r = rng.random()
    if r < 0.35:
        return rng.choice(_TIMES)
    upper = datetime.combine(now.date() + timedelta(days=2), datetime.min.time())
    t = rng.choice([now - timedelta(seconds=rng.uniform(0, 7 * 86400)), upper - timedelta(microseconds=1), upper,
                    datetime(2000, 1, 1), datetime(2000, 1, 1) - timedelta(microseconds=1),
                    datetime(rng.randint(1, 9999), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23))])
    text = t.isoformat(sep=rng.choice("T "), timespec=rng.choice(["minutes", "seconds", "milliseconds", "microseconds"]))
    suffix = rng.choice(["", "Z", "+00:00", "-14:00", "+14:00", "+0530", "-05", "+23:59", "+24:00", "z", " Z"])
    text += suffix
    if r > 0.9:
        return rng.choice([20261130, 1.5, True, {"t": text}, [text], text + "\x00", "\t" + text])
    return text


def _valid_event(rng: random.Random, now: datetime) -> dict:
    kind = rng.choice(EVENT_TYPES)
    return {
        "event_id": f"ES{rng.getrandbits(64):016x}",
        "customer_id": f"C{rng.randint(1, 40):07d}",
        "event_type": kind,
        "event_time": (now - timedelta(seconds=rng.uniform(0, 3600))).isoformat() + "Z",
        "session_id": f"S{rng.getrandbits(32):08x}",
        "page": "/home" if kind == "page_view" else None,
        "feature": "export" if kind == "feature_use" else None,
        "amount": round(rng.uniform(1, 500), 2) if kind == "card_transaction" else None,
        "currency": "EUR",
        "merchant_category": "grocery",
        "device_id": f"D{rng.randint(0, 99):04d}",
        "ip_country": rng.choice(["DE", "FR", "US"]),
    }


def _valid_transaction(rng: random.Random, now: datetime) -> dict:
    txn = {"customer_id": f"C{rng.randint(1, 20):07d}", "amount": round(rng.uniform(1, 900), 2)}
    for name, value in (("device_id", f"D{rng.randint(0, 99):04d}"), ("ip_country", rng.choice(["DE", "BR"])),
                        ("event_time", (now - timedelta(seconds=rng.uniform(0, 600))).isoformat() + "Z"),
                        ("transaction_id", f"T{rng.getrandbits(32):08x}")):
        if rng.random() < 0.5:
            txn[name] = value
    return txn


_KINDS = {"event_id": "id", "customer_id": "id", "transaction_id": "id", "event_time": "time", "amount": "number",
          "event_type": "type"}


def _mutate_field(rng: random.Random, record: dict, now: datetime) -> None:
    r = rng.random()
    if r < 0.08 and record:
        del record[rng.choice(sorted(record))]
        return
    if r < 0.13:
        record[_text(rng) or "extra"] = _value(rng)
        return
    name = rng.choice(sorted(record) + ["event_type"])
    kind = _KINDS.get(name, "text")
    if kind == "time":
        record[name] = _time(rng, now)
    elif kind == "number":
        record[name] = _number(rng)
    elif kind == "type":
        record[name] = rng.choice([*EVENT_TYPES, " login ", "\tlogin", "\xa0login", "LOGIN", "teleport", 1, None, ["login"]])
    else:
        record[name] = _value(rng)


def _dumps(record: object, rng: random.Random) -> bytes:
    """JSON text (``NaN``/``Infinity`` literals where a number is not finite), ASCII or UTF-8;
    lone surrogates come out as escapes."""
    if rng.random() < 0.5:
        return json.dumps(record).encode()
    return json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass")


_BROKEN_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x00"]


def _structural(rng: random.Random, record: dict, payload: bytes) -> bytes:
    """The bytes of ``record`` made hostile as a whole."""
    choice = rng.randrange(17)
    if choice == 0:  # a key twice
        name = rng.choice(sorted(record) or ["customer_id"])
        return b"{" + json.dumps(name).encode() + b": " + json.dumps(_value(rng)).encode() + b", " + payload.lstrip()[1:]
    if choice == 1:  # nested deep
        depth = rng.choice([MAX_DEPTH, MAX_DEPTH + 1, 50, 5000, 100_000])
        return payload[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"
    if choice == 2:  # JSON that is not an object
        return rng.choice([b"[]", b"[1, 2]", b'"text"', b"42", b"null", b"true", b"", b" ", b"\t", b"NaN", b"[" * 3000])
    if choice == 3:  # bytes that are not UTF-8, in a string or outside one
        at = payload.find(b'": "') + 4 if rng.random() < 0.8 and b'": "' in payload else rng.randrange(len(payload) + 1)
        return payload[:at] + rng.choice(_BROKEN_BYTES) + payload[at:]
    if choice == 4:  # escaped surrogates, lone or paired
        return payload[:-1] + b', "customer_id": "' + rng.choice([b"\\ud800", b"\\udfff", b"\\ud83d\\ude00", b"\\ud800\\u0041"]) + b'"}'
    if choice == 5:  # cut short
        return payload[: rng.randrange(len(payload))]
    if choice == 6:  # a byte order mark, or UTF-16
        return b"\xef\xbb\xbf" + payload if rng.random() < 0.5 else payload.decode("utf-8", "replace").encode("utf-16")
    if choice == 7:  # non-standard literals and syntax
        extra = rng.choice([b'"amount": nan', b'"amount": inf', b'"amount": Infinity', b'"amount": -Infinity', b'"amount": NaN',
                            b'"amount": 1e999', b'"amount": ' + b"1" * 5000, b'"amount": -0', b'"amount": 01', b'"x": 1,'])
        return payload[:-1] + b", " + extra + b"}"
    if choice == 8:  # a trailing comma, single quotes, a comment
        return rng.choice([payload[:-1] + b",}", payload.replace(b'"', b"'"), payload[:-1] + b" /* c */}"])
    if choice == 9:  # whitespace around the object
        return rng.choice([b" ", b"\t", b"\r", b"\x0c", b"\xc2\xa0"]) + payload + rng.choice([b"", b" ", b"\r", b"\t"])
    if choice == 10:  # two values
        return payload + rng.choice([b"{}", b" 1", b" x"])
    if choice == 11 and rng.random() < 0.1:  # larger than the judge reads, or just below (rarely: costly)
        size = rng.choice([MAX_RECORD_BYTES + 1, MAX_RECORD_BYTES - 64])
        return payload[:-1] + b', "page": "' + b"p" * (size - len(payload) - 12) + b'"}'
    if choice == 12:  # a NUL byte or control character raw in a string
        at = payload.find(b'": "') + 4 if b'": "' in payload else 1
        return payload[:at] + rng.choice([b"\x00", b"\x01", b"\x1f", b"\x7f", b"\r"]) + payload[at:]
    if choice == 13:  # escaped control characters and NUL in a string: valid JSON
        return payload[:-1] + b', "session_id": "a\\u0000b\\u001f\\u007f"}'
    if choice == 14:  # many keys
        return payload[:-1] + b"".join(b', "k%d": %d' % (i, i) for i in range(rng.choice([10, 1000]))) + b"}"
    if choice == 15:  # an object for a value that must be a scalar, nested in place
        return payload[:-1] + b', "customer_id": {"id": "C0000001"}}'
    return payload  # choice 16: as it is


def _hostile(rng: random.Random, record: dict, now: datetime, valid_share: float) -> bytes:
    if rng.random() < valid_share:
        return _dumps(record, rng)
    for _ in range(rng.randint(1, 3)):
        _mutate_field(rng, record, now)
    payload = _dumps(record, rng)
    if rng.random() < 0.35:
        payload = _structural(rng, record, payload)
    return payload.replace(b"\n", b"\\n")  # JSON escapes newlines; a broken payload may hold a raw one


def hostile_event(rng: random.Random, now: datetime, valid_share: float = 0.3) -> bytes:
    """One stream payload: a valid event (``valid_share`` of them) or a hostile one."""
    return _hostile(rng, _valid_event(rng, now), now, valid_share)


def hostile_transaction(rng: random.Random, now: datetime, valid_share: float = 0.3) -> bytes:
    """One ``POST /score`` body: a valid transaction (``valid_share`` of them) or a hostile one."""
    return _hostile(rng, _valid_transaction(rng, now), now, valid_share)
