"""The platform's one exception for bad input from a person: a CLI argument, a config file, an
environment variable, a landing file an operator must fix.

``InputError`` is a ``ValueError`` whose message is one line that names the bad value (file, row,
field or variable) and the rule it broke. The ``adp`` command line prints it on stderr as
``adp <command>: <message>`` and exits 2, without a traceback. Raise it where the input is judged,
not where it is finally used: the message can then say which input was wrong.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2


class InputError(ValueError):
    """Bad input from a person: the message names the value and the rule, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def shown(value: object, limit: int = 60) -> str:
    """``value`` as it may appear in a message: repr'd, at most ``limit`` characters (hostile input
    can be megabytes long or hold control characters)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
