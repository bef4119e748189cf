"""The Large Movie Review Dataset (Maas et al., ACL 2011) as Keras' `imdb.load_data` sees it,
multi-hot encoded.

The archive `aclImdb_v1.tar.gz` is read straight from its tar stream in one pass (no extraction,
no TensorFlow). Where it comes from, first match wins:

1. an explicit path (`--imdb-archive`, `imdb_archive=`) or env `OPTAX_LAB_IMDB_ARCHIVE`;
   checked by its layout, not by the official checksum, so trimmed copies work too;
2. `<cache>/aclImdb_v1.tar.gz`, where (3) puts it;
3. a download from Stanford (or the mirror in env `OPTAX_LAB_IMDB_URL`), checked against the
   official sha256 by pooch, which writes a temporary file and renames it only once it matches.

`<cache>` is env `OPTAX_LAB_CACHE`, else `pooch.os_cache("optax_lab")`. Tokenising 50,000
reviews takes seconds, so the encoded arrays are cached too, as `<cache>/imdb-<sha16>-w<N>.npz`
(sha16: the archive's sha256 prefix; N: num_words).

The encoding follows Keras: lower-case, `<br />` becomes a space, tokens are `[a-z0-9']+`; words
are ranked by their number of occurrences in the *training* reviews (ties by the word itself),
rank r (1-based) gets index r + 3; index 1 marks the start of every review, index 2 an
out-of-vocabulary word (index >= N, or never seen in training); 0 and 3 are never set. A review
becomes a multi-hot row of width N. Rows are sorted by label (neg, then pos), then review id.

The same indices in compact forms (word-id lists, sequences) are in `words.py`.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import re
import tarfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pooch

from optax_lab.errors import UsageError
from optax_lab.files import atomic_file, cache_dir

__all__ = [
    "ARCHIVE_NAME",
    "ENV_ARCHIVE",
    "ENV_URL",
    "IMDB_SHA256",
    "IMDB_URL",
    "REVIEW_FILE",
    "Encoded",
    "Reviews",
    "download_archive",
    "encode",
    "file_sha256",
    "load_imdb",
    "local_archive",
    "read_reviews",
    "review_texts",
    "tokenize",
    "word_index",
]

IMDB_URL = "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
ARCHIVE_NAME = "aclImdb_v1.tar.gz"
ENV_ARCHIVE = "OPTAX_LAB_IMDB_ARCHIVE"
ENV_URL = "OPTAX_LAB_IMDB_URL"

START, OOV, INDEX_FROM = 1, 2, 3  # Keras' start_char, oov_char, index_from
SPLITS, LABELS = ("train", "test"), ("neg", "pos")  # label index = position: neg 0, pos 1
REVIEW_FILE = re.compile(r"aclImdb/(train|test)/(neg|pos)/(\d+)_\d+\.txt")
_TOKEN = re.compile(r"[a-z0-9']+")


class Encoded(NamedTuple):
    """Multi-hot reviews (uint8 [n, num_words]) and labels (uint8 [n]) of both splits."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def local_archive(imdb_archive: str | os.PathLike | None = None) -> Path | None:
    """The archive to read without downloading: explicit path, env, or cache; None if none."""
    for given, origin in ((imdb_archive, "--imdb-archive"), (os.environ.get(ENV_ARCHIVE), ENV_ARCHIVE)):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise UsageError(
                    f"IMDB archive {str(path)!r} (from {origin}) is not a file: give the path of "
                    f"{ARCHIVE_NAME}, or unset it to use the cached or downloaded archive"
                )
            return path
    cached = cache_dir() / ARCHIVE_NAME
    return cached if cached.is_file() else None  # pooch only ever puts a verified file there


