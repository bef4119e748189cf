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

Both come from one tokenisation of the reviews' `Source`, cached as `<cache>/imdb-<key>-tokens.npz`;
each encoding is cached beside it. A source is the archive (`archive_source`, key: its sha256
prefix) or the same reviews given as texts, e.g. TFDS's `imdb_reviews` (`texts_source`, key: the
texts' sha256 prefix): tokenised by the same `imdb.tokenize`, ranked by the same `imdb.word_index`,
so the same texts give the same features from either (`load_encoded`: the lesson's multi-hot rows).
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from optax_lab.data import imdb
from optax_lab.files import atomic_file, cache_dir

__all__ = [
    "Source",
    "archive_source",
    "cached_arrays",
    "load_encoded",
    "load_sequences",
    "load_word_ids",
    "reviews_from_texts",
    "sequences",
    "texts_source",
    "word_ids",
]

Arrays = dict[str, np.ndarray]  # "x_train", "y_train", "x_test", "y_test"
Texts = Mapping[str, tuple[Sequence[str], np.ndarray]]  # split -> (review texts, labels neg 0 / pos 1)


class Source(NamedTuple):
    """Reviews to read: `key` names their content in the cache's file names, `text` says where they
    came from (a name and a checksum, never a machine path), `read` tokenises them."""

    key: str
    text: str
    read: Callable[[], imdb.Reviews]


def archive_source(archive: Path) -> Source:
    archive = Path(archive)
    sha = imdb.file_sha256(archive)
    return Source(sha[:16], f"{archive.name} (sha256 {sha[:16]})", lambda: imdb.read_reviews(archive))


def texts_source(texts: Texts, origin: str) -> Source:
    """Reviews given as texts, keyed by the sha256 of their labels and texts."""
    digest = hashlib.sha256()
    for split in imdb.SPLITS:
        docs, labels = texts[split]
        digest.update(np.asarray(labels, np.uint8).tobytes())
        for doc in docs:
            digest.update(doc.encode("utf-8", errors="surrogatepass") + b"\0")
    sha = digest.hexdigest()[:16]
    return Source(f"text-{sha}", f"{origin} (sha256 {sha} of its texts)", lambda: reviews_from_texts(texts))


def reviews_from_texts(texts: Texts) -> imdb.Reviews:
    """Texts tokenised as `imdb.read_reviews` tokenises the archive's (`imdb.tokenize`), each split's
    rows ordered as the archive's are, by label (neg, then pos; within a label as given)."""
    word_id: dict[str, int] = {}
    ids, labels = {}, {}
    for split in imdb.SPLITS:
        docs, split_labels = texts[split]
        order = np.argsort(np.asarray(split_labels), kind="stable")
        ids[split] = [
            np.array([word_id.setdefault(token, len(word_id)) for token in imdb.tokenize(docs[i])], np.int32)
            for i in order
        ]
        labels[split] = np.asarray(split_labels, np.uint8)[order]
    return imdb.Reviews(list(word_id), ids, labels)


def load_encoded(source: Source, num_words: int) -> tuple[imdb.Encoded, str]:
    """The lesson's multi-hot rows (`imdb.encode`) of `source`'s reviews, cached as
    `<cache>/imdb-<key>-w<N>.npz` (the archive's file of `imdb.load_imdb`), and its source text."""
    arrays = cached_arrays(
        cache_dir() / f"imdb-{source.key}-w{num_words}.npz", lambda: imdb.encode(source.read(), num_words)._asdict()
    )
    return imdb.Encoded(**{name: arrays[name] for name in imdb.Encoded._fields}), source.text


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


def load_word_ids(source: Source, num_words: int) -> tuple[Arrays, str]:
    """`word_ids` of the source's reviews (cached) and its source text."""
    return _load(source, f"ids-w{num_words}", lambda reviews: word_ids(reviews, num_words))


def load_sequences(source: Source, num_words: int, length: int) -> tuple[Arrays, str]:
    """`sequences` of the source's reviews (cached) and its source text."""
    return _load(source, f"seq{length}-w{num_words}", lambda reviews: sequences(reviews, num_words, length))


def _load(source: Source, form: str, encode: Callable[[imdb.Reviews], Arrays]) -> tuple[Arrays, str]:
    arrays = cached_arrays(
        cache_dir() / f"imdb-{source.key}-{form}.npz",
        lambda: encode(_tokens(source, cache_dir() / f"imdb-{source.key}-tokens.npz")),
    )
    return arrays, source.text


def _tokens(source: Source, path: Path) -> imdb.Reviews:
    """The tokenised reviews, from the cache when there: word ids flat per split with offsets."""

    def flatten() -> Arrays:
        reviews = source.read()
        saved = {"words": np.array(reviews.words, dtype=str)}
        for split in imdb.SPLITS:
            saved[f"ids_{split}"] = np.concatenate(reviews.ids[split]).astype(np.int32)
            saved[f"offsets_{split}"] = np.cumsum([0] + [len(r) for r in reviews.ids[split]])
            saved[f"labels_{split}"] = reviews.labels[split]
        return saved

    saved = cached_arrays(path, flatten)
    ids = {split: np.split(saved[f"ids_{split}"], saved[f"offsets_{split}"][1:-1]) for split in imdb.SPLITS}
    return imdb.Reviews(saved["words"].tolist(), ids, {split: saved[f"labels_{split}"] for split in imdb.SPLITS})


def cached_arrays(path: Path, build: Callable[[], Arrays]) -> Arrays:
    """The arrays saved at `path`, else built and saved there (atomically: whole or absent)."""
    try:
        with np.load(path) as saved:
            return {name: saved[name] for name in saved.files}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error):  # absent or torn: rebuild
        arrays = build()
        with atomic_file(path) as f:
            np.savez_compressed(f, **arrays)
        return arrays
