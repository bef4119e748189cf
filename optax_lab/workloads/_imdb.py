"""The IMDB workloads' data and models: the lesson's multi-hot rows (real or synthetic), and the
real reviews' words (`data.words`): each review's distinct word indices (the 10,000-word
multi-hot row's set columns) or its token sequence, as uint16 word rows for the embedding bag
(`optax_lab.embedding`), or the multi-hot rows packed into bits."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from optax_lab.config import ModelConfig
from optax_lab.data import Dataset, imdb, load_dataset, subset, tfds_reviews, words
from optax_lab.embedding import CHUNK, WORD_PAD
from optax_lab.errors import UsageError
from optax_lab.files import cache_dir
from optax_lab.workloads._mlp import MLP, build_model
from optax_lab.workloads._workload import DataRequest

__all__ = [
    "HOLDOUT_SEED",
    "mlp",
    "multi_hot",
    "multi_hot_bits",
    "real_archive",
    "real_reviews",
    "sequences",
    "word_ids",
]

HOLDOUT_SEED = 113  # the seed Keras' imdb.load_data shuffles with, which the book's x_train[:10000] relies on


def mlp(input: str = "features") -> Callable[[ModelConfig, int | None], MLP]:
    """The configurable MLP reading `input` (`INPUTS`: features, packed bits, or word indices
    through an embedding bag)."""

    def module(model: ModelConfig, num_words: int | None) -> MLP:
        return build_model(model, input, num_words or 0)

    return module


def multi_hot(request: DataRequest) -> tuple[Dataset, str | None]:
    """The lesson's data: multi-hot rows of the most frequent words, real IMDB when an archive is at
    hand, else the synthetic stand-in (with the warning)."""
    dataset, warning = load_dataset(request.dataset, request.num_words, request.imdb_archive)
    return subset(dataset, request.train_examples), warning


def real_archive(request: DataRequest):
    """The IMDB archive a words workload reads: there is no synthetic stand-in of words; a missing
    archive is one line saying where it was looked for and how to get it."""
    if request.dataset == "synthetic-imdb":
        raise UsageError(
            f"workload {request.workload} reads IMDB's words, which synthetic-imdb does not have: "
            f"drop --dataset synthetic-imdb, or leave {request.workload} out of --workloads"
        )
    archive = imdb.local_archive(request.imdb_archive)
    if archive is None and request.dataset == "imdb":
        archive = imdb.download_archive()
    if archive is None:
        raise UsageError(
            f"workload {request.workload} needs the IMDB archive {imdb.ARCHIVE_NAME}, found neither at "
            f"--imdb-archive, ${imdb.ENV_ARCHIVE} nor {cache_dir() / imdb.ARCHIVE_NAME}: give "
            f"--imdb-archive PATH, or add --dataset imdb to download it (84 MB) or --dataset imdb-tfds "
            "to read TFDS's imdb_reviews"
        )
    return archive


def real_reviews(request: DataRequest) -> words.Source:
    """The real reviews a words workload reads: TFDS's `imdb_reviews` with --dataset imdb-tfds (the
    same texts, hence the same features), else the archive (`real_archive`)."""
    if request.dataset == "imdb-tfds":
        return tfds_reviews()
    return words.archive_source(real_archive(request))


def _dataset(arrays: dict[str, np.ndarray], source: str, num_words: int) -> Dataset:
    """Word rows: uint16 with WORD_PAD in the empty slots (`optax_lab.embedding`), cut to the longest row
    rounded up to whole embedding-bag chunks; int32 padded with `num_words` for larger vocabularies."""

    def trimmed(x: np.ndarray) -> np.ndarray:  # no column that is padding in every row
        used = int((x < num_words).sum(axis=1).max(initial=1))
        used = -(-used // CHUNK) * CHUNK  # whole chunks: the embedding bag reads them without a copy
        x = np.pad(x[:, :used], ((0, 0), (0, max(0, used - x.shape[1]))), constant_values=num_words)
        if num_words >= WORD_PAD:  # a vocabulary too large for uint16 rows stays int32 (padding num_words)
            return np.ascontiguousarray(x)
        # Word rows: half the bytes of int32, and the form whose batches the program can bound
        # (`program_inputs.word_budgets`).
        return np.where(x < num_words, x, WORD_PAD).astype(np.uint16)

    return Dataset(
        "imdb",
        source,
        trimmed(arrays["x_train"]),
        arrays["y_train"].astype(np.float32),
        trimmed(arrays["x_test"]),
        arrays["y_test"].astype(np.float32),
        num_words,
    )


def word_ids(request: DataRequest, holdout: float | None = None) -> tuple[Dataset, None]:
    """Each review's distinct word indices (the multi-hot row's set columns), ascending, as word
    rows (`_dataset`). With `holdout`, the
    validation split is that share of the training reviews (a fixed random draw) and training
    keeps the rest, as the Keras book does (x_val = x_train[:10000] of Keras' shuffled 25,000)."""
    arrays, source = words.load_word_ids(real_reviews(request), request.num_words)
    if holdout is not None:
        order = np.random.default_rng(HOLDOUT_SEED).permutation(len(arrays["y_train"]))
        validation, training = np.split(order, [round(holdout * len(order))])
        arrays = {
            "x_train": arrays["x_train"][training],
            "y_train": arrays["y_train"][training],
            "x_test": arrays["x_train"][validation],
            "y_test": arrays["y_train"][validation],
        }
        source += f", {len(training)} training / {len(validation)} validation reviews of its training set"
    return subset(_dataset(arrays, source, request.num_words), request.train_examples), None


def packed_bits(ids: np.ndarray, num_words: int, chunk: int = 2048) -> np.ndarray:
    """The multi-hot rows of `ids` (padding: any index >= num_words), 8 columns to a byte:
    [n, ceil(N / 8)] uint8."""
    packed = np.zeros((len(ids), -(-num_words // 8)), np.uint8)
    for start in range(0, len(ids), chunk):  # a chunk's uint8 multi-hot at a time, not the whole split's
        rows = np.zeros((len(ids[start : start + chunk]), num_words + 1), np.uint8)
        np.put_along_axis(rows, np.minimum(ids[start : start + chunk].astype(np.int64), num_words), 1, axis=1)
        packed[start : start + chunk] = np.packbits(rows[:, :num_words], axis=1)
    return packed


def multi_hot_bits(request: DataRequest, holdout: float | None = None) -> tuple[Dataset, None]:
    """`word_ids` as multi-hot rows packed into bits (1,250 bytes a review at 10,000 words, where
    float32 rows take 40,000), for a Dense layer on the unpacked rows: ~13 GFLOP a seed-epoch on
    imdb-10k-mlp, where the embedding bag on the word rows gathers ~2 M rows (2.2-4.5x faster here,
    the more so the busier the box: the Dense layer needs both cores, the bag about one)."""
    dataset, _ = word_ids(request, holdout)
    return dataclasses.replace(
        dataset,
        x_train=packed_bits(dataset.x_train, request.num_words),
        x_test=packed_bits(dataset.x_test, request.num_words),
    ), None


def sequences(request: DataRequest, length: int) -> tuple[Dataset, None]:
    """Each review's word indices in order, its last `length` kept and the rest padding (masked)."""
    arrays, source = words.load_sequences(real_reviews(request), request.num_words, length)
    dataset = _dataset(arrays, source + f", the last {length} tokens of each review", request.num_words)
    return subset(dataset, request.train_examples), None
