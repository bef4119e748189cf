"""`train_and_evaluate(config)`: the main job, stage by stage (the Flax examples' entry point).

config -> plan (the preset's lessons, or a ranking of registry optimizers per batch mode, with
the user's hyperparameter overrides) -> data -> one compiled program per distinct run -> metrics.
Writing the report is the caller's (the CLI's) last step, so tests can check results without
touching the disk.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from optax_lab import optimizers
from optax_lab.config import PRESETS, Config, Lesson, LessonKind, RunSpec, batch_label
from optax_lab.data import Dataset, load_dataset, subset
from optax_lab.errors import UsageError
from optax_lab.metrics import results_dict
from optax_lab.program import Arrays, program_settings
from optax_lab.train import train

__all__ = ["Job", "Progress", "distinct_jobs", "plan", "ranking_lessons", "train_and_evaluate"]

# progress(event, name, seconds): "loaded" once the dataset `name` is in memory, then per run
# "compiled" after its program compiles and "trained" after it ran.
Progress = Callable[[str, str, float], None]


def ranking_lessons(names: tuple[str, ...], batches: tuple[int | None, ...]) -> tuple[Lesson, ...]:
    """One lesson per batch mode, each running every optimizer of `names` ("all": the registry)."""
    selected = sorted(optimizers.REGISTRY) if names == ("all",) else [optimizers.get(n).name for n in names]
    return tuple(
        Lesson(f"batch-{batch_label(batch)}",
               f"All optimizers, {'full batch' if batch is None else f'batch {batch}'}",
               "Which optimizer reaches the lowest validation loss, and which gets to the target first?",
               tuple(RunSpec(f"{name} @{batch_label(batch)}", name, {}, batch) for name in selected),
               kind=LessonKind.RANKING)
        for batch in batches)


def _with_overrides(lessons: tuple[Lesson, ...], overrides) -> tuple[Lesson, ...]:
    used = {run.optimizer for lesson in lessons for run in lesson.runs}
    for name, values in overrides.items():
        if optimizers.get(name).name not in used:
            raise UsageError(f"--set {name}.…: no run uses optimizer {name!r}; "
                             f"the runs use {', '.join(sorted(used))}")
        optimizers.hyperparams(name, values)  # names every hyperparameter it does not take

    def override(run: RunSpec) -> RunSpec:
        extra = overrides.get(run.optimizer)
        return dataclasses.replace(run, hyperparams={**run.hyperparams, **extra}) if extra else run

    return tuple(dataclasses.replace(lesson, runs=tuple(map(override, lesson.runs))) for lesson in lessons)


def plan(config: Config) -> tuple[Lesson, ...]:
    lessons = (ranking_lessons(config.optimizers, config.batches) if config.optimizers
               else PRESETS[config.preset])
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
        return (self.spec.program_key, self.num_words, self.train_examples, self.epochs, self.eval_train)


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


def train_and_evaluate(config: Config, *, command: str = "", progress: Progress | None = None,
                       warn: Callable[[str], None] | None = None, compile_cache: bool = False) -> dict:
    config.validate()
    lessons = plan(config)
    jobs = distinct_jobs(config, lessons)
    start = time.perf_counter()
    loaded: dict[int, Dataset] = {}
    for num_words in dict.fromkeys(job.num_words for job in jobs):
        loaded[num_words], warning = load_dataset(config.dataset, num_words, config.imdb_archive)
        if warning and warn and len(loaded) == 1:
            warn(warning)
    arrays: dict[tuple, Arrays] = {}
    for job in jobs:  # every subset and batch size checked against the data before any training
        data_key = (job.num_words, job.train_examples)
        if data_key not in arrays:
            dataset = subset(loaded[job.num_words], job.train_examples)
            arrays[data_key] = Arrays.from_numpy(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
        program_settings(job.spec, arrays[data_key], job.epochs, config.seeds, config.order)
    first = next(iter(loaded.values()))
    if progress:
        progress("loaded", first.name, time.perf_counter() - start)
    seeds = tuple(range(config.seed, config.seed + config.seeds))
    results = []
    for job in jobs:
        def compiled(seconds, name=job.spec.name):
            if progress:
                progress("compiled", name, seconds)

        result = train(job.spec, arrays[(job.num_words, job.train_examples)], seeds=seeds, epochs=job.epochs,
                       order=config.order, model_config=config.model,
                       eval_train=job.eval_train, on_compiled=compiled)
        if progress:
            progress("trained", job.spec.name, result.run_s)
        results.append(result)
    dataset_info = {"name": first.name, "source": first.source, "n_train": int(first.x_train.shape[0]),
                    "n_test": int(first.x_test.shape[0]), "num_words": first.num_words}
    return results_dict(config, lessons, dataset_info, results, command, compile_cache)
