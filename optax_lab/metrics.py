"""The metrics stage: per-seed histories -> summary statistics and the results dict that the
report (and results.json) is made of, by the contract in `schema.py`.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from optax_lab import optimizers, workloads
from optax_lab.config import Config, ModelConfig
from optax_lab.lessons import Lesson
from optax_lab.records import RunResult, seed_epochs_per_second
from optax_lab.schema import SCHEMA, diverged_seeds, status_of
from optax_lab.stats import ci95

__all__ = [
    "device_info",
    "final_summary",
    "machines_record",
    "partial_results",
    "model_record",
    "programs_record",
    "results_dict",
    "run_record",
    "time_to_target",
]


def final_summary(history: dict[str, np.ndarray]) -> dict[str, float]:
    """Means and CIs over the seeds that did not diverge, at the last epoch; NaN if none is left."""
    healthy = ~diverged_seeds(history)

    def last(key):
        return history[key][healthy, -1]

    def mean(values):
        return float(values.mean()) if values.size else math.nan

    best_epoch = history["val_loss"][healthy].argmin(axis=1) + 1 if healthy.any() else np.array([])
    best_val = history["val_loss"][healthy].min(axis=1) if healthy.any() else np.array([])
    summary = {"val_loss_mean": mean(last("val_loss")), "val_loss_ci95": ci95(last("val_loss"))}
    for key in [key for key in history if key.startswith("val_") and key != "val_loss"]:  # the workload's metrics
        summary.update({f"{key}_mean": mean(last(key)), f"{key}_ci95": ci95(last(key))})
    summary.update(
        {
            key + "_mean": mean(last(key))
            for key in history
            if key.startswith("train_") and not key.startswith("train_eval_")
        }
    )
    summary.update(
        {
            "best_epoch_mean": mean(best_epoch.astype(np.float64)),
            "best_val_loss_mean": mean(best_val),
            "best_val_loss_ci95": ci95(best_val),
        }
    )
    if "train_eval_loss" in history:  # the generalisation gap, both losses with dropout off
        gap = last("val_loss") - last("train_eval_loss")
        summary.update(
            {"train_eval_loss_mean": mean(last("train_eval_loss")), "gap_mean": mean(gap), "gap_ci95": ci95(gap)}
        )
    return summary


def time_to_target(result: RunResult, target: float | workloads.Target | None = None) -> dict[str, Any]:
    """Epochs, steps and seconds until the run's validation metric first reaches `target` (a
    val-loss value, or a Target; default: its workload's), mean over the seeds that reach it, and
    each seed's epochs (None: never). Validation runs once per epoch, so that is the resolution.
    Seconds are the program's run time per epoch times the epochs needed: all seeds train together."""
    if target is None:
        target = result.workload.target
    elif not isinstance(target, workloads.Target):
        target = workloads.Target("val_loss", float(target), "min", "")
    reached = target.reached(result.history[target.metric])  # NaN never reaches it
    hit = reached.any(axis=1)
    per_seed = np.where(hit, reached.argmax(axis=1) + 1.0, math.nan)
    mean = float(per_seed[hit].mean()) if hit.any() else math.nan
    record = {
        "metric": target.metric,
        "value": target.value,
        "direction": target.direction,
        "reached_seeds": int(hit.sum()),
        "epochs_mean": mean,
        "epochs_per_seed": per_seed.tolist(),
        "steps_mean": mean * result.settings.steps_per_epoch,
        "seconds_mean": mean * result.run_s / result.settings.epochs,
    }
    return {"val_loss": target.value, **record} if target.metric == "val_loss" else record


def run_record(result: RunResult) -> dict[str, Any]:
    diverged = diverged_seeds(result.history)
    workload = result.workload
    return {
        "name": result.spec.name,
        "workload": workload.name,
        "optimizer": result.spec.optimizer,
        "hyperparams": dict(result.hyperparams),
        "model": model_record(result.model) if workload.mlp is not None else {"describe": workload.model_text},
        "num_words": workload.num_words,  # the vocabulary it ran at (None: a workload without words)
        "n_train": result.settings.n_train,
        "batch_size": result.settings.batch_size,
        "full_batch": result.settings.full_batch,
        "steps_per_epoch": result.settings.steps_per_epoch,
        "seeds": list(result.seeds),
        "epochs": result.settings.epochs,
        "history": {key: values.tolist() for key, values in result.history.items()},
        "final": final_summary(result.history),
        "target": time_to_target(result),
        "point": dict(result.spec.point),
        "timing": {
            "program": result.program,
            "compile_s": result.compile_s,
            "run_s": result.run_s,
            "seed_epochs_per_s": seed_epochs_per_second(result),
        },
        "status": status_of(diverged),
        "diverged_seeds": int(diverged.sum()),
    }


