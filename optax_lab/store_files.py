"""Reading store files (`run_store`): a header line (`STORE_KIND`), then one finished program a
line, keyed by its digest; whole lines only, so a line torn by a crash is left out. It imports
nothing of optax_lab's, so that anything may read a run's programs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

__all__ = ["STORE_KIND", "header_of", "own_lines", "programs_of", "read_programs", "read_store_file", "whole_lines"]

STORE_KIND = "optax-lab finished programs"  # the header's "kind": how a foreign file is told apart


def read_store_file(path: Path) -> tuple[dict | None, dict[str, dict], int]:
    """(header, program digest -> its line, bytes of whole lines) of a runs file; the header is
    None when the file is not ours."""
    lines, whole = whole_lines(path.read_bytes())
    header = header_of(lines[0]) if lines else None
    return (header, programs_of(lines[1:]), whole) if header is not None else (None, {}, whole)


def whole_lines(raw: bytes) -> tuple[list[bytes], int]:
    """The whole lines of `raw` and their bytes: a torn last line (no newline yet) is not a line."""
    whole = raw.rfind(b"\n") + 1
    return raw[:whole].splitlines(), whole


def header_of(line: bytes) -> dict | None:
    """A store file's header, or None when the line is not one of ours."""
    try:
        header = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return header if isinstance(header, dict) and header.get("kind") == STORE_KIND else None


def programs_of(lines: list[bytes]) -> dict[str, dict]:
    """Program digest -> its line; a damaged line is left out (that program runs again)."""
    programs: dict[str, dict] = {}
    for line in lines:
        try:
            program = json.loads(line)
            programs[program["program"]] = program
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            continue
    return programs


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
