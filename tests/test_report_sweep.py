"""The sweep section and the ranking's ties, from small hand-built results dicts (no training):
the best point per criterion, edges and extensions, divergences, the plots per number of swept
hyperparameters, paired ties between neighbours, and a whole report written to disk."""

import math
import re

import numpy as np
import pytest

from optax_lab.grids import Criterion
from optax_lab.report import render_markdown, render_plots, write_report
from optax_lab.report.ranking import batch_modes, mode_neighbours
from optax_lab.report.records import lesson_runs
from optax_lab.report.sweep_grids import MAX_PANELS, sensitivity_pngs, sweep_grids
from optax_lab.schema import to_jsonable
from optax_lab.stats import ci95

SEEDS = [0, 1, 2]
PNG = b"\x89PNG\r\n\x1a\n"
# Val loss per epoch. SLOW never reaches 0.6; FAST ends lowest; DIP has the lowest minimum; EARLY is the
# only one below 0.6 after one epoch.
SLOW, FAST, DIP, EARLY = (
    [0.69, 0.68, 0.67, 0.66],
    [0.66, 0.58, 0.50, 0.45],
    [0.62, 0.40, 0.50, 0.58],
    [0.50, 0.52, 0.56, 0.59],
)


def _run(name, optimizer, point, curve, diverged=(), seed_step=0.002, batch=500):
    """A run record whose val loss follows `curve` (+ seed_step per seed); the `diverged` seeds turn
    NaN from the third epoch. Its summary is computed as metrics.final_summary does."""
    val = np.array([[v + seed_step * seed for v in curve] for seed in SEEDS])
    val[list(diverged), 2:] = np.nan
    history = {"val_loss": val, "train_loss": val - 0.01, "val_acc": 1.2 - val, "train_acc": 1.21 - val}
    healthy = np.isfinite(val).all(axis=1)
    kept = val[healthy]

    def stat(values):
        return float(values.mean()) if values.size else math.nan, ci95(values)

    (final, final_ci), (best, best_ci) = stat(kept[:, -1]), stat(kept.min(axis=1) if kept.size else kept)
    return {
        "name": name,
        "optimizer": optimizer,
        "hyperparams": {"learning_rate": 0.01, **point},
        "point": point,
        "batch_size": batch or 25000,
        "full_batch": batch is None,
        "seeds": SEEDS,
        "epochs": len(curve),
        "history": history,
        "final": {
            "val_loss_mean": final,
            "val_loss_ci95": final_ci,
            "best_val_loss_mean": best,
            "best_val_loss_ci95": best_ci,
            "val_acc_mean": 1.2 - final,
            "train_loss_mean": final - 0.01,
        },
        "timing": {"program": f"{optimizer}-{batch}", "compile_s": 2.0, "run_s": 0.5, "seed_epochs_per_s": 24.0},
        "status": "ok" if healthy.all() else "diverged",
        "diverged_seeds": int((~healthy).sum()),
    }


def _results(lessons, runs):
    return to_jsonable(
        {
            "schema": 1,
            "preset": "optimizers",
            "command": "optax-lab run --optimizers adam --sweep ...",
            "dataset": {
                "name": "synthetic-imdb",
                "source": "generated",
                "n_train": 300,
                "n_test": 200,
                "num_words": 100,
            },
            "device": {"platform": "cpu", "device_kind": "cpu", "device_count": 1},
            "order": "per-seed",
            "ranking": {"target_val_loss": 0.6},
            "lessons": lessons,
            "runs": runs,
        }
    )