def programs_record(runs: Sequence[RunResult]) -> dict[str, dict[str, Any]]:
    """Each compiled program once: its compile and run seconds, replicas, calls and the runs it computed."""
    programs: dict[str, dict[str, Any]] = {}
    for run in runs:
        program = programs.setdefault(
            run.program,
            {
                "compile_s": run.compile_s,
                "run_s": 0.0,
                "calls": 0,
                "replicas": run.settings.num_replicas,
                "devices": run.devices,
                "replicas_per_call": run.replicas_per_call,
                "memory_per_device": run.memory_per_device,
                "memory_bound": run.memory_bound,
                "overlap_s": run.overlap_s,
                "runs": [],
            },
        )
        program["runs"].append(run.spec.name)
        program["run_s"] += run.run_s
        program["calls"] = max(program["calls"], run.program_calls)
    return programs


def _count_compiles_once(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A program's compile seconds on the first of its runs, 0 on the others: they sum to the truth."""
    seen = set()
    for record in records:
        program = record["timing"]["program"]
        if program in seen:
            record["timing"]["compile_s"] = 0.0
        seen.add(program)
    return records


def model_record(model: ModelConfig) -> dict[str, Any]:
    return {
        **dataclasses.asdict(model),
        "widths": list(model.widths),
        "depth": model.depth,
        "describe": model.describe(),
    }


def device_info() -> dict[str, Any]:
    device = jax.devices()[0]
    versions = {name: importlib.metadata.version(name) for name in ("jax", "jaxlib", "optax", "flax")}
    return {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "process_count": jax.process_count(),
        **versions,
    }


def lesson_record(config: Config, lesson: Lesson) -> dict[str, Any]:
    num_words, train_examples, epochs = lesson.settings(config)
    if workloads.get(lesson.workload).num_words is None:
        num_words = None  # a workload without words: --num-words did not apply
    return {
        "name": lesson.name,
        "title": lesson.title,
        "question": lesson.question,
        "runs": [run.name for run in lesson.runs],
        "kind": lesson.kind,
        "workload": lesson.workload,
        "num_words": num_words,
        "train_examples": train_examples,
        "epochs": epochs,
        **lesson.extra,
    }


def workloads_record(lessons: Sequence[Lesson], datasets: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each workload the lessons ran on: its target (what a cross-workload ranking needs), how it
    was set, its defaults, and the data it was given."""
    return {
        name: {**workloads.get(name).record(), "dataset": datasets.get(name)}
        for name in dict.fromkeys(lesson.workload for lesson in lessons)
    }


def results_dict(
    config: Config,
    lessons: Sequence[Lesson],
    dataset: dict[str, Any],
    runs: Sequence[RunResult],
    command: str,
    compile_cache: bool,
) -> dict[str, Any]:
    """The results contract (`schema.py`); `dataset` is the first dataset's record, with each
    workload's under "workloads" (as the runner's data loading gives it)."""
    dataset = dict(dataset)
    datasets = dataset.pop("workloads", {})
    first = workloads.get(lessons[0].workload if lessons else config.workloads[0])
    results = {
        "schema": SCHEMA,
        "preset": config.name,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "dataset": dataset,
        "device": device_info(),
        "order": config.order,
        "compile_cache": compile_cache,
        "model": model_record(first.base_model(config.model))
        if first.mlp is not None
        else {"describe": first.model_text},
        "workloads": workloads_record(lessons, datasets),
        "lessons": [lesson_record(config, lesson) for lesson in lessons],
        "runs": _count_compiles_once([run_record(run) for run in runs]),
        "programs": programs_record(runs),
    }
    names = dict.fromkeys(run.spec.optimizer for run in runs)
    sources = {name: optimizers.provenance(optimizers.get(name)) for name in names}
    user_optimizers = {name: source for name, source in sources.items() if source is not None}
    if user_optimizers:  # where optimizers of one's own came from, and which version of their source
        results["user_optimizers"] = user_optimizers
    if config.optimizers:  # the ranking's time-to-target threshold
        results["ranking"] = {"target_val_loss": workloads.TARGET_VAL_LOSS}
    return results


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


def machines_record(machines_of_programs: Iterable[Mapping[str, Any] | None]) -> list[dict[str, Any]]:
    """The machines that ran some programs (one entry a program), each with how many it ran, in
    order of first."""
    machines: dict[str, dict[str, Any]] = {}
    for machine in machines_of_programs:
        machine = machine or {"host": "not recorded"}
        key = json.dumps(machine, sort_keys=True)
        machines.setdefault(key, {**machine, "programs": 0})["programs"] += 1
    return list(machines.values())
