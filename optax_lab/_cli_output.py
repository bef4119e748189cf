"""Where `optax-lab run` and `tune` write, and what a stop leaves behind: the output folder and
its store of finished programs, the progress bar, and SIGTERM taken as Ctrl-C.

A stop during training (Ctrl-C, SIGTERM, an error) keeps every finished program in
`runs.jsonl`, writes the finished runs' report marked INCOMPLETE, and says in one line how to
resume: the same command with --resume.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from optax_lab.devices import is_main_process
from optax_lab.errors import UsageError
from optax_lab.files import shareable_args, shareable_command
from optax_lab.planning import Planner

__all__ = ["EXIT_INTERRUPTED", "EXIT_TERMINATED", "Output", "Terminated", "prepare", "stopped", "training", "warn_to"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM
RESUME = "--resume"


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, `kill`), raised where Ctrl-C would be so that both take the
    same path: finished programs kept, an incomplete report, a resume line."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    def stop(signum, frame):
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclasses.dataclass
class Output:
    """Where a run writes (None: another process of a multi-process run writes) and what it shows."""

    out: Path | None
    progress: Callable | None
    bar: object | None  # the ProgressBar to stop
    command: str  # the shareable command, as results.json records it (never with --resume)
    resume_line: str  # the user's own command with --resume, for the console
    store: object | None  # run_store.RunStore
    programs: int | None  # planned programs (None: a tuner's, whose grids may grow)


def prepare(args, planner: Planner) -> Output:
    from optax_lab._console import ProgressBar
    from optax_lab.engine import enable_compile_cache
    from optax_lab.report import check_writable
    from optax_lab.run_store import RUNS_FILE, RunStore

    config = planner.config
    out = Path(config.out or Path("reports") / (args.command if args.command == "tune" else config.name))
    argv = [arg for arg in args.argv if arg != RESUME]
    command = shareable_command("optax-lab", argv)
    writer = is_main_process()  # of a multi-process run, only process 0 writes and shows progress
    if args.resume:
        import jax

        if jax.process_count() > 1:
            raise UsageError(
                "--resume runs in one process (each process would have to read the same runs.jsonl): "
                "resume without jax.distributed, or start again with a new --out"
            )
    out = check_writable(out) if writer else None
    store = RunStore.open(out, args.resume, command, shareable_args(argv)) if writer else None
    if not args.no_compile_cache:
        enable_compile_cache()
    bar = ProgressBar(args.console, planner.programs) if writer else None

    def progress(event: str, name: str, seconds: float) -> None:
        if event == "restored":  # two steps of the bar: its compile and its training
            args.console.log(f"{name}: restored from {RUNS_FILE} (it trained in {seconds:.2f} s before)")
            bar.bar.advance(bar.task, 2)
        else:
            bar(event, name, seconds)

    return Output(
        out,
        progress if bar else None,
        bar,
        command,
        shlex.join(["optax-lab", *argv, RESUME]),
        store,
        None if planner.grows else planner.programs,
    )


@contextlib.contextmanager
def training(output: Output) -> Iterator[None]:
    """Train under this: SIGTERM stops it as Ctrl-C does, and the progress bar goes either way."""
    try:
        with sigterm_as_interrupt():
            yield
    finally:
        if output.bar:
            output.bar.stop()


def stopped(output: Output, results: dict | None, cause: BaseException) -> int:
    """What a stop during training leaves: the incomplete report of the finished runs (their
    programs are in runs.jsonl already), one line saying so and how to resume; the exit code."""
    from optax_lab.report import write_report
    from optax_lab.run_store import RUNS_FILE

    store, out = output.store, output.out
    how = (
        "terminated (SIGTERM)"
        if isinstance(cause, Terminated)
        else "interrupted (Ctrl-C)"
        if isinstance(cause, KeyboardInterrupt)
        else "stopped by an error"
    )
    if store is None or not store.programs_finished:
        if store is not None and not store.resume:
            store.discard()
        kept = "nothing was written" if store is None or not store.resume else f"{out / RUNS_FILE} is as it was"
        line = f"{how} before the first program finished; {kept}"
    else:
        done = store.programs_finished
        of = f"{done} of {output.programs} programs" if output.programs else f"{done} program{'' if done == 1 else 's'}"
        line = f"{how} after {of} had finished: their runs are in {out / RUNS_FILE}"
        if results is not None:
            write_report(results, out)
            missing = len(results["incomplete"]["missing_runs"])
            line += (
                f" and {out / 'report.md'} is marked INCOMPLETE ({missing} run{'' if missing == 1 else 's'} missing)"
            )
        line += f"; resume with: {output.resume_line}"
    if isinstance(cause, UsageError):  # refused (e.g. a program that cannot fit): the refusal, and what was kept
        kept = f" ({line.removeprefix(how + ' ')})" if store is not None and store.programs_finished else ""
        print(f"optax-lab: error: {cause}{kept}", file=sys.stderr)
        return 2
    print(f"optax-lab: {line}", file=sys.stderr)
    if not isinstance(cause, KeyboardInterrupt):
        raise cause  # a crash: its traceback says where, after the line that says what was kept
    return EXIT_TERMINATED if isinstance(cause, Terminated) else EXIT_INTERRUPTED


def warn_to(console):
    return lambda text: console.print(f"[yellow]warning:[/] {text}")
