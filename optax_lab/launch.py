"""Programs over a cluster: each round of a run's programs split into jobs through submitit, Slurm
job arrays on a cluster or processes on this machine (`local`), each job a process of its own that
trains its programs and writes them to its own file in the run's `--out` (`RunStore.for_job`).

The run's own process plans, checks every model against its data, waits for the jobs (progress
as their files grow), then takes their programs in as a resumed run takes in its finished ones:
the results, the report and `--resume` are those of a run in one process. A job that fails
leaves the others' programs on disk; the run stops with one line naming what is missing, and
`--resume` launches only that.

`jax.distributed` is the other way to use several hosts: one program's replicas over all of them
(one grid too large for a host). Launched jobs suit the other case, many programs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optax_lab import engine
from optax_lab.compile_ahead import AUTO, CompileAhead, auto_compile_workers
from optax_lab.config import Config
from optax_lab.errors import UsageError, import_extra
from optax_lab.planning import group_label, program_groups
from optax_lab.records import Job, RunResult, program_digest
from optax_lab.run_store import RunStore
from optax_lab.runner import Progress, load_arrays, run_programs

__all__ = ["LAUNCHERS", "JobsFailed", "Launcher", "run_job"]

LAUNCHERS = ("local", "slurm")
SUBMITIT_DIR = "submitit"  # under the run's jobs folder: submitit's pickles and each job's logs


class JobsFailed(UsageError):
    """Some jobs of a round failed: the programs the others finished are kept."""


@dataclasses.dataclass(frozen=True)
class JobWork:
    """What one job trains, pickled to its process."""

    name: str
    out: str
    header: Mapping[str, Any]
    config: Config
    jobs: Sequence[Job]
    seeds: tuple[int, ...]
    devices: int | None
    compile_workers: int | str | None
    compile_cache: bool


def run_job(work: JobWork) -> int:
    """A job's process: its programs trained and written to its own file; how many."""
    from optax_lab.devices import configure_devices

    configure_devices(work.devices, distributed=False)
    if work.compile_cache:
        engine.enable_compile_cache()
    store = RunStore.for_job(Path(work.out), work.name, work.header)
    arrays, _ = load_arrays(work.config, work.jobs)
    workers = auto_compile_workers() if work.compile_workers == AUTO else work.compile_workers
    ahead = CompileAhead(workers) if workers else None
    with ahead or contextlib.nullcontext():
        run_programs(work.config, work.jobs, arrays, work.seeds, store=store, ahead=ahead)
    return store.programs_trained


