"""`train_and_evaluate(config)`: the main job, stage by stage (the Flax examples' entry point).

config -> plan (the preset's lessons, a ranking of registry optimizers per batch mode, or a
sweep of their hyperparameters, with the user's overrides) -> data -> one compiled program per
group of runs that differ only in traced hyperparameters -> metrics.
Writing the report is the caller's (the CLI's) last step, so tests can check results without
touching the disk.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from optax_lab import optimizers
from optax_lab.config import PRESETS, Config, Lesson, LessonKind, RunSpec, batch_label
from optax_lab.data import Dataset, load_dataset, subset
from optax_lab.devices import host_available_bytes
from optax_lab.errors import UsageError
from optax_lab.memory import check_results_fit
from optax_lab.metrics import TARGET_VAL_LOSS, results_dict
from optax_lab.program import Arrays, program_key, program_settings
from optax_lab.sweep import MAIN, Sweep
from optax_lab.train import RunResult, train_points

__all__ = ["Job", "Progress", "check_host_memory", "distinct_jobs", "group_label", "load_arrays", "plan", "point_text", "program_groups",
           "ranking_lessons", "run_jobs", "sweep_lessons", "sweep_points", "train_and_evaluate"]

# progress(event, name, seconds): "loaded" once the dataset `name` is in memory, then per program
# "compiled" after it compiles and "trained" after it ran (name: its first run, +k points).
Progress = Callable[[str, str, float], None]


def _selected(names: tuple[str, ...]) -> list[str]:
    return sorted(optimizers.REGISTRY) if names == ("all",) else [optimizers.get(n).name for n in names]


def ranking_lessons(names: tuple[str, ...], batches: tuple[int | None, ...],
                    tuned: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
                    tuned_source: str = "") -> tuple[Lesson, ...]:
    """One lesson per batch mode, each running every optimizer of `names` ("all": the registry),
    at its registry defaults or, with `tuned`, at its tuned point for that batch mode."""
    selected = _selected(names)

    def point(name: str, batch: int | None) -> dict[str, Any]:
        if tuned is None:
            return {}
        found = tuned.get(name, {}).get(batch_label(batch))
        if found is None:
            raise UsageError(f"--tuned {tuned_source}: no tuned point for {name} at batch {batch_label(batch)}: "
                             f"tune it (optax-lab tune --optimizers {name} --batch {batch_label(batch)}) "
                             "or leave it out of --optimizers")
        for hyperparam, value in found.items():
            optimizers.check_value(name, hyperparam, value)
        return dict(found)

    extra = {} if tuned is None else {"tuned_source": tuned_source}
    return tuple(
        Lesson(f"batch-{batch_label(batch)}",
               f"All optimizers, {'full batch' if batch is None else f'batch {batch}'}"
               + (", at tuned points" if tuned is not None else ""),
               "Which optimizer reaches the lowest validation loss, and which gets to the target first?",
               tuple(RunSpec(f"{name} @{batch_label(batch)}", name, values, batch, point=values)
                     for name in selected for values in [point(name, batch)]),
               kind=LessonKind.RANKING, extra=extra)
        for batch in batches)


def sweep_points(name: str, sweeps: Sequence[Sweep], base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cartesian product of the sweeps that apply to optimizer `name` (on top of `base`
    overrides); [{}] when none does. Every value is checked against its domain."""
    entry = optimizers.get(name)
    axes: dict[str, tuple[float, ...]] = {}
    for sweep in sweeps:
        if sweep.optimizer not in (None, name):
            continue
        hyperparam = entry.main if sweep.hyperparam == MAIN else sweep.hyperparam
        if not hyperparam or hyperparam not in entry.accepted:
            if sweep.optimizer is None:
                continue  # an unprefixed sweep applies to the optimizers that take it
            if sweep.hyperparam == MAIN:
                optimizers.main_scale(name)  # raises, saying why it has none
            raise UsageError(f"--sweep {sweep.text}: optimizer {name!r} takes no hyperparameter {hyperparam!r}: "
                             f"it accepts {', '.join(entry.accepted)}")
        if hyperparam in axes:
            raise UsageError(f"--sweep {sweep.text}: {name}.{hyperparam} is swept twice; give one --sweep for it")
        default = {**entry.all_defaults, **base}.get(hyperparam)
        axes[hyperparam] = values = sweep.values_for(default)
        for value in values:
            try:
                optimizers.check_value(name, hyperparam, value)
            except UsageError as error:
                raise UsageError(f"--sweep {sweep.text}: {error}") from None
    return [dict(zip(axes, combination)) for combination in itertools.product(*axes.values())]


