"""Data: the reviews the lesson trains on, as multi-hot float32 arrays. The second stage; imports
nothing of ours but the errors, files and devices modules.

Two datasets, one shape: "imdb" (the real Large Movie Review Dataset, see `imdb.py`; "imdb-tfds"
reads the same reviews from TensorFlow Datasets, see `tfds.py` and `words.texts_source`) and
"synthetic-imdb" (an embedded stand-in, see `synthetic.py`). `load_dataset(None)` takes IMDB
when its archive is at hand locally and the synthetic set otherwise, with a warning; it never
downloads unasked.

Environment: OPTAX_LAB_IMDB_ARCHIVE (a local aclImdb_v1.tar.gz), OPTAX_LAB_CACHE (the cache
folder, default `pooch.os_cache("optax_lab")`), OPTAX_LAB_IMDB_URL (a download mirror).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from optax_lab.data import imdb, synthetic, tfds, words
from optax_lab.devices import host_available_bytes
from optax_lab.errors import UsageError

__all__ = [
    "DATASETS",
    "NO_ARCHIVE_WARNING",
    "Dataset",
    "check_dataset_name",
    "load_dataset",
    "subset",
    "subset_rows",
    "tfds_reviews",
]

DATASETS = ("imdb", "imdb-tfds", "synthetic-imdb")

# Both splits (IMDB's 25,000 + 25,000 reviews; the synthetic set's the same), and the bytes a
# multi-hot cell takes while loading: the uint8 encoding, the float32 copy, the device's copy.
DATASET_EXAMPLES = synthetic.NUM_TRAIN + synthetic.NUM_TEST
BYTES_PER_CELL = 1 + 4 + 4
MEMORY_SHARE = 0.8  # of the host's available memory: the rest is the program's and the OS's

NO_ARCHIVE_WARNING = (
    f"no IMDB archive found locally (give --imdb-archive PATH or set {imdb.ENV_ARCHIVE}); "
    "using the embedded synthetic-imdb set (--dataset imdb downloads the real one)"
)


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: compared and hashed by identity, not by array
class Dataset:
    """Multi-hot reviews x [N, num_words] and labels y [N] in {0, 1} (pos = 1), float32 and
    read-only (copy before changing them in place).

    source: where it came from, for reports: the archive file name and sha256 prefix, or
    "synthetic, seed S".
    """

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_words: int

    def __post_init__(self):
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            array.setflags(write=False)

    def record(self) -> dict:
        """What results.json says of it."""
        n_train, n_test = int(self.x_train.shape[0]), int(self.x_test.shape[0])
        return {
            "name": self.name,
            "source": self.source,
            "n_train": n_train,
            "n_test": n_test,
            "num_words": self.num_words,
        }


def check_dataset_name(name: str | None) -> None:
    """--dataset: one of DATASETS, or None (IMDB when its archive is at hand, else synthetic)."""
    if name is not None and name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")


def load_dataset(
    name: str | None, num_words: int = 100, imdb_archive: str | None = None, seed: int = 0
) -> tuple[Dataset, str | None]:
    """The dataset `name` ("imdb", "imdb-tfds", "synthetic-imdb", or None: IMDB if available
    locally, else synthetic) and a one-line warning for the user, or None.

    "imdb" looks for the archive at `imdb_archive`, env OPTAX_LAB_IMDB_ARCHIVE, then the cache,
    and downloads it (84 MB, once) when none is there; "imdb-tfds" reads TFDS's `imdb_reviews`
    (the same texts, the same features). `seed` only matters for the synthetic set.
    """
    check_dataset_name(name)
    if not isinstance(num_words, int) or num_words < 4:
        raise UsageError(
            f"--num-words {num_words!r} must be an integer of at least 4 (indices 0-3 are reserved, like Keras)"
        )
    _check_fits(num_words)
    if name == "synthetic-imdb":
        warning = "--imdb-archive is ignored with --dataset synthetic-imdb" if imdb_archive else None
        return _synthetic(num_words, seed), warning
    if name == "imdb-tfds":
        warning = "--imdb-archive is ignored with --dataset imdb-tfds" if imdb_archive else None
        encoded, source = words.load_encoded(tfds_reviews(), num_words)
        return Dataset("imdb", source, *(np.asarray(a, np.float32) for a in encoded), num_words), warning
    archive = imdb.local_archive(imdb_archive)
    if archive is None and name is None:
        return _synthetic(num_words, seed), NO_ARCHIVE_WARNING
    if archive is None:
        archive = imdb.download_archive()
    encoded, source = imdb.load_imdb(archive, num_words)
    arrays = (np.asarray(a, np.float32) for a in encoded)
    return Dataset("imdb", source, *arrays, num_words), None


def tfds_reviews() -> words.Source:
    """IMDB's labelled reviews from TFDS `imdb_reviews` (read from its data directory, prepared
    there on first use), as a source of the same features the archive gives for the same texts."""
    texts, origin = tfds.imdb_texts()
    return words.texts_source(texts, origin)


def _check_fits(num_words: int) -> None:
    """Refuse, before allocating anything, a vocabulary whose multi-hot rows cannot fit the host."""
    need = DATASET_EXAMPLES * num_words * BYTES_PER_CELL
    available = host_available_bytes()
    if need > MEMORY_SHARE * available:
        most = int(MEMORY_SHARE * available // (DATASET_EXAMPLES * BYTES_PER_CELL))
        raise UsageError(
            f"--num-words {num_words}: the dataset would need about {need / 1e9:.3g} GB "
            f"({DATASET_EXAMPLES} reviews x {num_words} words, encoded and as float32 on the host "
            f"and the device) but this host has {available / 1e9:.3g} GB available: "
            f"use at most --num-words {most}"
        )


def _synthetic(num_words: int, seed: int) -> Dataset:
    return Dataset("synthetic-imdb", f"synthetic, seed {seed}", *synthetic.generate(num_words, seed), num_words)


def subset(dataset: Dataset, train_examples: int | None, seed: int = 0) -> Dataset:
    """`dataset` with a random, class-balanced `train_examples` of its training reviews (the test
    split whole); None or the full size returns it unchanged. The draw depends only on `seed`."""
    n = dataset.x_train.shape[0]
    if train_examples is None or train_examples == n:
        return dataset
    if not 2 <= train_examples <= n:
        raise UsageError(f"--train-examples {train_examples} must be between 2 and the {n} training reviews")
    rng = np.random.default_rng(seed)
    labels = dataset.y_train > 0.5
    positives = rng.permutation(np.flatnonzero(labels))[: train_examples // 2]
    negatives = rng.permutation(np.flatnonzero(~labels))[: train_examples - positives.size]
    chosen = np.sort(np.concatenate([positives, negatives]))
    if chosen.size < train_examples:  # one class too small for half: top up from the rest
        rest = np.setdiff1d(np.arange(n), chosen)
        chosen = np.sort(np.concatenate([chosen, rng.permutation(rest)[: train_examples - chosen.size]]))
    return dataclasses.replace(
        dataset,
        x_train=dataset.x_train[chosen],
        y_train=dataset.y_train[chosen],
        source=f"{dataset.source}, {train_examples} of {n} training reviews",
    )


def subset_rows(dataset: Dataset, train_examples: int | None, seed: int = 0) -> Dataset:
    """`dataset` with `train_examples` of its training rows drawn at random (a draw that depends
    only on `seed`), for targets that are not labels; None or the full size returns it unchanged."""
    n = dataset.x_train.shape[0]
    if train_examples is None or train_examples == n:
        return dataset
    if not 2 <= train_examples <= n:
        raise UsageError(f"--train-examples {train_examples} must be between 2 and the {n} training examples")
    chosen = np.sort(np.random.default_rng(seed).permutation(n)[:train_examples])
    return dataclasses.replace(
        dataset,
        x_train=dataset.x_train[chosen],
        y_train=dataset.y_train[chosen],
        source=f"{dataset.source}, {train_examples} of {n} training examples",
    )
