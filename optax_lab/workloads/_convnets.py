"""Convolutional nets: a 2-D convolution that is fast on every backend, max pooling, and the
offline MNIST CNN. DeepOBS's nets (`_deepobs`) are built from the same layers.

XLA:CPU runs `lax.conv_general_dilated` (and its gradients) at a few GFLOP/s, slower still under
the replica vmap; the same convolution as image patches times a matrix runs 8-10x faster there.
So on CPU a convolution is `lax.conv_general_dilated_patches` then one matmul, and elsewhere the
native convolution. Both read the same kernel [kh, kw, in, out], so parameters, initialisation
and results (up to rounding) do not depend on the backend.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["Conv", "MnistCNN", "max_pool", "pixels"]

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


class Conv(nn.Module):
    """A 2-D convolution of NHWC images, with the parameters of `flax.linen.Conv`."""

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        channels = x_BHWC.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (kh, kw, channels, self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        if jax.default_backend() == "cpu":
            # Patches hold each pixel's window channel-major: (in, kh, kw).
            patches = jax.lax.conv_general_dilated_patches(
                x_BHWC, (kh, kw), self.strides, self.padding, dimension_numbers=_DIMENSIONS
            )
            y = patches @ kernel.transpose(2, 0, 1, 3).reshape(channels * kh * kw, self.features)
        else:
            y = jax.lax.conv_general_dilated(x_BHWC, kernel, self.strides, self.padding, dimension_numbers=_DIMENSIONS)
        return y + bias


def max_pool(x_BHWC: jax.Array, window: int, stride: int, padding: str = "VALID") -> jax.Array:
    """Max pooling; a window that tiles the image exactly is a reshape and a max (no
    reduce-window and select-and-scatter for its gradient, which are slow on CPU)."""
    _, height, width, channels = x_BHWC.shape
    if window == stride and height % window == 0 and width % window == 0:
        tiles = x_BHWC.reshape(-1, height // window, window, width // window, window, channels)
        return tiles.max(axis=(2, 4))
    return nn.max_pool(x_BHWC, (window, window), strides=(stride, stride), padding=padding)


def pixels(x: jax.Array) -> jax.Array:
    """uint8 images in [0, 255] as float32 in [0, 1]; float images as they are."""
    return x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)


class MnistCNN(nn.Module):
    """The offline MNIST workload's net: conv 3x3 (c1) -> ReLU -> pool 2 -> conv 3x3 (c2) -> ReLU
    -> pool 2 -> dense (hidden) -> ReLU -> dense (classes), on [B, 28, 28, 1] uint8 digits."""

    channels: tuple[int, int] = (8, 16)
    hidden: int = 64
    classes: int = 10

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        x = pixels(x_BHWC)
        for index, features in enumerate(self.channels):
            x = max_pool(nn.relu(Conv(features, name=f"conv_{index}")(x)), 2, 2)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden, name="dense_0")(x))
        return nn.Dense(self.classes, name="output")(x)
