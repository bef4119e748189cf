"""`train_and_evaluate(config)`: the main job, stage by stage (the Flax examples' entry point).

config -> plan (`planning`: the preset's lessons, a ranking of registry optimizers per workload
and batch mode, or a sweep of their hyperparameters, with the user's overrides) -> each
workload's data -> one compiled program per group of runs that differ only in traced
hyperparameters -> metrics.
Writing the report is the caller's (the CLI's) last step, so tests can check results without
touching the disk. Given a `RunStore`, each finished program is saved as it finishes and a
resumed run restores the programs that finished before (`run_store`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from optax_lab import workloads
from optax_lab.config import DEFAULT_WORKLOAD, Config, Lesson, ModelConfig, RunSpec, batch_label
from optax_lab.data import Dataset
from optax_lab.devices import host_available_bytes
from optax_lab.memory import check_results_fit
from optax_lab.metrics import results_dict
from optax_lab.planning import plan, point_text, ranking_lessons, selected_workloads, sweep_lessons, sweep_points
from optax_lab.program import Arrays, program_key, program_settings
from optax_lab.run_store import PLAN_LABEL, RunStore, Unfinished, fingerprint, package_versions, program_digest
from optax_lab.train import RunResult, replica_devices, train_points

__all__ = ["Job", "Progress", "check_host_memory", "distinct_jobs", "group_label", "load_arrays", "partial_results",
           "plan", "point_text", "program_groups", "ranking_lessons", "resume_inputs", "run_jobs", "selected_workloads",
           "sweep_lessons", "sweep_points", "train_and_evaluate"]

# progress(event, name, seconds): "loaded" once the dataset `name` is in memory, then per program
# "compiled" after it compiles and "trained" after it ran (name: its first run, +k points), or
# "restored" when a resumed run found it finished (seconds: its original run time).
Progress = Callable[[str, str, float], None]


@dataclasses.dataclass(frozen=True)
class Job:
    """One program to run: a spec on its workload (at the run's vocabulary), with the data and
    length of the lesson(s) that use it."""

    spec: RunSpec
    num_words: int | None  # None: the workload has no words
    train_examples: int | None
    epochs: int
    eval_train: bool
    workload: workloads.Workload = dataclasses.field(default_factory=lambda: workloads.get(DEFAULT_WORKLOAD))

    @property
    def key(self) -> tuple:
        return (self.spec.key, self.num_words, self.train_examples, self.epochs, self.eval_train, self.workload.key)

    @property
    def data_key(self) -> tuple:
        """Jobs with equal data keys train on the same arrays."""
        return (self.workload.data, self.num_words, self.train_examples)

    def model(self, config: Config) -> ModelConfig:
        """The model this job trains: its workload's MLP (or the user's) with the spec's changes."""
        return self.spec.model_config(self.workload.base_model(config.model))


def distinct_jobs(config: Config, lessons: tuple[Lesson, ...]) -> tuple[Job, ...]:
    """The runs of all lessons in order, each program once (SGD is in two of the lesson's), every
    run's model built (a bad change fails here, before any work). Reports find runs by name, so
    one name must mean one program."""
    unique: dict[tuple, Job] = {}
    names: dict[str, tuple] = {}
    for lesson in lessons:
        num_words, train_examples, epochs = config.lesson_settings(lesson)
        workload = workloads.get(lesson.workload)
        if workload.num_words is None:
            num_words = None
        workload = workload.with_num_words(num_words)
        for run in lesson.runs:
            job = Job(run, num_words, train_examples, epochs, lesson.eval_train, workload)
            if names.setdefault(run.name, job.key) != job.key:
                raise ValueError(f"run name {run.name!r} is used for two different programs")
            job.model(config)
            unique.setdefault(job.key, job)
    return tuple(unique.values())