def _sweep(grids, criterion="final-val-loss", batch=500, **extra):
    """Results with one sweep lesson: grids is {optimizer: [(point, curve, diverged seeds), ...]}."""
    label = batch or "full"
    runs = [
        _run(f"{optimizer} @{label} {point}", optimizer, point, curve, diverged, batch=batch)
        for optimizer, points in grids.items()
        for point, curve, diverged in points
    ]
    lesson = {
        "name": f"sweep-{label}",
        "title": f"Hyperparameter sweep, {'full batch' if batch is None else label}",
        "question": "Where?",
        "kind": "sweep",
        "runs": [run["name"] for run in runs],
        "criterion": criterion,
        "target_val_loss": 0.6,
        **extra,
    }
    return _results([lesson], runs)


def _lr_grid(*curves, diverged=None):
    diverged = diverged or {}
    return [
        ({"learning_rate": lr}, curve, diverged.get(lr, ()))
        for lr, curve in zip((1e-3, 1e-2, 1e-1, 1.0), curves, strict=False)
    ]


def _rows(text):
    """{optimizer: its cells} of the markdown tables whose rows start with a rank."""
    return {
        cells[1]: cells
        for line in text.splitlines()
        if re.match(r"\| \d+ \| ", line)
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }


# ---------------------------------------------------------------------------------------------
# The best point


@pytest.mark.parametrize(
    "criterion, chosen, edge",
    [
        ("final-val-loss", "learning_rate=0.01", "no"),
        ("best-val-loss", "learning_rate=0.1", "no"),
        ("epochs-to-target", "learning_rate=1", "**high**"),
    ],
)
def test_best_point_follows_each_criterion(criterion, chosen, edge):
    # EARLY is on the grid's high edge
    text = render_markdown(_sweep({"adam": _lr_grid(SLOW, FAST, DIP, EARLY)}, criterion))
    row = _rows(text)["adam"]
    assert row[2] == chosen and row[-1] == edge
    assert row[-3:-1] == ["4", "0"]  # points, points with a diverged seed
    heads = {
        "final-val-loss": "| Final val loss ± 95% CI (criterion) |",
        "best-val-loss": "| Best val loss ± 95% CI (criterion) |",
        "epochs-to-target": "| Epochs to 0.6 (criterion) |",
    }
    assert heads[criterion] in text and text.count("(criterion)") == 1
    if criterion == "epochs-to-target":
        assert row[5] == "1"  # below 0.6 after the first epoch


def test_table_is_sorted_best_first_by_the_criterion():
    text = render_markdown(
        _sweep(
            {
                "sgd": _lr_grid(SLOW, SLOW, SLOW, SLOW),
                "adam": _lr_grid(SLOW, FAST, DIP, EARLY),
                "lion": _lr_grid(DIP, DIP, DIP, DIP),
            }
        )
    )
    assert [row[1] for row in _rows(text).values()] == ["adam", "lion", "sgd"]  # finals 0.45, 0.58, 0.66


def test_edge_winner_is_marked_with_the_tuners_extensions():
    extra = {"extended": {"sgd": ["low", "low"], "adam": ["high"]}, "limit_reached": ["sgd"], "stage": 1}
    text = render_markdown(
        _sweep({"sgd": _lr_grid(FAST, DIP, SLOW, SLOW), "adam": _lr_grid(SLOW, FAST, DIP, SLOW)}, **extra)
    )
    rows = _rows(text)
    assert rows["sgd"][2] == "learning_rate=0.001"
    assert rows["sgd"][-1] == "**low** (extended low ×2; still on the edge at the extension limit)"
    assert rows["adam"][-1] == "no (extended high ×1)"  # the extension found an inside point
    assert "On the grid's edge: sgd (low)." in text
    assert "Still on the edge after the extension limit: sgd" in text and "(stage 1 of the tuner)" in text


