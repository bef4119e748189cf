"""Finished programs on disk as they finish, so that an interrupted run keeps them and `--resume`
runs only what is missing.

`runs.jsonl`, beside the final results.json: its first line is the header (the configuration's
hash and the readable inputs it hashes, the command, the data, the machine), written atomically;
each later line is one finished program's runs (histories with their dtypes, so they come back
bit for bit, the program's timings and the machine that ran it), appended with one write and
fsynced before the next program starts. A line torn by a crash or power loss is the last one: it
is ignored, and cut off before anything is appended. Jobs of a launched run (`launch`) each
write a file of their own, `jobs/<job>.jsonl`, with the same header. Once the complete report is
written, every program of the run goes into `programs.jsonl`, the record `optax-lab merge` reads,
and the files of the run in progress go. `store_files` reads them all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import os
import shutil
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
from optax_lab.store_files import STORE_KIND, header_of, own_lines, programs_of, read_store_file, whole_lines
from optax_lab.workloads import Workload

__all__ = ["JOBS_DIR", "PLAN_LABEL", "PROGRAMS_FILE", "RUNS_FILE", "RunStore", "Unfinished", "package_versions"]

RUNS_FILE = "runs.jsonl"  # a run in progress, or interrupted
PROGRAMS_FILE = "programs.jsonl"  # a complete run's programs
JOBS_DIR = "jobs"  # a launched run's jobs, a file each
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
    "overlap_s",
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
        **{field: record[field] for field in _SCALARS if field in record},
    )


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
    `add` appends a program, `restore` gives back a stored one, `close` keeps the complete run's
    programs in `programs.jsonl`. A launched run's jobs each write through `for_job`."""

    def __init__(self, out: Path, resume: bool, command: str, path: Path | None = None, argv: Sequence[str] = ()):
        self.out, self.resume, self.command, self.argv = Path(out), resume, command, list(argv)
        self.path = path or self.out / RUNS_FILE
        self.header: dict | None = None
        self.stored: dict[str, dict] = {}  # digest -> line, of the programs finished before or by the jobs
        self.finished: list[RunResult] = []  # restored and trained, in the order the programs ran
        self.used: list[str] = []  # the digests of those programs
        self.programs_restored = self.programs_trained = 0
        self.created_out = not self.out.exists()  # `discard` removes only a folder it made
        self.machine: dict | None = None
        self._job_offsets: dict[Path, int | None] = {}  # bytes of each job file taken in (None: not this run's)

    @classmethod
    def open(cls, out: Path, resume: bool, command: str, argv: Sequence[str] = ()) -> RunStore:
        """The store of `out`; `argv`, the command's arguments (`files.shareable_args`: paths by
        file name), is kept for `merge` to plan the run again."""
        store = cls(out, resume, command, argv=argv)
        header, programs, whole = read_store_file(store.path) if store.path.is_file() else (None, {}, 0)
        if resume and header is None:
            finished = " (it holds a finished run: nothing to resume)" if (store.out / "results.json").is_file() else ""
            raise UsageError(
                f"--resume: {store.out} holds no interrupted run, no {RUNS_FILE}{finished}: run "
                "without --resume, or give the --out of the interrupted run"
            )
        if header is not None:
            store.header, store.stored = header, programs
            store.reload_jobs()  # a launched run's jobs' programs too
        if not resume and header is not None:
            raise UsageError(
                f"--out {store.out} holds an interrupted run ({len(store.stored)} programs finished, in "
                f"{RUNS_FILE}): add --resume to continue it, or remove {store.out} (or choose another --out) to "
                "start over"
            )
        if resume:
            if whole < store.path.stat().st_size:  # cut a torn last line off before appending after it
                os.truncate(store.path, whole)
        return store

    @classmethod
    def for_job(cls, out: Path, job: str, header: Mapping[str, Any]) -> RunStore:
        """The store one job of a launched run writes: `jobs/<job>.jsonl` under the run's `out`,
        headed by the run's header with this machine's name."""
        from optax_lab.devices import machine_record

        store = cls(out, False, header.get("command", ""), Path(out) / JOBS_DIR / f"{job}.jsonl")
        store.machine = machine_record()
        store.header = {**header, "machine": store.machine, "job": job}
        with atomic_file(store.path) as handle:
            handle.write(json.dumps(store.header, allow_nan=False).encode() + b"\n")
        return store

    def reload_jobs(self) -> None:
        """Take in what the jobs have written since the last look: each job's file is read on from
        where that look stopped, whole lines only (a launcher looks every second)."""
        for path in sorted((self.out / JOBS_DIR).glob("*.jsonl")):
            offset = self._job_offsets.get(path, 0)
            if offset is None:  # another run's file
                continue
            with open(path, "rb") as handle:
                handle.seek(offset)
                lines, whole = whole_lines(handle.read())
            if offset == 0 and lines:
                header = header_of(lines.pop(0))
                if header is None or header.get("config_hash") != self.header["config_hash"]:
                    self._job_offsets[path] = None
                    continue
            for digest, line in programs_of(lines).items():
                self.stored.setdefault(digest, line)
            self._job_offsets[path] = offset + whole

    def begin(self, print_: Fingerprint, details: Mapping[str, Any] | None = None) -> None:
        """Fresh: write the header (with `details`: what a merge needs to plan the run again).
        Resuming: the stored inputs must equal these, else a UsageError saying what differs."""
        from optax_lab.devices import machine_record

        self.machine = machine_record()
        if not self.resume:
            self.header = {
                "kind": STORE_KIND,
                "schema": STORE_SCHEMA,
                "config_hash": print_.digest,
                "command": self.command,
                "inputs": print_.inputs,
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": self.machine,
                "argv": self.argv,
                **(details or {}),
            }
            with atomic_file(self.path) as handle:
                handle.write(json.dumps(self.header, allow_nan=False).encode() + b"\n")
            return
        if self.header.get("schema") == STORE_SCHEMA and self.header.get("config_hash") == print_.digest:
            return
        what = differences(self.header.get("inputs") or {}, print_.inputs) or "the stored run is of another optax-lab"
        raise UsageError(
            f"--resume: {what}: resume with the options of the interrupted run (it ran "
            f"`{self.header.get('command', '?')}`) or use a new --out"
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
        self.used.append(digest)
        self.programs_restored += 1
        return restored

    def add(self, digest: str, label: str, results: Sequence[RunResult]) -> None:
        """Append one finished program: one write, flushed and fsynced before training goes on."""
        record = {"program": digest, "label": label, "machine": self.machine, "runs": [_encode(r) for r in results]}
        line = json.dumps(record) + "\n"
        with _signals_deferred(), open(self.path, "ab") as handle:
            handle.write(line.encode())
            handle.flush()
            os.fsync(handle.fileno())
            self.finished += results
            self.used.append(digest)
            self.programs_trained += 1

    @property
    def programs_finished(self) -> int:
        return self.programs_restored + self.programs_trained

    def used_machines(self) -> list[dict | None]:
        """The machine of each program restored or trained, in their order."""
        return [self.stored[digest].get("machine") if digest in self.stored else self.machine for digest in self.used]

    def close(self) -> None:
        """The complete report is written: every program of the run goes into `programs.jsonl`
        (atomically; this process's own lines copied from its file, not kept in memory), and the
        folder holds no interrupted run any more."""
        if self.header is not None:
            with atomic_file(self.out / PROGRAMS_FILE) as handle:
                handle.write(json.dumps(self.header).encode() + b"\n")
                for line in self.stored.values():
                    handle.write(json.dumps(line).encode() + b"\n")
                for raw in own_lines(self.path):
                    if json.loads(raw).get("program") not in self.stored:
                        handle.write(raw)
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.out / JOBS_DIR, ignore_errors=True)

    def discard(self) -> None:
        """Interrupted before any program finished: leave nothing (the folder too, if only the
        header made it)."""
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.out / JOBS_DIR, ignore_errors=True)
        if self.created_out:
            try:
                self.out.rmdir()
            except OSError:
                pass  # not empty: not ours to remove


def differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """What differs between two runs' inputs, by label, the first three (the option, not the
    plan it makes, when an option differs)."""
    changes = [
        f"{label} was {_shown(before.get(label))}, now {_shown(value)}"
        for label, value in now.items()
        if before.get(label) != value
    ]
    changes += [f"{label} was {_shown(value)}, now unset" for label, value in before.items() if label not in now]
    if len(changes) > 1:  # the plan differs because an option does: name the option
        changes = [change for change in changes if not change.startswith(PLAN_LABEL)]
    return "; ".join(changes[:3]) + (f" (and {len(changes) - 3} more)" if len(changes) > 3 else "")
