"""Shared fixtures: an isolated cache for every test, a tiny aclImdb-layout archive, the real
archive from ../shared/data when it is there, the small synthetic datasets the engine tests train
on, the compile counter, the check of a one-line bad-input error, and quick compiles for the
whole session and its subprocesses."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

# One CPU device for every test and every CLI run a test makes (set before JAX starts; the CLI
# otherwise splits the CPU into one device per core). Multi-device tests start their own process.
os.environ["JAX_NUM_CPU_DEVICES"] = "1"
# Programs are checked here, not timed: compile them quickly, here and in every subprocess (XLA
# reads XLA_FLAGS when its CPU client starts, after this).
from optax_lab.engine import use_quick_compiles  # noqa: E402

use_quick_compiles()

import pytest  # noqa: E402

from optax_lab.data import load_dataset, synthetic  # noqa: E402
from optax_lab.engine import Arrays, counting_compiles  # noqa: E402

REAL_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "aclImdb_v1_labeled.tar.gz"

# The tiny archive's reviews: upper case, <br />, punctuation, an apostrophe; the unsup review
# would be the most frequent word if it were counted; "a" and "film" appear only in test.
TINY_REVIEWS = {
    "aclImdb/train/pos/0_9.txt": "Great movie, GREAT acting.<br />I loved it",
    "aclImdb/train/pos/1_8.txt": "the movie's plot is great",
    "aclImdb/train/neg/0_2.txt": "Bad movie. Bad, bad acting!",
    "aclImdb/train/neg/1_1.txt": "the plot was bad<br /><br />boring",
    "aclImdb/train/unsup/0_0.txt": "zebra zebra zebra zebra zebra zebra zebra",
    "aclImdb/test/pos/0_10.txt": "A great film",
    "aclImdb/test/neg/0_3.txt": "bad plot",
    "aclImdb/README": "not a review",
    "aclImdb/imdb.vocab": "the\nbad\n",
    "aclImdb/train/labeledBow.feat": "0 9:1\n",
}


@pytest.fixture
def error_line(capsys):
    """`error_line()`: what the CLI wrote to stderr, checked to be one bad-input line (exactly one
    line, no blank one, no traceback: what the project promises) and returned."""

    def read() -> str:
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("optax-lab: error: ") and "Traceback" not in err[0], err
        return err[0]

    return read


def _write_archive(path: Path, files: dict[str, str], mode: str = "w:gz") -> Path:
    """A tar archive at `path` holding `files` (name -> text), with their folders."""
    folders = sorted({str(folder) for name in files for folder in Path(name).parents if str(folder) != "."})
    with tarfile.open(path, mode) as tar:
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty OPTAX_LAB_CACHE and no IMDB env settings of the user's."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("OPTAX_LAB_CACHE", str(cache))
    monkeypatch.delenv("OPTAX_LAB_IMDB_ARCHIVE", raising=False)
    monkeypatch.delenv("OPTAX_LAB_IMDB_URL", raising=False)
    return cache


@pytest.fixture
def write_archive():
    """`write_archive(path, {name: text}, mode="w:gz")`: a tar archive holding those files."""
    return _write_archive


@pytest.fixture
def tiny_reviews() -> dict[str, str]:
    return dict(TINY_REVIEWS)


@pytest.fixture
def tiny_archive(tmp_path) -> Path:
    return _write_archive(tmp_path / "aclImdb_v1.tar.gz", TINY_REVIEWS)


@pytest.fixture(scope="session")
def real_archive() -> Path:
    if not REAL_ARCHIVE.is_file():
        pytest.skip(f"real IMDB archive not found at {REAL_ARCHIVE}")
    return REAL_ARCHIVE


@pytest.fixture(scope="session")
def real_imdb(real_archive, tmp_path_factory):
    """One tokenisation of the real archive, shared by the tests below: (dataset, cache, seconds)."""
    cache = tmp_path_factory.mktemp("real-imdb-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPTAX_LAB_CACHE", str(cache))
        start = time.perf_counter()
        data, _ = load_dataset("imdb", imdb_archive=str(real_archive))
        seconds = time.perf_counter() - start
    print(f"\nfirst load of the real IMDB archive (tokenising): {seconds:.1f} s")
    return data, cache, seconds


@pytest.fixture(scope="session")
def small_data() -> Arrays:
    """A shrunken synthetic-imdb on the device: 1,050 training examples, so that batch 500
    leaves a remainder batch, and 400 test examples. One shape for every engine test, so that
    tests share compiled programs."""
    return Arrays.from_numpy(*synthetic.generate(num_words=100, seed=0, num_train=1050, num_test=400))


@pytest.fixture(scope="session")
def optimizer_data() -> Arrays:
    """The optimizer tests' synthetic-imdb: 2,000 training examples (4 whole steps of 500 an
    epoch, enough for every entry's defaults to lower the loss in 3 epochs) and 1,000 test."""
    return Arrays.from_numpy(*synthetic.generate(num_words=100, seed=0, num_train=2000, num_test=1000))


@pytest.fixture
def count_compiles():
    """A list that gains one entry per XLA backend compile while the test runs."""
    with counting_compiles() as compiles:
        yield compiles
