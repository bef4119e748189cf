"""Optimizers the registry builds that optax does not ship as one constructor: the Keras-matched
variants of the lesson, the contrib wrappers each around a base, and adapters that let the
engine feed them plain params and a per-seed key."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.contrib

__all__ = [
    "dpsgd",
    "keras_adagrad",
    "lookahead_adam",
    "lookahead_eval_params",
    "mechanize_adam",
    "reduce_on_plateau_adam",
    "sam_sgd",
    "schedule_free_adam",
    "scale_by_keras_adagrad",
]


# --- Keras-matched variants, for the lesson's numbers ------------------------------------------


class ScaleByKerasAdagradState(NamedTuple):
    sum_of_squares: optax.Updates


def scale_by_keras_adagrad(initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> optax.GradientTransformation:
    """Keras' Adagrad scaling: g / (sqrt(acc) + eps), acc starting at 0.1.

    Optax's `scale_by_rss` puts eps inside the square root; Keras adds it outside.
    """

    def init_fn(params):
        return ScaleByKerasAdagradState(jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params))

    def update_fn(updates, state, params=None):
        del params
        sum_of_squares = jax.tree.map(lambda g, acc: acc + g * g, updates, state.sum_of_squares)
        updates = jax.tree.map(lambda g, acc: g / (jnp.sqrt(acc) + eps), updates, sum_of_squares)
        return updates, ScaleByKerasAdagradState(sum_of_squares)

    return optax.GradientTransformation(init_fn, update_fn)


def keras_inverse_time_decay(learning_rate: float, decay: float) -> optax.Schedule:
    """Keras' legacy `decay=` argument: lr / (1 + decay * iterations), iterations from 0."""
    return lambda count: learning_rate / (1.0 + decay * count)


def keras_adagrad(
    learning_rate: float = 0.001, decay: float = 0.0, initial_accumulator_value: float = 0.1, eps: float = 1e-7
) -> optax.GradientTransformationExtraArgs:
    """Adagrad exactly as tf.keras 2.x computes it, with its legacy per-step `decay`."""
    return optax.chain(
        scale_by_keras_adagrad(initial_accumulator_value, eps),
        optax.scale_by_learning_rate(keras_inverse_time_decay(learning_rate, decay)),
    )


# --- Wrappers around a base optimizer, and adapters to the engine's plain params ---------------


def dpsgd(
    learning_rate: optax.ScalarOrSchedule,
    l2_norm_clip: float,
    noise_multiplier: float,
    momentum: float | None = None,
    nesterov: bool = False,
) -> optax.GradientTransformation:
    """optax.contrib.dpsgd without its int seed: `build()` puts the seed's key in its state."""
    with warnings.catch_warnings():  # dpsgd itself passes on the deprecated `seed`; it is replaced
        warnings.filterwarnings("ignore", message='"seed" is deprecated', category=DeprecationWarning)
        return optax.contrib.dpsgd(
            learning_rate, l2_norm_clip, noise_multiplier, seed=0, momentum=momentum, nesterov=nesterov
        )


def sam_sgd(
    learning_rate: optax.ScalarOrSchedule = 0.05, momentum: float | None = 0.9, rho: float = 0.05, sync_period: int = 2
) -> optax.GradientTransformationExtraArgs:
    """SAM as in its paper: an ascent of rho along the normalized gradient, then SGD from there.

    Opaque mode runs the adversarial steps inside one update (via `grad_fn`), so the engine's
    params, train loss and step count are always the real, unperturbed ones.
    """
    adversary = optax.chain(optax.contrib.normalize(), optax.sgd(rho))
    return optax.contrib.sam(optax.sgd(learning_rate, momentum), adversary, sync_period, opaque_mode=True)


def mechanize_adam(
    learning_rate: optax.ScalarOrSchedule = 1.0,
    weight_decay: float = 1e-2,
    eps: float = 1e-8,
    s_init: float = 1e-6,
    num_betas: int = 6,
) -> optax.GradientTransformationExtraArgs:
    """Mechanic learns the step size of Adam's updates; its docs set the base rate to 1."""
    return optax.contrib.mechanize(optax.adam(learning_rate), weight_decay, eps, s_init, num_betas)


def schedule_free_adam(
    learning_rate: float = 0.005, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_lr_power: float = 2.0
) -> optax.GradientTransformationExtraArgs:
    """The generic schedule-free wrapper around Adam with its momentum off, as its docs show."""
    base = optax.adam(learning_rate, b1=0.0, b2=b2, eps=eps)
    return optax.contrib.schedule_free(base, learning_rate, b1=b1, weight_lr_power=weight_lr_power)


def reduce_on_plateau_adam(
    learning_rate: optax.ScalarOrSchedule = 0.01,
    factor: float = 0.5,
    patience: int = 2,
    rtol: float = 1e-4,
    accumulation_size: int = 50,
    min_scale: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
    """Adam whose steps shrink by `factor` when the train loss, averaged over
    `accumulation_size` steps (one IMDB epoch at batch 500), stops improving for `patience`."""
    return optax.chain(
        optax.adam(learning_rate),
        optax.contrib.reduce_on_plateau(
            factor, patience, rtol, accumulation_size=accumulation_size, min_scale=min_scale
        ),
    )


class PlainLookaheadState(NamedTuple):
    inner: optax.LookaheadState
    slow_params: optax.Params


def lookahead_adam(
    learning_rate: optax.ScalarOrSchedule = 0.01, sync_period: int = 6, slow_step_size: float = 0.5
) -> optax.GradientTransformation:
    """optax.lookahead around Adam, on plain params.

    optax.lookahead wants `LookaheadParams(fast, slow)` as the params; here the engine's params are
    the fast ones and the slow copy rides in the state (validated at via `lookahead_eval_params`).
    """
    inner = optax.lookahead(optax.adam(learning_rate), sync_period, slow_step_size)

    def init_fn(params):
        return PlainLookaheadState(inner.init(optax.LookaheadParams.init_synced(params)), params)

    def update_fn(updates, state, params=None):
        both, inner_state = inner.update(updates, state.inner, optax.LookaheadParams(params, state.slow_params))
        return both.fast, PlainLookaheadState(inner_state, optax.apply_updates(state.slow_params, both.slow))

    return optax.GradientTransformation(init_fn, update_fn)


def lookahead_eval_params(state: optax.OptState, params: optax.Params) -> optax.Params:
    """Lookahead's answer is its slow weights."""
    del params
    return optax.tree_utils.tree_get(state, "slow_params")
