"""The report sections of the vanishing-gradients, initialisation and overfitting lessons, from
hand-built results whose numbers are known exactly: the tables, the PNGs, and that the generated
sentences follow the numbers (change the numbers, the text changes)."""

import copy
import json
import math

import numpy as np
import pytest

from optax_lab.metrics import final_summary
from optax_lab.report import SECTIONS, render_markdown, section_for, write_report
from optax_lab.report.initialisation import summarize_initialisation
from optax_lab.report.overfitting import early_stop_epochs, summarize_overfitting
from optax_lab.report.records import LessonRuns
from optax_lab.report.vanishing import summarize_vanishing
from optax_lab.schema import LessonKind, to_jsonable, upgrade

SEEDS = [0, 1, 2]
NUM_WORDS = 100


def _run(name, history, model, optimizer="adam", hyperparams=None, run_s=1.2):
    """A run record as metrics.run_record writes it, its `final` computed by metrics from the history."""
    arrays = {
        key: np.asarray([[math.nan if v is None else v for v in row] for row in rows], np.float64)
        for key, rows in history.items()
        if key in ("train_loss", "train_acc", "val_loss", "val_acc", "train_eval_loss")
    }
    healthy = np.isfinite(arrays["train_loss"]).all(axis=1) & np.isfinite(arrays["val_loss"]).all(axis=1)
    diverged = int((~healthy).sum())
    epochs = len(history["val_loss"][0])
    return {
        "name": name,
        "optimizer": optimizer,
        "hyperparams": hyperparams or {"learning_rate": 0.001},
        "model": {
            "widths": [32, 32],
            "depth": 2,
            "activation": "relu",
            "kernel_init": "glorot_uniform",
            "bias_init": "zeros",
            "dropout": 0.0,
            "residual": False,
            "normalization": "none",
            "l2": 0.0,
            "describe": "32-32 relu, glorot_uniform",
            **model,
        },
        "num_words": NUM_WORDS,
        "n_train": 300,
        "batch_size": 100,
        "full_batch": False,
        "steps_per_epoch": 3,
        "seeds": SEEDS,
        "epochs": epochs,
        "history": history,
        "final": final_summary(arrays),
        "timing": {"compile_s": 0.5, "run_s": run_s, "seed_epochs_per_s": 3 * epochs / run_s},
        "status": "diverged" if diverged else "ok",
        "diverged_seeds": diverged,
    }


def _losses(val_rows):
    """The four lesson histories around per-seed val losses (train a bit lower, accuracy mirrored)."""
    return {
        "val_loss": val_rows,
        "train_loss": [[v - 0.01 for v in row] for row in val_rows],
        "val_acc": [[1.2 - v for v in row] for row in val_rows],
        "train_acc": [[1.21 - v for v in row] for row in val_rows],
    }


# ---------------------------------------------------------------------------------------------
# Vanishing gradients: layer i of a depth-d net gets 10^(-decay·(d−i)) × the output layer's norm,
# so log10(first ÷ output) = −decay·d on every seed, exactly.

EPOCHS = 3


def _layer_norms(depth, decay, seed):
    return [(1 + 0.1 * seed) * 0.5 * 10 ** (-decay * (depth - layer)) for layer in range(depth + 1)]


def vanishing_run(family, depth, decay, end_decay, val_end):
    val = [[0.69 - (0.69 - val_end) * (e + 1) / EPOCHS + 0.001 * s for e in range(EPOCHS)] for s in SEEDS]
    history = {
        **_losses(val),
        "init_grad_norms": [_layer_norms(depth, decay, s) for s in SEEDS],
        "grad_norms": [
            [_layer_norms(depth, decay + (end_decay - decay) * (e + 1) / EPOCHS, s) for e in range(EPOCHS)]
            for s in SEEDS
        ],
        "distinct_units": [[32] * EPOCHS for _ in SEEDS],
    }
    return _run(
        f"{family} depth {depth}",
        history,
        {"activation": family, "widths": [32] * depth, "depth": depth, "describe": f"{family} x{depth}"},
    )


