"""The peers table (bench/bench_peers.py's section of the bench report) from handmade runs: rates,
ratios over Keras, row order, skipped ways, the val-loss agreement check, the speed-up targets, and
what it renders when nothing ran. No TensorFlow or PyTorch needed."""

from __future__ import annotations

import math

import pytest

from optax_lab.benchmarking.peers import (
    AGREEMENT_SES,
    TARGETS,
    PeerRun,
    Target,
    agreement,
    disagreements,
    judge_targets,
    loss_agreement,
    peers_markdown,
    sorted_runs,
    speedup,
    targets_markdown,
    workload_text,
)
from optax_lab.benchmarking.table import DASH


def keras(optimizer: str, seconds=(10.0, 12.0, 11.0), **fields) -> PeerRun:
    # 1 seed × 20 epochs in a median 11 s: 1.82 seed-epochs/s
    return PeerRun(
        "keras",
        optimizer,
        epochs=20,
        run_seconds=seconds,
        setup_s=2.5,
        val_loss=0.35,
        runs_on="CPU, 2 threads",
        host_load=1.9,
        version="keras 3.0",
        **fields,
    )


def ours(optimizer: str, devices: int, seconds: float, order: str = "per-seed", **fields) -> PeerRun:
    return PeerRun(
        "optax_lab",
        optimizer,
        8,
        devices,
        order,
        20,
        (seconds, seconds * 2, seconds / 2, seconds),
        setup_s=1.9,
        val_loss=0.36,
        runs_on=f"{devices} of 2 CPU devices",
        version="jax 0.10.2",
        **fields,
    )


def torch_run(optimizer: str, seconds: float = 5.5, **fields) -> PeerRun:
    return PeerRun(
        "pytorch",
        optimizer,
        epochs=20,
        run_seconds=(seconds,),
        setup_s=0.3,
        val_loss=0.4,
        runs_on="CPU, 2 threads",
        version="torch 2.13",
        **fields,
    )


def row(text: str, optimizer: str, code: str) -> list[str]:
    """The cells of the one table line of `optimizer` whose Code cell is `code`."""
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    (cells,) = [cells for cells in rows if cells[:2] == [optimizer, code]]
    return cells


def test_rates_are_seeds_times_epochs_over_the_median_run():
    run = keras("adam")
    assert run.seconds == 11.0 and run.seed_epochs_per_s == pytest.approx(20 / 11)
    # An even count of runs: the median is the mean of the middle two (4 and 4 s here).
    assert ours("adam", 1, 4.0).seconds == 4.0 and ours("adam", 1, 4.0).seed_epochs_per_s == pytest.approx(40.0)
    # Skipped, or no usable run: no figures at all.
    assert PeerRun("keras", "adam", skipped="no TensorFlow").seed_epochs_per_s is None
    assert PeerRun("pytorch", "sgd", epochs=20, run_seconds=(0.0, float("nan"))).seconds is None
    with pytest.raises(ValueError, match="unknown way"):
        PeerRun("jax", "adam")


def test_speedup_is_over_the_keras_row_of_the_same_optimizer():
    runs = [
        keras("adam", seconds=(11.0,)),
        keras("sgd", seconds=(22.0,)),
        ours("adam", 2, 2.0),
        ours("sgd", 2, 2.0),
        torch_run("adam", seconds=5.5),
    ]
    # adam: 80 seed-epochs/s over 20/11; sgd: the same 80 over Keras' slower 20/22.
    assert speedup(runs[2], runs) == pytest.approx(80 / (20 / 11)) == pytest.approx(44.0)
    assert speedup(runs[3], runs) == pytest.approx(88.0)
    assert speedup(runs[4], runs) == pytest.approx(2.0)
    assert speedup(runs[0], runs) == pytest.approx(1.0)
    # No Keras figure for the optimizer (skipped, or absent): no ratio.
    lonely = [PeerRun("keras", "adam", skipped="no TensorFlow"), ours("adam", 1, 2.0)]
    assert speedup(lonely[1], lonely) is None and speedup(ours("sgd", 1, 2.0), runs[:1]) is None


