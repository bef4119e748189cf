"""Performance profiles across workloads (AlgoPerf's ratios, ρ(τ) and area score)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optax_lab.report import profiles

INF = math.inf
TIMES = {
    "a": {"adam": 10.0, "sgd": 20.0, "lbfgs": INF},
    "b": {"adam": 30.0, "sgd": 15.0, "lbfgs": 15.0},
    "c": {"adam": 5.0, "sgd": INF, "lbfgs": INF},
}


def test_ratios_are_over_the_fastest_and_a_miss_is_never():
    assert profiles.ratios(TIMES) == {
        "a": {"adam": 1.0, "sgd": 2.0, "lbfgs": INF},
        "b": {"adam": 2.0, "sgd": 1.0, "lbfgs": 1.0},
        "c": {"adam": 1.0, "sgd": INF, "lbfgs": INF},
    }
    assert profiles.ratios({"x": {"adam": INF, "sgd": INF}}) == {"x": {"adam": INF, "sgd": INF}}


def test_profile_is_the_share_of_workloads_within_tau():
    ratio = profiles.ratios(TIMES)
    taus = np.array([1.0, 1.99, 2.0, 4.0])
    np.testing.assert_allclose(profiles.profile(ratio, "adam", taus), [2 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(profiles.profile(ratio, "sgd", taus), [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(profiles.profile(ratio, "unknown", taus), [0, 0, 0, 0])


def test_scores_are_the_normalised_area_best_first():
    score = profiles.scores(profiles.ratios(TIMES))
    assert list(score) == ["adam", "sgd", "lbfgs"]
    # adam: 2/3 on [1, 2), 1 on [2, 4]: (2/3 + 2) / 3; sgd: 1/3 then 2/3; lbfgs: 1/3 throughout.
    assert score["adam"] == pytest.approx((2 / 3 + 2) / 3, abs=0.01)
    assert score["sgd"] == pytest.approx((1 / 3 + 4 / 3) / 3, abs=0.01)
    assert score["lbfgs"] == pytest.approx(1 / 3, abs=0.01)
    assert profiles.scores(profiles.ratios({"x": {"fast": 1.0, "slow": 5.0}})) == pytest.approx(
        {"fast": 1.0, "slow": 0.0}
    )


@pytest.mark.parametrize(
    "per_seed, expected", [([3.0, 1.0, 2.0], 2.0), ([1.0, INF, 2.0], 2.0), ([1.0, INF, math.nan], INF), ([], INF)]
)
def test_median_to_target_counts_a_missed_seed_as_never(per_seed, expected):
    assert profiles.median_to_target(per_seed) == expected


def test_markdown_and_plot():
    text = profiles.profile_markdown(TIMES, plot="profiles.png")
    assert "![performance profiles](profiles.png)" in text
    assert "| adam | 0.889 | 1.00× (10 s) | 2.00× (30 s) | 1.00× (5 s) |" in text
    assert "| lbfgs | 0.333 | never | 1.00× (15 s) | never |" in text
    assert profiles.profile_plot(TIMES).startswith(b"\x89PNG")


def _ranking_run(workload: str, optimizer: str, epochs_per_seed: list, run_s: float = 10.0, steps: int = 30) -> dict:
    return {
        "name": f"{workload}: {optimizer}",
        "optimizer": optimizer,
        "epochs": 10,
        "steps_per_epoch": steps,
        "full_batch": False,
        "batch_size": 500,
        "timing": {"run_s": run_s},
        "target": {"epochs_per_seed": epochs_per_seed},
    }


def _ranking_results(*workload_runs: tuple[str, list[dict]], tuned_source: str | None = None) -> dict:
    lessons = [
        {
            "name": f"{workload} ranking",
            "kind": "ranking",
            "workload": workload,
            "runs": [run["name"] for run in runs],
            **({"tuned_source": tuned_source} if tuned_source else {}),
        }
        for workload, runs in workload_runs
    ]
    return {"lessons": lessons, "runs": [run for _, runs in workload_runs for run in runs]}


def test_across_workloads_times_each_optimizer_by_its_median_seed():
    from optax_lab.report import across

    results = _ranking_results(
        ("w1", [_ranking_run("w1", "adam", [2.0, 3.0, 4.0]), _ranking_run("w1", "sgd", [1.0, None, None])]),
        (
            "w2",
            [
                _ranking_run("w2", "adam", [None, None, None], run_s=20.0),
                _ranking_run("w2", "sgd", [5.0, 5.0, 6.0], run_s=20.0, steps=10),
            ],
        ),
    )
    seconds, steps = across.workload_times(results)
    # adam on w1: median 3 epochs x 1 s an epoch; sgd reached it with 1 seed of 3: never.
    assert seconds == {"w1": {"adam": 3.0, "sgd": INF}, "w2": {"adam": INF, "sgd": 10.0}}
    assert steps == {"w1": {"adam": 90.0, "sgd": INF}, "w2": {"adam": INF, "sgd": 50.0}}
    text = "\n".join(across.across_section(results))
    assert "## Across 2 workloads: performance profiles" in text and "at each optimizer's defaults" in text
    assert "| adam | 0.500 | 1.00× (3 s) | never |" in text
    assert set(across.across_plots(results)) == {across.PROFILE_PNG, across.PROFILE_STEPS_PNG}


def test_across_workloads_needs_two_and_says_which_points():
    from optax_lab.report import across

    one = _ranking_results(("w1", [_ranking_run("w1", "adam", [1.0])]))
    assert across.across_section(one) == [] and across.across_plots(one) == {}
    tuned = _ranking_results(
        ("w1", [_ranking_run("w1", "adam", [1.0])]),
        ("w2", [_ranking_run("w2", "adam", [INF])]),
        tuned_source="tuned.json",
    )
    text = "\n".join(across.across_section(tuned))
    assert "at each optimizer's tuned points from tuned.json" in text
    assert "No optimizer reached the target on w2" in text


def test_a_ranking_on_an_accuracy_target_names_it():
    from optax_lab.report import ranking

    target = {
        "metric": "val_acc",
        "value": 0.884,
        "direction": "max",
        "reached_seeds": 2,
        "epochs_mean": 2.5,
        "steps_mean": 75.0,
        "seconds_mean": 1.5,
    }
    run = {"name": "rmsprop @512", "seeds": [0, 1], "target": target}
    assert ranking._target_sentence([("512", [run])], None).startswith("Fastest to val acc ≥ 0.884: rmsprop @512")
