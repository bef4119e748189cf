"""The program stage: one training configuration as pure JAX functions, replicas on vmap axes.

A replica is one (seed, hyperparameter point): seeds x points on two nested `jax.vmap` axes,
each replica with its seed's init, shuffling, optimizer noise and dropout keys and its point's
values of the optimizer's real-valued hyperparameters, which are inputs of the program, not
constants: one compiled program serves every learning rate. The points of a seed share its
batches, so they are gathered once per seed and XLA fuses the points' layers into wide matmuls. The epochs run in a `lax.scan`, each epoch's
mini-batch steps in an inner `lax.scan`; the test split is evaluated after every epoch, as the
lesson's `validation_data` does. No Python loop ever wraps a step.

Batches: with N training examples and batch B there are ceil(N / B) steps per epoch; when B does
not divide N the last batch is the smaller remainder, as in Keras (it is padded to B and masked,
so every step has one static shape). Full batch (B = N) is one step on the unshuffled set.
The epoch's train loss/accuracy is the mean over its batches weighted by batch size (what Keras
logs as `loss`), i.e. measured on the moving parameters during the epoch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_lab import optimizers
from optax_lab.config import ModelConfig, Order, RunSpec
from optax_lab.errors import UsageError
from optax_lab.model import build_model, layer_names
from optax_lab.program_ops import (_kernels, _loss_and_correct, _per_example_grads, distinct_units, layer_grad_norms,
                                   shuffled_indices)

__all__ = ["Arrays", "Program", "ProgramSettings", "SeedState", "distinct_units", "layer_grad_norms", "make_program",
           "program_key", "program_settings", "shuffled_indices", "split_hyperparams"]


class Arrays(NamedTuple):
    """The dataset on the device: float32 features and {0, 1} labels."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array

    @classmethod
    def from_numpy(cls, x_train, y_train, x_test, y_test) -> "Arrays":
        return cls(*(jax.device_put(np.asarray(a, np.float32)) for a in (x_train, y_train, x_test, y_test)))


@dataclasses.dataclass(frozen=True)
class ProgramSettings:
    """Everything a compiled program is specialised on besides the optimizer and model: the
    data's shapes, the batch size, the epochs, the replica count, and what it computes."""

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
    return ProgramSettings(n_train, data.x_test.shape[0], data.x_train.shape[1], batch, epochs, num_seeds,
                           num_points, Order(order), eval_train)


def _seed_keys(seed):
    """A seed's independent streams: init, shuffling, optimizer noise, dropout."""
    return jax.random.split(jax.random.key(seed), 4)


def split_hyperparams(spec: RunSpec) -> tuple[dict[str, Any], dict[str, float]]:
    """(static, traced): the spec's hyperparameters (registry defaults + its own) that the program
    is compiled on, and those it takes as per-replica inputs."""
    return optimizers.split(spec.optimizer, optimizers.hyperparams(spec.optimizer, spec.hyperparams))


