"""Performance profiles across workloads (AlgoPerf's ratios, ρ(τ) and area score)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optax_lab.report import profiles

INF = math.inf
TIMES = {"a": {"adam": 10.0, "sgd": 20.0, "lbfgs": INF},
         "b": {"adam": 30.0, "sgd": 15.0, "lbfgs": 15.0},
         "c": {"adam": 5.0, "sgd": INF, "lbfgs": INF}}


def test_ratios_are_over_the_fastest_and_a_miss_is_never():
    assert profiles.ratios(TIMES) == {"a": {"adam": 1.0, "sgd": 2.0, "lbfgs": INF},
                                      "b": {"adam": 2.0, "sgd": 1.0, "lbfgs": 1.0},
                                      "c": {"adam": 1.0, "sgd": INF, "lbfgs": INF}}
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
        {"fast": 1.0, "slow": 0.0})


@pytest.mark.parametrize("per_seed, expected", [([3.0, 1.0, 2.0], 2.0), ([1.0, INF, 2.0], 2.0),
                                                ([1.0, INF, math.nan], INF), ([], INF)])
def test_median_to_target_counts_a_missed_seed_as_never(per_seed, expected):
    assert profiles.median_to_target(per_seed) == expected


def test_markdown_and_plot():
    text = profiles.profile_markdown(TIMES, plot="profiles.png")
    assert "![performance profiles](profiles.png)" in text
    assert "| adam | 0.889 | 1.00× (10 s) | 2.00× (30 s) | 1.00× (5 s) |" in text
    assert "| lbfgs | 0.333 | never | 1.00× (15 s) | never |" in text
    assert profiles.profile_plot(TIMES).startswith(b"\x89PNG")
