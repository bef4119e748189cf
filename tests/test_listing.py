"""`optax-lab list`: whole names in pipes (one tab-separated entry per line), the registry as JSON
for scripts, and terminal tables that never cut a name."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from rich.console import Console

from optax_lab import optimizers, workloads
from optax_lab._console import registry_table, summary_table
from optax_lab.cli import main

REGISTRIES = {"optimizers": optimizers.REGISTRY, "workloads": workloads.REGISTRY}


@pytest.mark.parametrize("what", ["optimizers", "workloads"])
def test_piped_list_is_one_whole_entry_per_tab_separated_line(what, capsys):
    assert main(["list", what]) == 0
    out = capsys.readouterr().out  # capsys' stdout is no terminal: a pipe
    header, *lines = out.splitlines()
    assert header.split("\t")[0] == "name"
    assert [line.split("\t")[0] for line in lines] == list(REGISTRIES[what])
    assert all(line.count("\t") == header.count("\t") for line in lines)
    assert "…" not in out and "│" not in out


def test_list_in_a_real_pipe_greps_whole_names():
    done = subprocess.run(
        [sys.executable, "-m", "optax_lab.cli", "list"], capture_output=True, text=True, timeout=120, check=True
    )
    names = [line.split("\t")[0] for line in done.stdout.splitlines() if "optimistic" in line]
    assert names == ["optimistic_gradient_descent", "optimistic_adam_v2", "optimistic_adam"]
    assert done.stderr == ""


def test_list_json_has_every_optimizer_with_its_hyperparameters_defaults_and_domains(capsys):
    assert main(["list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [entry["name"] for entry in entries] == list(optimizers.REGISTRY)
    adam = next(entry for entry in entries if entry["name"] == "adam")
    assert adam["optax"] == "adam" and adam["main"] == "learning_rate" and "core" in adam["tags"]
    hyperparams = {h["name"]: h for h in adam["hyperparameters"]}
    assert list(hyperparams) == list(optimizers.get("adam").accepted)
    assert hyperparams["learning_rate"]["default"] == optimizers.get("adam").defaults["learning_rate"]
    assert hyperparams["b1"]["domain"] == {
        "kind": "real",
        "text": "a number in [0, 1)",
        "low": 0.0,
        "high": 1.0,
        "low_open": False,
        "high_open": True,
        "optional": False,
        "choices": [],
    }
    assert hyperparams["b1"]["traced"] and not hyperparams["nesterov"]["traced"]
    assert hyperparams["learning_rate"]["domain"]["high"] is None  # infinity is no JSON number
    cocob = next(entry for entry in entries if entry["name"] == "cocob")
    assert cocob["main"] is None and cocob["no_main"]


def test_list_workloads_json_has_targets_epochs_batches_and_references(capsys):
    assert main(["list", "workloads", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [entry["name"] for entry in entries] == list(workloads.REGISTRY)
    for entry in entries:
        assert {"description", "target", "epochs", "batches", "reference", "optimizer_defaults"} <= set(entry)
        assert {"metric", "value", "direction"} <= set(entry["target"])
    assert entries[0]["batches"] == [500, "full"]


@pytest.mark.parametrize("what", ["optimizers", "workloads"])
@pytest.mark.parametrize("width", [80, 60, 200])
def test_a_terminal_table_never_cuts_a_name(what, width):
    console = Console(width=width, force_terminal=True, color_system=None, record=True)
    console.print(registry_table(what, console.width))
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= width
    cells = {line.split("│")[1].strip() for line in lines if line.startswith("│")}
    assert set(REGISTRIES[what]) <= cells  # each name whole, in its own cell: not cut, not folded
    # nothing cropped: every line of the frame ends in its right border
    assert all(line.rstrip()[-1] in "┓┃┩│┘" for line in lines if line[:1] in "┏┃┡│└")


def test_a_wide_terminal_shows_every_column_and_a_narrow_one_says_what_it_left_out():
    wide = Console(width=250, force_terminal=True, color_system=None, record=True)
    wide.print(registry_table("optimizers", wide.width))
    assert "note" in wide.export_text() and "not shown" not in wide.export_text()
    narrow = Console(width=80, force_terminal=True, color_system=None, record=True)
    narrow.print(registry_table("optimizers", narrow.width))
    assert "not shown at this width: update() also needs, note" in " ".join(narrow.export_text().split())


def test_the_summary_table_never_cuts_a_run_name():
    name = "imdb-10k-mlp: optimistic_gradient_descent @full"
    run = {
        "name": name,
        "status": "ok",
        "final": {"val_loss_mean": 0.5, "val_loss_ci95": 0.01, "val_acc_mean": 0.8},
        "timing": {"compile_s": 1.0, "seed_epochs_per_s": 10.0},
    }
    console = Console(width=80, force_terminal=True, color_system=None, record=True)
    summary_table(console, {"dataset": {"name": "imdb", "source": "x"}, "order": "per-seed", "runs": [run]}, 8)
    assert name in console.export_text()
