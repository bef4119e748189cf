"""Nothing lost: an interrupted `optax-lab run` or `tune` keeps every finished program on disk with
a report marked INCOMPLETE, and `--resume` runs only the missing programs, to the results of an
uninterrupted run (timings and the creation time aside)."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from optax_lab import engine, runner
from optax_lab.cli import main
from optax_lab.run_store import PROGRAMS_FILE, RUNS_FILE, RunStore

RUN = [
    "run",
    "--optimizers",
    "sgd,adam,momentum",
    "--batch",
    "500",
    "--dataset",
    "synthetic-imdb",
    "--train-examples",
    "1000",
    "--seeds",
    "2",
    "--epochs",
    "2",
]  # three programs
# The CLI in a child process (it inherits this session's quick compiles in XLA_FLAGS: conftest).
CLI = [sys.executable, "-c", "import sys; from optax_lab.cli import main; sys.exit(main())"]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _without_timings(results: dict) -> dict:
    """What must equal between a resumed and an uninterrupted run: everything but the clock."""
    results = copy.deepcopy(results)
    results.pop("created")
    for run in results["runs"]:
        for key in ("compile_s", "run_s", "seed_epochs_per_s"):
            run["timing"].pop(key)
        run["target"].pop("seconds_mean")
    for program in results["programs"].values():
        program.pop("compile_s"), program.pop("run_s"), program.pop("overlap_s")
    return results


# A child of a backgrounded shell job inherits SIGINT ignored, and Python then installs no
# KeyboardInterrupt for it: the child puts back what Ctrl-C in a terminal gets. It then sends itself
# a real SIGINT while it appends its second program: a parent polling runs.jsonl could miss the
# sub-second window before the third program finishes on a loaded box.
INTERRUPTED_CLI = [
    sys.executable,
    "-c",
    "import os, signal, sys; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from optax_lab.run_store import RunStore; "
    "add = RunStore.add; "
    "RunStore.add = lambda store, *args: (add(store, *args), "
    "store.programs_trained == 2 and os.kill(os.getpid(), signal.SIGINT)); "
    "from optax_lab.cli import main; sys.exit(main())",
]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A real `optax-lab run` of three programs, sent SIGINT once its second program is on disk:
    (its --out, a copy of that as the interruption left it, exit status, stderr, environment).
    The compilation cache is shared by this module's child processes, so each program compiles
    once over all of them."""
    root = tmp_path_factory.mktemp("resume")
    env = {**os.environ, "OPTAX_LAB_CACHE": str(root / "cache"), "COLUMNS": "250"}
    out = root / "interrupted" / "out"
    child = subprocess.run(
        [*INTERRUPTED_CLI, *RUN, "--out", str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    shutil.copytree(out, root / "as-interrupted")
    return out, root / "as-interrupted", child.returncode, child.stderr, env


def test_sigint_keeps_the_finished_programs_and_resume_equals_an_uninterrupted_run(interrupted, tmp_path):
    out, _, status, stderr, env = interrupted
    assert status == 130, stderr
    line = stderr.strip().splitlines()[-1]
    assert line == (
        f"optax-lab: interrupted (Ctrl-C) after 2 of 3 programs had finished: their runs are in "
        f"{out / RUNS_FILE} and {out / 'report.md'} is marked INCOMPLETE (1 run missing); resume with: "
        f"optax-lab {' '.join(RUN)} --out {out} --resume"
    ), stderr
    header, *programs = _lines(out / RUNS_FILE)
    assert header["kind"] == "optax-lab finished programs" and len(header["config_hash"]) == 16
    assert header["inputs"]["--epochs"] == 2 and header["inputs"]["--seeds"] == 2
    assert header["inputs"]["data imdb-mlp"].startswith("synthetic-imdb from synthetic")
    assert {"jax", "jaxlib", "optax", "flax", "optax_lab"} <= set(header["inputs"])
    assert [[run["name"] for run in program["runs"]] for program in programs] == [["sgd @500"], ["adam @500"]]
    partial = json.loads((out / "results.json").read_text())
    assert [run["name"] for run in partial["runs"]] == ["sgd @500", "adam @500"]
    assert partial["incomplete"]["missing_runs"] == ["momentum @500"]
    assert partial["incomplete"]["resume"].endswith(" --resume")
    report = (out / "report.md").read_text()
    assert report.startswith("# INCOMPLETE: ") and "missing: momentum @500" in report

    resumed = subprocess.run(
        [*CLI, *RUN, "--out", str(out), "--resume"], env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("restored from runs.jsonl") == 2 and resumed.stderr.count("compiled in") == 1
    assert not (out / RUNS_FILE).exists()  # the complete report holds them now, and programs.jsonl
    kept = _lines(out / PROGRAMS_FILE)
    assert kept[1:3] == programs and [run["name"] for run in kept[3]["runs"]] == ["momentum @500"]
    assert len(kept) == 1 + 3  # the two restored, as they were stored, then the one trained after
    whole_out = tmp_path / "whole" / "out"  # same folder name: the recorded commands are then equal
    whole = subprocess.run([*CLI, *RUN, "--out", str(whole_out)], env=env, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr
    assert whole.stderr.count("compiled in") == 3  # one compile (or cache load) per program, no more
    final, reference = (json.loads((folder / "results.json").read_text()) for folder in (out, whole_out))
    assert "incomplete" not in final and len(final["programs"]) == 3
    # Histories bit for bit, and every other number and name: only the clock differs.
    assert _without_timings(final) == _without_timings(reference)
    assert final["runs"][0]["timing"]["compile_s"] == programs[0]["runs"][0]["compile_s"]  # the original process's
    assert (out / "report.md").read_text().startswith("# optax-lab report")


def test_resume_refuses_other_options_and_a_folder_without_an_interrupted_run(
    interrupted, tmp_path, error_line, monkeypatch
):
    out = tmp_path / "out"
    shutil.copytree(interrupted[1], out)
    stored = (out / RUNS_FILE).read_bytes()

    def error(args) -> str:
        assert main(args) == 2
        return error_line()

    assert error([*RUN[:-1], "1", "--out", str(out), "--resume"]).startswith(
        "optax-lab: error: --resume: --epochs was 2, now 1: resume with the options of the interrupted run "
        f"(it ran `optax-lab {' '.join(RUN)} --out out`) or use a new --out"
    )
    assert "--seeds was 2, now 3; shuffling order was per-seed, now shared:" in error(
        [*RUN, "--seeds", "3", "--shared-order", "--out", str(out), "--resume"]
    )
    versions = runner.package_versions()
    monkeypatch.setattr(runner, "package_versions", lambda: {**versions, "optax": "0.0.1"})
    assert "--resume: optax was " in error([*RUN, "--out", str(out), "--resume"])
    assert error([*RUN, "--out", str(out)]) == (
        f"optax-lab: error: --out {out} holds an interrupted run (2 programs finished, in runs.jsonl): add --resume "
        f"to continue it, or remove {out} (or choose another --out) to start over"
    )
    assert (out / RUNS_FILE).read_bytes() == stored
    assert "holds no interrupted run" in error([*RUN, "--out", str(tmp_path / "none"), "--resume"])
    assert not (tmp_path / "none").exists()


def test_a_torn_last_line_is_ignored_and_cut_off_before_resuming(interrupted, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(interrupted[1], out)
    whole = (out / RUNS_FILE).read_bytes()
    with open(out / RUNS_FILE, "ab") as handle:
        handle.write(b'{"program": "abc", "runs": [')  # a crash in the middle of an append
    store = RunStore.open(out, resume=True, command="")
    assert len(store.stored) == 2 and (out / RUNS_FILE).read_bytes() == whole


def test_an_interruption_before_the_first_program_leaves_nothing(tmp_path, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "run_prepared", interrupt)
    assert main([*RUN, "--out", str(tmp_path / "out"), "--no-compile-cache"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        "optax-lab: interrupted (Ctrl-C) before the first program finished; nothing was written"
    )
    assert not (tmp_path / "out").exists()


TUNE = [
    "tune",
    "--optimizers",
    "sgd",
    "--batch",
    "500",
    "--dataset",
    "synthetic-imdb",
    "--train-examples",
    "1000",
    "--seeds",
    "2",
    "--epochs",
    "2",
    "--points",
    "3",
    "--decades",
    "1",
    "--search-seeds",
    "1",
    "--extend",
    "0",
    "--no-compile-cache",
]  # two programs: stage 1's grid, stage 2's rerun of the winner


@pytest.mark.slow  # two more compiles (about 12 s of CPU): the run test above covers the same store
def test_an_interrupted_tune_resumes_to_the_uninterrupted_tune(tmp_path, capsys, monkeypatch):
    out, whole = tmp_path / "a" / "out", tmp_path / "b" / "out"
    monkeypatch.setenv("COLUMNS", "250")  # the console's log lines unwrapped
    add = RunStore.add

    def add_then_interrupt(store, *args):
        add(store, *args)
        raise KeyboardInterrupt  # Ctrl-C once stage 1's program is on disk

    with monkeypatch.context() as patch:
        patch.setattr(RunStore, "add", add_then_interrupt)
        assert main([*TUNE, "--out", str(out)]) == 130
    assert "after 1 program had finished" in capsys.readouterr().err
    partial = json.loads((out / "results.json").read_text())
    assert partial["incomplete"]["not_started"].startswith("stage 2") and not (out / "tuned.json").exists()
    assert main([*TUNE, "--out", str(out), "--resume"]) == 0
    assert capsys.readouterr().err.count("restored from runs.jsonl") == 1
    assert main([*TUNE, "--out", str(whole)]) == 0
    final, reference = (json.loads((folder / "results.json").read_text()) for folder in (out, whole))
    assert _without_timings(final) == _without_timings(reference)
    tuned, tuned_reference = (json.loads((folder / "tuned.json").read_text()) for folder in (out, whole))
    tuned.pop("created"), tuned_reference.pop("created")
    assert tuned == tuned_reference and not (out / RUNS_FILE).exists()


def test_sigterm_takes_the_same_path_and_restores_the_handler(tmp_path, capsys, monkeypatch):
    # After the tune test (when slow tests run), its stage-2 program (sgd, one point, two seeds)
    # is this run's first: nothing compiles here then.
    out = tmp_path / "out"
    add = RunStore.add

    def add_then_terminate(store, *args):
        add(store, *args)
        os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler's stop does, after the first program

    monkeypatch.setattr(RunStore, "add", add_then_terminate)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["run", "--optimizers", "sgd,adam", *RUN[3:], "--out", str(out), "--no-compile-cache"]) == 143
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .startswith("optax-lab: terminated (SIGTERM) after 1 of 2 programs had finished")
    )
    assert signal.getsignal(signal.SIGTERM) is before
    assert len(_lines(out / RUNS_FILE)) == 2
    assert json.loads((out / "results.json").read_text())["incomplete"]["missing_runs"] == ["adam @500"]