def vanishing_results(sigmoid_decay=0.6, relu_decay=0.0):
    runs = [
        vanishing_run("sigmoid", 2, sigmoid_decay, sigmoid_decay - 0.1, 0.60),
        vanishing_run("sigmoid", 8, sigmoid_decay, sigmoid_decay - 0.1, 0.6930),
        vanishing_run("relu", 2, relu_decay, relu_decay, 0.45),
        vanishing_run("relu", 8, relu_decay, relu_decay, 0.40),
    ]
    lesson = {
        "name": "vanishing-gradients",
        "title": "Vanishing gradients",
        "question": "Do deep layers learn?",
        "runs": [run["name"] for run in runs],
        "kind": "vanishing-gradients",
    }
    return _results([lesson], runs)


def _results(lessons, runs):
    return {
        "schema": 1,
        "preset": "problems",
        "created": "2026-11-28T01:23:45+00:00",
        "command": "optax-lab run --preset problems",
        "dataset": {
            "name": "synthetic-imdb",
            "source": "generated",
            "n_train": 300,
            "n_test": 200,
            "num_words": NUM_WORDS,
        },
        "device": {"platform": "cpu", "device_kind": "cpu", "device_count": 1},
        "order": "per-seed",
        "model": {"widths": [32, 32], "activation": "relu", "kernel_init": "glorot_uniform"},
        "lessons": lessons,
        "runs": runs,
    }


def test_vanishing_sentences_follow_the_numbers():
    runs = to_jsonable(vanishing_results())["runs"]
    text = summarize_vanishing(runs)
    assert (
        "changes per added layer by −0.60 in sigmoid and 0.00 in relu (least-squares slope over depths 2–8); "
        "at depth 8" in text
    )
    # sigmoid depth 8: first layer 0.5·g·10^-4.8 = 8.7e-06, output 0.5·g = 0.55 (g: geometric mean of 1, 1.1, 1.2)
    assert (
        "at depth 8, sigmoid's first hidden layer gets the smallest share: its gradient norm is 4.8 orders of "
        "magnitude below its output layer's (8.7e-06 vs 0.55); relu's, the largest, is level with its output "
        "layer's (0.55 vs 0.55)." in text
    )
    assert (
        "Final validation loss from depth 2 to depth 8: sigmoid 0.6010 → 0.6940, relu 0.4510 → 0.4010; at its "
        "deepest, sigmoid ends at chance level"
    ) in text
    assert "the lowest there is relu's, 0.4010 ± 0.0025 at depth 8" in text
    assert "at depth 8 is sigmoid −4.0 (at init −4.8) and relu 0.0 (at init 0.0)" in text
    assert "sigmoid's first layer still gets less than 1/10^3 of the output layer's gradient" in text

    swapped = summarize_vanishing(to_jsonable(vanishing_results(sigmoid_decay=0.0, relu_decay=0.6))["runs"])
    assert "by 0.00 in sigmoid and −0.60 in relu" in swapped
    assert "at depth 8, relu's first hidden layer gets the smallest share: its gradient norm is 4.8 orders" in swapped
    assert "relu's first layer still gets less than 1/10^3" in swapped

    healthy = summarize_vanishing(to_jsonable(vanishing_results(sigmoid_decay=0.2, relu_decay=0.0))["runs"])
    assert "no family's first layer is left more than 3 orders of magnitude behind" in healthy


def test_vanishing_tables():
    lines = SECTIONS[LessonKind.VANISHING_GRADIENTS].markdown(*_lesson_args(vanishing_results()))
    text = "\n".join(lines)
    assert "| Family | depth 2 | depth 8 |" in text
    assert "| sigmoid | 0.6010 ± 0.0025 | 0.6940 ± 0.0025 (chance) |" in text
    assert "| relu | 0.4510 ± 0.0025 | 0.4010 ± 0.0025 |" in text
    # geometric mean over seeds [95% CI]; log10(first ÷ output) is −0.6·8 on every seed: CI 0
    row = next(line for line in lines if line.startswith("| sigmoid depth 8 |"))
    assert row.startswith("| sigmoid depth 8 | 9 | 8.7e-06 [6.9e-06, 1.1e-05] | 0.55 [0.44, 0.69] |")
    assert row.endswith("| -4.80 ± 0.00 | -4.00 ± 0.00 | ok |")