def program_key(spec: RunSpec) -> tuple:
    """Specs with equal keys (on equal data, model and settings) share one compiled program:
    everything but the traced hyperparameters' values."""
    static, traced = split_hyperparams(spec)
    return (spec.optimizer, tuple(sorted(static.items(), key=lambda item: item[0])), tuple(sorted(traced)),
            spec.batch_size, tuple(sorted(spec.model_changes.items())))


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

    init(seeds [S] int32, hyperparams {name: [P] float32}, order_seed int32, data)
        -> (state, {"init_grad_norms": [S, P, L], "init_distinct_units": [S, P]})
    epoch(state, epoch_index int32, data) -> (state, {key: [S, P] or [S, P, L]}) — one epoch, then
        `evaluate` unless the settings say `validate=False` (the benchmarks' unit of work)
    evaluate(state, data) -> {"val_loss", "val_acc", "distinct_units", ...: [S, P]}
    train(seeds, hyperparams, order_seed, data) -> {key: [S, P, E] or [S, P, E, L]} — init, then every epoch
    """

    init: Callable
    epoch: Callable
    evaluate: Callable
    train: Callable


def _over_points(num_points: int) -> Callable:
    """`jax.vmap` over the points axis; for a single point, the function on the squeezed axis
    with the axis put back (measured here: a size-1 vmap axis cost the one-point programs ~10 %)."""
    def over_points(function: Callable, in_axes: tuple) -> Callable:
        if num_points > 1:
            return jax.vmap(function, in_axes=in_axes)

        def single(*args):
            args = [arg if axis is None else jax.tree.map(lambda leaf: leaf[0], arg) for arg, axis in zip(args, in_axes)]
            return jax.tree.map(lambda leaf: leaf[None], function(*args))

        return single

    return over_points


def make_program(model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings) -> Program:
    """The programs of `spec` on the model `model_config` (already resolved: the spec's model
    changes applied), specialised on `settings`. Only the spec's program key matters: the traced
    hyperparameters' values are the programs' inputs."""
    model = build_model(model_config)
    layers = layer_names(model_config)
    entry = optimizers.get(spec.optimizer)
    static, _ = split_hyperparams(spec)
    over_points = _over_points(settings.num_points)

    def optimizer(replica_hyperparams, key):
        return optimizers.build(spec.optimizer, {**static, **replica_hyperparams}, key=key)
    n, batch, steps = settings.n_train, settings.batch_size, settings.steps_per_epoch
    ragged = n % batch != 0
    dropout = model_config.dropout > 0

    def logits_of(params, x, dropout_key=None):
        if dropout_key is None:  # evaluation: dropout off
            return model.apply({"params": params}, x)
        return model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})

    def penalty(params):
        if not model_config.l2:
            return 0.0
        return model_config.l2 * sum(jnp.sum(jnp.square(k)) for k in _kernels(params, layers))

    def batch_indices(key):
        """[steps, B] example indices of one shuffled epoch, and a [steps, B] mask (or None)."""
        order = shuffled_indices(key, n)
        if not ragged:
            return order.reshape(steps, batch), None
        padded = jnp.concatenate([order, jnp.zeros(steps * batch - n, order.dtype)])
        mask = (jnp.arange(steps * batch) < n).astype(jnp.float32)
        return padded.reshape(steps, batch), mask.reshape(steps, batch)

    def point_init(params, optimizer_key, dropout_key, hyperparams) -> PointState:
        opt_state = optimizer(hyperparams, optimizer_key).init(params)
        return PointState(hyperparams, params, opt_state, optimizer_key, dropout_key)

    def seed_init(seed, hyperparams, order_seed, data: Arrays) -> tuple[SeedState, dict]:
        init_key, shuffle_key, optimizer_key, dropout_key = _seed_keys(seed)
        # Shared order: every seed shuffles like the first seed does in per-seed mode.
        order_key = _seed_keys(order_seed)[1] if settings.order is Order.SHARED else shuffle_key
        # The init, and the gradient there on the whole training set (dropout off), are the
        # seed's: its points differ only in hyperparameters, so they are computed once.
        params = model.init(init_key, data.x_train[:1])["params"]
        init_grads = jax.grad(lambda p: _loss_and_correct(logits_of(p, data.x_train), data.y_train, None)[0])(params)
        points = over_points(point_init, (None, None, None, 0))(params, optimizer_key, dropout_key, hyperparams)
        num_points = jax.tree.leaves(points.params)[0].shape[0]
        metrics = {"init_grad_norms": layer_grad_norms(init_grads, layers), "init_distinct_units": distinct_units(params)}
        return SeedState(order_key, points), jax.tree.map(lambda m: jnp.broadcast_to(m, (num_points, *m.shape)), metrics)

    def epoch_batches(order_key, epoch_index, data: Arrays):
        """The epoch's mini-batches (x, y, mask or None, step index), each with a leading [steps]."""
        if settings.full_batch:
            # One step on the whole set: its order cannot matter, so skip shuffle and gather.
            return data.x_train[None], data.y_train[None], None, jnp.zeros(1, jnp.int32)
        indices, mask = batch_indices(jax.random.fold_in(order_key, epoch_index))
        return data.x_train[indices], data.y_train[indices], mask, jnp.arange(steps)

    def point_epoch(state: PointState, epoch_index, batches, data: Arrays):
        tx = optimizer(state.hyperparams, state.optimizer_key)
        epoch_dropout_key = jax.random.fold_in(state.dropout_key, epoch_index)

        def step(carry, batch_data):
            params, opt_state = carry
            x, y, weights, step_index = batch_data
            step_key = jax.random.fold_in(epoch_dropout_key, step_index) if dropout else None

            def loss_fn(p):
                data_loss, accuracy = _loss_and_correct(logits_of(p, x, step_key), y, weights)
                return data_loss + penalty(p), (data_loss, accuracy)

            def value_fn(p):
                return loss_fn(p)[0]

            (objective, (loss, accuracy)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            grad_norms = layer_grad_norms(grads, layers)
            extra = {"value": objective, "grad": grads, "value_fn": value_fn, "obj_fn": value_fn,
                     "grad_fn": lambda p, _: jax.grad(value_fn)(p)}
            if "per_example_grads" in entry.needs:  # DP-SGD clips each example's gradient itself
                grads = _per_example_grads(logits_of, penalty, params, x, y, weights, step_key)
            updates, opt_state = tx.update(grads, opt_state, params,
                                           **{k: extra[k] for k in entry.needs if k in extra})
            size = jnp.float32(batch) if weights is None else weights.sum()
            return (optax.apply_updates(params, updates), opt_state), (loss * size, accuracy * size, grad_norms)

        (params, opt_state), (loss_sums, correct_sums, grad_norms) = jax.lax.scan(
            step, (state.params, state.opt_state), batches)
        state = state._replace(params=params, opt_state=opt_state)
        metrics = {"train_loss": loss_sums.sum() / n, "train_acc": correct_sums.sum() / n,
                   "grad_norms": grad_norms.mean(axis=0)}
        if settings.validate:
            metrics.update(point_evaluate(state, data))
        return state, metrics

    def point_evaluate(state: PointState, data: Arrays):
        # Where the optimizer's answer is: its params, or e.g. schedule-free's averaged iterate.
        answer = entry.eval_params(state.opt_state, state.params)
        val_loss, val_acc = _loss_and_correct(logits_of(answer, data.x_test), data.y_test, None)
        metrics = {"val_loss": val_loss, "val_acc": val_acc, "distinct_units": distinct_units(answer)}
        if settings.eval_train:
            metrics["train_eval_loss"], metrics["train_eval_acc"] = _loss_and_correct(
                logits_of(answer, data.x_train), data.y_train, None)
        return metrics

    def seed_epoch(state: SeedState, epoch_index, data: Arrays, batches=None):
        # The seed's batches once for all its points: XLA sees one [B, features] batch per seed.
        batches = epoch_batches(state.order_key, epoch_index, data) if batches is None else batches
        points, metrics = over_points(point_epoch, (0, None, None, None))(state.points, epoch_index, batches,
                                                                               data)
        return state._replace(points=points), metrics

    def epoch(state: SeedState, epoch_index, data: Arrays):
        if settings.order is Order.SHARED or settings.full_batch:
            # One shuffling for every seed: gathered once, and every replica's first layer is one matmul.
            batches = epoch_batches(state.order_key[0], epoch_index, data)
            return jax.vmap(seed_epoch, in_axes=(0, None, None, None))(state, epoch_index, data, batches)
        return jax.vmap(seed_epoch, in_axes=(0, None, None))(state, epoch_index, data)

    def evaluate(state: SeedState, data: Arrays):
        return jax.vmap(over_points(point_evaluate, (0, None)), in_axes=(0, None))(state.points, data)

    init = jax.vmap(seed_init, in_axes=(0, None, None, None))

    def train(seeds, hyperparams, order_seed, data: Arrays):
        state, init_metrics = init(seeds, hyperparams, order_seed, data)
        _, history = jax.lax.scan(lambda s, e: epoch(s, e, data), state, jnp.arange(settings.epochs))
        # scan stacks epochs first: [E, S, P, ...] -> [S, P, E, ...]
        return {**jax.tree.map(lambda h: jnp.moveaxis(h, 0, 2), history), **init_metrics}

    return Program(init=init, epoch=epoch, evaluate=evaluate, train=train)
