"""The optimizer stage: optimizers are data in one registry, never if/elif branches.

Each entry names an Optax constructor, its default hyperparameters for the IMDB MLP, what its
`update()` needs beyond gradients (the engine supplies it inside the compiled program), and tags.
`build()` turns an entry plus overrides into a `GradientTransformationExtraArgs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import inspect
import jax
import jax.numpy as jnp
import optax

from optax_lab.config import closest
from optax_lab.errors import UsageError

# What an entry's update() may ask the engine for, besides (grads, state, params):
#   value    - the loss at params on this batch
#   grad     - the gradient again (lbfgs' linesearch wants it by that name)
#   value_fn - params -> loss on this batch
#   key      - a PRNG key of the seed's own, passed to the constructor (noise must differ per seed)
EXTRA_INPUTS = ("value", "grad", "value_fn", "key")


class Optimizer(NamedTuple):
    name: str
    constructor: Callable[..., optax.GradientTransformation]
    defaults: Mapping[str, Any]
    needs: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset({"core"})
    note: str = ""

    @property
    def accepted(self) -> tuple[str, ...]:
        """Hyperparameters the constructor takes (the PRNG key is the engine's, not the user's)."""
        params = inspect.signature(self.constructor).parameters
        return tuple(n for n, p in params.items()
                     if n not in ("key", "seed") and p.kind is not inspect.Parameter.VAR_KEYWORD)


# --- Keras-matched variants, for the lesson's numbers ------------------------------------------

class ScaleByKerasAdagradState(NamedTuple):
    sum_of_squares: optax.Updates


def scale_by_keras_adagrad(initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> optax.GradientTransformation:
    """Keras' Adagrad scaling: g / (sqrt(acc) + eps), acc starting at 0.1.

    Optax's `scale_by_rss` puts eps inside the square root; Keras adds it outside.
    """

    def init_fn(params):
        return ScaleByKerasAdagradState(
            jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params))

    def update_fn(updates, state, params=None):
        del params
        sum_of_squares = jax.tree.map(lambda g, acc: acc + g * g, updates, state.sum_of_squares)
        updates = jax.tree.map(lambda g, acc: g / (jnp.sqrt(acc) + eps), updates, sum_of_squares)
        return updates, ScaleByKerasAdagradState(sum_of_squares)

    return optax.GradientTransformation(init_fn, update_fn)


def keras_inverse_time_decay(learning_rate: float, decay: float) -> optax.Schedule:
    """Keras' legacy `decay=` argument: lr / (1 + decay * iterations), iterations from 0."""
    return lambda count: learning_rate / (1.0 + decay * count)


def keras_adagrad(learning_rate: float = 0.001, decay: float = 0.0,
                  initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> optax.GradientTransformationExtraArgs:
    """Adagrad exactly as tf.keras 2.x computes it, with its legacy per-step `decay`."""
    return optax.chain(
        scale_by_keras_adagrad(initial_accumulator_value, eps),
        optax.scale_by_learning_rate(keras_inverse_time_decay(learning_rate, decay)),
    )


# --- The registry -----------------------------------------------------------------------------

def _entries() -> list[Optimizer]:
    core = frozenset({"core"})
    return [
        Optimizer("sgd", optax.sgd, {"learning_rate": 0.01}, tags=core,
                  note="momentum=None is plain SGD; optax's trace equals Keras' velocity at constant lr"),
        Optimizer("adagrad", optax.adagrad, {"learning_rate": 0.01}, tags=core),
        Optimizer("rmsprop", optax.rmsprop, {"learning_rate": 0.001}, tags=core,
                  note="Keras: eps=1e-7 outside the sqrt (eps_in_sqrt=False)"),
        Optimizer("adam", optax.adam, {"learning_rate": 0.01}, tags=core,
                  note="Keras: eps=1e-7 (Keras scales eps by sqrt(1-b2^t); the difference fades after a few steps)"),
        Optimizer("keras_adagrad", keras_adagrad, {"learning_rate": 0.01, "decay": 0.0},
                  tags=frozenset({"keras"}), note="eps outside the sqrt, accumulator from 0.1, legacy decay"),
    ]


REGISTRY: dict[str, Optimizer] = {entry.name: entry for entry in _entries()}


def get(name: str) -> Optimizer:
    if name not in REGISTRY:
        raise UsageError(f"unknown optimizer {name!r}: did you mean {closest(name, sorted(REGISTRY))}? "
                         "(`optax-lab list` shows them all)")
    return REGISTRY[name]


def hyperparams(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The registry defaults of `name` with `overrides` on top, every name checked."""
    entry = get(name)
    unknown = sorted(set(overrides) - set(entry.accepted))
    if unknown:
        raise UsageError(f"optimizer {name!r} takes no hyperparameter {unknown[0]!r}: "
                         f"it accepts {', '.join(entry.accepted)}")
    return {**entry.defaults, **overrides}


def build(name: str, overrides: Mapping[str, Any], key: jax.Array | None = None) -> optax.GradientTransformationExtraArgs:
    """The optimizer `name` with its hyperparameters; `key` is the seed's own PRNG key."""
    entry = get(name)
    kwargs = hyperparams(name, overrides)
    if "key" in entry.needs:
        kwargs["key"] = key
    return optax.with_extra_args_support(entry.constructor(**kwargs))