def test_diverged_points_are_counted_and_never_chosen():
    # adam's lowest healthy-seed mean is at 0.1, where seed 1 diverged; at 1.0 every seed did
    grids = {
        "adam": _lr_grid(SLOW, DIP, FAST, FAST, diverged={0.1: (1,), 1.0: (0, 1, 2)}),
        "sgd": _lr_grid(FAST, FAST, FAST, FAST, diverged={lr: (0,) for lr in (1e-3, 1e-2, 1e-1, 1.0)}),
    }
    results = _sweep(grids)
    ((_, runs),) = lesson_runs(results)
    adam, sgd = sweep_grids(runs, Criterion.FINAL_VAL_LOSS, 0.6)
    assert adam.diverged_points() == 2 and adam.best_run["point"] == {"learning_rate": 0.01}
    assert sgd.best is None and sgd.diverged_points() == 4
    text = render_markdown(results)
    rows = list(_rows(text).values())
    assert [row[1] for row in rows] == ["adam", "sgd"]  # no best point: last
    assert rows[0][2] == "learning_rate=0.01" and rows[0][-2] == "2"
    assert rows[1][2] == "none: every point diverged" and rows[1][3] == "—" and rows[1][-2] == "4"
    assert "counts as infinitely bad" in text


# ---------------------------------------------------------------------------------------------
# Plots by the number of swept hyperparameters


def _two_d(lr, b1):
    """The val loss falls fastest at lr 0.01 and b1 0.9."""
    end = 0.45 + 20 * abs(math.log10(lr) + 2) ** 2 * 0.01 + abs(b1 - 0.9)
    return [0.69, (0.69 + end) / 2, end + 0.01, end]


@pytest.fixture(scope="module")
def mixed():
    """One lesson: adam over lr (1-D), lion over lr × b1 (2-D, one cell diverged), adamw over three
    hyperparameters, lbfgs with nothing swept."""
    lion = [
        ({"learning_rate": lr, "b1": b1}, _two_d(lr, b1), (2,) if (lr, b1) == (0.1, 0.95) else ())
        for b1 in (0.8, 0.9, 0.95)
        for lr in (0.001, 0.01, 0.1)
    ]
    adamw = [
        ({"learning_rate": lr, "b1": 0.9, "weight_decay": wd}, FAST, ()) for lr in (0.001, 0.01) for wd in (0.0, 0.1)
    ]
    adamw += [({"learning_rate": 0.01, "b1": 0.8, "weight_decay": 0.1}, SLOW, ())]
    return _sweep({"adam": _lr_grid(SLOW, FAST, DIP, EARLY), "lion": lion, "adamw": adamw, "lbfgs": [({}, SLOW, ())]})


def test_two_swept_hyperparameters_render_a_heatmap(mixed):
    text, pngs = render_markdown(mixed), render_plots(mixed)
    assert sorted(pngs) == ["sweep-500-lion-heatmap.png", "sweep-500-sensitivity.png"]  # adamw: 3-D, no plot
    assert all(png[:8] == PNG and len(png) > 10_000 for png in pngs.values())
    assert "](sweep-500-lion-heatmap.png)" in text and "](sweep-500-sensitivity.png)" in text
    assert _rows(text)["lion"][2] == "learning_rate=0.01, b1=0.9" and _rows(text)["lion"][-2] == "1"
    assert "adamw (3 swept hyperparameters): no plot" in text
    assert _rows(text)["lbfgs"][2] == "defaults" and "Nothing was swept for lbfgs" in text


def test_edges_of_a_two_dimensional_grid_name_the_hyperparameter():
    lion_low_b1 = [
        ({"learning_rate": lr, "b1": b1}, _two_d(lr, b1 + 0.1), ()) for b1 in (0.8, 0.9) for lr in (0.001, 0.01, 0.1)
    ]
    assert _rows(render_markdown(_sweep({"lion": lion_low_b1})))["lion"][-1] == "**b1 low**"