def _lesson_args(results, index=0):
    """A section's arguments for the results' lesson `index`: ([that lesson with its runs], results),
    upgraded as the report reads them."""
    results = upgrade(to_jsonable(results))
    lesson = results["lessons"][index]
    runs = {run["name"]: run for run in results["runs"]}
    return [LessonRuns(lesson, [runs[name] for name in lesson["runs"]])], results


# ---------------------------------------------------------------------------------------------
# Initialisation


def init_run(name, kernel_init, val_end, units=32, bias_init="zeros", diverged_seed=None):
    val = [[0.6931 - (0.6931 - val_end) * (e + 1) / EPOCHS + 0.002 * s for e in range(EPOCHS)] for s in SEEDS]
    history = {**_losses(val), "distinct_units": [[units] * EPOCHS for _ in SEEDS]}
    if diverged_seed is not None:
        for key in ("val_loss", "train_loss", "val_acc", "train_acc"):
            history[key][diverged_seed][1:] = [None] * (EPOCHS - 1)
    return _run(
        f"{name}, Adam",
        history,
        {"kernel_init": kernel_init, "bias_init": bias_init, "describe": f"32-32 relu, {kernel_init}"},
    )


def init_results(keras=0.40, torch=0.45, zeros_units=1):
    runs = [
        init_run("zeros", "zeros", 0.6931, units=zeros_units),
        init_run("normal σ=1", "normal_1", 1.10, diverged_seed=2),
        init_run("Glorot uniform (Keras)", "glorot_uniform", keras),
        init_run("Kaiming uniform a=√5 (PyTorch)", "torch_default", torch, bias_init="torch_default"),
    ]
    lesson = {
        "name": "initialisation",
        "title": "Initialisation, with Adam",
        "question": "Which start?",
        "runs": [run["name"] for run in runs],
        "kind": "initialisation",
    }
    return _results([lesson], runs)


def test_initialisation_sentences_follow_the_numbers():
    runs = to_jsonable(init_results())["runs"]
    text = summarize_initialisation(runs)
    assert text.startswith(
        "zeros keeps every first-layer unit identical: 1 distinct unit of 32 after every epoch on "
        "every seed (units that start equal get equal gradients, so they stay equal), and the layer "
        "works as a single unit (final val loss: zeros 0.6951, at chance)."
    )
    assert "Lowest final validation loss: Glorot uniform (Keras), 0.4020 ± 0.0050" in text
    assert "zeros ends at chance; normal σ=1 (1.1010) ends worse than chance" in text
    assert "diverged (NaN loss): normal σ=1 on 1 of 3 seeds" in text
    # first layer 100 -> 32: Glorot std √(2/132) = 0.123, PyTorch's √(1/300) = 0.0577
    assert (
        "Keras' default, Glorot uniform, and PyTorch's, Kaiming uniform a=√5, draw the first layer's weights "
        "with std 0.123 and 0.0577 (2.1× smaller); the net ends at 0.4020 ± 0.0050 with Keras' and "
        "0.4520 ± 0.0050 with PyTorch's: Keras' is 0.0500 lower, more than the seed-to-seed noise"
    ) in text

    swapped = summarize_initialisation(to_jsonable(init_results(keras=0.45, torch=0.40))["runs"])
    assert "Lowest final validation loss: Kaiming uniform a=√5 (PyTorch), 0.4020 ± 0.0050" in swapped
    assert "PyTorch's is 0.0500 lower" in swapped
    close = summarize_initialisation(to_jsonable(init_results(keras=0.401, torch=0.40))["runs"])
    assert "the 0.0010 between them is within the seed-to-seed noise (95% CIs overlap)" in close
    assert (
        "Lowest final validation loss: Kaiming uniform a=√5 (PyTorch), 0.4020 ± 0.0050 (its 95% CI overlaps "
        "those of Glorot uniform (Keras))"
    ) in close

    unstuck = summarize_initialisation(to_jsonable(init_results(zeros_units=5))["runs"])
    assert unstuck.startswith(
        "No initialiser leaves the first layer's units identical: after the last epoch the "
        "fewest distinct units, 5 of 32, are zeros's."
    )


