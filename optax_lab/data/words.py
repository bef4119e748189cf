"""IMDB reviews as word indices rather than multi-hot rows: the compact inputs of the workloads
whose first layer is an embedding bag (`optax_lab.embedding`).

Indices are Keras' (`imdb.word_index`: rank + 3, 1 the start marker, 2 out of vocabulary), and
`pad = num_words` marks an empty slot, so an embedding table of `num_words` rows plus one zero row
reads every array here. Two forms:

- `word_ids`: each review's *distinct* indices, ascending, padded to the longest review: exactly
  the set columns of its multi-hot row (start marker and out-of-vocabulary included), in
  [n, longest] int32 instead of [n, num_words] float32 (588 vs 10,000 columns at 10,000 words).
- `sequences`: each review's indices in order with the start marker first, the last `length`
  kept and padded after them (Keras' `pad_sequences` keeps the last `maxlen` too).

Both come from one tokenisation of the archive, cached as `<cache>/imdb-<sha16>-tokens.npz`; each
encoding is cached beside it.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from optax_lab.data import imdb
from optax_lab.files import atomic_file, cache_dir

__all__ = ["load_sequences", "load_word_ids", "sequences", "word_ids"]

Arrays = dict[str, np.ndarray]  # "x_train", "y_train", "x_test", "y_test"


def word_ids(reviews: imdb.Reviews, num_words: int) -> Arrays:
    """Each review's distinct indices (the multi-hot row's set columns), ascending, padded with
    `num_words` to the longest review of its split."""
    index = imdb.word_index(reviews, num_words)
    arrays = {}
    for split in imdb.SPLITS:
        rows = []
        for review in reviews.ids[split]:
            columns = index[review]
            columns = np.where(columns < num_words, columns, imdb.OOV)  # unknown words set the OOV column
            rows.append(np.union1d(columns, [imdb.START]))
        arrays[f"x_{split}"] = _padded(rows, max(map(len, rows)), num_words)
        arrays[f"y_{split}"] = reviews.labels[split]
    return arrays


def sequences(reviews: imdb.Reviews, num_words: int, length: int) -> Arrays:
    """Each review's indices in order, the start marker first, its last `length` kept (Keras'
    `pad_sequences(truncating="pre")`), padded with `num_words` after them."""
    index = imdb.word_index(reviews, num_words)
    arrays = {}
    for split in imdb.SPLITS:
        rows = []
        for review in reviews.ids[split]:
            tokens = np.concatenate([[imdb.START], index[review]])
            rows.append(np.where(tokens < num_words, tokens, imdb.OOV)[-length:])
        arrays[f"x_{split}"] = _padded(rows, length, num_words)
        arrays[f"y_{split}"] = reviews.labels[split]
    return arrays


def _padded(rows: list[np.ndarray], width: int, pad: int) -> np.ndarray:
    out = np.full((len(rows), width), pad, np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def load_word_ids(archive: Path, num_words: int) -> tuple[Arrays, str]:
    """`word_ids` of the archive's reviews (cached) and the source text (file name, sha256 prefix)."""
    return _load(archive, f"ids-w{num_words}", lambda reviews: word_ids(reviews, num_words))


def load_sequences(archive: Path, num_words: int, length: int) -> tuple[Arrays, str]:
    """`sequences` of the archive's reviews (cached) and the source text."""
    return _load(archive, f"seq{length}-w{num_words}", lambda reviews: sequences(reviews, num_words, length))


def _load(archive: Path, form: str, encode: Callable[[imdb.Reviews], Arrays]) -> tuple[Arrays, str]:
    archive = Path(archive)
    sha = imdb.file_sha256(archive)
    source = f"{archive.name} (sha256 {sha[:16]})"  # a name and checksum, never a machine path
    arrays = _cached(
        cache_dir() / f"imdb-{sha[:16]}-{form}.npz",
        lambda: encode(_tokens(archive, cache_dir() / f"imdb-{sha[:16]}-tokens.npz")),
    )
    return arrays, source


def _tokens(archive: Path, path: Path) -> imdb.Reviews:
    """The tokenised reviews, from the cache when there: word ids flat per split with offsets."""

    def flatten() -> Arrays:
        reviews = imdb.read_reviews(archive)
        saved = {"words": np.array(reviews.words, dtype=str)}
        for split in imdb.SPLITS:
            saved[f"ids_{split}"] = np.concatenate(reviews.ids[split]).astype(np.int32)
            saved[f"offsets_{split}"] = np.cumsum([0] + [len(r) for r in reviews.ids[split]])
            saved[f"labels_{split}"] = reviews.labels[split]
        return saved

    saved = _cached(path, flatten)
    ids = {split: np.split(saved[f"ids_{split}"], saved[f"offsets_{split}"][1:-1]) for split in imdb.SPLITS}
    return imdb.Reviews(saved["words"].tolist(), ids, {split: saved[f"labels_{split}"] for split in imdb.SPLITS})


def _cached(path: Path, build: Callable[[], Arrays]) -> Arrays:
    """The arrays saved at `path`, else built and saved there (atomically: whole or absent)."""
    try:
        with np.load(path) as saved:
            return {name: saved[name] for name in saved.files}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error):  # absent or torn: rebuild
        arrays = build()
        with atomic_file(path) as f:
            np.savez_compressed(f, **arrays)
        return arrays