def test_sensitivity_plots_split_at_max_panels():
    results = _sweep({f"opt{i}": _lr_grid(SLOW, FAST) for i in range(MAX_PANELS + 1)})
    ((lesson, runs),) = lesson_runs(results)
    parts = sensitivity_pngs(lesson, sweep_grids(runs, Criterion.FINAL_VAL_LOSS, 0.6))
    assert [(name, len(grids)) for name, grids in parts] == [
        ("sweep-500-sensitivity.png", MAX_PANELS),
        ("sweep-500-sensitivity-2.png", 1),
    ]
    text = render_markdown(results)
    assert "](sweep-500-sensitivity.png)" in text and "](sweep-500-sensitivity-2.png)" in text


def test_write_report_of_a_sweep_end_to_end(tmp_path):
    results = _sweep(
        {"adam": _lr_grid(SLOW, FAST, DIP, EARLY, diverged={1.0: (0,)}), "sgd": _lr_grid(SLOW, SLOW, FAST, FAST)},
        batch=None,
    )
    path = write_report(results, tmp_path / "report")
    text = path.read_text()
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.md", "results.json", "sweep-full-sensitivity.png"]
    assert (path.parent / "sweep-full-sensitivity.png").read_bytes()[:8] == PNG
    assert "](sweep-full-sensitivity.png)" in text
    assert text.startswith("# optax-lab report: hyperparameter sweep") and "## Hyperparameter sweep, full batch" in text
    assert _rows(text)["adam"][2] == "learning_rate=0.01"  # the lowest final loss
    assert "8 points in 2 compiled programs" in text and "Run seconds exclude compilation" in text


# ---------------------------------------------------------------------------------------------
# Ties in the ranking


def _ranking(curves, tuned_source=None):
    """One ranking lesson at batch 500; curves is {optimizer: (curve, seed_step, diverged)}."""
    runs = [
        _run(
            f"{optimizer} @500",
            optimizer,
            {"learning_rate": 0.003162} if tuned_source else {},
            curve,
            diverged,
            seed_step=step,
        )
        for optimizer, (curve, step, diverged) in curves.items()
    ]
    lesson = {
        "name": "batch-500",
        "title": "All optimizers, batch 500",
        "question": "Which?",
        "kind": "ranking",
        "runs": [run["name"] for run in runs],
    }
    if tuned_source:
        lesson["tuned_source"] = tuned_source
    return _results([lesson], runs)


def test_ranking_marks_identical_neighbours_tied_and_distinct_ones_not():
    noisy = [0.66, 0.58, 0.50, 0.55]  # ends 0.1 above FAST, with a seed step of its own
    results = _ranking(
        {
            "adam": (FAST, 0.002, ()),
            "nadam": (FAST, 0.002, ()),
            "sgd": (noisy, 0.003, ()),
            "sign_sgd": (SLOW, 0.002, (0, 1)),
        }
    )
    pairs = mode_neighbours(batch_modes(lesson_runs(results)))
    assert [(p.upper["optimizer"], p.lower["optimizer"], p.tied, p.shared) for p in pairs] == [
        ("adam", "nadam", True, 3),
        ("nadam", "sgd", False, 3),
        ("sgd", "sign_sgd", False, 1),
    ]
    assert pairs[0].p == 1.0 and pairs[1].p < 0.001 and math.isnan(pairs[2].p)
    text = render_markdown(results)
    assert "| batch 500 | adam | nadam | 0.0000 | 3 | tied (p=1) |" in text
    assert "| batch 500 | nadam | sgd | +0.1010 | 3 | differs (p<0.001) |" in text
    assert "| batch 500 | sgd | sign_sgd | +0.1080 | 1 | not tested (1 shared seed) |" in text
    assert "two-sided paired t-test" in text and "p ≥ 0.05" in text
    assert (
        "Tied with the next one down, their order within seed noise (paired t-test over seeds, p ≥ 0.05): "
        "at batch 500 adam–nadam (p=1)." in text
    )


def test_ranking_ties_within_seed_noise():
    # the gap alternates sign across seeds: a paired test can't tell them apart
    jitter = {"adam": ([0.66, 0.58, 0.50, 0.450], 0.004, ()), "nadam": ([0.66, 0.58, 0.50, 0.452], 0.0, ())}
    (pair,) = mode_neighbours(batch_modes(lesson_runs(_ranking(jitter))))
    assert pair.tied and 0.05 <= pair.p < 1.0


