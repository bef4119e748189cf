"""The peers table (bench/bench_peers.py's section of the bench report) from handmade runs: rates,
ratios over Keras, row order, skipped ways, and what it renders when nothing ran. No TensorFlow or
PyTorch needed."""

from __future__ import annotations

import pytest

from optax_lab.benchmarking.peers import PeerRun, peers_markdown, sorted_runs, speedup, target_text, workload_text
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


def ours(optimizer: str, devices: int, seconds: float, order: str = "per-seed") -> PeerRun:
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
    assert row(text, "adam", "Keras, the lesson's code (skipped)")[2:] == [DASH] * 9
    # No Keras figure: the optax_lab rows have their rate and no ratio.
    assert row(text, "sgd", "optax_lab, 1 device, per-seed shuffling")[6:8] == ["80.0", DASH]
    skipped = [line for line in text.splitlines() if line.startswith("Skipped:")]
    assert skipped == [f"Skipped: Keras, the lesson's code: {reason}."]
    assert "keras 3.0" not in text  # a skipped run's version is not listed


def test_target_line_marks_the_optax_lab_rows_that_reach_it():
    runs = [
        keras("adam", seconds=(11.0,)),
        ours("adam", 1, 4.0),
        ours("adam", 2, 2.0),
        torch_run("adam"),
        ours("adam", 2, 1.0, "shared"),
    ]
    # 22× on one device, 44× on two, 88× shared: the 40× target is reached by the last two only.
    assert target_text(runs, 40) == (
        "optax_lab over Keras, ✓ where at least 40×: adam 22× (1 device, per-seed "
        "shuffling), 44× ✓ (2 devices, per-seed shuffling), 88× ✓ (2 devices, shared "
        "shuffling)."
    )
    assert target_text(runs, 20).count("× ✓") == 3 and target_text(runs, 100).count("× ✓") == 0
    assert target_text(runs, 40) in peers_markdown(runs, target=40) and "✓" not in peers_markdown(runs)
    # No Keras figure: nothing to judge, no line.
    assert target_text([PeerRun("keras", "adam", skipped="no TensorFlow"), ours("adam", 1, 2.0)], 40) == ""


def test_nothing_ran_is_a_line_not_an_error():
    assert peers_markdown([]) == "No peer benchmark ran.\n"