def point_text(point: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


def sweep_lessons(config: Config) -> tuple[Lesson, ...]:
    """One sweep lesson per batch mode: every selected optimizer at every point of its grid."""
    selected = _selected(config.optimizers)
    for sweep in config.sweeps:
        if sweep.optimizer is not None and optimizers.get(sweep.optimizer).name not in selected:
            raise UsageError(f"--sweep {sweep.text}: {sweep.optimizer} is not among --optimizers; add it")
    grids = {name: sweep_points(name, config.sweeps, config.overrides.get(name, {})) for name in selected}
    for sweep in config.sweeps:
        if sweep.optimizer is None and not any(sweep.hyperparam == MAIN and optimizers.get(n).main
                                               or sweep.hyperparam in optimizers.get(n).accepted for n in selected):
            raise UsageError(f"--sweep {sweep.text}: none of the optimizers takes {sweep.hyperparam!r}; "
                             "see `optax-lab list` for their hyperparameters")
    extra = {"criterion": config.criterion, "target_val_loss": TARGET_VAL_LOSS}
    return tuple(
        Lesson(f"sweep-{batch_label(batch)}",
               f"Hyperparameter sweep, {'full batch' if batch is None else f'batch {batch}'}",
               "How sensitive is each optimizer to its hyperparameters, and where is its best point?",
               tuple(RunSpec(f"{name} @{batch_label(batch)}" + (f" {point_text(point)}" if point else ""),
                             name, point, batch, point=point)
                     for name in selected for point in grids[name]),
               kind=LessonKind.SWEEP, extra=extra)
        for batch in config.batches)


def _with_overrides(lessons: tuple[Lesson, ...], overrides) -> tuple[Lesson, ...]:
    used = {run.optimizer for lesson in lessons for run in lesson.runs}
    for name, values in overrides.items():
        if optimizers.get(name).name not in used:
            raise UsageError(f"--set {name}.…: no run uses optimizer {name!r}; "
                             f"the runs use {', '.join(sorted(used))}")
        optimizers.hyperparams(name, values)  # names every hyperparameter it does not take, checks every value

    def override(run: RunSpec) -> RunSpec:  # --set wins over a preset's values; a swept or tuned point wins over --set
        extra = overrides.get(run.optimizer)
        return dataclasses.replace(run, hyperparams={**run.hyperparams, **extra, **run.point}) if extra else run

    return tuple(dataclasses.replace(lesson, runs=tuple(map(override, lesson.runs))) for lesson in lessons)


def plan(config: Config) -> tuple[Lesson, ...]:
    if config.sweeps:
        lessons = sweep_lessons(config)
    elif config.optimizers:
        lessons = ranking_lessons(config.optimizers, config.batches, config.tuned, config.tuned_source)
    else:
        lessons = PRESETS[config.preset]
    return _with_overrides(lessons, config.overrides)


@dataclasses.dataclass(frozen=True)
class Job:
    """One program to run: a spec with the data and length of the lesson(s) that use it."""

    spec: RunSpec
    num_words: int
    train_examples: int | None
    epochs: int
    eval_train: bool

    @property
    def key(self) -> tuple:
        return (self.spec.key, self.num_words, self.train_examples, self.epochs, self.eval_train)


def distinct_jobs(config: Config, lessons: tuple[Lesson, ...]) -> tuple[Job, ...]:
    """The runs of all lessons in order, each program once (SGD is in two of the lesson's), every
    run's model built (a bad change fails here, before any work). Reports find runs by name, so
    one name must mean one program."""
    unique: dict[tuple, Job] = {}
    names: dict[str, tuple] = {}
    for lesson in lessons:
        num_words, train_examples, epochs = config.lesson_settings(lesson)
        for run in lesson.runs:
            job = Job(run, num_words, train_examples, epochs, lesson.eval_train)
            if names.setdefault(run.name, job.key) != job.key:
                raise ValueError(f"run name {run.name!r} is used for two different programs")
            run.model_config(config.model)
            unique.setdefault(job.key, job)
    return tuple(unique.values())


def program_groups(jobs: Sequence[Job]) -> list[list[Job]]:
    """The jobs grouped by compiled program (the points of one grid share one), in first-seen order."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        key = (program_key(job.spec), job.num_words, job.train_examples, job.epochs, job.eval_train)
        groups.setdefault(key, []).append(job)
    return list(groups.values())


def group_label(group: Sequence[Job]) -> str:
    return group[0].spec.name + (f" (+{len(group) - 1} points)" if len(group) > 1 else "")


def load_arrays(config: Config, jobs: Sequence[Job], warn: Callable[[str], None] | None = None
                ) -> tuple[dict[tuple, Arrays], dict[str, Any]]:
    """The data of every job on the device, keyed by (num_words, train_examples), every subset and
    batch size checked against it before any training; and the first dataset's record."""
    loaded: dict[int, Dataset] = {}
    for num_words in dict.fromkeys(job.num_words for job in jobs):
        loaded[num_words], warning = load_dataset(config.dataset, num_words, config.imdb_archive)
        if warning and warn and len(loaded) == 1:
            warn(warning)
    arrays: dict[tuple, Arrays] = {}
    for job in jobs:
        data_key = (job.num_words, job.train_examples)
        if data_key not in arrays:
            dataset = subset(loaded[job.num_words], job.train_examples)
            arrays[data_key] = Arrays.from_numpy(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
        program_settings(job.spec, arrays[data_key], job.epochs, config.seeds, config.order)
    first = next(iter(loaded.values()))
    return arrays, {"name": first.name, "source": first.source, "n_train": int(first.x_train.shape[0]),
                    "n_test": int(first.x_test.shape[0]), "num_words": first.num_words}


def check_host_memory(config: Config, jobs: Sequence[Job]) -> None:
    """Refuse, before loading anything, a run whose histories cannot fit the host (`--seeds` huge)."""
    check_results_fit(config.seeds * len(jobs), max(job.epochs for job in jobs), config.model.depth,
                      host_available_bytes(), config.seeds)


def run_jobs(config: Config, jobs: Sequence[Job], arrays: Mapping[tuple, Arrays], seeds: tuple[int, ...],
             progress: Progress | None = None) -> list[RunResult]:
    """Every job's runs, one compiled program per group of points (`program_groups`)."""
    results = []
    for group in program_groups(jobs):
        label, first = group_label(group), group[0]

        def compiled(seconds, label=label):
            if progress:
                progress("compiled", label, seconds)

        trained = train_points([job.spec for job in group], arrays[(first.num_words, first.train_examples)],
                               seeds=seeds, epochs=first.epochs, order=config.order, model_config=config.model,
                               eval_train=first.eval_train, max_replicas=config.max_replicas, devices=config.devices,
                               on_compiled=compiled)
        if progress:
            progress("trained", label, trained[0].program_run_s)
        results += trained
    return results


def train_and_evaluate(config: Config, *, command: str = "", progress: Progress | None = None,
                       warn: Callable[[str], None] | None = None, compile_cache: bool = False) -> dict:
    config.validate()
    lessons = plan(config)
    jobs = distinct_jobs(config, lessons)
    check_host_memory(config, jobs)
    start = time.perf_counter()
    arrays, dataset_info = load_arrays(config, jobs, warn)
    if progress:
        progress("loaded", dataset_info["name"], time.perf_counter() - start)
    seeds = tuple(range(config.seed, config.seed + config.seeds))
    results = run_jobs(config, jobs, arrays, seeds, progress)
    return results_dict(config, lessons, dataset_info, results, command, compile_cache)
