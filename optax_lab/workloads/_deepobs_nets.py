"""DeepOBS's image-classification nets, layer for layer (widths, kernels, strides, padding, pooling,
initialisers), each with its DeepOBS input pipeline in front: MNIST's pixels / 255, CIFAR's
per-image standardisation. Defined from fsschneider/DeepOBS (read for the definitions, not copied):

- `LogReg`: deepobs/tensorflow/testproblems/_logreg.py: one dense layer, kernel and bias 0.
- `MLP`: deepobs/tensorflow/testproblems/_mlp.py: dense 1000-500-100 with ReLU, then the classes;
  kernels truncated normal (stddev 3e-2), biases 0.
- `TwoC2D`: deepobs/tensorflow/testproblems/_2c2d.py: conv 5x5 32 "same" -> max pool 2/2 "same" ->
  conv 5x5 64 "same" -> max pool 2/2 "same" -> dense 1024 -> classes, ReLU; kernels truncated
  normal (stddev 0.05), biases 0.05.
- `ThreeC3D`: deepobs/tensorflow/testproblems/_3c3d.py: conv 5x5 64 "valid" -> max pool 3/2 "same"
  -> conv 3x3 96 "valid" -> max pool 3/2 "same" -> conv 3x3 128 "same" -> max pool 3/2 "same" ->
  dense 512 -> dense 256 -> classes, ReLU; conv kernels Glorot normal, dense kernels Glorot
  uniform, biases 0.
- `AllCNNC`: deepobs/tensorflow/testproblems/cifar100_allcnnc.py (and net_cifar100_allcnnc in
  deepobs/pytorch/testproblems/testproblems_modules.py): conv 3x3 96, 96, 96 stride 2, conv 3x3
  192, 192, 192 stride 2 (all "same"), conv 3x3 192 "valid", conv 1x1 192, conv 1x1 classes, every
  one with ReLU (the last too, as DeepOBS has it), then the mean over the image; kernels Glorot
  normal, biases 0.1; dropout 0.2 on the input and 0.5 after each stride-2 conv while training
  (the workload declares `dropout`, so the engine hands it a key each step).

TensorFlow's and Flax's initialisers agree: a truncated normal's stddev is the untruncated one's
(cut at 2 stddev), and Glorot normal is a truncated normal scaled to the fan average. Every layer
is top level, so `Workload.l2` weighs every kernel, as DeepOBS's regulariser does.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from optax_lab.workloads._convnets import Conv, max_pool, pixels

__all__ = ["AllCNNC", "LogReg", "MLP", "ThreeC3D", "TwoC2D", "standardized"]


def standardized(x_BHWC: jax.Array) -> jax.Array:
    """tf.image.per_image_standardization of the raw pixel values, DeepOBS's CIFAR input: each
    image minus its mean, over its standard deviation floored at 1 / sqrt(pixels x channels)."""
    x = x_BHWC.astype(jnp.float32)
    size = x.shape[1] * x.shape[2] * x.shape[3]
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = jnp.maximum(x.std(axis=(1, 2, 3), keepdims=True), 1.0 / jnp.sqrt(size))
    return (x - mean) / std


def _flat(x_BHWC: jax.Array) -> jax.Array:
    return x_BHWC.reshape(x_BHWC.shape[0], -1)


def _dense(features: int, name: str, kernel_init: Callable, bias: float = 0.0) -> nn.Dense:
    return nn.Dense(features, kernel_init=kernel_init, bias_init=nn.initializers.constant(bias), name=name)


class LogReg(nn.Module):
    """Multinomial logistic regression on the flattened pixels / 255, from all-zero weights."""

    classes: int = 10

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        return _dense(self.classes, "output", nn.initializers.zeros)(_flat(pixels(x_BHWC)))


class MLP(nn.Module):
    """Dense 1000-500-100 with ReLU on the flattened pixels / 255, then the classes."""

    classes: int = 10
    widths: tuple[int, ...] = (1000, 500, 100)

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        init = nn.initializers.truncated_normal(3e-2)
        x = _flat(pixels(x_BHWC))
        for index, width in enumerate(self.widths):
            x = nn.relu(_dense(width, f"dense_{index}", init)(x))
        return _dense(self.classes, "output", init)(x)


class TwoC2D(nn.Module):
    """Two 5x5 convolutions (32, 64) each with 2x2 max pooling, dense 1024, then the classes."""

    classes: int = 10

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        init, bias = nn.initializers.truncated_normal(0.05), nn.initializers.constant(0.05)
        x = pixels(x_BHWC)
        for index, features in enumerate((32, 64)):
            conv = Conv(features, (5, 5), padding="SAME", kernel_init=init, bias_init=bias, name=f"conv_{index}")
            x = max_pool(nn.relu(conv(x)), 2, 2, "SAME")
        x = nn.relu(_dense(1024, "dense_0", init, 0.05)(_flat(x)))
        return _dense(self.classes, "output", init, 0.05)(x)


class ThreeC3D(nn.Module):
    """Three convolutions (5x5 64 valid, 3x3 96 valid, 3x3 128 same) each with 3x3 max pooling of
    stride 2, dense 512 and 256, then the classes, on per-image standardised pixels."""

    classes: int = 10

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        x = standardized(x_BHWC)
        for index, (features, size, padding) in enumerate(((64, 5, "VALID"), (96, 3, "VALID"), (128, 3, "SAME"))):
            init = nn.initializers.glorot_normal()
            conv = Conv(features, (size, size), padding=padding, kernel_init=init, name=f"conv_{index}")
            x = max_pool(nn.relu(conv(x)), 3, 2, "SAME")
        x = _flat(x)
        for index, width in enumerate((512, 256)):
            x = nn.relu(_dense(width, f"dense_{index}", nn.initializers.glorot_uniform())(x))
        return _dense(self.classes, "output", nn.initializers.glorot_uniform())(x)


# All-CNN-C's convolutions: (features, kernel, stride, padding), the last one's features the classes.
_ALLCNNC = (
    (96, 3, 1, "SAME"),
    (96, 3, 1, "SAME"),
    (96, 3, 2, "SAME"),
    (192, 3, 1, "SAME"),
    (192, 3, 1, "SAME"),
    (192, 3, 2, "SAME"),
    (192, 3, 1, "VALID"),
    (192, 1, 1, "SAME"),
)


class AllCNNC(nn.Module):
    """All-CNN-C (Springenberg et al., 2015): nine convolutions with ReLU and no pooling but two
    stride-2 convolutions, averaged over the image, on per-image standardised pixels; dropout 0.2
    on the input and 0.5 after each stride-2 convolution while training."""

    classes: int = 100

    @nn.compact
    def __call__(self, x_BHWC: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Dropout(0.2, deterministic=not train)(standardized(x_BHWC))
        layers = (*_ALLCNNC, (self.classes, 1, 1, "SAME"))
        for index, (features, size, stride, padding) in enumerate(layers):
            conv = Conv(
                features,
                (size, size),
                (stride, stride),
                padding,
                kernel_init=nn.initializers.glorot_normal(),
                bias_init=nn.initializers.constant(0.1),
                name=f"conv_{index}",
            )
            x = nn.relu(conv(x))
            if stride == 2:
                x = nn.Dropout(0.5, deterministic=not train)(x)
        return x.mean(axis=(1, 2))
