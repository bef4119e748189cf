"""The metrics stage: per-seed histories -> summary statistics and the results dict that the
report (and results.json) is made of, by the contract in `schema.py`.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from optax_lab.config import Config, Lesson, ModelConfig
from optax_lab.schema import SCHEMA, diverged_seeds, status_of
from optax_lab.stats import ci95
from optax_lab.train import RunResult, seed_epochs_per_second

__all__ = ["TARGET_VAL_LOSS", "device_info", "final_summary", "model_record", "programs_record", "results_dict",
           "run_record", "time_to_target"]

TARGET_VAL_LOSS = 0.60  # "how fast to a decent model": the ranking's time-to-target threshold


def final_summary(history: dict[str, np.ndarray]) -> dict[str, float]:
    """Means and CIs over the seeds that did not diverge, at the last epoch; NaN if none is left."""
    healthy = ~diverged_seeds(history)

    def last(key):
        return history[key][healthy, -1]

    def mean(values):
        return float(values.mean()) if values.size else math.nan

    best_epoch = history["val_loss"][healthy].argmin(axis=1) + 1 if healthy.any() else np.array([])
    best_val = history["val_loss"][healthy].min(axis=1) if healthy.any() else np.array([])
    summary = {
        "val_loss_mean": mean(last("val_loss")), "val_loss_ci95": ci95(last("val_loss")),
        "val_acc_mean": mean(last("val_acc")), "val_acc_ci95": ci95(last("val_acc")),
        "train_loss_mean": mean(last("train_loss")), "train_acc_mean": mean(last("train_acc")),
        "best_epoch_mean": mean(best_epoch.astype(np.float64)),
        "best_val_loss_mean": mean(best_val), "best_val_loss_ci95": ci95(best_val),
    }
    if "train_eval_loss" in history:  # the generalisation gap, both losses with dropout off
        gap = last("val_loss") - last("train_eval_loss")
        summary.update({"train_eval_loss_mean": mean(last("train_eval_loss")),
                        "gap_mean": mean(gap), "gap_ci95": ci95(gap)})
    return summary


def time_to_target(result: RunResult, target: float = TARGET_VAL_LOSS) -> dict[str, Any]:
    """Epochs, steps and seconds until the val loss first reaches `target`, mean over the seeds
    that reach it (validation runs once per epoch, so that is the resolution). Seconds are the
    program's run time per epoch times the epochs needed: all seeds train together."""
    reached = result.history["val_loss"] <= target  # NaN compares False
    hit = reached.any(axis=1)
    epochs = (reached.argmax(axis=1) + 1)[hit].astype(np.float64)
    mean = float(epochs.mean()) if hit.any() else math.nan
    return {"val_loss": target, "reached_seeds": int(hit.sum()), "epochs_mean": mean,
            "steps_mean": mean * result.settings.steps_per_epoch,
            "seconds_mean": mean * result.run_s / result.settings.epochs}


def run_record(result: RunResult) -> dict[str, Any]:
    diverged = diverged_seeds(result.history)
    return {
        "name": result.spec.name,
        "optimizer": result.spec.optimizer,
        "hyperparams": dict(result.hyperparams),
        "model": model_record(result.model),
        "num_words": result.settings.num_features,
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
        "timing": {"program": result.program, "compile_s": result.compile_s, "run_s": result.run_s,
                   "seed_epochs_per_s": seed_epochs_per_second(result)},
        "status": status_of(diverged),
        "diverged_seeds": int(diverged.sum()),
    }


def programs_record(runs: Sequence[RunResult]) -> dict[str, dict[str, Any]]:
    """Each compiled program once: its compile and run seconds, replicas, calls and the runs it computed."""
    programs: dict[str, dict[str, Any]] = {}
    for run in runs:
        program = programs.setdefault(run.program, {
            "compile_s": run.compile_s, "run_s": 0.0, "calls": 0, "replicas": run.settings.num_replicas,
            "devices": run.devices, "replicas_per_call": run.replicas_per_call,
            "memory_per_device": run.memory_per_device, "memory_bound": run.memory_bound, "runs": []})
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
    return {**dataclasses.asdict(model), "widths": list(model.widths), "depth": model.depth,
            "describe": model.describe()}


def device_info() -> dict[str, Any]:
    device = jax.devices()[0]
    versions = {name: importlib.metadata.version(name) for name in ("jax", "jaxlib", "optax", "flax")}
    return {"platform": device.platform, "device_kind": device.device_kind,
            "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
            "process_count": jax.process_count(), **versions}


def lesson_record(config: Config, lesson: Lesson) -> dict[str, Any]:
    num_words, train_examples, epochs = config.lesson_settings(lesson)
    return {"name": lesson.name, "title": lesson.title, "question": lesson.question,
            "runs": [run.name for run in lesson.runs], "kind": lesson.kind, "num_words": num_words,
            "train_examples": train_examples, "epochs": epochs, **lesson.extra}


def results_dict(config: Config, lessons: Sequence[Lesson], dataset: dict[str, Any], runs: Sequence[RunResult],
                 command: str, compile_cache: bool) -> dict[str, Any]:
    results = {
        "schema": SCHEMA,
        "preset": config.name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "dataset": dataset,
        "device": device_info(),
        "order": config.order,
        "compile_cache": compile_cache,
        "model": model_record(config.model),
        "lessons": [lesson_record(config, lesson) for lesson in lessons],
        "runs": _count_compiles_once([run_record(run) for run in runs]),
        "programs": programs_record(runs),
    }
    if config.optimizers:  # the ranking's time-to-target threshold
        results["ranking"] = {"target_val_loss": TARGET_VAL_LOSS}
    return results
