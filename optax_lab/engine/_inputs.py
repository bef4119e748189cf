"""What a program is fed and specialised on: the data on the device (`Arrays`), and the
`ProgramSettings` a run compiles to on it (its shapes, schedule and the embedding bag's budgets).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import numpy as np

from optax_lab.config import Order
from optax_lab.embedding import WORD_PAD, chunk_budget
from optax_lab.errors import UsageError
from optax_lab.lessons import RunSpec
from optax_lab.records import ProgramSettings

__all__ = ["Arrays", "program_settings", "word_budgets"]


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
            kind = (
                array.dtype
                if array.dtype in (np.uint8, np.uint16)
                else np.int32
                if array.dtype.kind in "iu"
                else np.float32
            )
            return jax.device_put(array.astype(kind))

        return cls(*(on_device(a) for a in (x_train, y_train, x_test, y_test)))


def program_settings(
    spec: RunSpec,
    data: Arrays,
    epochs: int,
    num_seeds: int,
    order: Order = Order.PER_SEED,
    eval_train: bool = False,
    num_points: int = 1,
) -> ProgramSettings:
    """The settings `spec` compiles to on `data`; a batch size the data cannot fill is a UsageError."""
    n_train = data.x_train.shape[0]
    batch = n_train if spec.batch_size is None else spec.batch_size
    if not 0 < batch <= n_train:
        raise UsageError(
            f"batch size {batch} of run {spec.name!r} must be between 1 and the "
            f"{n_train} training examples: lower it or use 'full'"
        )
    features = math.prod(data.x_train.shape[1:])
    return ProgramSettings(
        n_train,
        data.x_test.shape[0],
        features,
        batch,
        epochs,
        num_seeds,
        num_points,
        Order(order),
        eval_train,
        bag_budgets=word_budgets(data, batch),
    )


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
    for size, chunks in (
        (batch, chunk_budget(train, batch, padded_with=0)),
        (len(train), chunk_budget(train, len(train))),
        (len(test), chunk_budget(test, len(test))),
    ):
        budgets[size] = max(budgets.get(size, 0), chunks)
    return tuple(sorted(budgets.items()))