def test_initialisation_when_nothing_learns():
    """The lesson's SGD: every initialiser still at chance; the sentence must not crown a winner."""
    results = init_results(keras=0.6935, torch=0.6931)
    results["runs"] = [run for run in results["runs"] if "σ=1" not in run["name"]]
    text = summarize_initialisation(to_jsonable(results)["runs"])
    assert (
        "No initialiser gets below chance level (ln 2 = 0.6931, ± 0.005) in 3 epochs; zeros, Glorot uniform "
        "(Keras) and Kaiming uniform a=√5 (PyTorch) end at chance."
    ) in text
    assert "Lowest final validation loss" not in text


def test_initialisation_tables():
    text = "\n".join(SECTIONS[LessonKind.INITIALISATION].markdown(*_lesson_args(init_results())))
    assert ("| zeros, Adam | all 0 | 0.6951 ± 0.0050 | 50.49 ± 0.50 | 0.6951 ± 0.0050 | 1 → 1 | ok |") in text
    assert "| normal σ=1, Adam | N(0, 1) | 1.1010 ± 0.0127 |" in text and "| diverged (1/3 seeds) |" in text
    assert "| Glorot uniform (Keras), Adam | U(±√(6/(fan_in+fan_out))), std 0.123 | **0.4020 ± 0.0050** |" in text
    assert (
        "| Keras | Glorot uniform | Glorot uniform (Keras), Adam | U(±√(6/(fan_in+fan_out))) | 0.123 | 0.177 "
        "| 0 | 0.4020 ± 0.0050 |"
    ) in text
    assert (
        "| PyTorch | Kaiming uniform a=√5 | Kaiming uniform a=√5 (PyTorch), Adam | U(±1/√fan_in) | 0.0577 "
        "| 0.102 | U(±1/√fan_in) | 0.4520 ± 0.0050 |"
    ) in text
    assert "| Framework | Default | Run | Kernels | Layer 1 (100 → 32) std | Layer 2 (32 → 32) std |" in text


# ---------------------------------------------------------------------------------------------
# Overfitting: 12 epochs; the baseline's val loss is lowest at epoch 4, then climbs


OVERFIT_EPOCHS = 12
RUN_S = 2.4  # 0.2 s per epoch


def overfit_run(name, val_of, gap_of, model=None, optimizer="adam"):
    """val_of(epoch from 1) + 0.002·seed; the whole-set training loss is val − gap_of(epoch)."""
    val = [[val_of(e) + 0.002 * s for e in range(1, OVERFIT_EPOCHS + 1)] for s in SEEDS]
    train_eval = [[v - gap_of(e) for e, v in enumerate(row, 1)] for row in val]
    history = {
        **_losses(val),
        "train_eval_loss": train_eval,
        "train_eval_acc": [[1 - v for v in row] for row in train_eval],
        "distinct_units": [[128] * OVERFIT_EPOCHS for _ in SEEDS],
    }
    return _run(
        name,
        history,
        {"widths": [128, 128], "describe": f"128-128 relu, {name}", **(model or {})},
        optimizer=optimizer,
        run_s=RUN_S,
    )


def overfit_results(dropout_gap=0.05, l2_gap=0.2):
    runs = [
        overfit_run(
            "no remedy",
            lambda e: 0.40 + 0.01 * (e - 4) ** 2,
            lambda e: 0.40 + 0.01 * (e - 4) ** 2 - 0.3 * 0.5 ** (e - 1),
        ),
        overfit_run("L2 0.01", lambda e: 0.42 + 0.002 * (e - 6) ** 2, lambda e: l2_gap, {"l2": 0.01}),
        overfit_run("dropout 0.5", lambda e: 0.45 - 0.006 * e, lambda e: dropout_gap, {"dropout": 0.5}),
    ]
    lesson = {
        "name": "overfitting",
        "title": "Overfitting",
        "question": "How wide is the gap?",
        "runs": [run["name"] for run in runs],
        "kind": "overfitting",
        "epochs": OVERFIT_EPOCHS,
    }
    return _results([lesson], runs)


