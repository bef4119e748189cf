"""Reading store files (`run_store`): a header line (`STORE_KIND`), then one finished program a
line, keyed by its digest; whole lines only, so a line torn by a crash is left out. It imports
nothing of optax_lab's, so that anything may read a run's programs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

__all__ = ["STORE_KIND", "own_lines", "read_programs", "read_store_file"]

STORE_KIND = "optax-lab finished programs"  # the header's "kind": how a foreign file is told apart


def read_store_file(path: Path) -> tuple[dict | None, dict[str, dict], int]:
    """(header, program digest -> its line, bytes of whole lines) of a runs file; the header is
    None when the file is not ours."""
    raw = path.read_bytes()
    whole = raw.rfind(b"\n") + 1  # a torn last line (no newline yet) is not a line
    lines = raw[:whole].splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("kind") != STORE_KIND:
        return None, {}, whole
    programs: dict[str, dict] = {}
    for line in lines[1:]:
        try:
            program = json.loads(line)
            programs[program["program"]] = program
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            continue  # a damaged line: that program runs again
    return header, programs, whole


def read_programs(path: Path) -> tuple[dict | None, dict[str, dict]]:
    """(header, program digest -> its line) of a store file; (None, {}) when it is not ours."""
    header, programs, _ = read_store_file(path)
    return header, programs


def own_lines(path: Path) -> Iterator[bytes]:
    """The whole program lines of a store file, one at a time (a torn last one left out)."""
    if not path.is_file():
        return
    with open(path, "rb") as handle:
        next(handle, None)  # the header
        for raw in handle:
            if raw.endswith(b"\n"):
                yield raw
