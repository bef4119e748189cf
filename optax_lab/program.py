"""The program stage: one training configuration as pure JAX functions, replicas on vmap axes.

A replica is one (seed, hyperparameter point): seeds x points on two nested `jax.vmap` axes,
each replica with its seed's init, shuffling, optimizer noise and dropout keys and its point's
values of the optimizer's real-valued hyperparameters, which are inputs of the program, not
constants: one compiled program serves every learning rate. The points of a seed share its
batches, so they are gathered once per seed and XLA fuses the points' layers into wide matmuls. The epochs run in a `lax.scan`, each epoch's
mini-batch steps in an inner `lax.scan`; the test split is evaluated after every epoch, as the
lesson's `validation_data` does. No Python loop ever wraps a step.

What is trained is the workload's (`optax_lab.workloads`): its model, its per-example loss and
metrics, and the probes it declares (layer gradient norms, the symmetry probe, the parameters'
trajectory). The program reads those declarations and never a workload's name.

Batches: with N training examples and batch B there are ceil(N / B) steps per epoch; when B does
not divide N the last batch is the smaller remainder, as in Keras (it is padded to B and masked,
so every step has one static shape). Full batch (B = N) is one step on the unshuffled set.
The epoch's train loss/metrics are the means over its batches weighted by batch size (what Keras
logs as `loss`), i.e. measured on the moving parameters during the epoch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_lab import optimizers, workloads
from optax_lab.config import DEFAULT_WORKLOAD, ModelConfig, Order, RunSpec
from optax_lab.program_inputs import Arrays, ProgramSettings, program_key, program_settings, split_hyperparams
from optax_lab.program_ops import _loss_and_correct  # noqa: F401  (the lesson's loss, which tests compare with)
from optax_lab.program_ops import (_kernels, _per_example_grads, distinct_units, flat_params, layer_grad_norms,
                                   loss_and_metrics, shuffled_indices, take_examples)

__all__ = ["Arrays", "Program", "ProgramSettings", "SeedState", "distinct_units", "layer_grad_norms", "make_program",
           "program_key", "program_settings", "shuffled_indices", "split_hyperparams"]


def _seed_keys(seed):
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

    init(seeds [S] int32, hyperparams {name: [P] float32}, order_seed int32, data)
        -> (state, {"init_grad_norms": [S, P, L], "init_distinct_units": [S, P], "init_params": [S, P, D]})
    epoch(state, epoch_index int32, data) -> (state, {key: [S, P] or [S, P, L]}) — one epoch, then
        `evaluate` unless the settings say `validate=False` (the benchmarks' unit of work)
    evaluate(state, data) -> {"val_loss", "val_<metric>", "distinct_units", ...: [S, P]}
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


def _with_bag_settings(model, settings: ProgramSettings, needs: frozenset[str]):
    """A model with an embedding bag (`model.MLP` on word rows) gets the program's chunk budgets,
    and the bag in plain JAX ops where the optimizer differentiates it forward (Sophia's Hessian
    probes) or per example (DP-SGD): see `optax_lab.embedding`. Other models are left as they are."""
    fields = getattr(model, "__dataclass_fields__", {})
    if "budgets" not in fields or "native" not in fields:
        return model
    return model.clone(budgets=settings.bag_budgets, native=bool({"obj_fn", "per_example_grads"} & needs))


def make_program(model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings,
                 workload: workloads.Workload | None = None) -> Program:
    """The programs of `spec` on `workload` (default imdb-mlp) with the model `model_config`
    (already resolved: the spec's model changes applied), specialised on `settings`. Only the
    spec's program key matters: the traced hyperparameters' values are the programs' inputs."""
    workload = workload or workloads.get(DEFAULT_WORKLOAD)
    entry = optimizers.get(spec.optimizer)
    model = _with_bag_settings(workload.build(model_config), settings, entry.needs)
    declared_layers = workload.layers(model_config)
    symmetry = workload.symmetry_layer
    static, _ = split_hyperparams(spec)
    over_points = _over_points(settings.num_points)

    def optimizer(replica_hyperparams, key):
        return optimizers.build(spec.optimizer, {**static, **replica_hyperparams}, key=key)
    n, batch, steps = settings.n_train, settings.batch_size, settings.steps_per_epoch
    ragged = n % batch != 0
    dropout = model_config.dropout > 0

    def layers(params) -> tuple[str, ...]:  # declared, else every top-level parameter subtree
        return declared_layers if declared_layers is not None else tuple(params)

    def logits_of(params, x, dropout_key=None):
        if dropout_key is None:  # evaluation: dropout off
            return model.apply({"params": params}, x)
        return model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})

    def measured(params, x, y, weights, dropout_key=None):
        """(mean loss, {metric: mean}) of the batch; weights mask a ragged batch's padding."""
        return loss_and_metrics(workload, logits_of(params, x, dropout_key), y, weights)

    def penalty(params):
        if not model_config.l2:
            return 0.0
        return model_config.l2 * sum(jnp.sum(jnp.square(k)) for k in _kernels(params, layers(params)))

    def probes(params) -> dict:
        """The symmetry probe where the workload's model has the layer it names."""
        return {"distinct_units": distinct_units(params, symmetry)} if symmetry in params else {}

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
        init_grads = jax.grad(lambda p: measured(p, data.x_train, data.y_train, None)[0])(params)
        points = over_points(point_init, (None, None, None, 0))(params, optimizer_key, dropout_key, hyperparams)
        num_points = jax.tree.leaves(points.params)[0].shape[0]
        metrics = {"init_grad_norms": layer_grad_norms(init_grads, layers(params)),
                   **{f"init_{key}": value for key, value in probes(params).items()}}
        if workload.trace_params:
            metrics["init_params"] = flat_params(params)
        return SeedState(order_key, points), jax.tree.map(lambda m: jnp.broadcast_to(m, (num_points, *m.shape)), metrics)

    def epoch_batches(order_key, epoch_index, data: Arrays):
        """The epoch's mini-batches: (example indices [steps, B], or None for the whole set; mask
        [steps, B] or None; step index [steps]). Each step gathers its own batch: gathered for the
        whole epoch at once, the batches of every seed were a copy of the training set per seed,
        which the scan then transposed to steps-first (a second copy; 0.3 s an epoch of 8 seeds
        on the 10,000-word rows)."""
        if settings.full_batch:
            # One step on the whole set: its order cannot matter, so skip shuffle and gather.
            return None, None, jnp.zeros(1, jnp.int32)
        indices, mask = batch_indices(jax.random.fold_in(order_key, epoch_index))
        return indices, mask, jnp.arange(steps)

    def point_epoch(state: PointState, epoch_index, batches, data: Arrays, validate: bool = settings.validate):
        tx = optimizer(state.hyperparams, state.optimizer_key)
        epoch_dropout_key = jax.random.fold_in(state.dropout_key, epoch_index)

        def step(carry, batch_data):
            params, opt_state = carry
            rows, weights, step_index = batch_data
            x, y = (data.x_train, data.y_train) if rows is None else (take_examples(data.x_train, rows),
                                                                      take_examples(data.y_train, rows))
            step_key = jax.random.fold_in(epoch_dropout_key, step_index) if dropout else None

            def loss_fn(p):
                data_loss, values = measured(p, x, y, weights, step_key)
                return data_loss + penalty(p), (data_loss, values)

            def value_fn(p):
                return loss_fn(p)[0]

            (objective, (loss, values)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            grad_norms = layer_grad_norms(grads, layers(params))
            extra = {"value": objective, "grad": grads, "value_fn": value_fn, "obj_fn": value_fn,
                     "grad_fn": lambda p, _: jax.grad(value_fn)(p)}
            if "per_example_grads" in entry.needs:  # DP-SGD clips each example's gradient itself
                grads = _per_example_grads(logits_of, penalty, params, x, y, weights, step_key,
                                           lambda outputs, targets: loss_and_metrics(workload, outputs, targets, None)[0])
            updates, opt_state = tx.update(grads, opt_state, params,
                                           **{k: extra[k] for k in entry.needs if k in extra})
            params = optax.apply_updates(params, updates)
            size = jnp.float32(batch) if weights is None else weights.sum()
            sums = {"loss": loss * size, **{key: value * size for key, value in values.items()}}
            traced = flat_params(params) if workload.trace_params else None
            return (params, opt_state), (sums, grad_norms, traced)

        (params, opt_state), (sums, grad_norms, trajectory) = jax.lax.scan(
            step, (state.params, state.opt_state), batches)
        state = state._replace(params=params, opt_state=opt_state)
        metrics = {**{f"train_{key}": total.sum() / n for key, total in sums.items()},
                   "grad_norms": grad_norms.mean(axis=0)}
        if workload.trace_params:
            metrics["trajectory"] = trajectory  # [steps, D]: the parameters after each step
        if validate:
            metrics.update(point_evaluate(state, data))
        return state, metrics

    def point_evaluate(state: PointState, data: Arrays):
        # Where the optimizer's answer is: its params, or e.g. schedule-free's averaged iterate.
        answer = entry.eval_params(state.opt_state, state.params)
        val_loss, values = measured(answer, data.x_test, data.y_test, None)
        metrics = {"val_loss": val_loss, **{f"val_{key}": value for key, value in values.items()}, **probes(answer)}
        if settings.eval_train:
            train_loss, values = measured(answer, data.x_train, data.y_train, None)
            metrics.update({"train_eval_loss": train_loss, **{f"train_eval_{k}": v for k, v in values.items()}})
        return metrics

    def seed_epoch(state: SeedState, epoch_index, data: Arrays, batches=None, validate: bool = settings.validate):
        # The seed's batches once for all its points: XLA sees one [B, features] batch per seed a step.
        batches = epoch_batches(state.order_key, epoch_index, data) if batches is None else batches
        points, metrics = over_points(functools.partial(point_epoch, validate=validate), (0, None, None, None))(
            state.points, epoch_index, batches, data)
        return state._replace(points=points), metrics

    def epoch(state: SeedState, epoch_index, data: Arrays):
        if settings.order is Order.SHARED or settings.full_batch:
            # One shuffling for every seed: gathered once, and every replica's first layer is one matmul.
            batches = epoch_batches(state.order_key[0], epoch_index, data)
            return jax.vmap(seed_epoch, in_axes=(0, None, None, None))(state, epoch_index, data, batches)
        if settings.gathers_rows:
            # Seeds one after another: each gathers its own batches' word rows, which a vmap only
            # batches into wider gathers and scatters that leave the cache (the bag runs its
            # replicas one by one anyway). imdb-10k-mlp, 8 seeds on 2 devices: 20 -> 26 seed-epochs/s.
            # Then all of them evaluate the test split together, reading its layout once.
            state, metrics = jax.lax.map(lambda one: seed_epoch(one, epoch_index, data, validate=False), state)
            return state, {**metrics, **(evaluate(state, data) if settings.validate else {})}
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
