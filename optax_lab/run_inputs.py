"""What a run is and what an unfinished one leaves: the record of its data, the inputs that
identify it (hashed for `--resume`, compared by `merge`), and the results of its finished runs,
marked incomplete."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax

from optax_lab import engine, optimizers
from optax_lab.config import Config, batch_label
from optax_lab.data import Dataset
from optax_lab.devices import MAX_REPLICAS
from optax_lab.lessons import Lesson
from optax_lab.metrics import results_dict
from optax_lab.planning import program_groups
from optax_lab.records import Job, RunResult, program_digest
from optax_lab.run_store import PLAN_LABEL, package_versions

__all__ = ["DEVICES_LABEL", "dataset_record", "machines_record", "max_replicas", "partial_results", "resume_inputs"]

DEVICES_LABEL = "devices"  # the inputs' one label that names the machine, not the configuration


def dataset_record(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "source": dataset.source,
        "n_train": int(dataset.x_train.shape[0]),
        "n_test": int(dataset.x_test.shape[0]),
        "num_words": dataset.num_words,
    }


def _one_or_all(values) -> Any:
    distinct = sorted(set(values), key=lambda value: (value is None, value or 0))
    return distinct[0] if len(distinct) == 1 else distinct


def resume_inputs(
    config: Config, jobs: Sequence[Job], dataset_info: Mapping[str, Any], seeds: tuple[int, ...], command: str = "run"
) -> dict[str, Any]:
    """What changes this run's results, by the labels a user knows (hashed by `records.fingerprint`):
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
        "--max-replicas": max_replicas(config),
        DEVICES_LABEL: f"{engine.replica_devices(config.devices)} x {device.platform} ({device.device_kind})",
    }
    for name, data in (dataset_info.get("workloads") or {"": dataset_info}).items():
        inputs[f"data {name}".strip()] = (
            f"{data['name']} from {data['source']}: {data['n_train']} train / "
            f"{data['n_test']} test, {data['num_words']} words"
        )
    for name in dict.fromkeys(job.spec.optimizer for job in jobs):  # an edited optimizer is another one
        source = optimizers.provenance(optimizers.get(name))
        if source is not None:
            inputs[f"optimizer {name}"] = f"{source['reference']}, source sha256 {source['source_sha256']}"
    inputs.update(package_versions())
    groups = program_groups(jobs)
    inputs[PLAN_LABEL] = (
        f"{len(groups)} programs of {len(jobs)} runs, seeds {seeds[0]}..{seeds[-1]} "
        f"(digest {program_digest(jobs, seeds)})"
    )
    return inputs


def partial_results(
    config: Config,
    lessons: Sequence[Lesson],
    dataset_info: dict[str, Any],
    finished: Sequence[RunResult],
    command: str,
    compile_cache: bool,
    not_started: str = "",
) -> dict[str, Any]:
    """The results of the runs that finished, marked incomplete: each lesson keeps its finished
    runs (a lesson with none is dropped), and "incomplete" names every planned run that is
    missing and how to resume."""
    done = {result.spec.name for result in finished}
    kept = [
        dataclasses.replace(lesson, runs=tuple(run for run in lesson.runs if run.name in done)) for lesson in lessons
    ]
    results = results_dict(
        config, [lesson for lesson in kept if lesson.runs], dataset_info, finished, command, compile_cache
    )
    missing = [run.name for lesson in lessons for run in lesson.runs if run.name not in done]
    results["incomplete"] = {
        "missing_runs": list(dict.fromkeys(missing)),
        "finished_runs": len(finished),
        "not_started": not_started,
        "resume": f"{command} --resume",
    }
    return results


def max_replicas(config: Config) -> int:
    return MAX_REPLICAS if config.max_replicas is None else config.max_replicas


def machines_record(programs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The machines that ran these stored programs, each with how many it ran, in order of first."""
    machines: dict[str, dict[str, Any]] = {}
    for program in programs:
        machine = program.get("machine") or {"host": "not recorded"}
        key = json.dumps(machine, sort_keys=True)
        machines.setdefault(key, {**machine, "programs": 0})["programs"] += 1
    return list(machines.values())
