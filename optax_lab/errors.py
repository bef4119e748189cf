"""The one error type a user should see: bad input, said in one line with its fix; and the
'did you mean' text such a line offers for a mistyped name."""

from __future__ import annotations

import difflib

__all__ = ["UsageError", "closest"]


class UsageError(Exception):
    """Bad input from the user. The CLI prints it as one line and exits with 2.

    The message names the bad value and says how to fix it, e.g.
    ``unknown preset 'lesons': choose one of lesson, gd-vs-sgd, momentum, adaptive``.
    """


def closest(value: str, choices: tuple[str, ...] | list[str]) -> str:
    """'did you mean' text for an unknown name: the nearest choices, else all of them."""
    near = difflib.get_close_matches(value, list(choices), n=3, cutoff=0.5)
    return ", ".join(near or choices)