def test_tuned_ranking_says_where_the_points_come_from():
    text = render_markdown(
        _ranking({"adam": (FAST, 0.002, ()), "sgd": (SLOW, 0.002, ())}, tuned_source="tuned.json (sha256 abcd1234)")
    )
    assert "at its optimizer's tuned point for that batch mode, from tuned.json (sha256 abcd1234)" in text
    assert "| Optimizer | Tuned point | Hyperparameters |" in text
    assert "| adam | learning_rate=0.00316 | lr=0.003162 |" in text
    untuned = render_markdown(_ranking({"adam": (FAST, 0.002, ()), "sgd": (SLOW, 0.002, ())}))
    assert "Tuned point" not in untuned and "tuned.json" not in untuned


# ---------------------------------------------------------------------------------------------
# A tune's ruleset


def _tuned_sweep(tuning=None, **grids):
    results = _sweep(grids or {"sgd": _lr_grid(SLOW, FAST, DIP, SLOW)}, stage=1, extended={}, limit_reached=[])
    if tuning is not None:
        results["tuning"] = tuning
    return results


def test_a_tune_without_a_ruleset_was_a_grid_and_renders_as_before():
    from optax_lab.schema import upgrade

    grid = {"points": 4, "decades": 3.0, "search_seeds": [2], "max_extensions": 2, "criterion": "final-val-loss"}
    assert upgrade(_tuned_sweep(grid))["tuning"]["search"] == "grid"
    before = render_markdown(_tuned_sweep(grid))
    assert render_markdown(_tuned_sweep({**grid, "search": "grid"})) == before == render_markdown(_tuned_sweep())
    assert "AlgoPerf" not in before and "| Best on the grid's edge |" in before


def test_a_sampled_search_says_its_ruleset_and_time_to_target_and_draws_no_heatmap():
    tuning = {
        "search": "halton",
        "trials": 2,
        "studies": 2,
        "study_seeds": [0, 1],
        "space": {"main": {"decades": 4.0}, "1-b1": {"min": 0.01, "max": 0.5, "scale": "log"}},
        "space_source": "",
        "time_to_target": {"500": {"adam": {"epochs": 2.5, "steps": 5.0, "study_epochs": [2.0, 3.0]}}},
    }
    sampled = [  # two trials per study: no two share a value, so the points form no grid
        ({"learning_rate": lr, "b1": b1}, curve, ())
        for lr, b1, curve in ((1e-3, 0.9, SLOW), (1e-2, 0.8, FAST), (3e-3, 0.95, DIP), (3e-2, 0.7, EARLY))
    ]
    results = _tuned_sweep(tuning, adam=sampled)
    text = render_markdown(results)
    assert (
        "The points are AlgoPerf's external-tuning ruleset: 2 studies of 2 trials, drawn from a scrambled "
        "Halton sequence, AlgoPerf's quasirandom search, one seed per study (0, 1), over the default space: "
        "main (log, 4 decades around each default) and 1-b1 (log, 0.01 to 0.5)"
    ) in text
    assert "median over studies of each study's fastest trial (a trial counts when every seed reaches it): " in text
    assert "adam 2.5 epochs (5 steps)." in text and "| Best at a sampled extreme |" in text
    assert "no plot, since sampled points of several dimensions form no grid to draw" in text
    assert not any("heatmap" in name for name in render_plots(results))
    product = _tuned_sweep(
        tuning, adam=[({"learning_rate": lr, "b1": b1}, FAST, ()) for lr in (1e-3, 1e-2) for b1 in (0.8, 0.9)]
    )
    assert "sweep-500-adam-heatmap.png" in render_plots(product)  # a grid's points still get theirs
