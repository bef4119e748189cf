"""Finished programs on disk as they finish, so that an interrupted run keeps them and `--resume`
runs only what is missing.

`runs.jsonl`, beside the final results.json: its first line is the header (the configuration's
hash and the readable inputs it hashes), written atomically; each later line is one finished
program's runs (histories with their dtypes, so they come back bit for bit, and the program's
timings), appended with one write and fsynced before the next program starts. A line torn by a
crash or power loss is the last one: it is ignored, and cut off before anything is appended. The
file goes once the complete report is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import os
import signal
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optax_lab import optimizers
from optax_lab.config import ModelConfig, Order
from optax_lab.errors import UsageError
from optax_lab.files import atomic_file
from optax_lab.lessons import RunSpec
from optax_lab.records import Fingerprint, ProgramSettings, RunResult
from optax_lab.workloads import Workload

__all__ = ["PLAN_LABEL", "RUNS_FILE", "STORE_KIND", "RunStore", "Unfinished", "package_versions"]

RUNS_FILE = "runs.jsonl"
STORE_KIND = "optax-lab finished programs"  # the header's "kind": how a foreign file is told apart
STORE_SCHEMA = 1
PLAN_LABEL = "planned programs"  # the inputs' catch-all: the programs the options and presets make
VERSIONED_PACKAGES = ("jax", "jaxlib", "optax", "flax", "optax_lab")
# RunResult's scalar fields, saved as they are: the timings of the process that trained the program.
_SCALARS = (
    "compile_s",
    "run_s",
    "program",
    "program_run_s",
    "program_calls",
    "devices",
    "replicas_per_call",
    "memory_per_device",
    "memory_bound",
)


class Unfinished(Exception):
    """Training stopped (Ctrl-C, SIGTERM, an error) before every program finished. `results`:
    the finished runs as a results dict marked incomplete (None when none finished); `cause`:
    what stopped it."""

    def __init__(self, results: dict | None, cause: BaseException):
        super().__init__(f"stopped by {type(cause).__name__}")
        self.results, self.cause = results, cause


def package_versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in VERSIONED_PACKAGES}


def _encode(result: RunResult) -> dict[str, Any]:
    return {
        "name": result.spec.name,
        "seeds": list(result.seeds),
        "settings": {**dataclasses.asdict(result.settings), "order": str(result.settings.order)},
        **{field: getattr(result, field) for field in _SCALARS},
        # tolist() gives exact Python floats of float32 values; json writes them round-trippably
        # (NaN and Infinity included, which json reads back).
        "history": {
            key: {"dtype": str(values.dtype), "values": values.tolist()} for key, values in result.history.items()
        },
    }


def _decode(record: Mapping[str, Any], spec: RunSpec, model: ModelConfig, workload: Workload) -> RunResult:
    settings = ProgramSettings(**{**record["settings"], "order": Order(record["settings"]["order"])})
    history = {key: np.asarray(item["values"], dtype=item["dtype"]) for key, item in record["history"].items()}
    return RunResult(
        spec,
        workload,
        optimizers.hyperparams(spec.optimizer, spec.hyperparams),
        settings,
        tuple(record["seeds"]),
        history,
        model=model,
        **{field: record[field] for field in _SCALARS},
    )


def _read(path: Path) -> tuple[dict | None, dict[str, dict], int]:
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


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C or SIGTERM during the block takes effect when it ends, so that a program is recorded
    whole (on disk and in memory) or not at all. (Blocking the signal in this thread would not do:
    another thread may take it, and Python runs the handler in this one at once.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {stop: signal.signal(stop, lambda signum, frame: caught.append(signum)) for stop in stops}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(caught[0])


def _shown(value: Any) -> str:
    return "unset" if value is None else ",".join(map(str, value)) if isinstance(value, list) else str(value)


class RunStore:
    """The finished programs of one output folder. `open` checks the folder against --resume
    before any work, `begin` writes (or, resuming, checks) the header once the data is known,
    `add` appends a program, `restore` gives back a stored one, `close` removes the file."""

    def __init__(self, out: Path, resume: bool, command: str):
        self.out, self.resume, self.command = Path(out), resume, command
        self.path = self.out / RUNS_FILE
        self.header: dict | None = None
        self.stored: dict[str, dict] = {}
        self.finished: list[RunResult] = []  # restored and trained, in the order the programs ran
        self.programs_restored = self.programs_trained = 0
        self.created_out = not self.out.exists()  # `discard` removes only a folder it made

    @classmethod
    def open(cls, out: Path, resume: bool, command: str) -> RunStore:
        store = cls(out, resume, command)
        header, programs, whole = _read(store.path) if store.path.is_file() else (None, {}, 0)
        if resume and header is None:
            finished = " (it holds a finished run: nothing to resume)" if (store.out / "results.json").is_file() else ""
            raise UsageError(
                f"--resume: {store.out} holds no interrupted run, no {RUNS_FILE}{finished}: run "
                "without --resume, or give the --out of the interrupted run"
            )
        if not resume and header is not None:
            raise UsageError(
                f"--out {store.out} holds an interrupted run ({len(programs)} programs finished, in "
                f"{RUNS_FILE}): add --resume to continue it, or remove {store.out} (or choose another "
                "--out) to start over"
            )
        if resume:
            store.header, store.stored = header, programs
            if whole < store.path.stat().st_size:  # cut a torn last line off before appending after it
                os.truncate(store.path, whole)
        return store

    def begin(self, print_: Fingerprint) -> None:
        """Fresh: write the header. Resuming: the stored inputs must equal these, else a UsageError
        saying what differs."""
        if not self.resume:
            self.header = {
                "kind": STORE_KIND,
                "schema": STORE_SCHEMA,
                "config_hash": print_.digest,
                "command": self.command,
                "inputs": print_.inputs,
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
            with atomic_file(self.path) as handle:
                handle.write(json.dumps(self.header, allow_nan=False).encode() + b"\n")
            return
        if self.header.get("schema") == STORE_SCHEMA and self.header.get("config_hash") == print_.digest:
            return
        before = self.header.get("inputs") or {}
        changes = [
            f"{label} was {_shown(before.get(label))}, now {_shown(value)}"
            for label, value in print_.inputs.items()
            if before.get(label) != value
        ]
        changes += [
            f"{label} was {_shown(value)}, now unset" for label, value in before.items() if label not in print_.inputs
        ]
        if len(changes) > 1:  # the plan differs because an option does: name the option
            changes = [change for change in changes if not change.startswith(PLAN_LABEL)]
        what = "; ".join(changes[:3]) + (f" (and {len(changes) - 3} more)" if len(changes) > 3 else "")
        raise UsageError(
            f"--resume: {what or 'the stored run is of another optax-lab'}: resume with the options "
            f"of the interrupted run (it ran `{self.header.get('command', '?')}`) or use a new --out"
        )

    def restore(
        self, digest: str, specs: Sequence[RunSpec], model: ModelConfig, workload: Workload
    ) -> list[RunResult] | None:
        """The stored runs of this program (None: it has not finished)."""
        program = self.stored.get(digest)
        if program is None or [run["name"] for run in program["runs"]] != [spec.name for spec in specs]:
            return None
        restored = [
            _decode(record, spec, model, workload) for record, spec in zip(program["runs"], specs, strict=False)
        ]
        self.finished += restored
        self.programs_restored += 1
        return restored

    def add(self, digest: str, label: str, results: Sequence[RunResult]) -> None:
        """Append one finished program: one write, flushed and fsynced before training goes on."""
        line = json.dumps({"program": digest, "label": label, "runs": [_encode(r) for r in results]}) + "\n"
        with _signals_deferred(), open(self.path, "ab") as handle:
            handle.write(line.encode())
            handle.flush()
            os.fsync(handle.fileno())
            self.finished += results
            self.programs_trained += 1

    @property
    def programs_finished(self) -> int:
        return self.programs_restored + self.programs_trained

    def close(self) -> None:
        """The complete report is written: the finished programs are in it, and the folder holds
        no interrupted run any more."""
        self.path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Interrupted before any program finished: leave nothing (the folder too, if only the
        header made it)."""
        self.close()
        if self.created_out:
            try:
                self.out.rmdir()
            except OSError:
                pass  # not empty: not ours to remove
