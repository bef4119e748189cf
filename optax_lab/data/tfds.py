"""TensorFlow Datasets as a source: an image-classification dataset as uint8 NHWC images and int32
labels, and IMDB's review texts (`imdb_reviews`), read from the user's TFDS data directory.

The directory is TFDS's own: env `TFDS_DATA_DIR`, else `~/tensorflow_datasets`. A dataset not
prepared there is downloaded and prepared once, as ArrayRecord files, which `as_data_source` reads
without TensorFlow; one prepared as TFRecord (`tfds build`'s default) is read with TensorFlow.
Offline, an unprepared dataset is one line naming the directory and the command that prepares it
elsewhere: whether the dataset is prepared is read from the builder, and the download's hosts are
probed for a few seconds first, since TFDS's downloader retries a dead connection for minutes.

tensorflow_datasets is imported here only, on first use (the `tfds` extra).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import numpy as np

from optax_lab.errors import UsageError, import_extra

__all__ = ["ENV_DATA_DIR", "ImageArrays", "ImageInfo", "data_dir", "image_info", "images", "imdb_texts"]

ENV_DATA_DIR = "TFDS_DATA_DIR"
IMDB = "imdb_reviews/plain_text"
EVAL_SPLITS = ("test", "validation")  # the first of these a dataset has is the validation split here
PROBE_SECONDS = 5.0
READ_CHUNK = 4096  # examples a batched read decodes at once


class ImageInfo(NamedTuple):
    """What a TFDS image-classification dataset declares: its full name, image shape (H, W, C)
    and number of classes."""

    full_name: str
    shape: tuple[int, int, int]
    classes: int


class ImageArrays(NamedTuple):
    """Both splits: images uint8 [N, H, W, C], labels int32 [N], and where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def data_dir() -> Path:
    """TFDS's data directory: env TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    return Path(os.environ.get(ENV_DATA_DIR) or Path.home() / "tensorflow_datasets").expanduser()


def _tfds(what: str):
    return import_extra("tensorflow_datasets", "tfds", what)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """TFDS's absl warnings (a variant folder without dataset_info.json...) kept off stderr, where
    a bad input is one line."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _builder(name: str, what: str):
    tfds = _tfds(what)
    with _quiet():
        try:
            return tfds, tfds.builder(name, data_dir=str(data_dir()))
        except tfds.core.DatasetNotFoundError:
            raise UsageError(
                f"{what}: TFDS has no dataset {name!r}: name one of https://www.tensorflow.org/datasets/catalog"
            ) from None


def image_info(name: str) -> ImageInfo:
    """The dataset's declared image shape and classes (from its builder: nothing is read); a
    dataset without an `image` Image feature of fixed shape and a `label` ClassLabel is one line."""
    tfds, builder = _builder(name, f"TFDS image dataset {name}")
    with _quiet():
        features = builder.info.features
    image, label = (features[key] if key in features.keys() else None for key in ("image", "label"))
    need = "an image-classification dataset: an `image` Image feature and a `label` ClassLabel"
    if not isinstance(image, tfds.features.Image) or not isinstance(label, tfds.features.ClassLabel):
        raise UsageError(f"TFDS dataset {name} is not {need} (it has {', '.join(features)})")
    if None in image.shape:
        raise UsageError(
            f"TFDS dataset {name}'s images vary in size {image.shape}: a workload needs images of one shape"
        )
    return ImageInfo(builder.info.full_name, tuple(image.shape), label.num_classes)


@functools.cache
def _image_arrays(name: str, directory: Path) -> ImageArrays:
    del directory  # the cache's key: the same name in another data directory is another dataset
    info = image_info(name)
    tfds, builder = _builder(name, f"TFDS image dataset {name}")
    _prepare(tfds, builder, name)
    splits = {"train": "train", "eval": _eval_split(builder, name)}
    arrays = {key: _read(tfds, builder, split, name) for key, split in splits.items()}
    x_train, y_train = _stacked(arrays["train"])
    x_test, y_test = _stacked(arrays["eval"])
    for array in (x_train, y_train, x_test, y_test):
        array.setflags(write=False)
    source = f"TFDS {info.full_name} ({len(y_train)} train / {len(y_test)} {splits['eval']})"
    return ImageArrays(x_train, y_train, x_test, y_test, source)


