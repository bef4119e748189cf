"""The tuner's sampled searches (`tune --search halton|random`): the points of a study are
deterministic for its seed and inside the space, every trial of every study is a replica of one
compiled program, the time to target is the median over studies of each study's fastest trial, a
bad space is one line, and a tiny Halton tune runs end to end into a ranking at its points."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from optax_lab import engine, search, workloads
from optax_lab.cli import main
from optax_lab.config import Config
from optax_lab.lessons import Lesson, RunSpec
from optax_lab.planning import program_groups
from optax_lab.records import program_digest
from optax_lab.studies import fastest_median, time_to_target, trial_epochs
from optax_lab.sweep import Protocol, Search
from optax_lab.tuning import TunePlanner

IMDB_MLP = workloads.get("imdb-mlp")
SMALL = ["--dataset", "synthetic-imdb", "--train-examples", "1000", "--batch", "500"]


def _axes(name: str = "adam", space: search.Space | None = None) -> tuple[search.Axis, ...]:
    space = space or search.default_space(4.0)
    return search.optimizer_axes(name, space.ranges, {"learning_rate": 0.001}, strict=bool(space.source))


# --- Spaces and samplers -------------------------------------------------------------------------


@pytest.mark.parametrize("ruleset", [Search.HALTON, Search.RANDOM])
def test_a_studys_points_are_deterministic_for_its_seed_and_inside_the_space(ruleset):
    axes = _axes()
    assert [axis.hyperparam for axis in axes] == ["learning_rate", "b1", "b2"]  # adam takes no weight decay
    first = search.study_points(ruleset, axes, 16, seed=3)
    assert first == search.study_points(ruleset, axes, 16, seed=3)
    assert first != search.study_points(ruleset, axes, 16, seed=4)  # another study, other points
    values = {name: np.array([point[name] for point in first]) for name in ("learning_rate", "b1", "b2")}
    assert ((1e-5 <= values["learning_rate"]) & (values["learning_rate"] <= 0.1)).all()  # 4 decades around 0.001
    assert ((0.5 <= values["b1"]) & (values["b1"] <= 0.99)).all()  # 1-b1 in [0.01, 0.5]
    assert ((0.9 <= values["b2"]) & (values["b2"] <= 0.999)).all()
    assert len({point["learning_rate"] for point in first}) == 16
    # Log-uniform: as many points in each decade of the learning rate, give or take.
    decades = np.histogram(np.log10(values["learning_rate"]), bins=4, range=(-5, -1))[0]
    assert decades.min() >= 2, decades


def test_halton_points_fill_the_space_more_evenly_than_random_ones():
    axes = _axes()
    spread = {}
    for ruleset in (Search.HALTON, Search.RANDOM):
        counts = [
            np.histogram([p["b1"] for p in search.study_points(ruleset, axes, 64, seed)], bins=8)[0].std()
            for seed in range(8)
        ]
        spread[ruleset] = np.mean(counts)
    assert spread[Search.HALTON] < spread[Search.RANDOM], spread


def test_a_users_space_reads_linear_log_complement_and_decades(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(
        json.dumps(
            {
                "main": {"decades": 2},
                "1-b1": {"min": 0.05, "max": 0.2, "scale": "linear"},
                "eps": {"min": 1e-9, "max": 1e-6, "scale": "log"},
            }
        )
    )
    space = search.read_space(path)
    assert space.source == f"--space {path}"
    adam = {axis.hyperparam: axis for axis in _axes("adam", space)}
    assert adam["learning_rate"][1:3] == (1e-4, 0.01) and adam["b1"].ends() == (0.8, 0.95)
    assert [axis.hyperparam for axis in _axes("sgd", space)] == ["learning_rate"]  # sgd takes neither b1 nor eps


# --- The planner: every trial of every study is one program per optimizer --------------------------


def _planner(ruleset=Search.HALTON, space=None, **protocol) -> TunePlanner:
    config = Config(optimizers=("adam", "sgd"), batches=(500,), dataset="synthetic-imdb", seeds=2, epochs=1)
    protocol = Protocol(search=ruleset, search_seeds=1, **{"trials": 3, "studies": 2, **protocol})
    return TunePlanner(config, protocol, space)


def test_trials_times_studies_are_the_points_of_one_program_per_optimizer():
    planner = _planner()
    (stage1,) = planner.lessons
    jobs = next(planner.rounds()).jobs
    assert program_digest(jobs, (2,)) == program_digest(next(_planner().rounds()).jobs, (2,))  # resumes plan the same
    groups = program_groups(jobs)
    assert [len(group) for group in groups] == [6, 6]  # adam's and sgd's trials, 3 x 2 each
    assert [group[0].spec.optimizer for group in groups] == ["adam", "sgd"]
    assert stage1.runs[4].name == "adam @500 study 2 trial 2"
    assert planner.study_runs[stage1.name]["sgd"][1] == [f"sgd @500 study 2 trial {t}" for t in (1, 2, 3)]
    # The studies are their seeds' points: study 1 of adam is its first seed's.
    assert [dict(run.point) for run in stage1.runs[:3]] == [
        dict(point) for point in search.study_points(Search.HALTON, planner.axes["adam"], 3, planner.study_seeds[0])
    ]


def test_one_compile_for_every_trial_of_every_study(small_data, count_compiles):
    engine.forget_compiled()
    planner = _planner(trials=4, studies=2)
    adam = [job.spec for job in next(planner.rounds()).jobs if job.spec.optimizer == "adam"]
    results = engine.train_points(adam, small_data, workload=IMDB_MLP, seeds=(5, 6), epochs=1)
    assert len(count_compiles) == 1
    assert len({r.program for r in results}) == 1 and results[0].settings.num_replicas == 4 * 2 * 2
    finals = {tuple(r.history["val_loss"][:, -1]) for r in results}
    assert len(finals) == 8  # each trial its own hyperparameters, so its own runs


def test_the_resume_fingerprint_covers_the_ruleset_and_a_grids_stays_as_it_was(tmp_path):
    grid = _planner(Search.GRID).resume_extras
    assert list(grid) == ["--seeds", "--points", "--decades", "--search-seeds", "--extend"]
    halton = _planner().resume_extras
    assert halton["--search"] == "halton" and halton["--trials"] == 3 and halton["--studies"] == 2
    assert _planner(Search.RANDOM).resume_extras != halton
    assert _planner(trials=4).resume_extras != halton and _planner(studies=3).resume_extras != halton
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"learning_rate": {"min": 1e-3, "max": 0.1, "scale": "log"}}))
    assert _planner(space=search.read_space(path)).resume_extras["--space"] == {
        "learning_rate": {"min": 1e-3, "max": 0.1, "scale": "log"}
    }


# --- AlgoPerf's time to target -----------------------------------------------------------------------


def test_the_time_to_target_is_the_median_over_studies_of_each_studys_fastest_trial():
    inf = math.inf
    assert fastest_median([[3, inf, 5], [inf, inf], [2, 4]]) == (3.0, [3, inf, 2])
    assert fastest_median([[1], [3]])[0] == 2.0
    assert fastest_median([[inf, 1], [inf], [inf]])[0] == inf  # most studies never got there
    assert fastest_median([[1], [inf]])[0] == inf  # half of them: nor does the median study
    assert trial_epochs({"reached_seeds": 2, "epochs_mean": 3.5}, seeds=2) == 3.5
    assert trial_epochs({"reached_seeds": 1, "epochs_mean": 2.0}, seeds=2) == inf  # a seed never got there

    def run(name, epochs_per_seed):
        reached = [e for e in epochs_per_seed if e is not None]
        target = {"reached_seeds": len(reached), "epochs_mean": np.mean(reached) if reached else math.nan}
        return {"name": name, "seeds": [0, 1], "steps_per_epoch": 10, "target": target}

    runs = [run("a", [2, 4]), run("b", [1, None]), run("c", [5, 5]), run("d", [None, None]), run("e", [2, 2])]
    lesson = Lesson("sweep-500", "t", "q", (RunSpec("a", "adam", batch_size=500),))
    record = time_to_target([lesson], {"sweep-500": {"adam": [["a", "b"], ["c", "d"], ["e"]]}}, runs)
    # Fastest per study: 3 (b does not count: a seed missed), 5, 2; the median is 3 epochs, 30 steps.
    assert record == {"500": {"adam": {"epochs": 3.0, "steps": 30.0, "study_epochs": [3.0, 5.0, 2.0]}}}


# --- Bad input: one line, exit 2, nothing written -----------------------------------------------------

SPACES = {
    "notjson.json": "{learning_rate: 1}",
    "scale.json": {"learning_rate": {"min": 1e-4, "max": 0.1, "scale": "cubic"}},
    "order.json": {"learning_rate": {"min": 0.1, "max": 0.1, "scale": "log"}},
    "nobody.json": {"betas": {"min": 0.1, "max": 0.2, "scale": "linear"}},
    "domain.json": {"1-b1": {"min": 0.5, "max": 1.5, "scale": "linear"}},
    "static.json": {"sync_period": {"min": 2, "max": 8, "scale": "linear"}},
    "shape.json": {"learning_rate": [1e-4, 0.1]},
    "twice.json": {"main": {"decades": 2}, "learning_rate": {"min": 1e-3, "max": 0.1, "scale": "log"}},
}

BAD_SEARCHES = [
    (["--search", "bayes"], "--search 'bayes' is not a ruleset: choose one of grid, halton, random"),
    (["--search", "halton", "--trials", "0"], "--trials 0: a study needs at least 1 trial"),
    (["--search", "halton", "--studies", "0"], "--studies 0: a search needs at least 1 study"),
    (["--trials", "5"], "--trials does not apply to --search grid: drop it, or add --search halton or random"),
    (["--space", "{tmp}/scale.json"], "--space does not apply to --search grid"),
    (["--search", "random", "--points", "9"], "--points does not apply to --search random"),
    (["--search", "halton", "--space", "{tmp}/missing.json"], "cannot read it (No such file or directory)"),
    (["--search", "halton", "--space", "{tmp}/notjson.json"], "notjson.json is not JSON"),
    (["--search", "halton", "--space", "{tmp}/scale.json"], "unknown scale 'cubic': use log or linear"),
    (["--search", "halton", "--space", "{tmp}/order.json"], "min 0.1 must be below max 0.1"),
    (["--search", "halton", "--space", "{tmp}/shape.json"], "'learning_rate' is not {\"min\": LOW"),
    (["--search", "halton", "--space", "{tmp}/nobody.json"], "none of the optimizers tuned (adam, lookahead_adam)"),
    (["--search", "halton", "--space", "{tmp}/domain.json"], "adam.b1=-0.5 is outside the domain"),
    (["--search", "halton", "--space", "{tmp}/static.json"], "lookahead_adam.sync_period is compiled into"),
    (
        ["--search", "halton", "--space", "{tmp}/twice.json"],
        "'main' and 'learning_rate' both sample adam.learning_rate",
    ),
]


@pytest.mark.parametrize("options, needle", BAD_SEARCHES)
def test_a_bad_search_or_space_is_one_line_exit_2_and_nothing_written(options, needle, tmp_path, error_line):
    for name, content in SPACES.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    options = [option.replace("{tmp}", str(tmp_path)) for option in options]
    out = tmp_path / "out"
    assert main(["tune", "--optimizers", "adam,lookahead_adam", *SMALL, *options, "--out", str(out)]) == 2
    assert needle in error_line()
    assert not out.exists()


# --- End to end ---------------------------------------------------------------------------------------


def test_a_tiny_halton_tune_end_to_end_then_a_ranking_at_its_points(tmp_path):
    out = tmp_path / "tune"
    tune = ["tune", "--search", "halton", "--studies", "2", "--trials", "3", "--optimizers", "adam", *SMALL]
    assert main([*tune, "--seeds", "2", "--epochs", "1", "--search-seeds", "1", "--out", str(out)]) == 0
    results, tuned = (json.loads((out / name).read_text()) for name in ("results.json", "tuned.json"))
    stage1, stage2 = results["lessons"]
    trials = [run for run in results["runs"] if run["name"] in stage1["runs"]]
    assert len(trials) == 6 and all(run["seeds"] == [2] for run in trials)  # search seeds follow --seeds 0, 1
    assert len({run["timing"]["program"] for run in trials}) == 1  # 3 trials x 2 studies x 1 seed: one program
    assert {tuple(run["point"]) for run in trials} == {("learning_rate", "b1", "b2")}
    tuning = results["tuning"]
    assert (tuning["search"], tuning["trials"], tuning["studies"], tuning["study_seeds"]) == ("halton", 3, 2, [0, 1])
    assert set(tuning["time_to_target"]["500"]["adam"]) == {"epochs", "steps", "study_epochs"}
    best = min(trials, key=lambda run: run["final"]["val_loss_mean"])
    assert tuned["search"] == "halton" and tuned["studies"]["trials"] == 3
    assert tuned["points"]["adam"]["500"] == best["point"]
    ranked = next(run for run in results["runs"] if run["name"] in stage2["runs"])
    assert ranked["point"] == best["point"] and ranked["seeds"] == [0, 1]
    report = (out / "report.md").read_text()
    assert "The points are AlgoPerf's external-tuning ruleset: 2 studies of 3 trials" in report
    assert "the median over studies of each study's fastest trial" in report and "Best at a sampled extreme" in report
    ranking = tmp_path / "ranking"
    assert (
        main(
            ["run", "--optimizers", "adam", *SMALL, "--seeds", "2", "--epochs", "1"]
            + ["--tuned", str(out / "tuned.json"), "--out", str(ranking)]
        )
        == 0
    )
    assert json.loads((ranking / "results.json").read_text())["runs"][0]["hyperparams"]["b1"] == best["point"]["b1"]
