"""The program stage: one training configuration as pure JAX functions, replicas on a vmap axis.

A replica is one (hyperparameter point, seed): the replicas sit on a `jax.vmap` axis, each with
its own init, shuffling, optimizer noise and dropout keys (from its seed) and its own values of
the optimizer's real-valued hyperparameters, which are inputs of the program, not constants: one
compiled program serves every learning rate. The epochs run in a `lax.scan`, each epoch's
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
    num_replicas: int  # (hyperparameter points) x (seeds) of one call
    order: Order = Order.PER_SEED
    eval_train: bool = False  # also evaluate the whole training set after each epoch
    validate: bool = True  # evaluate the test split after each epoch (benchmarks time steps without it)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch_size)

    @property
    def full_batch(self) -> bool:
        return self.batch_size == self.n_train


def program_settings(spec: RunSpec, data: Arrays, epochs: int, num_replicas: int, order: Order = Order.PER_SEED,
                     eval_train: bool = False) -> ProgramSettings:
    """The settings `spec` compiles to on `data`; a batch size the data cannot fill is a UsageError."""
    n_train = data.x_train.shape[0]
    batch = n_train if spec.batch_size is None else spec.batch_size
    if not 0 < batch <= n_train:
        raise UsageError(f"batch size {batch} of run {spec.name!r} must be between 1 and the "
                         f"{n_train} training examples: lower it or use 'full'")
    return ProgramSettings(n_train, data.x_test.shape[0], data.x_train.shape[1], batch, epochs, num_replicas,
                           Order(order), eval_train)


def _loss_and_correct(logits, y, weights):
    losses = optax.sigmoid_binary_cross_entropy(logits, y)
    correct = ((logits > 0) == (y > 0.5)).astype(jnp.float32)
    if weights is None:
        return losses.mean(), correct.mean()
    total = weights.sum()
    return (losses * weights).sum() / total, (correct * weights).sum() / total


def _per_example_grads(logits_of, penalty, params, x, y, weights, dropout_key):
    """Each example's loss gradient, stacked on a leading [B] axis; masked (padding) examples' are zero."""

    def example_loss(p, xi, yi, i):
        key = None if dropout_key is None else jax.random.fold_in(dropout_key, i)
        return _loss_and_correct(logits_of(p, xi[None], key), yi[None], None)[0] + penalty(p)

    grads = jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0, 0))(params, x, y, jnp.arange(x.shape[0]))
    if weights is None:
        return grads
    return jax.tree.map(lambda g: g * weights.reshape((-1,) + (1,) * (g.ndim - 1)), grads)


def _kernels(params, layers: tuple[str, ...]) -> list[jax.Array]:
    return [params[name]["kernel"] for name in layers]


def layer_grad_norms(grads, layers: tuple[str, ...]) -> jax.Array:
    """[L] the L2 norm of each Dense kernel's gradient, input layer first."""
    return jnp.stack([jnp.sqrt(jnp.sum(jnp.square(k))) for k in _kernels(grads, layers)])


def distinct_units(params, layer: str = "hidden_0", rtol: float = 1e-5) -> jax.Array:
    """How many of `layer`'s units differ (incoming kernel column and bias, up to `rtol` of the
    largest weight): the symmetry problem leaves 1 where all units started equal."""
    units = jnp.concatenate([params[layer]["kernel"], params[layer]["bias"][None]]).T  # [W, F+1]
    distance = jnp.abs(units[:, None, :] - units[None, :, :]).max(axis=-1)  # [W, W]
    tol = rtol * jnp.abs(units).max()
    earlier = jnp.tri(units.shape[0], k=-1, dtype=bool)  # [j, i]: i < j
    duplicate = ((distance <= tol) & earlier).any(axis=1)
    return units.shape[0] - duplicate.sum()


def shuffled_indices(key: jax.Array, n: int) -> jax.Array:
    """A uniformly random permutation of range(n), like `jax.random.permutation` but ~5x faster
    on CPU, where XLA's two-operand sort is slow.

    Each round packs random high bits and the element's position into one uint32 and sorts that
    single operand; the low bits then read back the permutation. Ties in the random bits keep the
    previous order, so rounds are repeated with fresh bits until the total random bits reach
    3·log2(n), the same safety margin `jax.random.permutation` uses.
    """
    index_bits = max(1, (n - 1).bit_length())
    random_bits = 32 - index_bits
    if random_bits < 8:  # n > 2**24: not enough room in a word; take the exact, slower path
        return jax.random.permutation(key, n)
    rounds = max(1, math.ceil(3 * math.log2(max(n, 2)) / random_bits))
    low = jnp.uint32((1 << index_bits) - 1)
    positions = jnp.arange(n, dtype=jnp.uint32)
    round_keys = jax.random.split(key, rounds)

    def shuffle_round(i, order):
        packed = (jax.random.bits(round_keys[i], (n,), jnp.uint32) & ~low) | positions
        return order[(jnp.sort(packed) & low).astype(jnp.int32)]

    # A loop, not unrolled: one sort to compile instead of `rounds`.
    return jax.lax.fori_loop(0, rounds, shuffle_round, jnp.arange(n, dtype=jnp.int32))


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


