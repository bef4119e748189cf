"""Replica scaling's pure parts: the ladder and its budgets, peak and saturation, the tables,
the record's round trip through pytest-benchmark JSON, and `optax-lab compare` overlaying two
machines' curves (files without curves compare as before)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optax_lab.benchmarking.compare import load_runs, render_markdown
from optax_lab.benchmarking.records import BENCH_KIND
from optax_lab.benchmarking.scaling import BENCH_KIND as SCALING_KIND
from optax_lab.benchmarking.scaling import (
    Curve,
    Point,
    curve_record,
    ladder,
    measure_point,
    next_replicas,
    overlay_markdown,
    predicted_bytes,
    scaling_curves,
    scaling_markdown,
    scaling_plot,
)
from optax_lab.cli import main
from optax_lab.errors import UsageError

PNG = b"\x89PNG\r\n\x1a\n"
CPU = {
    "cpu": {"brand_raw": "Test CPU 9000", "count": 2},
    "system": "Linux",
    "python_version": "3.11",
    "jax": {"platform": "cpu", "device_kind": "cpu", "device_count": 2, "jax": "0.10.2", "jaxlib": "0.10.2"},
}
GPU = {**CPU, "jax": {**CPU["jax"], "platform": "gpu", "device_kind": "NVIDIA H100 80GB HBM3", "device_count": 1}}


def point(
    replicas: int, rate: float, devices: int = 1, run_s: float = 1.0, memory: int | None = None, compile_s: float = 2.0
) -> Point:
    return Point(replicas, devices, run_s, 3, compile_s, memory, rate, rate * 25_000)


def curve(
    order="shared", batch="500", devices="1", rates=(10.0, 19.0, 30.0, 33.0, 34.0, 32.0), device_count=1, epochs=5
) -> Curve:
    info = {
        "order": order,
        "batch": batch,
        "devices": devices,
        "device_count": device_count,
        "epochs": epochs,
        "dataset": "imdb",
        "stopped": "the ladder's cap of 32 replicas",
    }
    return Curve(info, tuple(point(2**i, rate, min(device_count, 2**i)) for i, rate in enumerate(rates)))


def output(machine: dict, curves: list[Curve], extra: list[dict] = ()) -> dict:
    entries = [
        {
            "name": f"test_replica_scaling[{c.info['batch']}-{c.info['order']}-{c.info['devices']}]",
            "extra_info": curve_record(c.info, c.points),
            "stats": {"median": 60.0, "iqr": 0.0},
        }
        for c in curves
    ]
    return {"machine_info": machine, "benchmarks": [*entries, *extra], "datetime": "2025-01-01T00:00:00+00:00"}


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------------------------------------
# The ladder and its budgets


def test_ladder_doubles_up_to_the_cap():
    assert ladder(1) == [1] and ladder(2) == [1, 2] and ladder(100) == [1, 2, 4, 8, 16, 32, 64]
    assert ladder(4096)[-1] == 4096 and len(ladder(4096)) == 13
    assert ladder(0) == [] and ladder(8, start=2) == [2, 4, 8]


def test_next_rung_doubles_while_every_budget_allows_and_says_which_stops_it():
    points = [point(1, 10.0, run_s=0.1, memory=1_100), point(2, 19.0, run_s=0.2, memory=1_200)]
    budget = {
        "cap": 64,
        "device_count": 1,
        "call_budget_s": 1.0,
        "memory_budget_bytes": 1e9,
        "elapsed_s": 5.0,
        "curve_budget_s": 60.0,
        "calls_per_rung": 4,
    }
    assert next_replicas(points, **budget) == (4, "")
    replicas, why = next_replicas(points, **{**budget, "cap": 3})
    assert replicas is None and why == "the ladder's cap of 3 replicas"
    # The next call is predicted at twice the last (0.4 s): over a 0.3 s budget.
    replicas, why = next_replicas(points, **{**budget, "call_budget_s": 0.3})
    assert replicas is None and why.startswith("time: a call of 4 would take ~0.4 s")
    # Memory extrapolates linearly: 1,000 B fixed + 100 B a replica -> 1,400 B at 4 replicas.
    assert predicted_bytes(points, 4, 1) == pytest.approx(1_400)
    assert next_replicas(points, **{**budget, "memory_budget_bytes": 1_400})[0] == 4
    replicas, why = next_replicas(points, **{**budget, "memory_budget_bytes": 1_399})
    assert replicas is None and why.startswith("memory: 4 would need")
    # The curve's wall time: 5 s spent + 2 s compile + 4 calls of 0.4 s = 8.6 s.
    assert next_replicas(points, **{**budget, "curve_budget_s": 8.7})[0] == 4
    assert next_replicas(points, **{**budget, "curve_budget_s": 8.5}) == (None, "the curve's 8.5 s wall budget")


def test_memory_prediction_counts_replicas_per_device_and_errs_high_from_one_rung():
    assert predicted_bytes([point(1, 1.0)], 2, 1) is None  # the backend gave no figure
    assert predicted_bytes([point(4, 1.0, memory=800)], 8, 1) == pytest.approx(1_600)  # proportional
    # 1 replica on 1 device, then 2 split over 2 devices: the same replicas per device.
    assert predicted_bytes([point(1, 1.0, memory=500)], 2, 2) == pytest.approx(500)
    split = [point(2, 1.0, devices=2, memory=500), point(4, 1.0, devices=2, memory=700)]
    assert predicted_bytes(split, 8, 2) == pytest.approx(1_100)


# ---------------------------------------------------------------------------------------------
# Peak and saturation


def test_peak_and_saturation_of_a_curve_that_flattens():
    flat = curve()  # 10, 19, 30, 33, 34, 32 at 1..32 replicas
    assert (flat.peak.replicas, flat.peak.replica_epochs_per_s) == (16, 34.0)
    assert flat.saturation.replicas == 8 and not flat.still_rising  # 33 >= 0.9 * 34, 30 is not
    rising = curve(rates=(10.0, 20.0, 40.0))
    assert rising.peak.replicas == rising.saturation.replicas == 4 and rising.still_rising
    assert curve(rates=(50.0, 46.0, 20.0)).saturation.replicas == 1  # one replica already saturates


def test_measure_point_takes_the_median_call_and_counts_replicas_epochs_and_examples():
    p = measure_point(8, 2, [2.0, 1.0, 9.0], epochs=5, n_train=25_000, compile_s=3.0, memory_bytes=None)
    assert (p.run_s, p.rounds, p.devices) == (2.0, 3, 2)
    assert p.replica_epochs_per_s == 8 * 5 / 2.0 and p.samples_per_s == 8 * 5 * 25_000 / 2.0


# ---------------------------------------------------------------------------------------------
# Tables, plot and the record


def test_the_report_table_names_peak_saturation_and_the_all_devices_gain():
    one = curve(rates=(10.0, 19.0, 30.0, 33.0, 34.0, 32.0))
    both = curve(devices="all", device_count=2, rates=(10.0, 30.0, 60.0, 68.0))
    text = scaling_markdown([both, one], "x-scaling.png")
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| batch 500")}
    assert rows["| batch 500, shared, 1 device"].startswith(
        "| batch 500, shared, 1 device | 1 | 1–32 | 34.0 | 16 | 850k | 8 | — |"
    )
    assert rows["| batch 500, shared, all devices"].startswith(
        "| batch 500, shared, all devices | 2 | 1–8 | 68.0 | 8 | 1.70M | not reached (still rising at 8) | 2.00× |"
    )
    assert "![replica-epochs/s against replicas, log-log](x-scaling.png)" in text
    assert "| 32 | 32.0 | — |" in text  # the rung table: the all-devices curve stopped at 8


def test_the_record_round_trips_through_benchmark_json_and_bad_ones_are_one_line_errors():
    original = curve(devices="all", device_count=2)
    data = json.loads(json.dumps(output(CPU, [original], [{"name": "engine", "extra_info": {}, "stats": {}}])))
    (read,) = scaling_curves(data)
    assert read.points == original.points and read.key == ("500", "shared", "all")
    record = data["benchmarks"][0]["extra_info"]
    assert record["bench"] == SCALING_KIND and record["saturation_replicas"] == 8 and record["peak_replicas"] == 16
    record["points"] = []
    with pytest.raises(UsageError, match="x.json: scaling benchmark .* has no valid points"):
        scaling_curves(data, "x.json")


def test_the_plot_is_a_png_for_one_machine_and_for_several():
    assert scaling_plot([("", [curve(), curve(batch="full", order="per-seed")])]).startswith(PNG)
    assert scaling_plot([("A", [curve()]), ("B", [curve(rates=(100.0, 400.0))])]).startswith(PNG)


# ---------------------------------------------------------------------------------------------
# optax-lab compare


def test_compare_overlays_two_machines_curves(tmp_path, capsys):
    cpu = write_json(tmp_path / "cpu.json", output(CPU, [curve(), curve(devices="all", device_count=2)]))
    gpu = write_json(
        tmp_path / "gpu.json",
        output(GPU, [curve(rates=(100.0, 200.0, 400.0, 800.0, 1_600.0)), curve(batch="full", rates=(1.0, 2.0))]),
    )
    out = tmp_path / "out" / "cmp.md"
    assert main(["compare", str(cpu), str(gpu), "--out", str(out)]) == 0
    text = out.read_text()
    assert "## Replica scaling" in text
    assert "![replica-epochs/s against replicas, overlaid, log-log](cmp-scaling.png)" in text
    lines = {
        line.split(" | ")[0]: line for line in text.splitlines() if line.startswith(("| batch 500", "| full batch"))
    }
    # A's peak 34 at 16 replicas, B's 1.6k at 16 (still rising): 47× A.
    assert lines["| batch 500, shared, 1 device"] == (
        "| batch 500, shared, 1 device | 34.0 (16) | 1.60k (16) | 8 | not reached (still rising at 16) | 47.06× |"
    )
    assert lines["| batch 500, shared, all devices"].startswith(
        "| batch 500, shared, all devices | 34.0 (16 on 2 devices) | — |"
    )
    assert lines["| batch 500, shared, all devices"].endswith("| — | — |")  # only on A
    assert lines["| full batch, shared, 1 device"].startswith("| full batch, shared, 1 device | — | 2.00 (2) |")
    assert (tmp_path / "out" / "cmp-scaling.png").read_bytes().startswith(PNG)
    # Curves alone: no optimizer step times, so no speed-up chart.
    assert sorted(p.name for p in out.parent.iterdir()) == ["cmp-scaling.png", "cmp.md"]
    assert "Step time" not in text and "comparison:" in capsys.readouterr().err


def test_overlay_notes_machines_that_ran_different_epochs():
    text = overlay_markdown([("A", [curve()]), ("B", [curve(epochs=20)])], "p.png")
    assert "⚠ The machines ran different epochs per call (A: 5; B: 20)" in text


def optimizer_entry(optimizer: str, median: float) -> dict:
    info = {
        "bench": BENCH_KIND,
        "schema": 1,
        "optimizer": optimizer,
        "batch": "500",
        "batch_size": 500,
        "steps_per_epoch": 50,
        "seeds": 8,
        "n_train": 25_000,
    }
    return {
        "name": f"test_optimizer_epoch[{optimizer}-500]",
        "extra_info": info,
        "stats": {"median": median, "iqr": 0.01, "rounds": 5},
    }


def test_compare_without_curves_writes_what_it_always_did(tmp_path):
    a = write_json(tmp_path / "a.json", output(CPU, [], [optimizer_entry("adam", 0.4)]))
    b = write_json(tmp_path / "b.json", output(GPU, [], [optimizer_entry("adam", 0.1)]))
    out = tmp_path / "out" / "cmp.md"
    assert main(["compare", str(a), str(b), "--out", str(out)]) == 0
    assert out.read_text() == render_markdown(load_runs([a, b]), "cmp.png")
    assert "Replica scaling" not in out.read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["cmp.md", "cmp.png"]
    # Both kinds in the files: the step times as before, then the overlay.
    c = write_json(tmp_path / "c.json", output(CPU, [curve()], [optimizer_entry("adam", 0.4)]))
    d = write_json(tmp_path / "d.json", output(GPU, [curve()], [optimizer_entry("adam", 0.1)]))
    both = tmp_path / "both" / "cmp.md"
    assert main(["compare", str(c), str(d), "--out", str(both)]) == 0
    assert both.read_text().startswith(render_markdown(load_runs([c, d]), "cmp.png").rstrip("\n"))
    assert sorted(p.name for p in both.parent.iterdir()) == ["cmp-scaling.png", "cmp.md", "cmp.png"]


def test_compare_needs_a_shared_curve_or_benchmark(tmp_path, error_line):
    a = write_json(tmp_path / "a.json", output(CPU, [curve(order="shared")]))
    b = write_json(tmp_path / "b.json", output(GPU, [curve(order="per-seed")]))
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "x.md")]) == 2
    assert "share no optimizer × batch mode and no scaling curve" in error_line()
    assert not (tmp_path / "x.md").exists()
