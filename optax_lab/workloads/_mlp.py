"""The MLP the workloads train: a Flax MLP whose shape is data (`ModelConfig`), not code.

Default: 100 -> 32 -> 32 -> 1 with ReLU, one logit out (the sigmoid lives in the loss, which is
numerically safer than a sigmoid layer followed by a log), Glorot-uniform kernels and zero
biases like Keras' `Dense`. Layers are named `hidden_0 … hidden_{depth-1}`, `output`, so the
training engine can read per-layer gradient norms in depth order.

Inputs are float features [B, F] (the multi-hot rows); multi-hot rows packed 8 to a byte
(`input="bits"`, [B, ceil(vocabulary / 8)] uint8, unpacked before the first Dense layer); or word
indices [B, L] (`"words"`, `"words-mean"`): then the first layer is an embedding bag
(`optax_lab.embedding`), the same Dense layer computed from the indices of the row's ones, with the
same kernel [vocabulary, width]. No hidden layer (`widths=()`) is a linear model: logistic regression.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from optax_lab.config import ModelConfig
from optax_lab.embedding import embedding_bag

__all__ = [
    "ACTIVATIONS",
    "BIAS_INITS",
    "INPUTS",
    "KERNEL_INITS",
    "MLP",
    "NORMALIZATIONS",
    "BagDense",
    "build_model",
    "layer_names",
]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "sigmoid": nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "selu": nn.selu,
    "silu": nn.silu,
    "leaky_relu": nn.leaky_relu,
    "linear": lambda x: x,
}
KERNEL_INITS: dict[str, Callable] = {
    "glorot_uniform": nn.initializers.glorot_uniform(),
    "glorot_normal": nn.initializers.glorot_normal(),
    "he_uniform": nn.initializers.he_uniform(),
    "he_normal": nn.initializers.he_normal(),
    "lecun_uniform": nn.initializers.lecun_uniform(),
    "lecun_normal": nn.initializers.lecun_normal(),
    "zeros": nn.initializers.zeros,
    "constant": nn.initializers.constant(0.01),
    "normal_0.01": nn.initializers.normal(0.01),
    "normal_1": nn.initializers.normal(1.0),
    # torch.nn.Linear: kaiming_uniform_(a=√5) = U(±√(6/((1+a²)·fan_in))) = U(±1/√fan_in).
    "torch_default": nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
}


def _torch_bias(fan_in: int) -> Callable:
    """torch.nn.Linear's bias: U(±1/√fan_in); Flax's bias initialisers never see fan_in."""

    def init(key, shape, dtype=jnp.float32):
        bound = 1.0 / fan_in**0.5
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


BIAS_INITS: dict[str, Callable[[int], Callable]] = {
    "zeros": lambda fan_in: nn.initializers.zeros,
    "torch_default": _torch_bias,
}
NORMALIZATIONS: dict[str, Callable[..., nn.Module] | None] = {"none": None, "layer": nn.LayerNorm}
# What the first layer reads: float features, packed bits of multi-hot rows, or word indices summed
# (a multi-hot row's Dense) or averaged (fastText) by an embedding bag.
INPUTS = ("features", "bits", "words", "words-mean")


class BagDense(nn.Module):
    """Dense on the multi-hot row whose set columns are `ids` [B, L] (left-aligned, padding any
    index >= vocabulary): the same kernel [vocabulary, features] and bias, computed as an
    embedding bag. `budgets` bound the chunks a batch of each size holds (`embedding.chunk_budget`;
    a size not listed keeps every chunk); `native` computes it in plain JAX ops (forward-mode)."""

    features: int
    vocabulary: int
    kernel_init: Callable
    bias_init: Callable
    mean: bool = False
    budgets: tuple[tuple[int, int], ...] = ()  # (batch size, most chunks a batch of that size holds)
    native: bool = False

    @nn.compact
    def __call__(self, ids: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (self.vocabulary, self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        return embedding_bag(kernel, ids, self.mean, dict(self.budgets).get(ids.shape[0]), self.native) + bias


class MLP(nn.Module):
    """Dense layers of `widths`, each [→ normalisation] → activation [→ dropout] [+ residual],
    then one logit per example."""

    widths: Sequence[int]
    activation: Callable[[jax.Array], jax.Array]
    kernel_init: Callable
    bias_init: Callable[[int], Callable]  # fan_in -> initialiser
    dropout: float = 0.0
    residual: bool = False
    normalization: Callable[..., nn.Module] | None = None
    input: str = "features"  # one of INPUTS
    vocabulary: int = 0  # the embedding bag's rows, for word inputs
    budgets: tuple[tuple[int, int], ...] = ()  # the embedding bag's chunk budgets by batch size (BagDense)
    native: bool = False  # the embedding bag in plain JAX ops: forward-mode and per-example gradients

    def _layer(self, width: int, fan_in: int, name: str, first: bool) -> nn.Module:
        if first and self.input.startswith("words"):  # word indices: the Dense of their multi-hot row
            return BagDense(
                width,
                self.vocabulary,
                self.kernel_init,
                self.bias_init(self.vocabulary),
                self.input == "words-mean",
                self.budgets,
                self.native,
                name=name,
            )
        return nn.Dense(width, kernel_init=self.kernel_init, bias_init=self.bias_init(fan_in), name=name)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """`train=True` turns dropout on; it then needs a 'dropout' PRNG key in `apply`."""
        if self.input == "bits":
            x = jnp.unpackbits(x, axis=-1, count=self.vocabulary).astype(jnp.float32)
        for i, width in enumerate(self.widths):
            h = self._layer(width, x.shape[-1], f"hidden_{i}", first=i == 0)(x)
            if self.normalization is not None:
                h = self.normalization(name=f"norm_{i}")(h)
            h = self.activation(h)
            if self.dropout:
                h = nn.Dropout(self.dropout, deterministic=not train)(h)
            x = x + h if self.residual and x.shape[-1] == width else h
        return self._layer(1, x.shape[-1], "output", first=not self.widths)(x)[..., 0]


def layer_names(config: ModelConfig) -> tuple[str, ...]:
    """The Dense layers' parameter names, input to output."""
    return tuple(f"hidden_{i}" for i in range(config.depth)) + ("output",)


def build_model(config: ModelConfig, input: str = "features", vocabulary: int = 0) -> MLP:
    """The Flax module of `config` (a ModelConfig is valid by construction) reading `input`."""
    return MLP(
        tuple(config.widths),
        ACTIVATIONS[config.activation],
        KERNEL_INITS[config.kernel_init],
        BIAS_INITS[config.bias_init],
        config.dropout,
        config.residual,
        NORMALIZATIONS[config.normalization],
        input,
        vocabulary,
    )