class SeedState(NamedTuple):
    """What one replica carries from epoch to epoch (under vmap, every leaf gains a leading [R])."""

    hyperparams: dict[str, jax.Array]  # this replica's traced hyperparameters (scalars)
    params: Any
    opt_state: Any
    order_key: jax.Array  # this seed's shuffling stream (seed 0's for all in shared-order mode)
    optimizer_key: jax.Array  # what the optimizer is built with (noise), the same every epoch
    dropout_key: jax.Array


class Program(NamedTuple):
    """One configuration's pure functions, seeds on a vmap axis (compile them with `jax.jit`).

    init(seeds [R] int32, hyperparams {name: [R] float32}, order_seed int32, data)
        -> (state, {"init_grad_norms": [R, L], "init_distinct_units": [R]})
    epoch(state, epoch_index int32, data) -> (state, {key: [R] or [R, L]}) — one epoch, then
        `evaluate` unless the settings say `validate=False` (the benchmarks' unit of work)
    evaluate(state, data) -> {"val_loss", "val_acc", "distinct_units", ...: [R]}
    train(seeds, hyperparams, order_seed, data) -> {key: [R, E] or [R, E, L]} — init, then every epoch
    """

    init: Callable
    epoch: Callable
    evaluate: Callable
    train: Callable


def make_program(model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings) -> Program:
    """The programs of `spec` on the model `model_config` (already resolved: the spec's model
    changes applied), specialised on `settings`. Only the spec's program key matters: the traced
    hyperparameters' values are the programs' inputs."""
    model = build_model(model_config)
    layers = layer_names(model_config)
    entry = optimizers.get(spec.optimizer)
    static, _ = split_hyperparams(spec)

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

    def seed_init(seed, replica_hyperparams, order_seed, data: Arrays):
        init_key, shuffle_key, optimizer_key, dropout_key = _seed_keys(seed)
        # Shared order: every seed shuffles like the first seed does in per-seed mode.
        order_key = _seed_keys(order_seed)[1] if settings.order is Order.SHARED else shuffle_key
        params = model.init(init_key, data.x_train[:1])["params"]
        opt_state = optimizer(replica_hyperparams, optimizer_key).init(params)
        # The gradient at initialisation on the whole training set, dropout off.
        init_grads = jax.grad(lambda p: _loss_and_correct(logits_of(p, data.x_train), data.y_train, None)[0])(params)
        return (SeedState(replica_hyperparams, params, opt_state, order_key, optimizer_key, dropout_key),
                {"init_grad_norms": layer_grad_norms(init_grads, layers),
                 "init_distinct_units": distinct_units(params)})

    def seed_epoch(state: SeedState, epoch_index, data: Arrays):
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

        if settings.full_batch:
            # One step on the whole set: its order cannot matter, so skip shuffle and gather.
            batches = (data.x_train[None], data.y_train[None], None, jnp.zeros(1, jnp.int32))
        else:
            indices, mask = batch_indices(jax.random.fold_in(state.order_key, epoch_index))
            batches = (data.x_train[indices], data.y_train[indices], mask, jnp.arange(steps))
        (params, opt_state), (loss_sums, correct_sums, grad_norms) = jax.lax.scan(
            step, (state.params, state.opt_state), batches)
        state = state._replace(params=params, opt_state=opt_state)
        metrics = {"train_loss": loss_sums.sum() / n, "train_acc": correct_sums.sum() / n,
                   "grad_norms": grad_norms.mean(axis=0)}
        if settings.validate:
            metrics.update(seed_evaluate(state, data))
        return state, metrics

    def seed_evaluate(state: SeedState, data: Arrays):
        # Where the optimizer's answer is: its params, or e.g. schedule-free's averaged iterate.
        answer = entry.eval_params(state.opt_state, state.params)
        val_loss, val_acc = _loss_and_correct(logits_of(answer, data.x_test), data.y_test, None)
        metrics = {"val_loss": val_loss, "val_acc": val_acc, "distinct_units": distinct_units(answer)}
        if settings.eval_train:
            metrics["train_eval_loss"], metrics["train_eval_acc"] = _loss_and_correct(
                logits_of(answer, data.x_train), data.y_train, None)
        return metrics

    def seed_train(seed, replica_hyperparams, order_seed, data: Arrays):
        state, init_metrics = seed_init(seed, replica_hyperparams, order_seed, data)
        _, history = jax.lax.scan(lambda s, e: seed_epoch(s, e, data), state, jnp.arange(settings.epochs))
        return {**history, **init_metrics}

    # Replicas on a vmap axis; the data and (in shared-order mode) the order seed are shared, so
    # XLA sees one [B, features] batch for all replicas and fuses their first layers.
    return Program(init=jax.vmap(seed_init, in_axes=(0, 0, None, None)),
                   epoch=jax.vmap(seed_epoch, in_axes=(0, None, None)),
                   evaluate=jax.vmap(seed_evaluate, in_axes=(0, None)),
                   train=jax.vmap(seed_train, in_axes=(0, 0, None, None)))
