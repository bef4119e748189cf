"""A program: one training configuration as pure JAX functions, replicas on vmap axes.

A replica is one (seed, hyperparameter point): seeds x points on two nested `jax.vmap` axes,
each replica with its seed's init, shuffling, optimizer noise and dropout keys and its point's
values of the optimizer's real-valued hyperparameters, which are inputs of the program, not
constants: one compiled program serves every learning rate. The points of a seed share its
batches, so they are gathered once per seed and XLA fuses the points' layers into wide matmuls.
The epochs run in a `lax.scan`, each epoch's mini-batch steps in an inner `lax.scan`; the test
split is evaluated after every epoch, as the lesson's `validation_data` does. No Python loop ever wraps a step.

What is trained is the workload's (`optax_lab.workloads`): its model, its per-example loss and
metrics, and the probes it declares (layer gradient norms, the symmetry probe, the parameters'
trajectory). The program reads those declarations and never a workload's name.

Batches: with N training examples and batch B there are ceil(N / B) steps per epoch; when B does
not divide N the last batch is the smaller remainder, as in Keras (it is padded to B and masked,
so every step has one static shape). Full batch (B = N) is one step on the unshuffled set.
The epoch's train loss/metrics are the means over its batches weighted by batch size (what Keras
logs as `loss`), i.e. measured on the moving parameters during the epoch.

The program is composed of small functions, as optax composes a transformation of `init` and
`update`: `_init_seed`, `_train_step`, `_point_epoch`, `_point_evaluate`, each taking the
program's fixed `Parts` (`_parts`) first. Shapes are in the names: S seeds, P points, T steps of an
epoch, B examples of a batch, E epochs, L probed layers, D parameters.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from optax_lab import optimizers
from optax_lab.config import ModelConfig, Order
from optax_lab.engine._inputs import Arrays
from optax_lab.engine._ops import flat_params, layer_grad_norms, per_example_grads, shuffled_indices, take_examples
from optax_lab.engine._parts import (
    Parts,
    layers,
    logits,
    measured,
    measured_split,
    optimizer,
    over_points,
    penalty,
    probes,
    split_grad,
    with_bag_settings,
)
from optax_lab.engine._state import PointState, Program, SeedState, seed_keys
from optax_lab.lessons import RunSpec
from optax_lab.records import ProgramSettings, split_hyperparams
from optax_lab.workloads import Workload

__all__ = ["make_program"]


def _batch_indices(parts: Parts, key):
    """(indices_TxB, mask_TxB or None): example indices of one shuffled epoch, and which are real."""
    settings = parts.settings
    n, batch, steps = settings.n_train, settings.batch_size, settings.steps_per_epoch
    order_N = shuffled_indices(key, n)
    if n % batch == 0:
        return order_N.reshape(steps, batch), None
    padded = jnp.concatenate([order_N, jnp.zeros(steps * batch - n, order_N.dtype)])
    mask = (jnp.arange(steps * batch) < n).astype(jnp.float32)
    return padded.reshape(steps, batch), mask.reshape(steps, batch)


def _init_point(parts: Parts, params, optimizer_key, dropout_key, hyperparams) -> PointState:
    opt_state = optimizer(parts, hyperparams, optimizer_key).init(params)
    return PointState(hyperparams, params, opt_state, optimizer_key, dropout_key)


def _init_seed(parts: Parts, seed, hyperparams_P, order_seed, data: Arrays) -> tuple[SeedState, dict]:
    init_key, shuffle_key, optimizer_key, dropout_key = seed_keys(seed)
    # Shared order: every seed shuffles like the first seed does in per-seed mode.
    order_key = seed_keys(order_seed)[1] if parts.settings.order is Order.SHARED else shuffle_key
    # The init, and the gradient there on the whole training set (dropout off), are the
    # seed's: its points differ only in hyperparameters, so they are computed once.
    params = parts.model.init(init_key, data.x_train[:1])["params"]
    init_grads = split_grad(parts, params, data.x_train, data.y_train)
    points = over_points(parts, functools.partial(_init_point, parts), (None, None, None, 0))(
        params, optimizer_key, dropout_key, hyperparams_P
    )
    num_points = jax.tree.leaves(points.params)[0].shape[0]
    metrics = {
        "init_grad_norms": layer_grad_norms(init_grads, layers(parts, params)),
        **{f"init_{key}": value for key, value in probes(parts, params).items()},
    }
    if parts.workload.trace_params:
        metrics["init_params"] = flat_params(params)
    return SeedState(order_key, points), jax.tree.map(lambda m: jnp.broadcast_to(m, (num_points, *m.shape)), metrics)


def _epoch_batches(parts: Parts, order_key, epoch_index):
    """The epoch's mini-batches: (indices_TxB, or None for the whole set; mask_TxB or None;
    step index [T]). Each step gathers its own batch: gathered for the whole epoch at once, the
    batches of every seed were a copy of the training set per seed, which the scan then
    transposed to steps-first (a second copy; 0.3 s an epoch of 8 seeds on the 10,000-word rows)."""
    if parts.settings.full_batch:
        # One step on the whole set: its order cannot matter, so skip shuffle and gather.
        return None, None, jnp.zeros(1, jnp.int32)
    indices_TxB, mask_TxB = _batch_indices(parts, jax.random.fold_in(order_key, epoch_index))
    return indices_TxB, mask_TxB, jnp.arange(parts.settings.steps_per_epoch)


def _train_step(parts: Parts, tx, epoch_dropout_key, data: Arrays, carry, batch):
    """One optimizer step on one batch: ((params, opt_state), (metric sums, grad_norms_L, params_D or None))."""
    params, opt_state = carry
    rows_B, weights_B, step_index = batch
    x, y = (
        (data.x_train, data.y_train)
        if rows_B is None
        else (take_examples(data.x_train, rows_B), take_examples(data.y_train, rows_B))
    )
    draws_dropout = parts.model_config.dropout > 0 or parts.workload.dropout
    step_key = jax.random.fold_in(epoch_dropout_key, step_index) if draws_dropout else None

    def loss_fn(p):
        data_loss, values = measured(parts, p, x, y, weights_B, step_key)
        return data_loss + penalty(parts, p), (data_loss, values)

    def value_fn(p):
        return loss_fn(p)[0]

    (objective, (loss, values)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    grad_norms_L = layer_grad_norms(grads, layers(parts, params))
    extra = {
        "value": objective,
        "grad": grads,
        "value_fn": value_fn,
        "obj_fn": value_fn,
        "grad_fn": lambda p, _: jax.grad(value_fn)(p),
    }
    needs = parts.entry.needs
    if "per_example_grads" in needs:  # DP-SGD clips each example's gradient itself
        grads = per_example_grads(
            functools.partial(logits, parts),
            functools.partial(penalty, parts),
            params,
            x,
            y,
            weights_B,
            step_key,
            lambda outputs, targets: parts.workload.loss_and_metrics(outputs, targets, None)[0],
        )
    updates, opt_state = tx.update(grads, opt_state, params, **{k: extra[k] for k in needs if k in extra})
    params = optax.apply_updates(params, updates)
    size = jnp.float32(parts.settings.batch_size) if weights_B is None else weights_B.sum()
    sums = {"loss": loss * size, **{key: value * size for key, value in values.items()}}
    params_D = flat_params(params) if parts.workload.trace_params else None
    return (params, opt_state), (sums, grad_norms_L, params_D)


def _point_epoch(parts: Parts, state: PointState, epoch_index, batches, data: Arrays, validate: bool):
    tx = optimizer(parts, state.hyperparams, state.optimizer_key)
    epoch_dropout_key = jax.random.fold_in(state.dropout_key, epoch_index)
    step = functools.partial(_train_step, parts, tx, epoch_dropout_key, data)
    (params, opt_state), (sums, grad_norms_TxL, params_TxD) = jax.lax.scan(
        step, (state.params, state.opt_state), batches
    )
    state = state._replace(params=params, opt_state=opt_state)
    metrics = {
        **{f"train_{key}": total.sum() / parts.settings.n_train for key, total in sums.items()},
        "grad_norms": grad_norms_TxL.mean(axis=0),
    }
    if parts.workload.trace_params:
        metrics["trajectory"] = params_TxD  # the parameters after each step
    if validate:
        metrics.update(_point_evaluate(parts, state, data))
    return state, metrics


def _point_evaluate(parts: Parts, state: PointState, data: Arrays):
    # Where the optimizer's answer is: its params, or e.g. schedule-free's averaged iterate.
    answer = parts.entry.eval_params(state.opt_state, state.params)
    val_loss, values = measured_split(parts, answer, data.x_test, data.y_test)
    metrics = {"val_loss": val_loss, **{f"val_{key}": value for key, value in values.items()}, **probes(parts, answer)}
    if parts.settings.eval_train:
        train_loss, values = measured_split(parts, answer, data.x_train, data.y_train)
        metrics.update({"train_eval_loss": train_loss, **{f"train_eval_{k}": v for k, v in values.items()}})
    return metrics


def _seed_epoch(parts: Parts, state: SeedState, epoch_index, data: Arrays, batches=None, validate: bool = True):
    # The seed's batches once for all its points: XLA sees one [B, features] batch per seed a step.
    batches = _epoch_batches(parts, state.order_key, epoch_index) if batches is None else batches
    epoch_of_point = functools.partial(_point_epoch, parts, validate=validate)
    points, metrics = over_points(parts, epoch_of_point, (0, None, None, None))(
        state.points, epoch_index, batches, data
    )
    return state._replace(points=points), metrics


def _epoch(parts: Parts, state: SeedState, epoch_index, data: Arrays):
    settings = parts.settings
    if settings.order is Order.SHARED or settings.full_batch:
        # One shuffling for every seed: gathered once, and every replica's first layer is one matmul.
        batches = _epoch_batches(parts, state.order_key[0], epoch_index)
        seed_epoch = functools.partial(_seed_epoch, parts, validate=settings.validate)
        return jax.vmap(seed_epoch, in_axes=(0, None, None, None))(state, epoch_index, data, batches)
    if settings.gathers_rows:
        # Seeds one after another: each gathers its own batches' word rows, which a vmap only
        # batches into wider gathers and scatters that leave the cache (the bag runs its
        # replicas one by one anyway). imdb-10k-mlp, 8 seeds on 2 devices: 20 -> 26 seed-epochs/s.
        # Then all of them evaluate the test split together, reading its layout once.
        state, metrics = jax.lax.map(lambda one: _seed_epoch(parts, one, epoch_index, data, validate=False), state)
        return state, {**metrics, **(_evaluate(parts, state, data) if settings.validate else {})}
    seed_epoch = functools.partial(_seed_epoch, parts, validate=settings.validate)
    return jax.vmap(seed_epoch, in_axes=(0, None, None))(state, epoch_index, data)


def _evaluate(parts: Parts, state: SeedState, data: Arrays):
    evaluate_points = over_points(parts, functools.partial(_point_evaluate, parts), (0, None))
    return jax.vmap(evaluate_points, in_axes=(0, None))(state.points, data)


def _init(parts: Parts, seeds_S, hyperparams_P, order_seed, data: Arrays):
    return jax.vmap(functools.partial(_init_seed, parts), in_axes=(0, None, None, None))(
        seeds_S, hyperparams_P, order_seed, data
    )


def _train(parts: Parts, seeds_S, hyperparams_P, order_seed, data: Arrays):
    state, init_metrics = _init(parts, seeds_S, hyperparams_P, order_seed, data)
    _, history_E = jax.lax.scan(lambda s, e: _epoch(parts, s, e, data), state, jnp.arange(parts.settings.epochs))
    # scan stacks epochs first: [E, S, P, ...] -> [S, P, E, ...]
    return {**jax.tree.map(lambda h: jnp.moveaxis(h, 0, 2), history_E), **init_metrics}


def make_program(model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings, workload: Workload) -> Program:
    """The programs of `spec` on `workload` with the model `model_config` (already resolved: the
    spec's model changes applied), specialised on `settings`. Only the spec's program key
    matters: the traced hyperparameters' values are the programs' inputs."""
    entry = optimizers.get(spec.optimizer)
    parts = Parts(
        model=with_bag_settings(workload.build(model_config), settings, entry.needs),
        model_config=model_config,
        entry=entry,
        spec=spec,
        static=split_hyperparams(spec)[0],
        workload=workload,
        settings=settings,
        declared_layers=workload.layers(model_config),
    )
    return Program(
        init=functools.partial(_init, parts),
        epoch=functools.partial(_epoch, parts),
        evaluate=functools.partial(_evaluate, parts),
        train=functools.partial(_train, parts),
    )