def test_rows_sort_by_optimizer_then_keras_pytorch_optax_lab_by_order_and_devices():
    runs = [
        ours("sgd", 2, 1.0),
        ours("adam", 2, 1.0, "shared"),
        ours("adam", 2, 1.0),
        torch_run("sgd"),
        keras("adamw"),
        ours("adam", 1, 1.0, "shared"),
        ours("adam", 1, 1.0),
        keras("sgd"),
        torch_run("adam"),
        keras("adam"),
    ]
    order = [(run.optimizer, run.way, run.order, run.devices) for run in sorted_runs(runs)]
    assert order == [
        ("adam", "keras", "", 1),
        ("adam", "pytorch", "", 1),
        ("adam", "optax_lab", "per-seed", 1),
        ("adam", "optax_lab", "per-seed", 2),
        ("adam", "optax_lab", "shared", 1),
        ("adam", "optax_lab", "shared", 2),
        ("sgd", "keras", "", 1),
        ("sgd", "pytorch", "", 1),
        ("sgd", "optax_lab", "per-seed", 2),
        ("adamw", "keras", "", 1),
    ]


def test_table_rows_ratios_and_versions():
    runs = [
        ours("adam", 2, 2.0, ""),
        ours("adam", 1, 4.0, ""),
        keras("adam", seconds=(11.0,)),
        torch_run("adam", 5.5),
        ours("adam", 2, 1.0, "shared"),
    ]
    text = peers_markdown(runs, workload_text("imdb", 25_000, 25_000, 100, 500, 20))
    lines = text.splitlines()
    assert "on imdb: 25000 training reviews, batch 500, 20 epochs" in text and "100 → 32 → 32 → 1" in text
    labels = [line.split("|")[2].strip() for line in lines if line.startswith("| adam |")]
    assert labels == [
        "Keras, the lesson's code",
        "PyTorch, a plain loop",
        "optax_lab, 1 device",
        "optax_lab, 2 devices",
        "optax_lab, 2 devices, shared shuffling",
    ]
    assert row(text, "adam", "Keras, the lesson's code")[2:] == [
        "CPU, 2 threads",
        "1",
        "1",
        "11.0 s",
        "1.82",
        "1.0×",
        "2.50",
        "0.3500",
        DASH,
        "1.9",
    ]
    # 8 seeds × 20 epochs / 2 s = 80 seed-epochs/s, 44× Keras' 1.82; 4 timed runs.
    assert row(text, "adam", "optax_lab, 2 devices")[2:] == [
        "2 of 2 CPU devices",
        "8",
        "4",
        "2.00 s",
        "80.0",
        "44×",
        "1.90",
        "0.3600",
        DASH,
        DASH,
    ]
    assert row(text, "adam", "optax_lab, 1 device")[6:8] == ["40.0", "22×"]
    assert row(text, "adam", "PyTorch, a plain loop")[6:8] == ["3.64", "2.0×"]
    assert row(text, "adam", "optax_lab, 2 devices, shared shuffling")[6:8] == ["160", "88×"]
    assert "Versions: keras 3.0, torch 2.13, jax 0.10.2." in text
    assert "Skipped" not in text


def test_skipped_ways_are_dash_rows_with_their_reason_once():
    reason = "TensorFlow is not installed: pip install -e '.[peers]'"
    runs = [
        PeerRun("keras", "adam", version="keras 3.0", skipped=reason),
        PeerRun("keras", "sgd", skipped=reason + "."),
        ours("adam", 1, 2.0),
        ours("sgd", 1, 2.0),
    ]
    text = peers_markdown(runs)
    assert row(text, "adam", "Keras, the lesson's code (skipped)")[2:] == [DASH] * 10
    # No Keras figure: the optax_lab rows have their rate and no ratio.
    assert row(text, "sgd", "optax_lab, 1 device, per-seed shuffling")[6:8] == ["80.0", DASH]
    skipped = [line for line in text.splitlines() if line.startswith("Skipped:")]
    assert skipped == [f"Skipped: Keras, the lesson's code: {reason}."]
    assert "keras 3.0" not in text  # a skipped run's version is not listed


