"""The Python API (`optax_lab.run`, `tune`, `load`, `Results`), the tidy table and `optax-lab
export`: round trips on tiny synthetic-imdb runs, the table's rows equal to the histories, the
command line's checks, the missing-extra line, and docs/python.md's session run as it stands."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

import optax_lab
from optax_lab import api, tidy
from optax_lab.cli import main
from optax_lab.errors import UsageError

TINY = {"dataset": "synthetic-imdb", "train_examples": 200, "seeds": 2, "epochs": 2, "compile_cache": False}
DOCS = Path(__file__).resolve().parents[1] / "docs" / "python.md"


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> tuple[optax_lab.Results, Path]:
    """adam (b1 overridden) and sgd at batch 100 on 2 seeds x 2 epochs, written to a folder."""
    out = tmp_path_factory.mktemp("api") / "run"
    with pytest.MonkeyPatch.context() as patch:  # this fixture outlives the per-test cache
        patch.setenv("OPTAX_LAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        results = optax_lab.run(optimizers="adam,sgd", batches="100", overrides={"adam": {"b1": 0.95}}, out=out, **TINY)
    return results, out


def test_run_returns_the_results_and_writes_the_report(ran):
    results, out = ran
    assert [run["name"] for run in results.data["runs"]] == ["adam @100", "sgd @100"]
    assert results.data["command"] == (
        "optax_lab.run(optimizers='adam,sgd', batches='100', overrides={'adam': {'b1': 0.95}}, out='run', "
        "dataset='synthetic-imdb', train_examples=200, seeds=2, epochs=2)"
    )
    assert results.tuned is None
    assert {"report.md", "results.json"} <= {path.name for path in out.iterdir()}
    assert not (out / "tuned.json").exists()


def test_frame_is_one_row_per_run_seed_and_epoch_equal_to_the_histories(ran):
    pytest.importorskip("pandas")
    results, _ = ran
    table = results.frame()
    assert list(table.columns) == [
        "workload",
        "optimizer",
        "run",
        "learning_rate",
        "b1",
        "batch",
        "seed",
        "epoch",
        "train_loss",
        "val_loss",
        "train_acc",
        "val_acc",
        "distinct_units",
        "status",
        "diverged",
    ]
    assert len(table) == 2 * 2 * 2  # runs x seeds x epochs
    for run in results.data["runs"]:
        rows = table[table.run == run["name"]]
        assert (rows.workload == "imdb-mlp").all() and (rows.optimizer == run["optimizer"]).all()
        assert (rows.batch == "100").all() and (rows.status == "ok").all() and not rows.diverged.any()
        assert rows.seed.tolist() == [0, 0, 1, 1] and rows.epoch.tolist() == [1, 2, 1, 2]
        assert rows.learning_rate.tolist() == [run["hyperparams"]["learning_rate"]] * 4
        for metric in ("train_loss", "val_loss", "train_acc", "val_acc", "distinct_units"):
            history_SxE = run["history"][metric]
            assert rows[metric].tolist() == [float(value) for row in history_SxE for value in row]
    assert table[table.optimizer == "adam"].b1.tolist() == [0.95] * 4
    assert table[table.optimizer == "sgd"].b1.isna().all()  # sgd has no b1


def test_load_reads_back_the_same_results_and_table(ran):
    pandas = pytest.importorskip("pandas")
    results, out = ran
    for path in (out, out / "results.json"):
        loaded = optax_lab.load(path)
        assert loaded.data == json.loads((out / "results.json").read_text()) and loaded.tuned is None
    pandas.testing.assert_frame_equal(optax_lab.load(out).frame(), results.frame())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_reads_back_equal_to_the_frame(ran, fmt, tmp_path, capsys):
    pandas = pytest.importorskip("pandas")
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    results, out = ran
    assert main(["export", str(out / "results.json"), "--format", fmt]) == 0
    written = out / f"results.{fmt}"
    assert "(8 rows)" in " ".join(capsys.readouterr().err.split())
    read = pandas.read_csv(written, dtype={"batch": str}) if fmt == "csv" else pandas.read_parquet(written)
    pandas.testing.assert_frame_equal(read, results.frame(), check_exact=True)
    elsewhere = tmp_path / f"table.{fmt}"  # the format from --out's suffix
    assert main(["export", str(out / "results.json"), "--out", str(elsewhere)]) == 0
    assert elsewhere.read_bytes()[:4] == (b"PAR1" if fmt == "parquet" else b"work")


def test_tune_keeps_its_points_and_a_run_ranks_at_them(tmp_path):
    out = tmp_path / "tune"
    tuned = optax_lab.tune(
        optimizers="sgd", batches=100, points=3, decades=2, search_seeds=1, max_extensions=0, out=out, **TINY
    )
    points = tuned.tuned["points"]
    assert list(points) == ["sgd"] and list(points["sgd"]) == ["100"]
    chosen = points["sgd"]["100"]["learning_rate"]
    grid = {run["point"]["learning_rate"] for run in tuned.data["runs"] if run["seeds"] == [2]}  # the search seed
    assert len(grid) == 3 and chosen in grid
    assert json.loads((out / "tuned.json").read_text())["points"] == points
    loaded = optax_lab.load(out)
    assert loaded.tuned["points"] == points and loaded.data["tuning"]["points"] == 3
    ranked = optax_lab.run(optimizers="sgd", batches=100, tuned=tuned, **TINY)
    assert [run["hyperparams"]["learning_rate"] for run in ranked.data["runs"]] == [chosen]


@pytest.mark.parametrize(
    ("call", "options", "message"),
    [
        ("run", {"epoch": 3}, "unknown option 'epoch': did you mean epochs"),
        ("run", {"seeds": 0}, "--seeds 0 must be a positive integer"),
        ("run", {"seeds": "2"}, "seeds='2' must be an integer"),
        ("run", {"max_replicas": "many"}, "max_replicas='many' must be an integer"),
        ("run", {"order": "random"}, "order='random' is not one of per-seed, shared"),
        ("run", {"criterion": "worst"}, "criterion='worst' is not one of final-val-loss,"),
        ("run", {"batches": "big"}, "--batch 'big' is not a batch mode"),
        ("run", {"sweeps": "lr=1,1"}, "a value is listed twice"),
        ("run", {"model": {"width": 8}}, "model=['width']: give a ModelConfig or a dict of its fields"),
        ("run", {"preset": "momentum", "optimizers": "adam"}, "rank different things"),
        ("run", {"tuned": "nowhere.json"}, "--tuned nowhere.json: cannot read it"),
        ("tune", {"dataset": "synthetic-imdb"}, "tune needs the optimizers to tune"),
        ("tune", {"optimizers": "adam", "points": 1}, "--points 1: a grid needs at least 2 points"),
        ("tune", {"optimizers": "adam", "decades": "4"}, "decades='4' must be a number"),
        ("tune", {"optimizers": "adam", "sweeps": "lr=1,2"}, "unknown option 'sweeps'"),
    ],
)
def test_a_bad_option_is_one_usage_error_and_nothing_is_written(call, options, message, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UsageError) as error:
        getattr(optax_lab, call)(out=out, compile_cache=False, **options)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not out.exists()


def test_without_pandas_frame_and_export_are_one_line(ran, monkeypatch, capsys, error_line):
    results, out = ran
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    with pytest.raises(UsageError, match=re.escape("(the analysis extra): pip install 'optax_lab[analysis]'")):
        results.frame()
    capsys.readouterr()
    assert main(["export", str(out / "results.json")]) == 2
    assert error_line() == (
        "optax-lab: error: export --format csv needs pandas (the analysis extra): pip install 'optax_lab[analysis]'"
    )


def test_without_pyarrow_a_parquet_export_is_one_line(ran, monkeypatch, error_line):
    pytest.importorskip("pandas")
    _, out = ran
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert main(["export", str(out / "results.json"), "--format", "parquet", "--out", str(out / "t.parquet")]) == 2
    assert "needs pandas and pyarrow (the analysis extra)" in error_line()
    assert not (out / "t.parquet").exists()


def test_export_refuses_a_bad_format_and_a_missing_file_in_one_line(tmp_path, error_line):
    assert main(["export", str(tmp_path / "results.json"), "--format", "xls"]) == 2
    assert "invalid choice: 'xls'" in error_line()
    pytest.importorskip("pandas")  # without it, the missing extra is the line
    assert main(["export", str(tmp_path / "results.json")]) == 2
    assert "cannot read" in error_line()


def test_the_table_of_a_hand_made_results_dict():
    """Hyperparameters some runs lack, a tuple, a diverged seed, full batch, per-layer curves left out."""
    pytest.importorskip("pandas")
    run = {
        "name": "a",
        "workload": "w",
        "optimizer": "o",
        "hyperparams": {"learning_rate": 0.1, "betas": [0.9, 0.99], "epoch": 7},
        "batch_size": 50,
        "full_batch": True,
        "seeds": [3, 4],
        "history": {
            "val_loss": [[1.0, 0.5, 0.25], [1.0, math.inf, None]],
            "grad_norms": [[[1.0, 2.0]] * 3] * 2,
            "init_grad_norms": [[1.0, 2.0, 3.0]] * 2,
        },
        "final": {},
    }
    other = {**run, "name": "b", "hyperparams": {}, "full_batch": False, "seeds": [0], "history": {"val_loss": [[2.0]]}}
    results = {"schema": 1, "preset": "p", "dataset": {}, "device": {}, "lessons": [], "runs": [run, other]}
    table = tidy.frame(results)
    assert list(table.columns) == [
        "workload",
        "optimizer",
        "run",
        "learning_rate",
        "betas",
        "hyperparam_epoch",
        "batch",
        "seed",
        "epoch",
        "val_loss",
        "status",
        "diverged",
    ]
    assert table.seed.tolist() == [3, 3, 3, 4, 4, 4, 0] and table.epoch.tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert table.batch.tolist() == ["full"] * 6 + ["50"]
    assert table.betas.tolist()[:6] == ["[0.9, 0.99]"] * 6  # a tuple's JSON text
    assert table.learning_rate.isna().tolist() == [False] * 6 + [True]  # run b sets none
    assert table.val_loss.tolist()[:4] == [1.0, 0.5, 0.25, 1.0] and table.val_loss[4:6].isna().all()
    assert table.diverged.tolist() == [False] * 3 + [True] * 3 + [False]
    assert table.status.tolist() == ["diverged"] * 6 + ["ok"]


def test_loading_and_tabulating_imports_no_jax(ran):
    pytest.importorskip("pandas")
    _, out = ran
    code = (
        f"import sys, optax_lab; optax_lab.load({str(out)!r}).frame(); "
        "print(sorted(m for m in sys.modules if m in ('jax', 'optax_lab.runner', 'optax_lab.engine')))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_the_docs_session_runs_as_it_stands(monkeypatch, tmp_path):
    """docs/python.md's Python blocks, in order, as one session, shrunk to tiny runs."""
    pytest.importorskip("pandas")
    import matplotlib

    matplotlib.use("Agg")
    shrunk = {**TINY, "train_examples": 600}
    protocol = {"points": 3, "decades": 2, "search_seeds": 1, "max_extensions": 0}
    run, tune = api.run, api.tune
    monkeypatch.setattr(api, "run", lambda **options: run(**{**options, **shrunk}))
    monkeypatch.setattr(api, "tune", lambda **options: tune(**{**options, **shrunk, **protocol}))
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    assert len(blocks) >= 5
    session: dict = {}
    exec(compile("\n".join(blocks), str(DOCS), "exec"), session)
    assert (tmp_path / "val-loss.png").stat().st_size > 1000 and (tmp_path / "reports/notebook/report.md").exists()
    assert len(session["df"]) == 3 * 2 * 2  # the docs' three optimizers x the shrunk seeds x epochs
    assert session["ranked"].data["runs"][0]["hyperparams"]["learning_rate"] in {
        point["500"]["learning_rate"] for point in session["tuned"].tuned["points"].values()
    }
