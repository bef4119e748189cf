"""What a program carries and returns: a seed's keys, the replicas' states, and the `Program`'s
functions with their shapes (S seeds, P points, E epochs, L probed layers, D parameters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

__all__ = ["PointState", "Program", "SeedState", "seed_keys"]


def seed_keys(seed):
    """A seed's independent streams: init, shuffling, optimizer noise, dropout."""
    return jax.random.split(jax.random.key(seed), 4)


class PointState(NamedTuple):
    """What one replica (a seed at a hyperparameter point) carries from epoch to epoch."""

    hyperparams: dict[str, jax.Array]  # this point's traced hyperparameters (scalars)
    params: Any
    opt_state: Any
    optimizer_key: jax.Array  # what the optimizer is built with (noise), the same every epoch
    dropout_key: jax.Array


class SeedState(NamedTuple):
    """One seed's replicas: its shuffling stream, and its points' states (leaves [P, ...]).
    Under the program's vmap over seeds every leaf gains a leading [S]."""

    order_key: jax.Array  # this seed's shuffling stream (the first seed's for all in shared order)
    points: PointState


class Program(NamedTuple):
    """One configuration's pure functions over S seeds x P hyperparameter points (compile them
    with `jax.jit`). Replicas nest as [S, P]: the points of one seed share its init, shuffling,
    noise and dropout keys, so its batches are gathered once and XLA fuses the points' layers.

    init(seeds_S int32, hyperparams {name: [P] float32}, order_seed int32, data)
        -> (state, {"init_grad_norms": [S, P, L], "init_distinct_units": [S, P], "init_params": [S, P, D]})
    epoch(state, epoch_index int32, data) -> (state, {key: [S, P] or [S, P, L]}) — one epoch, then
        `evaluate` unless the settings say `validate=False` (the benchmarks' unit of work)
    evaluate(state, data) -> {"val_loss", "val_<metric>", "distinct_units", ...: [S, P]}
    train(seeds_S, hyperparams, order_seed, data) -> {key: [S, P, E] or [S, P, E, L]} — init, then every epoch
    """

    init: Callable
    epoch: Callable
    evaluate: Callable
    train: Callable
