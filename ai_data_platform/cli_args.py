"""What every ``adp`` command line shares: the parser class and the argument types.

``Parser`` is the class of ``adp``'s parser and of every subcommand's parser (argparse gives
sub-parsers their parent's class): a usage error is one line on stderr, ``adp <command>: <message>
(see adp <command> --help)``, and exit code 2. The argument types judge a value where it enters:
each rejects anything outside its range with a message naming the value (bounded by
``errors.shown``), which argparse prefixes with the option (``argument --days: ...``).
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
from collections.abc import Callable
from datetime import date
from typing import NoReturn

from ai_data_platform.errors import EXIT_BAD_INPUT, shown

# Every day an ``adp`` option accepts lies here: wide enough for any real use, narrow enough that
# day arithmetic (windows, cutoffs, history before a first day) cannot leave the calendar.
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2999, 12, 31)
MAX_SEED = 2**32 - 1
MAX_MESSAGE = 400  # characters of an argparse message (it quotes values whole, e.g. an invalid choice)
_PROG = "_adp_command_prog"  # the namespace attribute naming the innermost command parsed
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` on one line, at most ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line naming the command, and exit 2."""

    def error(self, message: str) -> NoReturn:
        self._fail_as(self.prog, message)

    def _fail_as(self, prog: str, message: str) -> NoReturn:
        message = re.sub(r"^argument \{[^}]*\}: invalid choice:", "unknown command", message)
        self.exit(EXIT_BAD_INPUT, f"{prog}: {one_line(message)} (see {prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        # A missing subcommand is reported by its choices, not by the attribute it is stored in.
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and action.metavar is None:
                action.metavar = "{" + ",".join(action.choices) + "}"
        namespace, extras = super().parse_known_args(args, namespace)
        if not hasattr(namespace, _PROG):  # the innermost command parsed sets it first
            setattr(namespace, _PROG, self.prog)
        return namespace, extras

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        prog = vars(namespace).pop(_PROG, self.prog)
        if extras:
            self._fail_as(prog, f"unrecognized arguments: {' '.join(extras)}")
        return namespace


def _fail(expected: str, value: str) -> NoReturn:
    raise argparse.ArgumentTypeError(f"expected {expected}, got {shown(value)}")


def whole(low: int, high: int) -> Callable[[str], int]:
    """A whole number in ``[low, high]``."""

    def parse(value: str) -> int:
        text = value.strip()
        if not re.fullmatch(r"[+-]?[0-9]{1,30}", text):
            _fail(f"a whole number from {low} to {high}", value)
        number = int(text)
        if not low <= number <= high:
            _fail(f"a whole number from {low} to {high}", value)
        return number

    return parse


def number(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """A finite decimal number in the range from ``low`` to ``high`` (each end open or closed)."""
    bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(value: str) -> float:
        text = value.strip()
        result = float(text) if len(text) <= 40 and _DECIMAL.fullmatch(text) else math.nan
        above = result > low if low_open else result >= low
        below = result < high if high_open else result <= high
        if not (math.isfinite(result) and above and below):
            _fail(f"a number in {bounds}", value)
        return result

    return parse


def positive(high: float) -> Callable[[str], float]:
    """A finite number above 0, at most ``high``."""
    return number(0, high, low_open=True)


def day(value: str) -> date:
    """A calendar day ``YYYY-MM-DD`` from :data:`EARLIEST_DAY` to :data:`LATEST_DAY`."""
    try:
        parsed = date.fromisoformat(value) if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value) else None
    except ValueError:  # e.g. 2026-02-30
        parsed = None
    if parsed is None:
        _fail("a date YYYY-MM-DD that is a day of the calendar", value)
    if not EARLIEST_DAY <= parsed <= LATEST_DAY:
        _fail(f"a date YYYY-MM-DD from {EARLIEST_DAY} to {LATEST_DAY}", value)
    return parsed


seed = whole(0, MAX_SEED)
port = whole(1, 65535)


def host(value: str) -> str:
    """A host name (RFC 1123 labels) or an IP address to listen on; not resolved here."""
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        pass
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        _fail("a host name or IP address (e.g. 127.0.0.1)", value)
    return value


def text(what: str, *, pattern: str = r"\S(?:.*\S)?", limit: int = 200, echo: bool = True) -> Callable[[str], str]:
    """A non-empty printable value of at most ``limit`` characters matching ``pattern`` (``what``
    names it), without surrounding whitespace. ``echo=False``: a rejected value is described, not
    shown (it may be personal data)."""
    compiled = re.compile(pattern)

    def parse(value: str) -> str:
        if len(value) > limit or not value.isprintable() or not compiled.fullmatch(value):
            if not echo:
                raise argparse.ArgumentTypeError(f"expected {what}, got {_described(value)}")
            _fail(what, value)
        return value

    return parse


def _described(value: str) -> str:
    if not value.strip():
        return "an empty value"
    problems = [f"{len(value)} characters"] + (["unprintable characters"] if not value.isprintable() else [])
    return "a value of " + " with ".join(problems)


asset_key = text("an asset key such as staging/payments", pattern=r"[A-Za-z0-9_]+(?:/[A-Za-z0-9_]+)*")

