"""Compiling ahead: while one program runs, the next ones compile on a thread pool (XLA releases
the GIL while it compiles), so the host's compile time hides behind the device's run time.

`CompileAhead(workers)` keeps at most `workers` programs compiling or compiled-and-waiting beyond
the one that runs: memory holds at most `workers` extra executables and compiles. Programs come
back in their planned order, and a program that fails to compile raises its error when its turn
comes, as it would compiled in turn. Each compile's wall-clock window is kept, so a run can say
how many of its seconds shared the host with a compile (`overlap_s`): on a CPU host a compile
and a program take cores from each other.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from optax_lab.devices import cores, host_available_bytes
from optax_lab.errors import UsageError

__all__ = ["AUTO", "MAX_AUTO_WORKERS", "CompileAhead", "auto_compile_workers", "check_compile_workers"]

T = TypeVar("T")

# Where the programs run on an accelerator, a worker per 4 host cores, up to 4: the host's compiles
# overlap device time, and with a fast device the compiles are the run's length, so they go in
# parallel (docs/performance.md models a ranking's measured seconds: 1 worker 93 %, 4 workers 25 %
# of its time in turn with runs 10x this CPU's). On a CPU host none: there a compile only shares
# the cores with the running program (a 2-core ranking compiled ahead took 96 % of its time in
# turn, with 1 worker or 2, and its run seconds grew by two thirds).
MAX_AUTO_WORKERS = 4
# Host memory one compile may take: twice the most measured (a CPU compile of imdb-char-lm's 8-seed
# program raised the peak RSS by 447 MB; mnist-cnn's 352 MB, imdb-fasttext's 304 MB).
COMPILE_BYTES = 1 << 30
AUTO = "auto"


def auto_compile_workers() -> int | None:
    """The default: on an accelerator a worker per 4 host cores, 1 to MAX_AUTO_WORKERS, and no more
    compiles at once than the host's free memory holds (COMPILE_BYTES each); on a CPU None (each
    program in turn)."""
    import jax

    if jax.default_backend() == "cpu":
        return None
    return max(1, min(MAX_AUTO_WORKERS, cores() // 4, host_available_bytes() // COMPILE_BYTES))


def check_compile_workers(workers: int) -> int:
    if workers < 1:
        raise UsageError(
            f"--compile-workers {workers}: give at least 1 (the threads that compile the next programs "
            "while one runs), or --no-compile-ahead to compile each in turn"
        )
    return workers


class CompileAhead:
    """A thread pool that prepares programs ahead of the one running; `with` closes it."""

    def __init__(self, workers: int = 1):
        self.workers = check_compile_workers(workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="optax-lab-compile")
        self._windows: list[list[float | None]] = []  # [start, end or None while compiling]
        self._lock = threading.Lock()

    def __enter__(self) -> CompileAhead:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        # A stop (Ctrl-C, SIGTERM) leaves at once; otherwise a compile under way is waited for, so
        # that nothing of this run still compiles once it has returned.
        self.close(wait=kind is None or not issubclass(kind, KeyboardInterrupt))

    def close(self, wait: bool = True) -> None:
        """Cancel what has not started; wait for a compile under way unless told not to (it then
        finishes on its own thread)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)

    def _timed(self, task: Callable[[], T]) -> T:
        window: list[float | None] = [time.perf_counter(), None]
        with self._lock:
            self._windows.append(window)
        try:
            return task()
        finally:
            window[1] = time.perf_counter()

    def in_order(self, tasks: Iterable[Callable[[], T]]) -> Iterator[Future]:
        """Each task's future, in order; a task is submitted once at most `workers` are ahead of
        the one last handed out, so a closed or abandoned iteration leaves little work behind."""
        tasks = iter(tasks)
        ahead: collections.deque[Future] = collections.deque()

        def top_up() -> None:
            while len(ahead) < self.workers:
                task = next(tasks, None)
                if task is None:
                    return
                ahead.append(self._pool.submit(self._timed, task))

        top_up()
        try:
            while ahead:
                current = ahead.popleft()
                top_up()  # the next ones compile while `current` is waited for and runs
                yield current
        finally:
            for future in ahead:
                future.cancel()

    def overlap_s(self, start: float, end: float) -> float:
        """Seconds of [start, end] (perf_counter) in which at least one compile ran. Runs are
        asked about in order, so compiles that ended before `start` are forgotten."""
        now = time.perf_counter()
        with self._lock:
            self._windows = [window for window in self._windows if window[1] is None or window[1] >= start]
            spans = sorted((max(s, start), min(e if e is not None else now, end)) for s, e in self._windows)
        covered, reach = 0.0, start
        for low, high in spans:
            low = max(low, reach)
            if high > low:
                covered += high - low
                reach = high
        return covered