def test_early_stopping_replays_keras_patience():
    val = np.array([[5, 4, 3, 3.5, 3.2, 2.9, 3.0, 3.1], [5, 4, 3, 3.5, 3.2, 3.1, 3.3, 3.0], [8, 7, 6, 5, 4, 3, 2, 1]])
    # seed 0 improves at epoch 6, before patience runs out; seed 1 doesn't: 3 epochs without, it stops after 6
    assert early_stop_epochs(val, patience=3).tolist() == [8, 6, 8]
    assert early_stop_epochs(val, patience=1).tolist() == [4, 4, 8]


def test_overfitting_sentences_follow_the_numbers():
    runs = to_jsonable(overfit_results())["runs"]
    text = summarize_overfitting(runs)
    # baseline: val 0.40 + 0.002·seed at epoch 4, 1.04 + 0.002·seed at epoch 12; train 0.3/2^11 + 0.002·seed
    assert text.startswith(
        "Baseline (no remedy): the validation loss is lowest at epoch 4 (0.4020 ± 0.0050) and "
        "then rises to 1.0420 ± 0.0050 after epoch 12, while the training loss (whole training "
        "set, dropout off) ends at 0.0021: a train/val gap of 1.0399 ± 0.0000."
    )
    assert (
        "2 of 2 remedies narrow the final gap; the narrowest is dropout 0.5's, 0.0500 ± 0.0000 against "
        "1.0399 ± 0.0000 (95% CIs apart), clear of the next, L2 0.01's 0.2000 ± 0.0000"
    ) in text
    assert "the lowest validation loss of any epoch is dropout 0.5's, 0.3800 ± 0.0050 at epoch 12" in text
    # patience 3 after the best epoch 4: stops after epoch 7, saving 5 of 12 epochs × 0.2 s
    assert (
        "Early stopping (patience 3, best weights restored) stops the baseline after epoch 7 and returns "
        "validation loss 0.4020 ± 0.0050 instead of 1.0420 ± 0.0050, saving 5 of 12 epochs, 1.00 s of this run; "
        "that is above the best remedy trained to the end, dropout 0.5 with 0.3800 ± 0.0050 (95% CIs apart)."
    ) in text

    swapped = summarize_overfitting(to_jsonable(overfit_results(dropout_gap=0.3, l2_gap=0.01))["runs"])
    assert "the narrowest is L2 0.01's, 0.0100 ± 0.0000" in swapped


def test_overfitting_when_the_baseline_never_turns():
    results = overfit_results()
    results["runs"][0] = overfit_run("no remedy", lambda e: 0.60 - 0.01 * e, lambda e: 0.1)
    text = summarize_overfitting(to_jsonable(results)["runs"])
    assert text.startswith(
        "Baseline (no remedy): the validation loss is still falling at the last epoch, 12 "
        "(0.4820 ± 0.0050), while the training loss"
    )
    assert (
        "Early stopping (patience 3, best weights restored) never stops the baseline within its 12 epochs, so "
        "it returns the lowest validation loss seen, 0.4820 ± 0.0050; that is above the best remedy"
    ) in text
    assert "1 of 2 remedies narrow the final gap" in text  # dropout's 0.05 is below 0.1, L2's 0.2 is not


def test_overfitting_when_the_baseline_diverged():
    results = overfit_results()
    for key in ("val_loss", "train_loss"):
        for row in results["runs"][0]["history"][key]:
            row[5:] = [math.nan] * (OVERFIT_EPOCHS - 5)
    text = summarize_overfitting(to_jsonable(results)["runs"])
    assert text == (
        "Baseline (no remedy): every seed diverged, so there is no gap to measure the remedies by. The "
        "lowest validation loss after the last epoch is dropout 0.5's, 0.3800 ± 0.0050."
    )