@dataclasses.dataclass
class Launcher:
    """`--launcher local|slurm`: a round's programs run as up to `jobs` jobs (a Slurm job array of
    that size, or as many local processes at once). Slurm's resources are each job's."""

    launcher: str = "local"
    jobs: int = 2
    partition: str | None = None
    time_min: int = 60
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    devices: int | None = None
    compile_workers: int | str | None = None
    compile_cache: bool = False
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise UsageError(f"--launcher {self.launcher}: give one of {', '.join(LAUNCHERS)}")
        if self.jobs < 1:
            raise UsageError(f"--jobs {self.jobs}: give at least 1 (how many jobs share a round's programs)")
        import_extra("submitit", "cluster", f"--launcher {self.launcher}")
        absent = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if self.launcher == "slurm" and absent:
            raise UsageError(
                f"--launcher slurm: no Slurm answers here ({' and '.join(absent)} not on PATH): run on a Slurm "
                "login node, or use --launcher local"
            )

    def wait(self) -> None:
        """One pause between looks at the jobs' files."""
        time.sleep(self.poll_s)

    def executor(self, folder: Path):
        submitit = import_extra("submitit", "cluster", f"--launcher {self.launcher}")
        executor = submitit.AutoExecutor(folder=folder, cluster=self.launcher)
        executor.update_parameters(timeout_min=self.time_min, name="optax-lab")
        if self.launcher == "slurm":
            slurm = {"slurm_array_parallelism": self.jobs, "gpus_per_node": self.gpus_per_job}
            slurm |= {"slurm_partition": self.partition} if self.partition else {}
            slurm |= {"cpus_per_task": self.cpus_per_job} if self.cpus_per_job else {}
            executor.update_parameters(**slurm)
        return executor

    def __call__(
        self,
        config: Config,
        jobs: Sequence[Job],
        arrays: Mapping,
        seeds: tuple[int, ...],
        progress: Progress | None = None,
        store: RunStore | None = None,
        ahead: CompileAhead | None = None,
    ) -> list[RunResult]:
        """The round's runs, as `runner.run_programs` gives them, trained by the jobs; the programs
        a resumed run finished before are restored, not launched."""
        if store is None:
            raise UsageError(f"--launcher {self.launcher} needs an output folder for its jobs' programs: give --out")
        groups = program_groups(jobs)
        digests = [program_digest(group, seeds) for group in groups]
        for group, digest in zip(groups, digests, strict=True):
            if digest in store.stored and progress:
                progress("restored", group_label(group), store.stored[digest]["runs"][0]["program_run_s"])
        waiting = [group for group, digest in zip(groups, digests, strict=True) if digest not in store.stored]
        try:
            failure = self._launch(config, waiting, seeds, store, progress) if waiting else None
        finally:  # a stop too keeps what the jobs finished: taken in, it is in the incomplete report
            finished = [
                job for group, digest in zip(groups, digests, strict=True) if digest in store.stored for job in group
            ]
            results = run_programs(config, finished, arrays, seeds, None, store)  # each restores: none trains here
        if failure is not None:
            raise failure
        return results

    def _launch(
        self, config: Config, groups: list, seeds: tuple[int, ...], store: RunStore, progress: Progress | None
    ) -> JobsFailed | None:
        """Run `groups` as jobs and wait for them; what failed, if any did."""
        count = min(self.jobs, len(groups))
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
        works = [
            JobWork(
                f"{stamp}-{index:03d}",
                str(store.out),
                store.header,
                config,
                [job for group in groups[index::count] for job in group],  # round robin: costs interleave
                seeds,
                self.devices,
                self.compile_workers,
                self.compile_cache,
            )
            for index in range(count)
        ]
        submitted = self.executor(store.out / "jobs" / SUBMITIT_DIR).map_array(run_job, works)
        seen = set(store.stored)
        try:
            while not all(job.done() for job in submitted):
                self.wait()
                seen = _report_new(store, seen, progress)
        except BaseException:  # Ctrl-C, SIGTERM: the jobs stop too, keeping the programs they finished
            _cancel(submitted, wait_s=10.0 if self.launcher == "local" else 0.0)
            raise
        finally:
            _report_new(store, seen, progress)
        failed = [(work, job) for work, job in zip(works, submitted, strict=True) if job.exception() is not None]
        if failed:
            missing = [group_label(group) for group in groups if program_digest(group, seeds) not in store.stored]
            work, job = failed[0]
            return JobsFailed(
                f"{len(failed)} of {count} jobs failed (job {work.name}: {_last_error(job.exception())}; its log: "
                f"{job.paths.stderr}); {len(missing)} programs are missing: {', '.join(missing)}"
            )
        return None


def _cancel(jobs: Sequence, wait_s: float) -> None:
    """Cancel the jobs still running, and give local ones up to `wait_s` to end, so that none is
    still writing once this process has said what it kept."""
    running = [job for job in jobs if not job.done()]
    for job in running:
        job.cancel(check=False)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not all(job.done() for job in running):
        time.sleep(0.1)


def _last_error(error: BaseException) -> str:
    """The error line of a failed job's traceback (submitit wraps it between dashed lines, then
    names the logs)."""
    lines = [line.strip() for line in str(error).splitlines()]
    end = next((i for i, line in enumerate(lines) if line.startswith("You can check")), len(lines))
    found = [line for line in lines[:end] if line and not set(line) <= {"-"}]
    return found[-1] if found else type(error).__name__


def _report_new(store: RunStore, seen: set[str], progress: Progress | None) -> set[str]:
    """Take in the programs the jobs have written since `seen`, each reported as compiled and trained."""
    store.reload_jobs()
    for digest in [digest for digest in store.stored if digest not in seen]:
        line = store.stored[digest]
        if progress:
            first = line["runs"][0]
            progress("compiled", line["label"], first["compile_s"])
            progress("trained", line["label"], first["program_run_s"])
    return set(store.stored)
