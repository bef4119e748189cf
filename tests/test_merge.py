"""`optax-lab merge`: runs of one configuration from two machines as one run, equal to the run made
whole, with each machine named; other configurations, folders without runs, an --out holding a
run and programs no folder finished are one line each, with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optax_lab.cli import main
from optax_lab.run_store import PROGRAMS_FILE, RUNS_FILE

RUN = ["run", "--optimizers", "sgd,adam,momentum", "--batch", "500", "--dataset", "synthetic-imdb"]
RUN += ["--train-examples", "1000", "--seeds", "2", "--epochs", "2"]  # three programs
NODE_B = {"host": "node-b", "cpu": "another CPU", "cores": 64, "devices": "1 x gpu (H100)"}


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "out"
    assert main([*RUN, "--out", str(out)]) == 0
    return out


def _split(whole: Path, folder: Path, programs: list[int], machine: dict | None = None) -> Path:
    """A run in `folder` holding some of `whole`'s programs, as an interrupted run on `machine` would."""
    header, *lines = [json.loads(line) for line in (whole / PROGRAMS_FILE).read_text().splitlines()]
    if machine:
        header = {**header, "machine": machine, "inputs": {**header["inputs"], "devices": machine["devices"]}}
        lines = [{**line, "machine": machine} for line in lines]
    folder.mkdir(parents=True)
    kept = [header, *(lines[index] for index in programs)]
    (folder / RUNS_FILE).write_text("".join(json.dumps(line) + "\n" for line in kept))
    return folder


def _runs(folder: Path) -> dict:
    results = json.loads((folder / "results.json").read_text())
    return {run["name"]: (run["history"], run["final"]) for run in results["runs"]}


def test_two_machines_halves_merge_to_the_whole_run(whole, tmp_path, capsys):
    first = _split(whole, tmp_path / "a", [0, 1])
    second = _split(whole, tmp_path / "b", [1, 2], NODE_B)  # program 1 in both: the first folder's is taken
    out = tmp_path / "merged"
    assert main(["merge", str(first), str(second), "--out", str(out)]) == 0
    assert _runs(out) == _runs(whole)
    results = json.loads((out / "results.json").read_text())
    assert [(machine["host"], machine["programs"]) for machine in results["machines"]][1:] == [("node-b", 1)]
    assert [source["folder"] for source in results["merged_from"]] == ["a", "b"]
    report = (out / "report.md").read_text()
    assert "| Machines |" in report and "node-b (another CPU, 64 cores, 1 x gpu (H100)): 1 program" in report
    assert len((out / PROGRAMS_FILE).read_text().splitlines()) == 1 + 3  # a merged run merges again
    assert "merged 2 runs, 3 programs from 2 machines" in capsys.readouterr().err


def test_a_merged_tune_writes_its_tuned_points(tmp_path):
    tune = ["tune", "--optimizers", "sgd", "--batch", "500", "--dataset", "synthetic-imdb", "--train-examples"]
    tune += ["1000", "--seeds", "2", "--epochs", "2", "--points", "3", "--decades", "1", "--search-seeds", "1"]
    tune += ["--extend", "0"]
    assert main([*tune, "--out", str(tmp_path / "tune")]) == 0
    out = tmp_path / "merged"
    assert main(["merge", str(tmp_path / "tune"), "--out", str(out)]) == 0
    tuned, merged = (_undated(json.loads((folder / "tuned.json").read_text())) for folder in (tmp_path / "tune", out))
    assert merged == tuned
    assert _runs(out) == _runs(tmp_path / "tune")


def _undated(record):
    """A record without its "created" times: the merge writes its own."""
    if isinstance(record, dict):
        return {key: _undated(value) for key, value in record.items() if key != "created"}
    return [_undated(value) for value in record] if isinstance(record, list) else record


def _error(argv, error_line) -> str:
    assert main(argv) == 2
    return error_line()


def test_bad_merges_are_one_line_and_write_nothing(whole, tmp_path, error_line, capsys):
    other = tmp_path / "seeds3"
    assert main([*RUN[:-4], "--seeds", "3", "--epochs", "2", "--out", str(other)]) == 0
    capsys.readouterr()
    out = tmp_path / "merged"
    assert _error(["merge", str(whole), str(other), "--out", str(out)], error_line) == (
        f"optax-lab: error: merge: {other} is a run of another configuration than {whole}: --seeds 2 in out, "
        "3 in seeds3: merge runs of one configuration"
    )
    (tmp_path / "empty").mkdir()
    assert _error(["merge", str(tmp_path / "empty"), "--out", str(out)], error_line) == (
        f"optax-lab: error: merge: {tmp_path / 'empty'} holds no run to merge (no programs.jsonl or runs.jsonl of "
        "this optax-lab): give the --out folders of `optax-lab run` or `tune`"
    )
    assert _error(["merge", str(whole), "--out", str(other)], error_line) == (
        f"optax-lab: error: merge --out {other} holds another run (results.json): give a new or empty folder"
    )
    part = _split(whole, tmp_path / "part", [0])
    assert _error(["merge", str(part), "--out", str(out)], error_line) == (
        "optax-lab: error: 2 of 3 programs are in none of the folders (adam @500, momentum @500): finish them "
        f"with `optax-lab {' '.join(RUN)} --out out --resume` where that run stopped, then merge again"
    )
    assert not out.exists()
