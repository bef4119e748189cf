"""Programs over jobs (`--launcher local`, submitit's local processes): 2 jobs x 2 programs give a
single process's results, histories bit for bit; a job that fails leaves the other's programs and
one line naming what is missing, and `--resume` launches only that; bad launcher options are one
line each, with nothing written."""

from __future__ import annotations

import json
import sys
import time

import cloudpickle
import pytest

from optax_lab import launch
from optax_lab.cli import main
from optax_lab.run_store import JOBS_DIR, PROGRAMS_FILE, RUNS_FILE

pytest.importorskip("submitit")

RUN = ["run", "--optimizers", "sgd,adam,momentum,rmsprop", "--batch", "500", "--dataset", "synthetic-imdb"]
RUN += ["--train-examples", "1000", "--seeds", "2", "--epochs", "2", "--no-compile-cache"]  # four programs
LAUNCH = ["--launcher", "local", "--jobs", "2"]
REAL_RUN_JOB = launch.run_job


def _histories(out) -> dict:
    results = json.loads((out / "results.json").read_text())
    return {run["name"]: run["history"] for run in results["runs"]}


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "out"
    assert main([*RUN, "--out", str(out)]) == 0
    return out


def test_two_local_jobs_give_the_single_process_results_bit_for_bit(single_process, tmp_path):
    out = tmp_path / "out"
    assert main([*RUN, *LAUNCH, "--out", str(out)]) == 0
    assert _histories(out) == _histories(single_process)  # json floats: exact, so bit for bit
    results = json.loads((out / "results.json").read_text())
    assert [machine["programs"] for machine in results["machines"]] == [4]
    lines = (out / PROGRAMS_FILE).read_text().splitlines()
    assert len(lines) == 1 + 4 and not (out / RUNS_FILE).exists() and not (out / JOBS_DIR).exists()


def _second_job_fails(work):
    if work.name.endswith("-001"):
        raise RuntimeError("this node lost its GPU")
    return REAL_RUN_JOB(work)


def test_a_failed_job_keeps_the_others_programs_and_resume_launches_the_rest(
    single_process, tmp_path, monkeypatch, capsys
):
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the failing job function reaches the job
    monkeypatch.setattr(launch, "run_job", _second_job_fails)
    out = tmp_path / "out"
    try:
        assert main([*RUN, *LAUNCH, "--out", str(out)]) == 2
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("optax-lab: error: 1 of 2 jobs failed (job ") and "this node lost its GPU" in line
    assert "2 programs are missing: adam @500, rmsprop @500" in line and "resume with: " in line
    assert "INCOMPLETE" in (out / "report.md").read_text()
    assert main(["merge", str(out), "--out", str(tmp_path / "merged")]) == 2  # it reads the jobs' files too
    assert "2 of 4 programs are in none of the folders (adam @500, rmsprop @500)" in capsys.readouterr().err
    monkeypatch.setattr(launch, "run_job", REAL_RUN_JOB)
    assert main([*RUN, *LAUNCH, "--out", str(out), "--resume"]) == 0
    restored = [text for text in capsys.readouterr().err.splitlines() if "restored" in text]
    assert len(restored) == 2  # sgd and momentum, from the job that finished; the rest launched again
    assert _histories(out) == _histories(single_process)


def test_slurm_jobs_get_the_partition_time_and_gpus(tmp_path, monkeypatch):
    (tmp_path / "bin").mkdir()
    for tool in ("sbatch", "srun"):  # stand-ins: nothing is submitted
        (tmp_path / "bin" / tool).write_text("#!/bin/sh\nexit 1\n")
        (tmp_path / "bin" / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    launcher = launch.Launcher("slurm", jobs=16, partition="gpu", time_min=90, gpus_per_job=1, cpus_per_job=8)
    parameters = launcher.executor(tmp_path / "submitit")._executor.parameters
    assert {key: parameters[key] for key in ("partition", "time", "gpus_per_node", "array_parallelism")} == {
        "partition": "gpu",
        "time": 90,
        "gpus_per_node": 1,
        "array_parallelism": 16,
    }
    assert parameters["cpus_per_task"] == 8


@pytest.mark.parametrize(
    "options, message",
    [
        (["--launcher", "pbs"], "--launcher pbs: give one of local, slurm"),
        (["--launcher", "local", "--jobs", "0"], "--jobs 0: give at least 1 (how many jobs share a round's programs)"),
        (
            ["--launcher", "slurm"],
            "--launcher slurm: no Slurm answers here (sbatch and srun not on PATH): run on a Slurm login node, "
            "or use --launcher local",
        ),
    ],
)
def test_bad_launcher_options_are_one_line(options, message, tmp_path, monkeypatch, error_line):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    out = tmp_path / "out"
    assert main([*RUN, *options, "--out", str(out)]) == 2
    assert error_line() == f"optax-lab: error: {message}"
    assert not out.exists()


def test_the_launcher_without_submitit_names_the_extra(tmp_path, monkeypatch, error_line):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import fails, as when it is not installed
    out = tmp_path / "out"
    assert main([*RUN, *LAUNCH, "--out", str(out)]) == 2
    assert error_line() == (
        "optax-lab: error: --launcher local needs submitit (the cluster extra): pip install 'optax_lab[cluster]'"
    )
    assert not out.exists()


def _second_job_hangs(work):
    if work.name.endswith("-001"):
        time.sleep(600)  # a job stuck on its node
    return REAL_RUN_JOB(work)


def test_ctrl_c_while_jobs_run_cancels_them_and_resume_finishes_the_run(single_process, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    wait = launch.Launcher.wait

    def interrupt_once_the_first_job_is_done(launcher):  # Ctrl-C while the second job still runs
        wait(launcher)
        if sum(len(path.read_text().splitlines()) - 1 for path in (out / JOBS_DIR).glob("*.jsonl")) == 2:
            raise KeyboardInterrupt

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(launch, "run_job", _second_job_hangs)
    monkeypatch.setattr(launch.Launcher, "wait", interrupt_once_the_first_job_is_done)
    try:
        assert main([*RUN, *LAUNCH, "--out", str(out)]) == 130
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        monkeypatch.undo()
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("optax-lab: interrupted (Ctrl-C) after 2 of 4 programs had finished")
    assert main([*RUN, *LAUNCH, "--out", str(out), "--resume"]) == 0
    assert _histories(out) == _histories(single_process)