def ensemble(optimizer: str, seconds: float, compiled: bool = False, order: str = "per-seed", **fields) -> PeerRun:
    way = "pytorch_vmap_compiled" if compiled else "pytorch_vmap"
    return PeerRun(way, optimizer, 8, order=order, epochs=20, run_seconds=(seconds,), version="torch 2.13", **fields)


def test_targets_judge_optax_labs_fastest_row_over_each_baselines_fastest():
    runs = [
        keras("adam", seconds=(11.0,)),  # 1.82 seed-epochs/s
        torch_run("adam", 5.5),  # 3.64
        ensemble("adam", 4.0),  # 8 × 20 / 4 = 40
        ensemble("adam", 2.0, compiled=True),  # 80: the fastest PyTorch way
        ours("adam", 1, 4.0),  # 40
        ours("adam", 2, 1.0, "shared"),  # 160: optax_lab's fastest
        keras("sgd"),
    ]
    over_keras, over_pytorch, sgd_keras, sgd_pytorch = judge_targets(runs)
    assert over_keras.ours is runs[5] and over_keras.baseline is runs[0]
    assert over_keras.ratio == pytest.approx(88.0) and over_keras.met is True
    assert over_pytorch.baseline is runs[3] and over_pytorch.ratio == pytest.approx(2.0) and over_pytorch.met is False
    # No optax_lab row for sgd, and no PyTorch row: nothing to judge, not a failure.
    assert sgd_keras.met is None and sgd_pytorch.met is None and sgd_pytorch.baseline is None
    # A skipped way is no baseline: the eager ensemble (40) is then the fastest PyTorch way, 4×.
    skipped = [*runs[:3], PeerRun("pytorch_vmap_compiled", "adam", skipped="torch.compile failed"), *runs[4:6]]
    assert judge_targets(skipped)[1].ratio == pytest.approx(4.0) and judge_targets(skipped)[1].met is True
    # The targets' table: one line per optimizer and target, with its verdict.
    table = targets_markdown(runs)
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    assert cells[0] == [
        "adam",
        "≥ 40× the lesson's Keras code",
        "optax_lab, 2 devices, shared shuffling",
        "Keras, the lesson's code",
        "88×",
        "met",
    ]
    assert cells[1][3:] == ["PyTorch, torch.func ensemble + torch.compile, per-seed shuffling", "2.0×", "not met"]
    assert [line[-1] for line in cells[2:]] == ["not judged", "not judged"]
    # Given targets, the section holds that table; without (a smoke run), no verdict at all.
    assert "\n".join(table) in peers_markdown(runs, targets=TARGETS)
    assert "met" not in peers_markdown(runs) and "Targets" not in peers_markdown(runs)
    stricter = judge_targets(runs, [Target(100.0, "Keras", ("keras",))])
    assert [verdict.met for verdict in stricter] == [False, None]


# Made-up per-seed final val losses: 8 reference seeds around 0.40 (sum of squares 1e-3) and 3 seeds
# of a peer around 0.41 (sum of squares 2e-4): pooled variance 1.2e-3 / (8 + 3 - 2).
REFERENCE = (0.40, 0.41, 0.39, 0.40, 0.42, 0.38, 0.40, 0.40)
NEAR = (0.41, 0.40, 0.42)
FAR = (0.45, 0.44, 0.46)  # the same spread, 0.05 above
STANDARD_ERROR = math.sqrt(1.2e-3 / 9 * (1 / 3 + 1 / 8))  # 0.0078


