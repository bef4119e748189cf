"""The data stage: IMDB read from its archive (encoding, validation, download, cache), the
synthetic stand-in, and `load_dataset`'s choice between them."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shutil
import socket
import threading
import time

import numpy as np
import pytest
import scipy.optimize

from optax_lab.cli import main
from optax_lab.data import NO_ARCHIVE_WARNING, Dataset, imdb, load_dataset, synthetic
from optax_lab.errors import UsageError


def multi_hot(rows: list[set[int]], width: int) -> np.ndarray:
    x = np.zeros((len(rows), width), np.float32)
    for i, columns in enumerate(rows):
        x[i, sorted(columns)] = 1
    return x


# Training counts of the tiny archive: bad 4, great 3; acting, movie, plot, the 2 each (ties by
# the word); boring, i, is, it, loved, movie's, was 1 each. Ranks from 1, index = rank + 3:
BAD, GREAT, ACTING, MOVIE, PLOT, THE, BORING, I, IS, IT, LOVED, MOVIES, WAS = range(4, 17)  # noqa: E741


def test_tiny_archive_is_encoded_like_keras(tiny_archive):
    data, warning = load_dataset("imdb", num_words=10, imdb_archive=str(tiny_archive))
    assert warning is None and data.name == "imdb" and data.num_words == 10
    assert data.source.startswith(tiny_archive.name + " (sha256 ") and "/" not in data.source  # no machine path
    # Rows: neg then pos, by review id. Index 1 always; 2 when a word has index >= 10.
    np.testing.assert_array_equal(
        data.x_train,
        multi_hot(
            [
                {1, BAD, MOVIE, ACTING},  # "Bad movie. Bad, bad acting!": every word in the vocabulary
                {1, THE, PLOT, BAD, 2},  # "was", "boring" are ranked past the vocabulary
                {1, GREAT, MOVIE, ACTING, 2},  # "<br />" splits "acting.<br />I"; "i", "loved", "it" are OOV
                {1, THE, PLOT, GREAT, 2},  # "movie's" is one token, not "movie"
            ],
            10,
        ),
    )
    np.testing.assert_array_equal(data.y_train, [0, 0, 1, 1])
    np.testing.assert_array_equal(data.x_test, multi_hot([{1, BAD, PLOT}, {1, GREAT, 2}], 10))
    np.testing.assert_array_equal(data.y_test, [0, 1])
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        assert array.dtype == np.float32 and not array.flags.writeable


def test_test_words_unseen_in_training_are_out_of_vocabulary(tiny_archive):
    data, _ = load_dataset("imdb", num_words=20, imdb_archive=str(tiny_archive))
    assert data.x_train.shape == (4, 20) and data.x_test.shape == (2, 20)
    assert not data.x_train[:, 2].any()  # every training word has an index < 20
    np.testing.assert_array_equal(data.x_train[2], multi_hot([{1, GREAT, MOVIE, ACTING, I, LOVED, IT}], 20)[0])
    np.testing.assert_array_equal(data.x_test, multi_hot([{1, BAD, PLOT}, {1, GREAT, 2}], 20))  # "a", "film"


def test_smallest_vocabulary_keeps_only_start_and_oov(tiny_archive):
    data, _ = load_dataset("imdb", num_words=4, imdb_archive=str(tiny_archive))
    np.testing.assert_array_equal(data.x_train, multi_hot([{1, 2}] * 4, 4))


def test_archive_from_env_and_from_cache_are_found(tiny_archive, isolated_cache, monkeypatch):
    monkeypatch.setenv("OPTAX_LAB_IMDB_ARCHIVE", str(tiny_archive))
    from_env, warning = load_dataset(None, num_words=10)
    assert from_env.name == "imdb" and warning is None
    monkeypatch.delenv("OPTAX_LAB_IMDB_ARCHIVE")
    shutil.copy(tiny_archive, isolated_cache / "aclImdb_v1.tar.gz")
    from_cache, warning = load_dataset(None, num_words=10)
    assert from_cache.name == "imdb" and warning is None
    assert from_cache.source.startswith("aclImdb_v1.tar.gz (sha256 ") and str(isolated_cache) not in from_cache.source
    np.testing.assert_array_equal(from_cache.x_train, from_env.x_train)


def test_no_local_archive_falls_back_to_synthetic_with_a_warning():
    data, warning = load_dataset(None, num_words=10)
    assert data.name == "synthetic-imdb" and data.source == "synthetic, seed 0"
    assert warning == NO_ARCHIVE_WARNING and "--imdb-archive" in warning and "\n" not in warning


@pytest.mark.parametrize("name, num_words", [("imbd", 100), ("imdb", 3)])
def test_bad_arguments_are_usage_errors(name, num_words):
    with pytest.raises(UsageError, match="choose one of|at least 4"):
        load_dataset(name, num_words=num_words)


# --- archive validation ----------------------------------------------------------------------


def _wrong_archive(kind, tmp_path, write_archive, tiny_reviews):
    if kind == "missing":
        return tmp_path / "missing.tar.gz"
    if kind == "folder":
        return tmp_path
    if kind == "random bytes":
        path = tmp_path / "random.tar.gz"
        path.write_bytes(np.random.default_rng(0).bytes(2048))
        return path
    if kind == "uncompressed tar":
        return write_archive(tmp_path / "plain.tar", tiny_reviews, mode="w")
    if kind == "no aclImdb":
        return write_archive(tmp_path / "other.tar.gz", {"reviews/train/pos/0_9.txt": "great"})
    if kind == "train only":
        train = {name: text for name, text in tiny_reviews.items() if "/test/" not in name}
        return write_archive(tmp_path / "train-only.tar.gz", train)
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("missing", "is not a file"),
        ("folder", "is not a file"),
        ("random bytes", "not a readable .tar.gz"),
        ("uncompressed tar", "not a readable .tar.gz"),
        ("no aclImdb", r"no aclImdb/train/neg/\*.txt inside"),
        ("train only", r"no aclImdb/test/neg/\*.txt inside"),
    ],
)
def test_wrong_local_archive_is_a_usage_error_naming_it(kind, expected, tmp_path, write_archive, tiny_reviews):
    path = _wrong_archive(kind, tmp_path, write_archive, tiny_reviews)
    with pytest.raises(UsageError, match=expected) as error:
        load_dataset("imdb", imdb_archive=str(path))
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert "--imdb-archive" in message  # the fix


def test_missing_archive_from_env_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTAX_LAB_IMDB_ARCHIVE", str(tmp_path / "nope.tar.gz"))
    with pytest.raises(UsageError, match="nope.tar.gz.*OPTAX_LAB_IMDB_ARCHIVE"):
        load_dataset(None)


# --- download --------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path, tiny_archive):
    """An HTTP server on 127.0.0.1 serving the tiny archive as /aclImdb_v1.tar.gz."""
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(tiny_archive, root / "aclImdb_v1.tar.gz")

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=root))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_checks_the_hash_and_loads(server, tiny_archive, isolated_cache):
    path = imdb.download_archive(url=f"{server}/aclImdb_v1.tar.gz", sha256=_sha256(tiny_archive))
    assert path == isolated_cache / "aclImdb_v1.tar.gz"
    assert path.read_bytes() == tiny_archive.read_bytes()
    encoded, _ = imdb.load_imdb(path, num_words=10)
    np.testing.assert_array_equal(encoded.y_test, [0, 1])


def test_checksum_mismatch_keeps_nothing(server, tiny_archive, isolated_cache, monkeypatch):
    # Through the public API: a "mirror" serving the wrong file fails the official checksum.
    monkeypatch.setenv("OPTAX_LAB_IMDB_URL", f"{server}/aclImdb_v1.tar.gz")
    with pytest.raises(UsageError) as error:
        load_dataset("imdb")
    message = str(error.value)
    assert imdb.IMDB_SHA256 in message and _sha256(tiny_archive) in message and server in message
    assert "\n" not in message
    assert list(isolated_cache.iterdir()) == []


def test_http_404_is_a_usage_error(server, isolated_cache):
    url = f"{server}/missing.tar.gz"
    with pytest.raises(UsageError, match="HTTP 404") as error:
        imdb.download_archive(url=url)
    assert url in str(error.value)
    assert list(isolated_cache.iterdir()) == []


def test_connection_refused_is_a_usage_error(isolated_cache):
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UsageError, match=f"127.0.0.1:{port}.*ConnectionError"):
        imdb.download_archive(url=f"http://127.0.0.1:{port}/aclImdb_v1.tar.gz")
    assert list(isolated_cache.iterdir()) == []


# --- encoded-array cache ---------------------------------------------------------------------


def _no_tokenising(*args, **kwargs):
    raise AssertionError("re-tokenised although the encoded arrays are cached")


def test_second_load_is_served_from_the_cache(tiny_archive, isolated_cache, monkeypatch):
    first, _ = load_dataset("imdb", num_words=10, imdb_archive=str(tiny_archive))
    sha16 = _sha256(tiny_archive)[:16]
    assert sorted(p.name for p in isolated_cache.iterdir()) == [f"imdb-{sha16}-w10.npz"]  # no temp files
    monkeypatch.setattr(imdb, "read_reviews", _no_tokenising)
    second, _ = load_dataset("imdb", num_words=10, imdb_archive=str(tiny_archive))
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name))
    with pytest.raises(AssertionError, match="re-tokenised"):  # another N is another entry
        load_dataset("imdb", num_words=20, imdb_archive=str(tiny_archive))


def test_each_vocabulary_size_has_its_own_cache_entry(tiny_archive, isolated_cache):
    for num_words in (10, 20):
        load_dataset("imdb", num_words=num_words, imdb_archive=str(tiny_archive))
    sha16 = _sha256(tiny_archive)[:16]
    assert sorted(p.name for p in isolated_cache.iterdir()) == [f"imdb-{sha16}-w10.npz", f"imdb-{sha16}-w20.npz"]


def test_a_torn_cache_entry_is_rebuilt(tiny_archive, isolated_cache):
    first, _ = load_dataset("imdb", num_words=10, imdb_archive=str(tiny_archive))
    (entry,) = isolated_cache.iterdir()
    entry.write_bytes(entry.read_bytes()[:100])
    again, _ = load_dataset("imdb", num_words=10, imdb_archive=str(tiny_archive))
    np.testing.assert_array_equal(again.x_train, first.x_train)


# --- the real archive (../shared/data) -------------------------------------------------------


def test_real_imdb_matches_keras_conventions(real_imdb):
    data, _, _ = real_imdb
    assert data.x_train.shape == (25_000, 100) and data.x_test.shape == (25_000, 100)
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert y.sum() == 12_500 and set(np.unique(y)) == {0.0, 1.0}
        assert x[:, 1].all() and not x[:, 0].any() and not x[:, 3].any()
        assert x[:, 4].mean() > 0.95  # rank 1, "the"
        assert set(np.unique(x)) == {0.0, 1.0}


def test_real_imdb_second_load_comes_from_the_cache(real_imdb, real_archive, monkeypatch):
    data, cache, _ = real_imdb
    monkeypatch.setenv("OPTAX_LAB_CACHE", str(cache))
    monkeypatch.setattr(imdb, "read_reviews", _no_tokenising)
    start = time.perf_counter()
    again, _ = load_dataset("imdb", imdb_archive=str(real_archive))
    print(f"\ncached load of the real IMDB archive: {time.perf_counter() - start:.2f} s")
    np.testing.assert_array_equal(again.x_train, data.x_train)
    np.testing.assert_array_equal(again.y_test, data.y_test)
    assert again.source == data.source and _sha256(real_archive)[:16] in again.source


@pytest.mark.slow  # CI reads the real archive in the two real_imdb tests above; the CLI runs in test_cli
def test_a_cli_run_on_the_real_imdb_archive(real_imdb, real_archive, tmp_path, monkeypatch, capsys):
    _, cache, _ = real_imdb
    monkeypatch.setenv("OPTAX_LAB_CACHE", str(cache))  # the tokenisation the data tests made
    assert (
        main(
            [
                "run",
                "--preset",
                "gd-vs-sgd",
                "--seeds",
                "2",
                "--epochs",
                "2",
                "--imdb-archive",
                str(real_archive),
                "--out",
                str(tmp_path),
                "--no-compile-cache",
            ]
        )
        == 0
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["dataset"]["name"] == "imdb" and results["dataset"]["n_train"] == 25_000
    assert results["dataset"]["source"].startswith(real_archive.name) and str(real_archive) not in json.dumps(results)
    assert results["runs"][0]["full_batch"] and results["runs"][0]["steps_per_epoch"] == 1
    assert results["runs"][1]["steps_per_epoch"] == 50


# --- synthetic-imdb --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_set() -> Dataset:
    return load_dataset("synthetic-imdb", seed=0)[0]


def test_synthetic_is_deterministic_per_seed(synthetic_set):
    again, warning = load_dataset("synthetic-imdb", seed=0)
    assert warning is None and again.source == "synthetic, seed 0"
    np.testing.assert_array_equal(again.x_train, synthetic_set.x_train)
    np.testing.assert_array_equal(again.y_test, synthetic_set.y_test)
    other, _ = load_dataset("synthetic-imdb", seed=1)
    assert (other.x_train != synthetic_set.x_train).mean() > 0.1
    assert (other.y_train != synthetic_set.y_train).mean() > 0.3


def test_synthetic_has_imdb_shape_and_columns(synthetic_set):
    data = synthetic_set
    assert data.name == "synthetic-imdb" and data.num_words == 100
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert x.shape == (25_000, 100) and y.shape == (25_000,)
        assert x.dtype == y.dtype == np.float32
        assert y.sum() == 12_500 and set(np.unique(y)) == {0.0, 1.0}
        assert set(np.unique(x)) == {0.0, 1.0}
        assert x[:, 1].all() and not x[:, 0].any() and not x[:, 3].any()
        assert x[:, 2].mean() > 0.99
        frequency = x[:, 4:].mean(0)
        assert frequency[0] > 0.95 and 0.15 < frequency[-1] < 0.3  # Zipf-like, as real IMDB's top 96
        assert (np.diff(frequency) < 0.02).all()  # decreasing with rank, up to sampling noise
        assert 35 < x[:, 4:].sum(1).mean() < 50  # words per review, real IMDB: ~42


@pytest.mark.parametrize("num_words", [4, 7, 1000])
def test_synthetic_works_for_any_vocabulary(num_words):
    x_train, y_train, x_test, _ = synthetic.generate(num_words, seed=0, num_train=1000, num_test=10)
    assert x_train.shape == (1000, num_words) and x_test.shape == (10, num_words)
    assert y_train.sum() == 500


def _fit_logistic_regression(x, y, l2=1e-4):
    """Weights (bias last) minimising the mean BCE, by L-BFGS: only matrix-vector products, which
    stay fast when BLAS threads compete for a small machine's cores."""
    x = np.c_[x, np.ones(len(x))].astype(np.float64)
    x_t = np.ascontiguousarray(x.T)

    def loss_and_gradient(w):
        logits = x @ w
        loss = np.mean(np.logaddexp(0, logits) - y * logits) + l2 / 2 * w @ w
        return loss, x_t @ (1 / (1 + np.exp(-logits)) - y) / len(y) + l2 * w

    return scipy.optimize.minimize(loss_and_gradient, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B").x


def test_synthetic_labels_are_learnable_but_noisy(synthetic_set):
    """Logistic regression on real IMDB with 100 words: test BCE 0.566, accuracy 0.71. The
    synthetic set should be as hard: clearly learnable (chance is BCE 0.693) and far from clean."""
    data = synthetic_set
    w = _fit_logistic_regression(data.x_train, data.y_train)
    logits = np.c_[data.x_test, np.ones(len(data.x_test))] @ w
    bce = np.mean(np.logaddexp(0, logits) - data.y_test * logits)
    accuracy = np.mean((logits > 0) == data.y_test)
    assert 0.54 < bce < 0.59, bce
    assert 0.67 < accuracy < 0.75, accuracy
