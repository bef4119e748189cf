"""`optax-lab` end to end: a small real run, and bad input as one line, exit 2, nothing written."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from optax_lab.cli import main

SMALL = ["--seeds", "2", "--epochs", "2"]


def test_run_writes_report_and_results(tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            [
                "run",
                "--preset",
                "momentum",
                "--dataset",
                "synthetic-imdb",
                *SMALL,
                "--train-examples",
                "1000",
                "--out",
                str(out),
                "--no-compile-cache",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["name"] == "synthetic-imdb" and results["order"] == "per-seed"
    assert [run["name"] for run in results["runs"]] == ["SGD", "Momentum"]
    for run in results["runs"]:
        assert set(run) >= {
            "name",
            "optimizer",
            "hyperparams",
            "batch_size",
            "seeds",
            "epochs",
            "history",
            "final",
            "timing",
            "status",
        }
        assert len(run["history"]["val_loss"]) == 2 and len(run["history"]["val_loss"][0]) == 2
        assert set(run["timing"]) >= {"compile_s", "run_s", "seed_epochs_per_s"}
        assert run["status"] == "ok"
    report = (out / "report.md").read_text()
    assert "synthetic-imdb" in report and "each seed its own shuffling" in report
    assert results["command"].startswith("optax-lab run --preset momentum --dataset synthetic-imdb")
    assert (out / "momentum-curves.png").stat().st_size > 10_000
    assert "synthetic-imdb" in capsys.readouterr().err


@pytest.mark.slow  # CI time; test_data checks the fallback and its warning
def test_without_a_local_archive_the_synthetic_set_is_used_with_a_warning(tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "--preset",
                "gd-vs-sgd",
                "--seeds",
                "1",
                "--epochs",
                "1",
                "--shared-order",
                "--out",
                str(tmp_path),
                "--no-compile-cache",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "no IMDB archive found locally" in err
    assert json.loads((tmp_path / "results.json").read_text())["order"] == "shared"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--preset", "lesons"], "'lesons'"),
        (["run", "--dataset", "mnist"], "'mnist'"),
        (["run", "--seeds", "0"], "--seeds 0"),
        (["run", "--epochs", "-3"], "--epochs -3"),
        (["run", "--num-words", "2"], "--num-words 2"),
        (["run", "--seeds", "many"], "'many'"),
        (["run", "--imdb-archive", "/no/such/aclImdb_v1.tar.gz"], "/no/such/aclImdb_v1.tar.gz"),
        (["run", "--bogus"], "--bogus"),
        (["frobnicate"], "frobnicate"),
        (["run", "--optimizers", "adamm"], "did you mean adam"),
        (
            ["run", "--optimizers", "nope"],
            "unknown optimizer 'nope': none has a close name; `optax-lab list` shows all",
        ),
        (["run", "--optimizers", "adam", "--set", "adam.b3=0.5"], "accepts learning_rate, b1, b2"),
        (["run", "--optimizers", "adam", "--set", "adam"], "'adam' is not OPTIMIZER.HYPERPARAMETER=VALUE"),
        (["run", "--optimizers", "adam", "--set", "sgd.momentum=0.9"], "no run uses optimizer 'sgd'"),
        (["run", "--optimizers", "adam", "--batch", "0"], "--batch '0'"),
        (["run", "--optimizers", "adam", "--preset", "momentum"], "give one of them"),
        (["report", "/no/such/results.json"], "/no/such/results.json"),
        (
            ["run", "--optimizers", "adam", "--set", "adam.learning_rate=nan"],
            "adam.learning_rate='nan' is not a number",
        ),
        (["run", "--optimizers", "adam", "--set", "adam.learning_rate=-1"], "outside the domain"),
        (["run", "--optimizers", "adam", "--set", "adam.b1=2"], "b1 takes a number in [0, 1)"),
        # malformed sweeps: each names the part and shows an example
        (["run", "--optimizers", "adam", "--sweep", "learning_rate=log:0:1e-1:16"], "bounds must be positive"),
        (["run", "--optimizers", "adam", "--sweep", "learning_rate=log:1e-1:1e-4:16"], "must be below HIGH"),
        (["run", "--optimizers", "adam", "--sweep", "learning_rate=log:1e-4:1e-1:0"], "at least 2"),
        (["run", "--optimizers", "adam", "--sweep", "learning_rate=1e-3,fast"], "'fast' is not a number"),
        (["run", "--optimizers", "adam", "--sweep", "learning_rate=1e-3,nan"], "'nan' is not a finite number"),
        (["run", "--optimizers", "adam", "--sweep", "adam.lr=0.1,0.2"], "takes no hyperparameter 'lr'"),
        (["run", "--optimizers", "sgd", "--sweep", "b1=0.8,0.9"], "none of the optimizers takes 'b1'"),
        (["run", "--optimizers", "adam", "--sweep", "adam.b1=0.9,1.5"], "adam.b1=1.5 is outside the domain"),
        (["run", "--optimizers", "adam", "--sweep", "sgd.momentum=0.5,0.9"], "sgd is not among --optimizers"),
        (["run", "--optimizers", "lbfgs", "--sweep", "lbfgs.main=around:2:5"], "no main scale"),
        (["run", "--preset", "lesson", "--sweep", "learning_rate=0.1,0.2"], "add --optimizers"),
        (["run", "--optimizers", "adam", "--tuned", "/no/such/tuned.json"], "cannot read it"),
        (["run", "--optimizers", "adam", "--criterion", "fastest"], "--criterion 'fastest'"),
        (["tune", "--optimizers", "adam", "--criterion", "fastest"], "--criterion 'fastest'"),
        (["tune", "--optimizers", "adam", "--points", "1"], "--points 1"),
        (["tune", "--batch", "500"], "tune needs the optimizers"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path, error_line):
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)] if args[0] in ("run", "tune") else args) == 2
    assert needle in error_line()
    assert not out.exists()


def test_an_archive_that_is_not_aclimdb_is_refused(tmp_path, error_line, write_archive):
    bogus = write_archive(tmp_path / "other.tar.gz", {"something/else.txt": "hello"})
    out = tmp_path / "out"
    assert main(["run", "--imdb-archive", str(bogus), *SMALL, "--out", str(out)]) == 2
    assert str(bogus) in error_line()
    assert not out.exists()


def test_a_failed_download_is_refused(tmp_path, error_line, monkeypatch, isolated_cache):
    monkeypatch.setenv("OPTAX_LAB_IMDB_URL", f"http://127.0.0.1:{_closed_port()}/aclImdb_v1.tar.gz")
    out = tmp_path / "out"
    assert main(["run", "--dataset", "imdb", *SMALL, "--out", str(out)]) == 2
    assert "could not download" in error_line()
    assert not out.exists() and not list(isolated_cache.glob("*.tar.gz"))


def test_an_unwritable_out_is_refused_before_training(tmp_path, error_line):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["run", "--dataset", "synthetic-imdb", *SMALL, "--out", str(blocker / "out")]) == 2
    assert str(blocker) in error_line()


def test_a_batch_larger_than_the_data_is_refused_before_training(tmp_path, error_line, monkeypatch):
    from optax_lab import presets
    from optax_lab.lessons import Lesson, RunSpec

    lesson = Lesson("huge", "huge", "?", (RunSpec("Huge", "sgd", {}, 30_000),))
    monkeypatch.setitem(presets.PRESETS, "huge", (lesson,))
    assert main(["run", "--preset", "huge", "--dataset", "synthetic-imdb", *SMALL, "--out", str(tmp_path / "o")]) == 2
    assert "batch size 30000" in error_line()
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "content, needle",
    [
        ("[]", "is not a results object"),
        ("{}", "has no 'schema': it is not a results.json of optax-lab"),
        ('{"schema": 99}', "has schema 99, this optax-lab reads schema 1"),
        ('{"schema": 1}', "lacks 'preset'"),
    ],
)
def test_report_refuses_what_is_not_a_results_json(content, needle, tmp_path, error_line):
    results = tmp_path / "results.json"
    results.write_text(content)
    assert main(["report", str(results)]) == 2
    assert needle in error_line()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["results.json"]


def test_the_console_script_exits_2_without_a_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "optax_lab.cli", "run", "--preset", "nope"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "nope" in done.stderr


def test_an_optimizer_ranking_runs_each_optimizer_per_batch_mode_with_overrides(tmp_path):
    assert (
        main(
            [
                "run",
                "--optimizers",
                "adam",
                "--batch",
                "full,250",
                "--set",
                "adam.b1=0.8",
                "--train-examples",
                "1000",
                "--dataset",
                "synthetic-imdb",
                *SMALL,
                "--out",
                str(tmp_path),
                "--no-compile-cache",
            ]
        )
        == 0
    )
    results = json.loads((tmp_path / "results.json").read_text())
    runs = {run["name"]: run for run in results["runs"]}
    assert sorted(runs) == ["adam @250", "adam @full"]
    assert runs["adam @250"]["hyperparams"]["b1"] == 0.8 and runs["adam @full"]["full_batch"]
    assert runs["adam @250"]["steps_per_epoch"] == 4
    assert results["ranking"]["target_val_loss"] == 0.6
    assert set(runs["adam @250"]["target"]) >= {"epochs_mean", "steps_mean", "seconds_mean", "reached_seeds"}


def test_list_shows_the_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    for name in ("adam", "sgd", "keras_adagrad"):
        assert name in text
