"""What a program is specialised on and fed: the data on the device (`Arrays`), its shapes and
schedule (`ProgramSettings`), and the split of a run's hyperparameters into compiled-in (static)
and traced ones, which decides which runs share a compiled program (`program_key`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import numpy as np

from optax_lab import optimizers
from optax_lab.config import Order, RunSpec
from optax_lab.embedding import chunk_budget
from optax_lab.errors import UsageError

__all__ = ["WORD_PAD", "Arrays", "ProgramSettings", "program_key", "program_settings", "split_hyperparams",
           "word_budgets"]

WORD_PAD = 0xFFFF  # the empty slot of a uint16 word row (vocabularies below 65,535 words)


class Arrays(NamedTuple):
    """The dataset on the device: inputs and targets of both splits. Float inputs (multi-hot
    rows, noise draws) are float32; integer inputs stay integers: bytes (packed bits) uint8, word
    rows uint16 (WORD_PAD in empty slots), other integers (word indices of large vocabularies) int32."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array

    @classmethod
    def from_numpy(cls, x_train, y_train, x_test, y_test) -> Arrays:
        def on_device(array):
            array = np.asarray(array)
            kind = array.dtype if array.dtype in (np.uint8, np.uint16) else np.int32 if array.dtype.kind in "iu" else np.float32
            return jax.device_put(array.astype(kind))

        return cls(*(on_device(a) for a in (x_train, y_train, x_test, y_test)))


@dataclasses.dataclass(frozen=True)
class ProgramSettings:
    """Everything a compiled program is specialised on besides the optimizer, model and workload:
    the data's shapes, the batch size, the epochs, the replica count, and what it computes."""

    n_train: int
    n_test: int
    num_features: int
    batch_size: int
    epochs: int
    num_seeds: int
    num_points: int = 1  # hyperparameter points of one call: the replicas are seeds x points
    order: Order = Order.PER_SEED
    eval_train: bool = False  # also evaluate the whole training set after each epoch
    validate: bool = True  # evaluate the test split after each epoch (benchmarks time steps without it)
    # Word rows (uint16 inputs): the most embedding-bag chunks a batch of each size the program
    # runs can hold, so that the bag's static layout is a fraction of [B, L] (`word_budgets`).
    bag_budgets: tuple[tuple[int, int], ...] = ()

    @property
    def num_replicas(self) -> int:
        return self.num_seeds * self.num_points

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch_size)

    @property
    def full_batch(self) -> bool:
        return self.batch_size == self.n_train

    @property
    def gathers_rows(self) -> bool:
        """Whether the program gathers and scatters table rows (an embedding bag): what its XLA
        options depend on (`compiling.compiler_options`)."""
        return bool(self.bag_budgets)


def program_settings(spec: RunSpec, data: Arrays, epochs: int, num_seeds: int, order: Order = Order.PER_SEED,
                     eval_train: bool = False, num_points: int = 1) -> ProgramSettings:
    """The settings `spec` compiles to on `data`; a batch size the data cannot fill is a UsageError."""
    n_train = data.x_train.shape[0]
    batch = n_train if spec.batch_size is None else spec.batch_size
    if not 0 < batch <= n_train:
        raise UsageError(f"batch size {batch} of run {spec.name!r} must be between 1 and the "
                         f"{n_train} training examples: lower it or use 'full'")
    features = math.prod(data.x_train.shape[1:])
    return ProgramSettings(n_train, data.x_test.shape[0], features, batch, epochs, num_seeds, num_points,
                           Order(order), eval_train, bag_budgets=word_budgets(data, batch))


def word_budgets(data: Arrays, batch: int) -> tuple[tuple[int, int], ...]:
    """For word rows (uint16 [n, L], indices left-aligned, WORD_PAD after them; other inputs: none):
    (batch size, chunks) for the training batches, which hold any `batch` distinct examples or an
    epoch's ragged last batch padded with example 0 (`program.batch_indices`), and for the whole
    training and test splits (the init's gradient, full batch, evaluation): upper bounds, never
    estimates, and independent of the seeds, which are the program's inputs."""
    if data.x_train.dtype != np.uint16 or data.x_train.ndim != 2:
        return ()
    train, test = ((np.asarray(x) != WORD_PAD).sum(axis=1) for x in (data.x_train, data.x_test))
    budgets: dict[int, int] = {}
    for size, chunks in ((batch, chunk_budget(train, batch, padded_with=0)), (len(train), chunk_budget(train, len(train))),
                         (len(test), chunk_budget(test, len(test)))):
        budgets[size] = max(budgets.get(size, 0), chunks)
    return tuple(sorted(budgets.items()))


def split_hyperparams(spec: RunSpec) -> tuple[dict[str, Any], dict[str, float]]:
    """(static, traced): the spec's hyperparameters (registry defaults + its own) that the program
    is compiled on, and those it takes as per-replica inputs."""
    return optimizers.split(spec.optimizer, optimizers.hyperparams(spec.optimizer, spec.hyperparams))


def program_key(spec: RunSpec) -> tuple:
    """Specs with equal keys (on equal data, model, workload and settings) share one compiled
    program: everything but the traced hyperparameters' values."""
    static, traced = split_hyperparams(spec)
    return (spec.optimizer, tuple(sorted(static.items(), key=lambda item: item[0])), tuple(sorted(traced)),
            spec.batch_size, tuple(sorted(spec.model_changes.items())))
