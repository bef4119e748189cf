"""Hyperparameters on the replica axis: sweeps compile once per optimizer, every point is its own
replicas (equal to running it alone), the tuner's protocol, and tuned.json round trips."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from optax_lab import engine, workloads
from optax_lab.cli import main
from optax_lab.config import Config, Tuned
from optax_lab.errors import UsageError
from optax_lab.grids import Criterion
from optax_lab.lessons import RunSpec
from optax_lab.planning import plan
from optax_lab.runner import train_and_evaluate
from optax_lab.sweep import parse_sweep
from optax_lab.tuning import read_tuned

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows

RATES = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


# --- The grammar -------------------------------------------------------------------------------


def test_log_lin_around_and_list_sweeps():
    log = parse_sweep("learning_rate=log:1e-4:1e-1:16")
    assert log.optimizer is None and len(log.values) == 16
    assert log.values[0] == 1e-4 and log.values[-1] == 0.1  # both ends included
    assert np.allclose(np.diff(np.log10(log.values)), 0.2, atol=1e-3)
    assert parse_sweep("adam.b1=0.8,0.9,0.95").values == (0.8, 0.9, 0.95)
    assert parse_sweep("adam.b1=lin:0.8:0.95:4").values == (0.8, 0.85, 0.9, 0.95)
    around = parse_sweep("main=around:4:17").values_for(0.01)
    assert len(around) == 17 and around[0] == 1e-4 and around[8] == 0.01 and around[-1] == 1.0


# --- Planning: which optimizer gets which grid ---------------------------------------------------


def _sweep_runs(optimizers, *sweeps):
    config = Config(optimizers=optimizers, batches=(500,), sweeps=tuple(map(parse_sweep, sweeps)))
    return [(run.optimizer, dict(run.point)) for run in plan(config)[0].runs]


def test_an_unprefixed_sweep_applies_to_the_optimizers_that_take_it():
    runs = _sweep_runs(("adam", "sgd"), "b1=0.8,0.9")
    assert runs == [("adam", {"b1": 0.8}), ("adam", {"b1": 0.9}), ("sgd", {})]


def test_several_sweeps_give_their_product_and_main_is_each_optimizers_scale():
    runs = _sweep_runs(("adam", "polyak_sgd"), "main=0.01,0.1", "adam.b1=0.8,0.9,0.95")
    assert len([r for r in runs if r[0] == "adam"]) == 6
    assert ("adam", {"learning_rate": 0.1, "b1": 0.95}) in runs
    assert [p for name, p in runs if name == "polyak_sgd"] == [{"max_learning_rate": 0.01}, {"max_learning_rate": 0.1}]


def test_a_sweep_value_outside_a_domain_fails_before_any_work():
    with pytest.raises(UsageError, match=r"--sweep b2=0.99,1: adam\.b2=1.0 is outside the domain.*\[0, 1\)"):
        _sweep_runs(("adam",), "b2=0.99,1")


# --- The engine: one compile per optimizer, each point its own replicas --------------------------


def test_adam_at_five_learning_rates_compiles_once(small_data, count_compiles):
    engine.forget_compiled()  # another test file in this worker may have compiled the looped program
    specs = [RunSpec(f"adam {lr:g}", "adam", {"learning_rate": lr}, 500) for lr in RATES]
    results = engine.train_points(specs, small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=2)
    assert len(count_compiles) == 1
    assert len({r.program for r in results}) == 1 and results[0].settings.num_replicas == 10
    finals = [r.history["val_loss"][:, -1] for r in results]
    assert len({tuple(f) for f in finals}) == 5  # the rates differ, so do the runs
    # The traced-value loop: one 2-replica program called once per point gives the same runs.
    looped = engine.train_points(specs, small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=2, max_replicas=2)
    assert looped[0].program_calls == 5 and len(count_compiles) == 2
    for whole, part in zip(results, looped, strict=False):
        for key, values in whole.history.items():
            np.testing.assert_allclose(part.history[key], values, rtol=2e-5, atol=1e-6, err_msg=key)
    # ... which is the program of a point trained alone (no compile), and gives that point's runs.
    alone = engine.train(specs[3], small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=2)
    assert len(count_compiles) == 2 and alone.program == looped[3].program
    np.testing.assert_allclose(alone.history["val_loss"], results[3].history["val_loss"], rtol=2e-5, atol=1e-6)


@pytest.mark.slow  # a grid is one program: test_adam_at_five_learning_rates_compiles_once, in CI
def test_a_grid_of_two_hyperparameters_is_one_program(small_data, count_compiles):
    specs = [
        RunSpec("p", "adamw", {"learning_rate": lr, "weight_decay": wd}, 500)
        for lr in (1e-3, 1e-2)
        for wd in (0.0, 0.1)
    ]
    results = engine.train_points(specs, small_data, workload=IMDB_MLP, seeds=(0,), epochs=1)
    assert len(count_compiles) == 1 and len({r.history["val_loss"][0, 0] for r in results}) == 4


def test_a_static_hyperparameter_is_another_program():
    with pytest.raises(ValueError, match="one program"):
        engine.train_points(
            [RunSpec("a", "lookahead_adam", {"sync_period": k}, 500) for k in (2, 4)],
            None,
            workload=IMDB_MLP,
            seeds=(0,),
            epochs=1,
        )


def test_results_count_a_programs_compile_once_and_share_its_run_time():
    config = Config(
        optimizers=("adam",),
        batches=(500,),
        sweeps=(parse_sweep("learning_rate=1e-3,1e-2,1e-1"),),
        dataset="synthetic-imdb",
        train_examples=1000,
        seeds=2,
        epochs=1,
    )
    results = train_and_evaluate(config)
    timings = [run["timing"] for run in results["runs"]]
    assert len({t["program"] for t in timings}) == 1
    assert timings[0]["compile_s"] > 0 and [t["compile_s"] for t in timings[1:]] == [0.0, 0.0]
    program = results["programs"][timings[0]["program"]]
    assert program["replicas"] == 6 and len(program["runs"]) == 3
    assert sum(t["run_s"] for t in timings) == pytest.approx(program["run_s"])
    assert [run["point"] for run in results["runs"]] == [{"learning_rate": v} for v in (1e-3, 1e-2, 1e-1)]


# --- The tuner ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    """`optax-lab tune` end to end, small: (its config, results.json, tuned.json, the output folder)."""
    out = tmp_path_factory.mktemp("tune")
    # sgd around 0.001 for 2 epochs: its best rate is the grid's largest, so the grid must grow.
    assert (
        main(
            [
                "tune",
                "--optimizers",
                "sgd,cocob",
                "--set",
                "sgd.learning_rate=0.001",
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
                "5",
                "--decades",
                "2",
                "--search-seeds",
                "1",
                "--extend",
                "1",
                "--out",
                str(out),
                "--no-compile-cache",
            ]
        )
        == 0
    )
    config = Config(optimizers=("sgd", "cocob"), batches=(500,))
    return (config, (json.loads((out / "results.json").read_text()), json.loads((out / "tuned.json").read_text())), out)


def test_the_tuner_searches_on_its_own_seeds_then_reruns_the_best_point(tuned_run):
    _, (results, tuned), out = tuned_run
    stage1, stage2 = results["lessons"]
    assert stage1["kind"] == "sweep" and stage1["stage"] == 1 and stage2["kind"] == "ranking"
    search = {run["name"]: run for run in results["runs"] if run["name"] in stage1["runs"]}
    sgd = [run for run in search.values() if run["optimizer"] == "sgd"]
    assert all(run["seeds"] == [2] for run in search.values())  # disjoint from the ranking's 0, 1
    # sgd's best rate for 2 epochs is its largest: the grid grew a decade upwards, once (the limit).
    assert stage1["extended"] == {"sgd": ["high"]} and len(sgd) == 5 + 2
    best = min(sgd, key=lambda run: run["final"]["val_loss_mean"])
    assert tuned["points"]["sgd"]["500"] == best["point"]
    ranked = {run["optimizer"]: run for run in results["runs"] if run["name"] in stage2["runs"]}
    assert ranked["sgd"]["point"] == best["point"] and ranked["sgd"]["seeds"] == [0, 1]
    assert tuned["points"]["cocob"]["500"] == {} and "no rate to tune" in tuned["notes"]["cocob"]
    assert results["tuning"]["search"] == tuned["search"] == "grid" and "grid" in tuned  # the ruleset, named
    assert "cocob @500" in stage2["runs"] and not any(run.startswith("cocob") for run in stage1["runs"])
    report = (out / "report.md").read_text()
    assert "extended" in report and "tied" in report and (out / "sweep-500-sensitivity.png").is_file()


def test_tuned_json_round_trips_into_a_ranking(tuned_run, tmp_path):
    config, (_, tuned), out = tuned_run
    workload, (points, source) = read_tuned(out / "tuned.json")
    assert workload == "imdb-mlp"
    assert source.startswith("tuned.json (sha256 ")
    lessons = plan(dataclasses.replace(config, tuned={"imdb-mlp": Tuned(points, source)}))
    assert {run.optimizer: dict(run.hyperparams) for run in lessons[0].runs}["sgd"] == tuned["points"]["sgd"]["500"]
    with pytest.raises(UsageError, match="no tuned point for sgd at batch full"):
        plan(dataclasses.replace(config, batches=(None,), tuned={"imdb-mlp": Tuned(points, source)}))


def test_a_foreign_tuned_file_is_refused(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"schema": 1, "runs": []}))
    assert main(["run", "--optimizers", "adam", "--tuned", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "is not a tuned.json" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_epochs_to_target_breaks_ties_by_the_final_loss():
    from optax_lab.selection import best_index

    slow = {"val_loss": [[0.7, 0.65], [0.7, 0.64]], "train_loss": [[0.7, 0.6], [0.7, 0.6]]}
    fast_low = {"val_loss": [[0.55, 0.50], [0.58, 0.52]], "train_loss": [[0.6, 0.5], [0.6, 0.5]]}
    fast_high = {"val_loss": [[0.55, 0.56], [0.58, 0.57]], "train_loss": [[0.6, 0.5], [0.6, 0.5]]}
    assert best_index([slow, fast_high, fast_low], Criterion.EPOCHS_TO_TARGET, 0.6) == 2
    assert best_index([slow, fast_high, fast_low], Criterion.BEST_VAL_LOSS, 0.6) == 2
    diverged = {"val_loss": [[0.5, None], [0.5, 0.4]], "train_loss": [[0.5, 0.4], [0.5, 0.4]]}
    assert best_index([diverged, slow], Criterion.FINAL_VAL_LOSS, 0.6) == 1