def test_overfitting_tables():
    text = "\n".join(SECTIONS[LessonKind.OVERFITTING].markdown(*_lesson_args(overfit_results())))
    assert "Every run: the 100 most frequent words, 300 training reviews, batch 100, 12 epochs, 3 seeds." in text
    assert (
        "| no remedy | 128-128 relu, no remedy; adam(lr=0.001) | 0.0021 | 1.0420 ± 0.0050 | 1.0399 ± 0.0000 "
        "| 0.4020 ± 0.0050 | 4 |"
    ) in text
    assert (
        "| dropout 0.5 | 128-128 relu, dropout 0.5; adam(lr=0.001) | 0.3300 | 0.3800 ± 0.0050 "
        "| **0.0500 ± 0.0000** | **0.3800 ± 0.0050** | 12 |"
    ) in text
    # early stopping: best epoch, stop epoch, returned val loss, val at the end, the difference, epochs, seconds saved
    assert "| no remedy | 4 | 7 | 0.4020 ± 0.0050 | 1.0420 ± 0.0050 | 0.6400 ± 0.0000 | 5 | 1.00 |" in text
    assert "| L2 0.01 | 6 | 9 | 0.4220 ± 0.0050 | 0.4940 ± 0.0050 | 0.0720 ± 0.0000 | 3 | 0.60 |" in text
    assert "| dropout 0.5 | 12 | 12 | 0.3800 ± 0.0050 | 0.3800 ± 0.0050 | 0.0000 ± 0.0000 | 0 | 0.00 |" in text


# ---------------------------------------------------------------------------------------------
# The whole report


def problems_results():
    parts = [vanishing_results(), init_results(), overfit_results()]
    return _results(
        [lesson for part in parts for lesson in part["lessons"]], [run for part in parts for run in part["runs"]]
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("problems") / "report"
    return out, write_report(problems_results(), out).read_text()


def test_writes_each_sections_pngs_and_links_them(written):
    out, text = written
    pngs = [
        "initialisation-curves.png",
        "overfitting-curves.png",
        "overfitting-gap.png",
        "vanishing-gradients-curves.png",
        "vanishing-gradients-grad-norms.png",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted([*pngs, "report.md", "results.json"])
    for name in pngs:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name
        assert f"]({name})" in text, name
    for heading in ("## Vanishing gradients", "## Initialisation, with Adam", "## Overfitting"):
        assert heading in text
    assert "| Run | Optimizer | Batch |" not in text  # no generic lesson table for these kinds
    assert json.loads((out / "results.json").read_text())["runs"][5]["history"]["val_loss"][2][1] is None


def test_kinds_choose_the_section():
    generic, results = SECTIONS[LessonKind.COMPARE], problems_results()

    def section(lesson):
        return section_for(upgrade({**results, "lessons": [lesson]})["lessons"][0])

    assert section({"name": "unmarked"}) is generic  # a lesson without a kind: the generic section
    assert section({"name": "x", "kind": "compare"}) is generic
    assert section({"name": "x", "kind": "from-a-newer-version"}) is generic
    assert section({"name": "x", "kind": "overfitting"}) is SECTIONS[LessonKind.OVERFITTING]
    results = overfit_results()
    results["lessons"][0]["kind"] = "compare"
    assert "| Run | Optimizer | Batch |" in render_markdown(to_jsonable(results))


def test_missing_and_broken_numbers_render(tmp_path):
    """A run whose every seed diverged, a zero gradient norm, histories without the new keys."""
    results = problems_results()
    runs = {run["name"]: run for run in results["runs"]}
    dead = runs["sigmoid depth 8"]
    for key in ("val_loss", "train_loss"):
        dead["history"][key] = [[0.7] + [None] * (EPOCHS - 1) for _ in SEEDS]
    dead["final"] = dict.fromkeys(dead["final"])
    dead["history"]["init_grad_norms"][0][0] = 0.0
    for name in ("zeros, Adam", "dropout 0.5"):
        for key in ("distinct_units", "train_eval_loss", "grad_norms"):
            runs[name]["history"].pop(key, None)
    text = write_report(results, tmp_path / "out").read_text()
    assert "| sigmoid | 0.6010 ± 0.0025 | — |" in text
    assert "| zeros, Adam | all 0 | 0.6951 ± 0.0050 | 50.49 ± 0.50 | 0.6951 ± 0.0050 | — | ok |" in text
    assert "| dropout 0.5 | 128-128 relu, dropout 0.5; adam(lr=0.001) | — | 0.3800 ± 0.0050 | — |" in text


def test_results_are_not_mutated():
    results = problems_results()
    before = copy.deepcopy(results)
    render_markdown(to_jsonable(results))
    assert json.dumps(results) == json.dumps(before)
