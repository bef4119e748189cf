"""DeepOBS's generated test problems (Schneider, Balles & Hennig, ICLR 2019), from their published
definitions: no data to download, and every seed starts from the same point (only the order of
the noise draws differs, as in DeepOBS).

- quadratic_deep: 0.5 (θ - x)ᵀ Q (θ - x) in 100 dimensions, θ starting at ones, x ~ N(0, 0.6²)
  (1,000 training draws from seed 42, 1,000 test draws from seed 43). Q = Rᵀ diag(λ) R with 90
  eigenvalues uniform in (0, 1) and 10 in (30, 60), drawn from seed 42 (the spectrum reported
  for deep networks), R a Haar-random rotation.
- two_d_rosenbrock / two_d_beale: f(u, v) + u·x + v·y with (x, y) ~ N(0, 1) (10,000 training
  draws from seed 42); the test split is noise-free (x = y = 0), so the validation loss is f
  itself. Rosenbrock starts at (-0.5, 1.5), minimum 0 at (1, 1); Beale starts at (-4.5, 4.5),
  minimum 0 at (3, 0.5).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from optax_lab.data import Dataset, subset
from optax_lab.workloads._workload import DataRequest

__all__ = [
    "BEALE_START",
    "QUADRATIC_DIM",
    "ROSENBROCK_START",
    "NoisyQuadratic",
    "Noisy2D",
    "beale",
    "noisy_2d_data",
    "quadratic_data",
    "quadratic_hessian",
    "rosenbrock",
]

QUADRATIC_DIM, QUADRATIC_EXAMPLES, QUADRATIC_NOISE = 100, 1000, 0.6
TWO_D_EXAMPLES = 10_000
ROSENBROCK_START, BEALE_START = (-0.5, 1.5), (-4.5, 4.5)


@functools.cache
def quadratic_hessian() -> np.ndarray:
    """Q of quadratic_deep: DeepOBS's spectrum (seed 42) in a Haar-random basis."""
    rng = np.random.RandomState(42)
    eigenvalues = np.concatenate([rng.uniform(0.0, 1.0, 90), rng.uniform(30.0, 60.0, 10)])
    rotation = scipy.stats.special_ortho_group.rvs(QUADRATIC_DIM, random_state=rng)
    return (rotation.T * eigenvalues) @ rotation


def _draws(seed: int, shape: tuple[int, ...], scale: float) -> np.ndarray:
    return np.random.RandomState(seed).normal(0.0, scale, shape).astype(np.float32)


def quadratic_data(request: DataRequest) -> tuple[Dataset, None]:
    x_train = _draws(42, (QUADRATIC_EXAMPLES, QUADRATIC_DIM), QUADRATIC_NOISE)
    x_test = _draws(43, (QUADRATIC_EXAMPLES, QUADRATIC_DIM), QUADRATIC_NOISE)
    zeros = np.zeros(QUADRATIC_EXAMPLES, np.float32)
    dataset = Dataset(
        "quadratic",
        "generated: DeepOBS quadratic data set, N(0, 0.6²) draws, seeds 42 and 43",
        x_train,
        zeros,
        x_test,
        zeros.copy(),
        0,
    )
    return subset(dataset, request.train_examples, request.seed), None


def noisy_2d_data(request: DataRequest) -> tuple[Dataset, None]:
    rng = np.random.RandomState(42)  # DeepOBS draws x, then y, from one generator
    x_train = np.stack([rng.normal(0.0, 1.0, TWO_D_EXAMPLES), rng.normal(0.0, 1.0, TWO_D_EXAMPLES)], 1)
    dataset = Dataset(
        "two-d",
        "generated: DeepOBS two_d data set, N(0, 1) draws, seed 42; noise-free test point",
        x_train.astype(np.float32),
        np.zeros(TWO_D_EXAMPLES, np.float32),
        np.zeros((1, 2), np.float32),
        np.zeros(1, np.float32),
        0,
    )
    return subset(dataset, request.train_examples, request.seed), None


class NoisyQuadratic(nn.Module):
    """Per example: 0.5 (θ - x)ᵀ Q (θ - x), θ from ones."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        theta = self.param("theta", nn.initializers.ones, (QUADRATIC_DIM,))
        offset = theta - x
        return 0.5 * jnp.einsum("bi,ij,bj->b", offset, jnp.asarray(quadratic_hessian(), jnp.float32), offset)


def rosenbrock(u: jax.Array, v: jax.Array) -> jax.Array:
    return (1.0 - u) ** 2 + 100.0 * (v - u**2) ** 2


def beale(u: jax.Array, v: jax.Array) -> jax.Array:
    return (1.5 - u + u * v) ** 2 + (2.25 - u + u * v**2) ** 2 + (2.625 - u + u * v**3) ** 2


class Noisy2D(nn.Module):
    """Per example: function(u, v) + u·x + v·y, the point (u, v) one parameter from `start`."""

    function: Callable[[jax.Array, jax.Array], jax.Array]
    start: tuple[float, float]

    @nn.compact
    def __call__(self, noise: jax.Array) -> jax.Array:
        point = self.param("point", lambda key: jnp.asarray(self.start, jnp.float32))
        u, v = point[0], point[1]
        return self.function(u, v) + u * noise[:, 0] + v * noise[:, 1]