def test_loss_agreement_is_the_mean_difference_within_pooled_standard_errors():
    near = loss_agreement(NEAR, REFERENCE)
    assert near.difference == pytest.approx(0.01) and near.limit == pytest.approx(AGREEMENT_SES * STANDARD_ERROR)
    assert near.agrees  # 0.01 is 1.3 standard errors
    far = loss_agreement(FAR, REFERENCE)
    assert far.difference == pytest.approx(0.05) and far.limit == pytest.approx(near.limit) and not far.agrees
    # The limit scales with the standard errors allowed, and a side's spread and seed count.
    assert not loss_agreement(NEAR, REFERENCE, ses=1.0).agrees
    assert loss_agreement(NEAR * 4, REFERENCE).limit < near.limit
    assert loss_agreement((0.40, 0.43, 0.37), REFERENCE).limit > near.limit
    # One peer seed is enough: the reference's spread is the pooled one.
    assert loss_agreement((0.40,), REFERENCE).agrees and not loss_agreement((0.46,), REFERENCE).agrees
    # Fewer than 3 seeds in all leave no spread to estimate; a diverged seed never agrees.
    assert loss_agreement((0.40,), (0.41,)) is None and loss_agreement((), REFERENCE) is None
    assert not loss_agreement((0.41, float("nan"), 0.40), REFERENCE).agrees
    # No spread at all: only the same mean agrees.
    assert loss_agreement((0.4, 0.4), (0.4, 0.4)).agrees and not loss_agreement((0.4, 0.4), (0.5, 0.5)).agrees


def test_rows_are_checked_against_optax_labs_per_seed_row_and_disagreements_named():
    runs = [
        keras("adam", seconds=(11.0,), seed_val_losses=NEAR),
        torch_run("adam", seed_val_losses=FAR),
        ensemble("adam", 2.0, seed_val_losses=NEAR + NEAR),
        ours("adam", 2, 1.0, "shared", seed_val_losses=NEAR),
        ours("adam", 1, 4.0, seed_val_losses=REFERENCE),
        keras("sgd", seed_val_losses=FAR),  # no optax_lab sgd row: nothing to check
        torch_run("sgd"),  # no per-seed losses: nothing to check
    ]
    assert runs[2].val_loss == pytest.approx(0.41)  # the mean of its seeds, when not given
    assert agreement(runs[0], runs).agrees and not agreement(runs[1], runs).agrees
    assert agreement(runs[3], runs).agrees  # optax_lab's other rows are checked too
    assert agreement(runs[4], runs) is None and agreement(runs[5], runs) is None and agreement(runs[6], runs) is None
    assert disagreements(runs) == [f"adam, PyTorch, a plain loop: +0.0500 > {AGREEMENT_SES * STANDARD_ERROR:.4f} ✗"]
    text = peers_markdown(runs)
    assert row(text, "adam", "Keras, the lesson's code")[10] == f"+0.0100 ≤ {AGREEMENT_SES * STANDARD_ERROR:.4f} ✓"
    assert row(text, "adam", "optax_lab, 1 device, per-seed shuffling")[10] == "reference"
    assert row(text, "adam", "PyTorch, a plain loop")[10].endswith("✗")
    assert row(text, "sgd", "Keras, the lesson's code")[10] == DASH
    assert disagreements(runs[:1] + runs[2:]) == []
    # A skipped optax_lab row is no reference: the next one (per-seed first, fewest devices) is.
    skipped = PeerRun("optax_lab", "adam", 8, 1, "per-seed", skipped="out of memory", seed_val_losses=FAR)
    assert agreement(runs[0], [*runs, skipped]).agrees


def test_new_ways_sort_and_label_between_keras_and_optax_lab():
    runs = [
        ours("adam", 1, 1.0),
        ensemble("adam", 1.0, compiled=True, order="shared"),
        ensemble("adam", 1.0, order="shared"),
        ensemble("adam", 1.0, compiled=True),
        PeerRun("keras_xla", "adam"),
        ensemble("adam", 1.0),
        torch_run("adam"),
        keras("adam"),
    ]
    assert [run.label for run in sorted_runs(runs)] == [
        "Keras, the lesson's code",
        "Keras, jit_compile=True",
        "PyTorch, a plain loop",
        "PyTorch, torch.func ensemble, per-seed shuffling",
        "PyTorch, torch.func ensemble, shared shuffling",
        "PyTorch, torch.func ensemble + torch.compile, per-seed shuffling",
        "PyTorch, torch.func ensemble + torch.compile, shared shuffling",
        "optax_lab, 1 device, per-seed shuffling",
    ]


def test_nothing_ran_is_a_line_not_an_error():
    assert peers_markdown([]) == "No peer benchmark ran.\n"