def program_groups(jobs: Sequence[Job]) -> list[list[Job]]:
    """The jobs grouped by compiled program (the points of one grid share one), in first-seen order."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        key = (program_key(job.spec), job.num_words, job.train_examples, job.epochs, job.eval_train, job.workload.key)
        groups.setdefault(key, []).append(job)
    return list(groups.values())


def group_label(group: Sequence[Job]) -> str:
    return group[0].spec.name + (f" (+{len(group) - 1} points)" if len(group) > 1 else "")


def dataset_record(dataset: Dataset) -> dict[str, Any]:
    return {"name": dataset.name, "source": dataset.source, "n_train": int(dataset.x_train.shape[0]),
            "n_test": int(dataset.x_test.shape[0]), "num_words": dataset.num_words}


def load_arrays(config: Config, jobs: Sequence[Job], warn: Callable[[str], None] | None = None
                ) -> tuple[dict[tuple, Arrays], dict[str, Any]]:
    """The data of every job on the device, keyed by `Job.data_key`, each workload's model checked
    against it and every batch size too, before any training; and the first dataset's record,
    with each workload's under "workloads"."""
    arrays: dict[tuple, Arrays] = {}
    records: dict[str, dict[str, Any]] = {}
    warned: set[str] = set()
    checked: set[tuple] = set()
    for job in jobs:
        if job.data_key not in arrays:
            dataset, warning = job.workload.data(workloads.DataRequest(
                job.workload.name, config.dataset, config.imdb_archive, job.num_words, job.train_examples))
            if warning and warn and warning not in warned:
                warn(warning)
                warned.add(warning)
            arrays[job.data_key] = Arrays.from_numpy(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
            records.setdefault(job.workload.name, dataset_record(dataset))
        data = arrays[job.data_key]
        if (job.workload.key, job.model(config)) not in checked:  # a model that does not fit its loss fails here
            workloads.check_fits(job.workload, job.model(config), data.x_train, data.y_train)
            checked.add((job.workload.key, job.model(config)))
        program_settings(job.spec, data, job.epochs, config.seeds, config.order)
    first = next(iter(records.values()))
    return arrays, {**first, "workloads": records}


def check_host_memory(config: Config, jobs: Sequence[Job]) -> None:
    """Refuse, before loading anything, a run whose histories cannot fit the host (`--seeds` huge)."""
    check_results_fit(config.seeds * len(jobs), max(job.epochs for job in jobs),
                      max(job.model(config).depth for job in jobs), host_available_bytes(), config.seeds)


def run_jobs(config: Config, jobs: Sequence[Job], arrays: Mapping[tuple, Arrays], seeds: tuple[int, ...],
             progress: Progress | None = None, store: RunStore | None = None) -> list[RunResult]:
    """Every job's runs, one compiled program per group of points (`program_groups`); with a
    `store`, each program saved as soon as it finishes, and one that finished before restored."""
    results = []
    for group in program_groups(jobs):
        label, first = group_label(group), group[0]
        model = first.spec.model_config(first.workload.base_model(config.model))
        digest = program_digest((job.key for job in group), seeds)
        restored = store.restore(digest, [job.spec for job in group], model, first.workload) if store else None
        if restored is not None:
            if progress:
                progress("restored", label, restored[0].program_run_s)
            results += restored
            continue

        def compiled(seconds, label=label):
            if progress:
                progress("compiled", label, seconds)

        trained = train_points([job.spec for job in group], arrays[first.data_key], seeds=seeds, epochs=first.epochs,
                               order=config.order, model_config=first.workload.base_model(config.model),
                               eval_train=first.eval_train, max_replicas=config.max_replicas, devices=config.devices,
                               on_compiled=compiled, workload=first.workload)
        if store:
            store.add(digest, label, trained)
        if progress:
            progress("trained", label, trained[0].program_run_s)
        results += trained
    return results


def _one_or_all(values) -> Any:
    distinct = sorted(set(values), key=lambda value: (value is None, value or 0))
    return distinct[0] if len(distinct) == 1 else distinct


def resume_inputs(config: Config, jobs: Sequence[Job], dataset_info: Mapping[str, Any], seeds: tuple[int, ...],
                  command: str = "run") -> dict[str, Any]:
    """What changes this run's results, by the labels a user knows (hashed by `run_store.fingerprint`):
    the options as they took effect, the data by name and checksum, the devices, the package
    versions, and a digest of every planned program (what the presets and the registry make of them)."""
    device = jax.devices()[0]
    inputs = {
        "subcommand": command,
        "--preset": None if config.optimizers else config.preset,
        "--optimizers": list(config.optimizers) or None,
        "--workloads": list(config.workloads),
        "--batch": None if config.batches is None else [batch_label(batch) for batch in config.batches],
        "--set": {name: dict(sorted(values.items())) for name, values in sorted(config.overrides.items())} or None,
        "--sweep": [sweep.text for sweep in config.sweeps] or None,
        "--tuned": {name: tuned.source for name, tuned in sorted(config.tuned.items())} if config.tuned else None,
        "--criterion": str(config.criterion),
        "--seeds": config.seeds,
        "--seed": config.seed,
        "--epochs": _one_or_all(job.epochs for job in jobs),
        "--num-words": _one_or_all(job.num_words for job in jobs),
        "--train-examples": _one_or_all(job.train_examples for job in jobs),
        "shuffling order": str(config.order),
        "model options": config.model.describe() if config.model else None,
        "--max-replicas": config.max_replicas,
        "devices": f"{replica_devices(config.devices)} x {device.platform} ({device.device_kind})",
    }
    for name, data in (dataset_info.get("workloads") or {"": dataset_info}).items():
        inputs[f"data {name}".strip()] = (f"{data['name']} from {data['source']}: {data['n_train']} train / "
                                          f"{data['n_test']} test, {data['num_words']} words")
    inputs.update(package_versions())
    groups = program_groups(jobs)
    inputs[PLAN_LABEL] = (f"{len(groups)} programs of {len(jobs)} runs, seeds {seeds[0]}..{seeds[-1]} "
                          f"(digest {program_digest((job.key for job in jobs), seeds)})")
    return inputs


def partial_results(config: Config, lessons: Sequence[Lesson], dataset_info: dict[str, Any],
                    finished: Sequence[RunResult], command: str, compile_cache: bool,
                    not_started: str = "") -> dict[str, Any]:
    """The results of the runs that finished, marked incomplete: each lesson keeps its finished
    runs (a lesson with none is dropped), and "incomplete" names every planned run that is
    missing and how to resume."""
    done = {result.spec.name for result in finished}
    kept = [dataclasses.replace(lesson, runs=tuple(run for run in lesson.runs if run.name in done))
            for lesson in lessons]
    results = results_dict(config, [lesson for lesson in kept if lesson.runs], dataset_info, finished, command,
                           compile_cache)
    missing = [run.name for lesson in lessons for run in lesson.runs if run.name not in done]
    results["incomplete"] = {"missing_runs": list(dict.fromkeys(missing)), "finished_runs": len(finished),
                             "not_started": not_started, "resume": f"{command} --resume"}
    return results


def train_and_evaluate(config: Config, *, command: str = "", progress: Progress | None = None,
                       warn: Callable[[str], None] | None = None, compile_cache: bool = False,
                       store: RunStore | None = None) -> dict:
    """The results dict of `config`'s runs. With a `store`, a stop during training (Ctrl-C,
    SIGTERM, an error) raises `Unfinished` with the finished runs' results, marked incomplete."""
    config.validate()
    lessons = plan(config)
    jobs = distinct_jobs(config, lessons)
    check_host_memory(config, jobs)
    start = time.perf_counter()
    arrays, dataset_info = load_arrays(config, jobs, warn)
    seeds = tuple(range(config.seed, config.seed + config.seeds))
    if store is not None:  # a resumed run whose options differ stops here, before any training
        store.begin(fingerprint(resume_inputs(config, jobs, dataset_info, seeds)))
    if progress:
        progress("loaded", dataset_info["name"], time.perf_counter() - start)
    if store is None:
        return results_dict(config, lessons, dataset_info, run_jobs(config, jobs, arrays, seeds, progress),
                            command, compile_cache)
    try:
        results = run_jobs(config, jobs, arrays, seeds, progress, store)
    except BaseException as cause:
        partial = (partial_results(config, lessons, dataset_info, store.finished, command, compile_cache)
                   if store.finished else None)
        raise Unfinished(partial, cause) from cause
    return results_dict(config, lessons, dataset_info, results, command, compile_cache)