def download_archive(url: str | None = None, sha256: str = IMDB_SHA256, cache: Path | None = None) -> Path:
    """Download the archive into the cache, checked against `sha256`; returns its path.

    `url` defaults to env `OPTAX_LAB_IMDB_URL`, else Stanford's. A failed download or a checksum
    mismatch leaves nothing in the cache and raises UsageError.
    """
    import requests  # pooch's own dependency; imported late like pooch does, it is slow

    url = url or os.environ.get(ENV_URL) or IMDB_URL
    cache = Path(cache) if cache is not None else cache_dir()
    fix = f"retry, set {ENV_URL} to a mirror, or download it yourself and pass --imdb-archive PATH"
    bar = _RichDownloadBar()
    downloader = pooch.HTTPDownloader(progressbar=bar, chunk_size=1 << 16)
    try:
        return Path(
            pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=ARCHIVE_NAME, path=cache, downloader=downloader)
        )
    except requests.exceptions.RequestException as error:
        reason = type(error).__name__
        if getattr(error, "response", None) is not None:
            reason = f"HTTP {error.response.status_code}"
        raise UsageError(f"could not download the IMDB archive from {url} ({reason}): {fix}") from None
    except ValueError as error:  # pooch's hash mismatch: "... expected X but got Y ..."
        got = re.search(r"but got (\w+)", str(error))
        raise UsageError(
            f"the IMDB archive from {url} has sha256 {got[1] if got else '?'}, expected {sha256}"
            f" (download corrupted or wrong file; nothing was kept): {fix}"
        ) from None
    finally:
        bar.close()  # pooch closes it only after a complete download


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def load_imdb(archive: Path, num_words: int = 100) -> tuple[Encoded, str]:
    """The encoded dataset and a human description of its source (file name and sha256 prefix).

    Served from `<cache>/imdb-<sha16>-w<N>.npz` when there; otherwise tokenised and cached.
    """
    archive = Path(archive)
    sha = file_sha256(archive)
    source = f"{archive.name} (sha256 {sha[:16]})"  # a name and checksum, never a machine path
    cached = cache_dir() / f"imdb-{sha[:16]}-w{num_words}.npz"
    encoded = _read_cached(cached)
    if encoded is None:
        reviews = read_reviews(archive)
        encoded = encode(reviews, num_words)
        _write_atomically(cached, encoded)
    return encoded, source


def _read_cached(path: Path) -> Encoded | None:
    try:
        with np.load(path) as saved:
            return Encoded(*(saved[name] for name in Encoded._fields))
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error):  # absent or torn: rebuild
        return None


def _write_atomically(path: Path, encoded: Encoded) -> None:
    with atomic_file(path) as f:  # readers see the whole file or none
        np.savez_compressed(f, **encoded._asdict())


class Reviews(NamedTuple):
    """Tokenised reviews: word ids (int32, one array per review) into `words`, and labels."""

    words: list[str]
    ids: dict[str, list[np.ndarray]]  # split -> reviews
    labels: dict[str, np.ndarray]  # split -> uint8 labels


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("<br />", " "))


def review_texts(archive: Path, advance: Callable[[int], None] | None = None) -> Iterator[tuple[str, int, int, str]]:
    """One pass over the tar stream: (split, label, review id, text) of every labelled train/test
    review, in archive order; `advance` is told the bytes read so far.

    Raises UsageError when `archive` is not a gzip tar holding aclImdb/{train,test}/{pos,neg}.
    """
    fix = f"pass the official {ARCHIVE_NAME}, or omit --imdb-archive/{ENV_ARCHIVE} to download it"
    seen: set[tuple[str, int]] = set()
    with open(archive, "rb") as raw:
        try:
            with tarfile.open(fileobj=raw, mode="r|gz") as tar:
                for member in tar:
                    match = REVIEW_FILE.fullmatch(member.name)
                    if match and member.isfile():
                        text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                        seen.add((match[1], LABELS.index(match[2])))
                        yield match[1], LABELS.index(match[2]), int(match[3]), text
                    if advance:
                        advance(raw.tell())
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
            raise UsageError(f"IMDB archive {str(archive)!r} is not a readable .tar.gz ({error}): {fix}") from None
    missing = [(split, label) for split in SPLITS for label in (0, 1) if (split, label) not in seen]
    if missing:
        split, label = missing[0]
        raise UsageError(
            f"{str(archive)!r} is not the {ARCHIVE_NAME} archive (no aclImdb/{split}/"
            f"{LABELS[label]}/*.txt inside): {fix}"
        )


