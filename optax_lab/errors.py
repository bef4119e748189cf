"""The one error type a user should see: bad input, said in one line with its fix; and the
'did you mean' text such a line offers for a mistyped name."""

from __future__ import annotations

import difflib

__all__ = ["UsageError", "closest", "import_extra"]


class UsageError(Exception):
    """Bad input from the user. The CLI prints it as one line and exits with 2.

    The message names the bad value and says how to fix it, e.g.
    ``unknown preset 'lesons': choose one of lesson, gd-vs-sgd, momentum, adaptive``.
    """


def closest(value: str, choices: tuple[str, ...] | list[str], all_up_to: int | None = None) -> str:
    """'did you mean' text for an unknown name: the nearest choices, else all of them, or none
    ("") where there are more than `all_up_to` (a line of 57 optimizers' names teaches nothing)."""
    near = difflib.get_close_matches(value, list(choices), n=3, cutoff=0.5)
    if not near and all_up_to is not None and len(choices) > all_up_to:
        return ""
    return ", ".join(near or choices)


def import_extra(module: str, extra: str, what: str):
    """`module` imported, or one line naming the extra that installs it and `what` needs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{what} needs {module} (the {extra} extra): pip install 'optax_lab[{extra}]'") from None
