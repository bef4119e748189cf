"""The model stage: a Flax MLP whose shape is data (`ModelConfig`), not code.

Default: 100 -> 32 -> 32 -> 1 with ReLU, one logit out (the sigmoid lives in the loss, which is
numerically safer than a sigmoid layer followed by a log), Glorot-uniform kernels and zero
biases like Keras' `Dense`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from optax_lab.config import ModelConfig

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh, "gelu": nn.gelu, "elu": nn.elu,
    "selu": nn.selu, "silu": nn.silu, "leaky_relu": nn.leaky_relu, "linear": lambda x: x,
}
KERNEL_INITS: dict[str, Callable] = {
    "glorot_uniform": nn.initializers.glorot_uniform(),
    "glorot_normal": nn.initializers.glorot_normal(),
    "he_uniform": nn.initializers.he_uniform(),
    "he_normal": nn.initializers.he_normal(),
    "lecun_uniform": nn.initializers.lecun_uniform(),
    "lecun_normal": nn.initializers.lecun_normal(),
    "zeros": nn.initializers.zeros,
}


class MLP(nn.Module):
    """Dense layers of `widths` with `activation`, then one logit per example."""

    widths: Sequence[int]
    activation: Callable[[jax.Array], jax.Array]
    kernel_init: Callable

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.widths:
            x = self.activation(nn.Dense(width, kernel_init=self.kernel_init)(x))
        return nn.Dense(1, kernel_init=self.kernel_init)(x)[..., 0]


def build_model(config: ModelConfig) -> MLP:
    config.validate()
    return MLP(tuple(config.widths), ACTIVATIONS[config.activation], KERNEL_INITS[config.kernel_init])