def images(name: str) -> ImageArrays:
    """The dataset's train split and its test (else validation) split, read once per process."""
    return _image_arrays(name, data_dir())


def imdb_texts() -> tuple[dict[str, tuple[list[str], np.ndarray]], str]:
    """IMDB's labelled reviews from TFDS `imdb_reviews` (the Stanford archive's texts, stripped):
    split -> (texts, uint8 labels, neg 0 and pos 1), and the source text."""
    what = "--dataset imdb-tfds (IMDB's reviews from TFDS)"
    tfds, builder = _builder(IMDB, what)
    _prepare(tfds, builder, IMDB)
    texts = {}
    for split in ("train", "test"):
        columns = _read(tfds, builder, split, IMDB)
        texts[split] = ([_text(text) for text in columns["text"]], np.asarray(columns["label"]).astype(np.uint8))
    return texts, f"TFDS {builder.info.full_name}"


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _eval_split(builder, name: str) -> str:
    known = set(builder.info.splits)
    for split in EVAL_SPLITS:
        if not known or split in known:
            return split
    raise UsageError(f"TFDS dataset {name} has no {' or '.join(EVAL_SPLITS)} split (it has {', '.join(known)})")


def _prepare(tfds, builder, name: str) -> None:
    """Download and prepare the dataset where it is not yet, as ArrayRecord; offline, one line."""
    with _quiet():
        if builder.is_prepared():
            return
    directory = data_dir()
    fix = (
        f"on a machine with network run `tfds build {name} --data_dir {directory} --file_format array_record` "
        f"(or this optax-lab command), then copy its {directory}/{name.split('/')[0]} here"
    )
    host = _unreachable(_download_urls(builder))
    if host is not None:
        raise UsageError(
            f"TFDS dataset {name} is not prepared in {directory}, and it cannot be downloaded from here "
            f"(no connection to {host}): {fix}"
        )
    try:
        builder.download_and_prepare(
            file_format="array_record", download_config=tfds.download.DownloadConfig(try_download_gcs=False)
        )
    except (OSError, tfds.download.DownloadError) as error:
        raise UsageError(
            f"TFDS dataset {name} is not prepared in {directory}, and its download failed "
            f"({type(error).__name__}): {fix}"
        ) from None


def _download_urls(builder) -> list[str]:
    """The files the builder downloads (its checksums), else its homepage: the hosts to probe."""
    try:
        urls = list(builder.url_infos or {})
    except (ImportError, OSError, ValueError):  # no checksums file, or no importlib_resources to find it
        urls = []
    return urls or [builder.info.homepage or ""]


def _unreachable(urls: list[str]) -> str | None:
    """The first host of `urls` that takes no connection within a few seconds, or None."""
    for url in urls:
        parts = urlsplit(url)
        if not parts.hostname:
            continue
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=PROBE_SECONDS).close()
        except OSError:
            return parts.hostname
    return None


def _read(tfds, builder, split: str, name: str) -> dict[str, list | np.ndarray]:
    """Every example of `split`, decoded, as columns (feature -> values): through the random-access
    data source in batches of READ_CHUNK where the dataset is stored so, else through tf.data
    (TFRecord, as `tfds build` writes by default; needs TensorFlow)."""
    with _quiet():
        try:
            source = builder.as_data_source(split=split)
        except (NotImplementedError, ValueError):  # no random-access copy of the dataset
            return _read_tfrecord(tfds, builder, split, name)
    count = len(source)
    batched = getattr(source, "__getitems__", None)
    if batched is None:  # a data source without batched reads
        examples = [source[i] for i in range(count)]
    else:
        chunks = (range(start, min(start + READ_CHUNK, count)) for start in range(0, count, READ_CHUNK))
        examples = [example for chunk in chunks for example in batched(list(chunk))]
    return {key: [example[key] for example in examples] for key in (examples[0] if examples else {})}


def _read_tfrecord(tfds, builder, split: str, name: str) -> dict[str, np.ndarray]:
    import_extra("tensorflow", "tfds", f"reading TFDS {name}, prepared as TFRecord in {data_dir()},")
    with _quiet():
        return dict(tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1)))


def _stacked(columns: dict[str, list | np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.stack(columns["image"]).astype(np.uint8, copy=False), np.asarray(columns["label"]).astype(np.int32)
