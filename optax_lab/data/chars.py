"""Characters of the IMDB reviews, for a character-level language model: windows of a review's
text as byte-sized symbol ids, next-character targets beside them.

The symbols: 0 for any character outside printable ASCII, 1 for a line break (the archive's
`<br />`), and 2 + (code - 32) for the printable ASCII characters 32-126: 97 symbols. Each review
gives at most one window, at an offset drawn from a fixed seed, so the windows sample many
reviews' text; the training windows come from the archive's train split and the held-out ones
from its test split. Reading the archive's tar stream takes seconds, so the windows are cached
in the user cache (`<cache>/imdb-<sha16>-chars-c<context>-<train>-<val>.npz`), never in the project.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from optax_lab.data import imdb, words
from optax_lab.errors import UsageError
from optax_lab.files import cache_dir

__all__ = ["VOCABULARY", "Windows", "encode_text", "load_windows", "read_texts", "windows"]

VOCABULARY = 97
WINDOW_SEED = 113  # the offsets' and the reviews' order; fixed, so every run sees the same text
_TABLE = np.zeros(256, np.uint8)
_TABLE[10] = 1
_TABLE[32:127] = np.arange(2, VOCABULARY, dtype=np.uint8)


class Windows(NamedTuple):
    """Inputs [N, T] and next-character targets [N, T] (uint8 symbol ids) of both splits."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def encode_text(text: str) -> np.ndarray:
    """A review's text as symbol ids (uint8): `<br />` is a line break."""
    codes = np.frombuffer(text.replace("<br />", "\n").encode("utf-32-le"), np.uint32)
    return np.where(codes < _TABLE.size, _TABLE[np.minimum(codes, _TABLE.size - 1)], 0).astype(np.uint8)


def read_texts(archive: Path) -> dict[str, list[str]]:
    """Every labelled review's text per split, ordered by label (neg, then pos) and review id."""
    found: dict[str, list[tuple[int, int, str]]] = {split: [] for split in imdb.SPLITS}
    for split, label, review_id, text in imdb.review_texts(archive):
        found[split].append((label, review_id, text))
    return {split: [text for *_, text in sorted(rows)] for split, rows in found.items()}


def _split_windows(texts: list[str], context: int, count: int, rng: np.random.Generator, split: str) -> np.ndarray:
    """`count` windows of context + 1 symbols, one from each of the first reviews (in a fixed
    random order) long enough to hold one."""
    need = context + 1
    chosen = []
    for index in rng.permutation(len(texts)):
        symbols = encode_text(texts[index])
        if symbols.size >= need:
            start = rng.integers(0, symbols.size - need + 1)
            chosen.append(symbols[start : start + need])
            if len(chosen) == count:
                return np.stack(chosen)
    lengths = np.sort([len(text.replace("<br />", "\n")) for text in texts])[::-1]
    longest = int(lengths[min(count, len(lengths)) - 1]) - 1 if len(lengths) else 0
    raise UsageError(
        f"a char LM context of {context} characters is longer than the {split} reviews allow: only "
        f"{len(chosen)} of them hold {need} characters and it needs {count}; use a context of at most {longest}"
    )


def windows(texts: dict[str, list[str]], context: int, train: int, val: int) -> Windows:
    """`train` training windows and `val` held-out ones of `context` characters (inputs, and the
    next characters as targets)."""
    rng = np.random.default_rng(WINDOW_SEED)
    train_W = _split_windows(texts["train"], context, train, rng, "training")
    val_W = _split_windows(texts["test"], context, val, rng, "held-out")
    return Windows(train_W[:, :-1], train_W[:, 1:], val_W[:, :-1], val_W[:, 1:])


def load_windows(archive: Path, context: int, train: int, val: int) -> tuple[Windows, str]:
    """`windows` of the archive's reviews (cached) and the source text (file name, sha256 prefix)."""
    source = words.archive_source(archive)
    arrays = words.cached_arrays(
        cache_dir() / f"imdb-{source.key}-chars-c{context}-{train}-{val}.npz",
        lambda: windows(read_texts(Path(archive)), context, train, val)._asdict(),
    )
    return Windows(**arrays), source.text
