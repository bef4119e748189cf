"""What every function of one program is specialised on (`Parts`), and how a program measures:
the model's outputs, a batch's loss and metrics, a whole split's (a chunk at a time where the
workload bounds it), the penalty and the probes. `_program` composes these into training."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from optax_lab import optimizers
from optax_lab.config import ModelConfig
from optax_lab.engine._ops import distinct_units, kernels, take_examples
from optax_lab.lessons import RunSpec
from optax_lab.records import ProgramSettings
from optax_lab.workloads import Workload

__all__ = [
    "Parts",
    "split_chunks",
    "layers",
    "logits",
    "measured",
    "measured_split",
    "optimizer",
    "over_points",
    "penalty",
    "probes",
    "split_grad",
    "with_bag_settings",
]


class Parts(NamedTuple):
    """What every function of one program is specialised on: fixed when the program is made."""

    model: nn.Module
    model_config: ModelConfig
    entry: optimizers.OptimizerEntry
    spec: RunSpec
    static: dict[str, Any]  # the optimizer's compiled-in hyperparameters
    workload: Workload
    settings: ProgramSettings
    declared_layers: tuple[str, ...] | None  # the workload's probed layers (None: every top-level one)


def over_points(parts: Parts, function: Callable, in_axes: tuple) -> Callable:
    """`jax.vmap` over the points axis; for a single point, the function on the squeezed axis
    with the axis put back (measured here: a size-1 vmap axis cost the one-point programs ~10 %)."""
    if parts.settings.num_points > 1:
        return jax.vmap(function, in_axes=in_axes)

    def single(*args):
        args = [
            arg if axis is None else jax.tree.map(lambda leaf: leaf[0], arg)
            for arg, axis in zip(args, in_axes, strict=True)
        ]
        return jax.tree.map(lambda leaf: leaf[None], function(*args))

    return single


def with_bag_settings(model, settings: ProgramSettings, needs: frozenset[str]):
    """A model with an embedding bag (the MLP on word rows) gets the program's chunk budgets,
    and the bag in plain JAX ops where the optimizer differentiates it forward (Sophia's Hessian
    probes) or per example (DP-SGD): see `optax_lab.embedding`. Other models are left as they are."""
    fields = getattr(model, "__dataclass_fields__", {})
    if "budgets" not in fields or "native" not in fields:
        return model
    return model.clone(budgets=settings.bag_budgets, native=bool({"obj_fn", "per_example_grads"} & needs))


def optimizer(parts: Parts, hyperparams: dict[str, jax.Array], key: jax.Array) -> optax.GradientTransformation:
    return optimizers.build(
        parts.spec.optimizer, {**parts.static, **hyperparams}, key=key, hidden_matrices=parts.workload.hidden_matrices
    )


def layers(parts: Parts, params) -> tuple[str, ...]:
    """The probed layers: the workload's declared ones, else every top-level parameter subtree."""
    return parts.declared_layers if parts.declared_layers is not None else tuple(params)


def logits(parts: Parts, params, x, dropout_key=None):
    if dropout_key is None:  # evaluation: dropout off
        return parts.model.apply({"params": params}, x)
    return parts.model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})


def measured(parts: Parts, params, x, y, weights_B, dropout_key=None):
    """(mean loss, {metric: mean}) of the batch; weights mask a ragged batch's padding."""
    return parts.workload.loss_and_metrics(logits(parts, params, x, dropout_key), y, weights_B)


def split_chunks(parts: Parts, n: int) -> tuple[jax.Array, jax.Array] | None:
    """(indices_CxK, weights_CxK) cutting a split of `n` examples into the workload's evaluation
    chunks of K (the last one padded with weight 0), or None to take the split at once."""
    size = parts.workload.eval_batch
    if size is None or size >= n:
        return None
    count = -(-n // size)
    positions_CxK = jnp.arange(count * size, dtype=jnp.int32).reshape(count, size)
    return jnp.minimum(positions_CxK, n - 1), (positions_CxK < n).astype(jnp.float32)


def measured_split(parts: Parts, params, x, y):
    """(mean loss, {metric: mean}) of a whole split, a chunk at a time where the workload bounds
    how many examples it evaluates at once (a conv net's or a transformer's activations)."""
    chunks = split_chunks(parts, x.shape[0])
    if chunks is None:
        return measured(parts, params, x, y, None)

    def chunk_sums(chunk):
        rows_K, weights_K = chunk
        loss, values = measured(parts, params, take_examples(x, rows_K), take_examples(y, rows_K), weights_K)
        return jax.tree.map(lambda mean: mean * weights_K.sum(), (loss, values))

    sums = jax.tree.map(lambda per_chunk: per_chunk.sum(), jax.lax.map(chunk_sums, chunks))
    return jax.tree.map(lambda total: total / x.shape[0], sums)


def split_grad(parts: Parts, params, x, y):
    """The gradient of the mean loss over a whole split (dropout off), accumulated a chunk at a
    time where the workload bounds how many examples it evaluates at once."""
    chunks = split_chunks(parts, x.shape[0])
    if chunks is None:
        return jax.grad(lambda p: measured(parts, p, x, y, None)[0])(params)

    def add_chunk(total, chunk):
        rows_K, weights_K = chunk
        x_K, y_K = take_examples(x, rows_K), take_examples(y, rows_K)
        grads = jax.grad(lambda p: measured(parts, p, x_K, y_K, weights_K)[0] * weights_K.sum())(params)
        return jax.tree.map(jnp.add, total, grads), None

    total, _ = jax.lax.scan(add_chunk, jax.tree.map(jnp.zeros_like, params), chunks)
    return jax.tree.map(lambda g: g / x.shape[0], total)


def penalty(parts: Parts, params):
    """The L2 penalty on the probed layers' kernels: the MLP's --l2, or a fixed net's own weight decay."""
    l2 = parts.model_config.l2 + parts.workload.l2
    if not l2:
        return 0.0
    return l2 * sum(jnp.sum(jnp.square(k)) for k in kernels(params, layers(parts, params)))


def probes(parts: Parts, params) -> dict:
    """The symmetry probe where the workload's model has the layer it names."""
    symmetry = parts.workload.symmetry_layer
    return {"distinct_units": distinct_units(params, symmetry)} if symmetry in params else {}
