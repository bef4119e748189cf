"""The metrics stage: per-seed histories -> summary statistics and the results dict that the
report (and results.json) is made of. Pure numpy/scipy; the only stage that knows the schema.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import scipy.stats

from optax_lab.config import Config
from optax_lab.train import RunResult, seed_epochs_per_second

SCHEMA = 1


def ci95(values: np.ndarray) -> float:
    """Half-width of the 95 % confidence interval of the mean (Student t, n-1 dof); NaN for n < 2."""
    values = np.asarray(values, np.float64)
    n = values.size
    if n < 2:
        return math.nan
    return float(scipy.stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))


def diverged_seeds(history: dict[str, np.ndarray]) -> np.ndarray:
    """[S] bool: the seeds whose training or validation loss stopped being finite."""
    return ~(np.isfinite(history["train_loss"]).all(axis=1) & np.isfinite(history["val_loss"]).all(axis=1))


def final_summary(history: dict[str, np.ndarray]) -> dict[str, float]:
    """Means and CIs over the seeds that did not diverge, at the last epoch; NaN if none is left."""
    healthy = ~diverged_seeds(history)

    def last(key):
        return history[key][healthy, -1]

    def mean(values):
        return float(values.mean()) if values.size else math.nan

    best_epoch = history["val_loss"][healthy].argmin(axis=1) + 1 if healthy.any() else np.array([])
    return {
        "val_loss_mean": mean(last("val_loss")), "val_loss_ci95": ci95(last("val_loss")),
        "val_acc_mean": mean(last("val_acc")), "val_acc_ci95": ci95(last("val_acc")),
        "train_loss_mean": mean(last("train_loss")), "train_acc_mean": mean(last("train_acc")),
        "best_epoch_mean": mean(best_epoch.astype(np.float64)),
    }


def run_record(result: RunResult) -> dict[str, Any]:
    diverged = diverged_seeds(result.history)
    return {
        "name": result.spec.name,
        "optimizer": result.spec.optimizer,
        "hyperparams": dict(result.hyperparams),
        "batch_size": result.shape.batch_size,
        "full_batch": result.shape.full_batch,
        "steps_per_epoch": result.shape.steps_per_epoch,
        "seeds": list(result.seeds),
        "epochs": result.shape.epochs,
        "history": {key: values.tolist() for key, values in result.history.items()},
        "final": final_summary(result.history),
        "timing": {"compile_s": result.compile_s, "run_s": result.run_s,
                   "seed_epochs_per_s": seed_epochs_per_second(result)},
        "status": "diverged" if diverged.any() else "ok",
        "diverged_seeds": int(diverged.sum()),
    }


def device_info() -> dict[str, Any]:
    device = jax.devices()[0]
    versions = {name: importlib.metadata.version(name) for name in ("jax", "jaxlib", "optax", "flax")}
    return {"platform": device.platform, "device_kind": device.device_kind,
            "device_count": jax.device_count(), **versions}


def results_dict(config: Config, dataset: dict[str, Any], runs: Sequence[RunResult], command: str,
                 compile_cache: bool) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "preset": config.preset,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "dataset": dataset,
        "device": device_info(),
        "order": "shared" if config.shared_order else "per-seed",
        "compile_cache": compile_cache,
        "model": {"widths": list(config.model.widths), "activation": config.model.activation,
                  "kernel_init": config.model.kernel_init},
        "lessons": [{"name": lesson.name, "title": lesson.title, "question": lesson.question,
                     "runs": [run.name for run in lesson.runs]} for lesson in config.lessons],
        "runs": [run_record(run) for run in runs],
    }
