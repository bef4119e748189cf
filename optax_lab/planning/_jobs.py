"""From lessons to programs: the distinct jobs of a plan, grouped into compiled programs, and the
planner protocol the runner drives: rounds of jobs, each planned from the results of the rounds
before (a run has one round; a tuner's grids grow from what its first rounds found).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Sequence
from typing import Any, NamedTuple, Protocol

from optax_lab import workloads
from optax_lab.config import Config
from optax_lab.lessons import Lesson
from optax_lab.planning._lessons import plan
from optax_lab.records import Job, RunResult

__all__ = ["Planner", "Round", "RunPlanner", "distinct_jobs", "group_label", "program_groups"]


def distinct_jobs(config: Config, lessons: Sequence[Lesson]) -> tuple[Job, ...]:
    """The runs of all lessons in order, each program once (SGD is in two of the lesson's), every
    run's model built (a bad change fails here, before any work). Reports find runs by name, so
    one name must mean one program."""
    unique: dict[tuple, Job] = {}
    names: dict[str, tuple] = {}
    for lesson in lessons:
        num_words, train_examples, epochs = lesson.settings(config)
        workload = workloads.get(lesson.workload)
        if workload.num_words is None:
            num_words = None
        workload = workload.with_num_words(num_words)
        for run in lesson.runs:
            job = Job(run, workload, num_words, train_examples, epochs, lesson.eval_train)
            if names.setdefault(run.name, job.key) != job.key:
                raise ValueError(f"run name {run.name!r} is used for two different programs")
            job.model(config)
            unique.setdefault(job.key, job)
    return tuple(unique.values())


def program_groups(jobs: Sequence[Job]) -> list[list[Job]]:
    """The jobs grouped by compiled program (the points of one grid share one), in first-seen order."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.program_key, []).append(job)
    return list(groups.values())


def group_label(group: Sequence[Job]) -> str:
    return group[0].spec.name + (f" (+{len(group) - 1} points)" if len(group) > 1 else "")


class Round(NamedTuple):
    """Jobs to train together on the same seeds: one program per group of points."""

    jobs: tuple[Job, ...]
    seeds: tuple[int, ...]


class Planner(Protocol):
    """What the runner runs. `rounds()` yields rounds and is sent each round's results; `lessons`
    is what is planned so far (what the results, or an interrupted run's partial report,
    discuss) and `not_started` what a stop now would leave unplanned; `finish` completes the
    results dict and returns the files a planner writes beside it (a tuner's tuned.json)."""

    command: str  # the subcommand, as the resume fingerprint records it
    config: Config  # the configuration results.json records
    lessons: tuple[Lesson, ...]
    not_started: str
    programs: int  # the programs planned before training: the progress bar's length
    grows: bool  # whether later rounds may plan more (a tuner's grids)
    memory_jobs: tuple[Job, ...]  # whose histories the host holds at once, at config.seeds each
    resume_extras: dict[str, Any]  # the planner's own options, for the resume fingerprint

    def rounds(self) -> Generator[Round, list[RunResult], None]: ...

    def finish(self, results: dict[str, Any]) -> dict[str, dict[str, Any]]: ...


@dataclasses.dataclass
class RunPlanner:
    """`optax-lab run`: the configuration's lessons (`plan`), trained in one round."""

    config: Config
    command: str = "run"
    not_started: str = ""
    grows: bool = False
    resume_extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.lessons = plan(self.config)
        self.memory_jobs = distinct_jobs(self.config, self.lessons)
        self.programs = len(program_groups(self.memory_jobs))

    def rounds(self) -> Generator[Round, list[RunResult], None]:
        yield Round(self.memory_jobs, tuple(range(self.config.seed, self.config.seed + self.config.seeds)))

    def finish(self, results: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {}
