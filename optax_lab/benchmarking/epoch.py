"""One optimizer × batch-mode benchmark: its epoch program compiled once, then run an epoch per
call with the training state carried from call to call (what bench/bench_optimizers.py times
with pytest-benchmark), and the `extra_info` record of it (its fields: `records`).

An epoch call is the unit: all of the epoch's steps in one `lax.scan` (with the epoch's shuffle,
without validation), so a step's time is the call's over `steps_per_epoch`. The val loss a row
reports is evaluated apart, untimed, after the fixed short training.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from optax_lab import engine, optimizers
from optax_lab.benchmarking.records import BENCH_KIND, SCHEMA, throughput
from optax_lab.benchmarking.roofline import (
    MatmulPeak,
    StepFlops,
    fixed_epoch_flops,
    loop_body_counted_once,
    step_flops,
    unknown_trip_count_loops,
    xla_flops,
)
from optax_lab.config import ModelConfig, Order, batch_label
from optax_lab.lessons import RunSpec
from optax_lab.records import split_hyperparams
from optax_lab.workloads import Workload

__all__ = ["EpochBench", "extra_info", "rounds_for"]


def rounds_for(budget_s: float, epoch_s: float, min_rounds: int, max_rounds: int) -> int:
    """Timed rounds that fill about `budget_s` at `epoch_s` per round, within [min, max]."""
    wanted = math.ceil(budget_s / epoch_s) if epoch_s > 0 else max_rounds
    return max(min_rounds, min(max_rounds, wanted))


class EpochBench:
    """`spec`'s epoch program of `workload` on `data` for `seeds` (vmapped), ready to run epoch
    after epoch."""

    def __init__(
        self,
        spec: RunSpec,
        data: engine.Arrays,
        seeds: tuple[int, ...],
        workload: Workload,
        model_config: ModelConfig = ModelConfig(),
    ):
        self.spec, self.data, self.seeds = spec, data, tuple(seeds)
        self.model_config = spec.model_config(model_config)
        # Without validation: the timed call is training steps only, at every batch size alike.
        self.settings = dataclasses.replace(
            engine.program_settings(spec, data, epochs=1, num_seeds=len(self.seeds), order=Order.PER_SEED),
            validate=False,
        )
        program = engine.make_program(self.model_config, spec, self.settings, workload)
        self._evaluate = program.evaluate  # eager, like init: a few ops, not worth a compile
        seed_array, hyperparams, order_seed = engine.replica_inputs(self.seeds, [split_hyperparams(spec)[1]])
        start = time.perf_counter()
        # Init runs eagerly, op by op: compiled on its own it cost about as much as the epoch
        # program (1-2 s each), while its ops are compiled once per session and then reused.
        self.state, _ = jax.block_until_ready(program.init(seed_array, hyperparams, order_seed, data))
        self.init_s = time.perf_counter() - start
        # The epoch index is an int32 scalar on the device, like the order seed it is lowered with.
        # compile_s: trace + lower + XLA compile, as the engine counts it.
        self.epoch, self.compile_s = engine.aot_compile(
            program.epoch, self.state, order_seed, data, gathers_rows=self.settings.gathers_rows
        )
        self.history: list[dict[str, jax.Array]] = []  # each epoch's metrics, [S] per key
        self._epoch_indices: list[jax.Array] = []

    def reserve(self, epochs: int) -> None:
        """Epoch-index arrays for the first `epochs` epochs, made before any clock runs."""
        self._epoch_indices += [jax.device_put(np.int32(i)) for i in range(len(self._epoch_indices), epochs)]

    def run_epoch(self) -> None:
        """One epoch on the carried state; returns once the device is done (the timed call)."""
        index = self._epoch_indices[len(self.history)]
        self.state, metrics = jax.block_until_ready(self.epoch(self.state, index, self.data))
        self.history.append(metrics)

    def time_epoch(self) -> float:
        self.reserve(len(self.history) + 1)
        start = time.perf_counter()
        self.run_epoch()
        return time.perf_counter() - start

    def train_until(self, epochs: int) -> None:
        """Untimed epochs until `epochs` have run in all (the fixed short training)."""
        self.reserve(epochs)
        while len(self.history) < epochs:
            self.run_epoch()

    def flops(self) -> StepFlops:
        settings = self.settings
        fixed = fixed_epoch_flops(
            self.model_config,
            settings.n_train,
            settings.n_test,
            settings.num_features,
            settings.num_replicas,
            settings.full_batch,
            settings.validate,
        )
        return step_flops(
            xla_flops(self.epoch),
            fixed,
            settings.steps_per_epoch,
            loop_body_counted_once(),
            unknown_trip_count_loops(self.epoch),
        )

    def evaluate(self) -> dict[str, jax.Array]:
        """Validation of the current state on the test split ([S] per key), untimed."""
        return jax.block_until_ready(self._evaluate(self.state, self.data))

    def loss_after(self, epochs: int, key: str) -> tuple[float | None, int]:
        """Mean of training metric `key` over the seeds after `epochs` epochs, over the seeds
        where it is finite (None if none is), and how many seeds diverged."""
        return _finite_mean(self.history[epochs - 1][key])


def _finite_mean(values) -> tuple[float | None, int]:
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    return (float(values[finite].mean()) if finite.any() else None), int((~finite).sum())


def extra_info(
    bench: EpochBench,
    *,
    dataset: str,
    warmup_s: float,
    rounds: int,
    timed_epochs: int,
    val_epochs: int,
    validation: Mapping[str, Any],
    flops: StepFlops,
    peak: MatmulPeak | None,
    compile_cache: bool,
    stats: Mapping[str, float] | None,
) -> dict[str, Any]:
    """What a benchmark row records beside pytest-benchmark's timings (JSON-safe values).
    `validation`: `bench.evaluate()` after the fixed short training of `val_epochs` epochs.
    `stats`: the round times' median and iqr in seconds, or None when benchmarks are disabled."""
    settings, spec = bench.settings, bench.spec
    train_loss, _ = bench.loss_after(timed_epochs, "train_loss")
    val_loss, diverged = _finite_mean(validation["val_loss"])
    val_acc, _ = _finite_mean(validation["val_acc"])
    info = {
        "bench": BENCH_KIND,
        "schema": SCHEMA,
        "optimizer": spec.optimizer,
        "hyperparams": optimizers.hyperparams(spec.optimizer, spec.hyperparams),
        "batch": batch_label(None if settings.full_batch else settings.batch_size),
        "batch_size": settings.batch_size,
        "steps_per_epoch": settings.steps_per_epoch,
        "dataset": dataset,
        "n_train": settings.n_train,
        "n_test": settings.n_test,
        "num_words": settings.num_features,
        "model": bench.model_config.describe(),
        "seeds": len(bench.seeds),
        "seed_list": list(bench.seeds),
        "order": settings.order.value,
        "compile_s": bench.compile_s,
        "init_s": bench.init_s,
        "warmup_s": warmup_s,
        "compile_cache": compile_cache,
        "rounds": rounds,
        "train_loss": train_loss,
        "train_loss_epochs": timed_epochs,
        "val_loss": val_loss,
        "val_acc": val_acc,
        "val_epochs": val_epochs,
        "diverged_seeds": diverged,
        "flops_reported": flops.reported,
        "flops_fixed": flops.fixed,
        "flops_per_step": flops.per_step,
        "flops_per_epoch": flops.per_epoch,
        "flops_exact": flops.exact,
        "matmul_peak_gflops": peak.gflops if peak else None,
    }
    if stats is not None:
        info.update(
            throughput(
                stats["median"],
                stats["iqr"],
                settings.steps_per_epoch,
                len(bench.seeds),
                settings.n_train,
                flops.per_epoch,
                info["matmul_peak_gflops"],
            )
        )
    return {
        key: (None if isinstance(value, float) and not math.isfinite(value) else value) for key, value in info.items()
    }
