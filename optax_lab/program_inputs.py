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
from optax_lab.errors import UsageError

__all__ = ["Arrays", "ProgramSettings", "program_key", "program_settings", "split_hyperparams"]


class Arrays(NamedTuple):
    """The dataset on the device: inputs and targets of both splits. Float inputs (multi-hot
    rows, noise draws) are float32; integer inputs stay integers: word indices int32, bytes
    (packed bits) uint8."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array

    @classmethod
    def from_numpy(cls, x_train, y_train, x_test, y_test) -> "Arrays":
        def on_device(array):
            array = np.asarray(array)
            kind = array.dtype if array.dtype == np.uint8 else np.int32 if array.dtype.kind in "iu" else np.float32
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

    @property
    def num_replicas(self) -> int:
        return self.num_seeds * self.num_points

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch_size)

    @property
    def full_batch(self) -> bool:
        return self.batch_size == self.n_train


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
                           Order(order), eval_train)


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