def read_reviews(archive: Path) -> Reviews:
    """Every labelled train/test review tokenised, in memory (`review_texts`' one pass)."""
    word_id: defaultdict[str, int] = defaultdict()
    word_id.default_factory = word_id.__len__  # an unseen word gets the next id
    found: dict[tuple[str, int], list[tuple[int, np.ndarray]]] = {(s, label): [] for s in SPLITS for label in (0, 1)}
    with _Progress(f"tokenising {archive.name}", archive.stat().st_size) as advance:
        for split, label, review_id, text in review_texts(archive, advance):
            tokens = tokenize(text)
            found[split, label].append(
                (review_id, np.fromiter(map(word_id.__getitem__, tokens), np.int32, len(tokens)))
            )
    ids, labels = {}, {}
    for split in SPLITS:
        rows = [(label, review_id, review) for label in (0, 1) for review_id, review in found[split, label]]
        rows.sort(key=lambda row: row[:2])
        ids[split] = [review for _, _, review in rows]
        labels[split] = np.array([label for label, _, _ in rows], np.uint8)
    return Reviews(list(word_id), ids, labels)


def word_index(reviews: Reviews, num_words: int) -> np.ndarray:
    """Keras' index of every word id (from training-set word counts): rank + 3, or N for a word
    outside the N-word vocabulary."""
    train_ids = np.concatenate(reviews.ids["train"])
    counts = np.bincount(train_ids, minlength=len(reviews.words))
    seen = np.flatnonzero(counts)
    vocab_size = max(num_words - INDEX_FROM - 1, 0)  # ranks whose index r + 3 < N
    by_count = counts.tolist()
    top = heapq.nsmallest(vocab_size, seen.tolist(), key=lambda i: (-by_count[i], reviews.words[i]))
    index = np.full(len(reviews.words), num_words, np.int64)  # anything >= N is out of vocabulary
    index[np.array(top, np.int64)] = np.arange(1, len(top) + 1) + INDEX_FROM
    return index


def encode(reviews: Reviews, num_words: int) -> Encoded:
    """Keras-style indices from training-set word counts, then multi-hot rows of width N."""
    index = word_index(reviews, num_words)
    arrays = []
    for split in SPLITS:
        docs = reviews.ids[split]
        x = np.zeros((len(docs), num_words), np.uint8)
        rows = np.repeat(np.arange(len(docs)), [len(d) for d in docs])
        cols = index[np.concatenate(docs)]
        known = cols < num_words
        x[rows[known], cols[known]] = 1
        x[rows[~known], OOV] = 1
        x[:, START] = 1
        arrays += [x, reviews.labels[split]]
    return Encoded(*arrays)


class _RichDownloadBar:
    """The progress-bar object pooch accepts (`total`, `update`, `reset`, `close`), drawn by rich
    on stderr; pooch's own bar would need tqdm."""

    def __init__(self):
        self.total, self._done, self._bar = 0, 0, None

    def update(self, n: int) -> None:
        if self._bar is None:
            self._bar = _Progress(f"downloading {ARCHIVE_NAME}", self.total or None).__enter__()
        self._done += n
        self._bar(min(self._done, self.total) if self.total else self._done)

    def reset(self) -> None:
        self._done = 0

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _Progress:
    """A rich progress bar on stderr (silent unless a terminal): `with _Progress(...) as advance:
    advance(completed)`."""

    def __init__(self, description: str, total: int | None):
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._task = self._progress.add_task(description, total=total)

    def __enter__(self):
        self._progress.start()
        return self

    def __call__(self, completed: int) -> None:
        self._progress.update(self._task, completed=completed)

    def close(self) -> None:
        self._progress.stop()

    def __exit__(self, *exc) -> None:
        self.close()
