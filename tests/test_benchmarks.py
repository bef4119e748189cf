"""The benchmark outputs: the timing table, the workloads section and `optax-lab compare` from
handmade pytest-benchmark JSON, their bad input (one line, exit 2, nothing written), the FLOPs
derived from XLA's cost analysis against an analytic count, and one real `pytest bench/` run
feeding `compare`. (FLOPs counted on a program's jaxpr: tests/test_program_flops.py.)"""

from __future__ import annotations

import datetime
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optax_lab import workloads
from optax_lab.benchmarking.records import BENCH_KIND, benchmark_rows
from optax_lab.benchmarking.table import machine_label, report_path, timing_markdown
from optax_lab.benchmarking.workload_table import full_run_seconds, limit_verdict, workload_markdown
from optax_lab.cli import main
from optax_lab.errors import UsageError

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows

REPO = Path(__file__).resolve().parents[1]
CPU = {
    "cpu": {"brand_raw": "Test CPU 9000", "count": 2},
    "system": "Linux",
    "python_version": "3.11",
    "jax": {
        "platform": "cpu",
        "device_kind": "cpu",
        "device_count": 1,
        "jax": "0.10.2",
        "jaxlib": "0.10.2",
        "optax": "0.2.8",
        "flax": "0.12.8",
    },
    "fp32_matmul_peak": {"gflops": 100.0, "size": 1024, "repeats": 20},
}
GPU = {
    **CPU,
    "jax": {**CPU["jax"], "platform": "gpu", "device_kind": "NVIDIA H100 80GB HBM3"},
    "fp32_matmul_peak": {"gflops": 50_000.0, "size": 8192, "repeats": 20},
}


def entry(optimizer: str, batch: str, median: float, iqr: float = 0.01, **info) -> dict:
    """One benchmark as pytest-benchmark writes it; `median`/`iqr` are seconds per epoch call."""
    steps = 1 if batch == "full" else 25_000 // int(batch)
    extra = {
        "bench": BENCH_KIND,
        "schema": 1,
        "optimizer": optimizer,
        "hyperparams": {"learning_rate": 0.01},
        "batch": batch,
        "batch_size": 25_000 if batch == "full" else int(batch),
        "steps_per_epoch": steps,
        "dataset": "imdb",
        "n_train": 25_000,
        "n_test": 25_000,
        "num_words": 100,
        "model": "32-32 relu",
        "seeds": 8,
        "order": "per-seed",
        "compile_s": 2.0,
        "compile_cache": False,
        "val_loss": 0.6,
        "val_epochs": 3,
        "diverged_seeds": 0,
        "flops_per_step": 8e7,
        "flops_per_epoch": 5e9,
        "flops_exact": True,
        "matmul_peak_gflops": 100.0,
        **info,
    }
    return {
        "group": None,
        "name": f"test_optimizer_epoch[{optimizer}-{batch}]",
        "fullname": f"bench/bench_optimizers.py::test_optimizer_epoch[{optimizer}-{batch}]",
        "params": {"optimizer": optimizer},
        "extra_info": extra,
        "stats": {
            "min": median * 0.9,
            "max": median * 1.2,
            "mean": median,
            "median": median,
            "iqr": iqr,
            "q1": median - iqr / 2,
            "q3": median + iqr / 2,
            "rounds": 5,
            "iterations": 1,
        },
    }


def output(machine: dict, entries: list[dict]) -> dict:
    return {
        "machine_info": machine,
        "commit_info": {},
        "benchmarks": entries,
        "datetime": "2025-01-01T00:00:00+00:00",
        "version": "5.3.1",
    }


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


# ---------------------------------------------------------------------------------------------
# The timing table


def test_timing_table_has_step_times_rates_losses_and_roofline():
    rows = benchmark_rows(
        output(
            CPU,
            [
                entry("slow", "500", median=0.5, iqr=0.05, val_loss=0.58),
                entry("slow", "full", median=0.2, iqr=0.02, val_loss=None, diverged_seeds=8),
                entry("fast", "500", median=0.25, iqr=0.01, flops_exact=False),
                entry("fast", "full", median=0.1),
                {
                    "name": "test_adam_cold_compile_seconds",
                    "extra_info": {"compile_s_median": 2.0},
                    "stats": {"median": 2.0, "iqr": 0.1},
                },  # an engine benchmark: not a row
            ],
        )
    )
    assert [row.key for row in rows] == [("slow", "500"), ("slow", "full"), ("fast", "500"), ("fast", "full")]
    text = timing_markdown(CPU, rows, {"command": "pytest bench/", "wall_s": 100.0})
    lines = text.splitlines()
    fast, slow = (next(line for line in lines if line.startswith(f"| {name} |")) for name in ("fast", "slow"))
    assert lines.index(fast) < lines.index(slow)  # sorted by the mini-batch step time
    # Step = epoch call / steps: 0.25 s / 50 steps = 5 ms; samples/s = 8 seeds × 25,000 / 0.25 s.
    assert fast.startswith("| fast | 100 ms (10.0 ms) | 5.00 ms (200 µs) | 2.00M | 800k | 2.00 | 2.00 |")
    assert "diverged (8/8)" in slow and "0.5800" in slow
    roof = [line for line in lines if line.startswith("| fast |")][1]
    # 5e9 FLOPs per epoch in 0.25 s = 20 GFLOP/s = 20 % of the 100 GFLOP/s peak; † a lower bound.
    assert "20.0 †" in roof and "20.0 %" in roof and "80.0M †" in roof
    assert "| Versions | jax 0.10.2, jaxlib 0.10.2, optax 0.2.8, flax 0.12.8 |" in text
    assert "100.0 GFLOP/s (1024×1024" in text
    assert "4 benchmarks; compile 8 s in all of the session's 100 s (8%)" in text
    assert "Test CPU 9000, 2 cores" in text


def test_rows_without_stats_or_with_missing_fields_are_one_line_errors():
    broken = entry("adam", "500", 0.1)
    del broken["stats"]["median"]
    with pytest.raises(UsageError, match="'test_optimizer_epoch\\[adam-500\\]' has no stats median"):
        benchmark_rows(output(CPU, [broken]), "x.json")
    missing = entry("adam", "500", 0.1)
    del missing["extra_info"]["steps_per_epoch"]
    with pytest.raises(UsageError, match="lacks extra_info steps_per_epoch"):
        benchmark_rows(output(CPU, [missing]), "x.json")


def test_machine_labels_and_report_paths_never_overwrite(tmp_path):
    assert machine_label(CPU) == "cpu-test-cpu-9000"
    assert machine_label(GPU) == "gpu-nvidia-h100-80gb-hbm3"
    day = datetime.date(2025, 1, 2)
    first = report_path(tmp_path, GPU, day)
    assert first == tmp_path / "gpu-nvidia-h100-80gb-hbm3-2025-01-02.md"
    first.write_text("cold run")
    assert report_path(tmp_path, GPU, day) == tmp_path / "gpu-nvidia-h100-80gb-hbm3-2025-01-02-2.md"


def test_rounds_fill_the_time_budget_within_bounds():
    from optax_lab.benchmarking.epoch import rounds_for

    assert rounds_for(1.0, 0.1, 3, 200) == 10
    assert rounds_for(1.0, 5.0, 3, 200) == 3  # a slow epoch still gets the minimum
    assert rounds_for(1.0, 1e-4, 3, 200) == 200
    assert rounds_for(1.0, 0.0, 3, 200) == 200


def test_records_table_and_compare_need_no_jax_and_every_export_resolves():
    code = (
        "import sys; import optax_lab.benchmarking as b, optax_lab.benchmarking.compare, "
        "optax_lab.benchmarking.workload_table; "
        "assert 'jax' not in sys.modules, 'reading or rendering imported jax'; "
        "missing = [name for name in b.__all__ if getattr(b, name, None) is None]; "
        "assert not missing, missing"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def workload_row(name: str, rate: float, default_epochs: int, limit_s: float | None, **info) -> dict:
    """A bench_workloads row as it records it: `rate` seed-epochs/s, 8 seeds x its default epochs."""
    full_run_s = full_run_seconds(rate, default_epochs)
    return {
        "workload": name,
        "optimizer": "adam",
        "batch": 128,
        "seeds": 8,
        "epochs": default_epochs,
        "seed_epochs_per_s": rate,
        "runs": [rate],
        "compile_s": 3.0,
        "default_epochs": default_epochs,
        "full_run_s": full_run_s,
        "limit_s": limit_s,
        "limit_verdict": limit_verdict(full_run_s, limit_s),
        "gflop_per_run": 500.0,
        "flops_exact": True,
        "gflops_per_s": 25.0,
        "peak_fraction": 0.25,
        "load": [1.0, 1.0, 1.0],
        **info,
    }


def test_workloads_section_sets_full_runs_against_limits_and_gflops_beside_the_peak():
    assert full_run_seconds(2.0, 10) == 40.0 and full_run_seconds(2.0, 10, seeds=2) == 10.0
    assert limit_verdict(120.0, 120.0) == "within" and limit_verdict(120.5, 120.0) == "over"
    assert limit_verdict(1e6, None) == ""  # no limit, no verdict
    rows = [
        workload_row("fast-cnn", 1.0, 10, 120.0),  # 8 x 10 / 1.0 = 80 s
        workload_row("slow-lm", 0.2, 6, 180.0, flops_exact=False, gflops_per_s=0.5, peak_fraction=0.005),  # 240 s
        workload_row("no-limit", 100.0, 20, None),
    ]
    text = workload_markdown(rows, {"gflops": 100.0, "size": 1024, "repeats": 20})
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert "100.0 GFLOP/s (1024×1024 fp32 matmul, best of 20)" in text
    assert "| 80.0 s (10 epochs) | 120 s: within | 500.0 | 25.0 | 25.0 % |" in lines["| fast-cnn"]
    assert "| 240.0 s (6 epochs) | 180 s: **over** | 500.0 | 0.5 † | 0.5 % |" in lines["| slow-lm"]
    assert "| 1.6 s (20 epochs) | none |" in lines["| no-limit"]
    assert workload_markdown(rows[:1], None).startswith("Machine's fp32 matmul peak: not measured.")


# ---------------------------------------------------------------------------------------------
# optax-lab compare


def test_compare_gives_speedups_and_flags_mismatched_runs(tmp_path, capsys):
    cpu = write_json(
        tmp_path / "laptop.json",
        output(
            CPU,
            [
                entry("adam", "500", 0.4),
                entry("adam", "full", 0.2),
                entry("sgd", "500", 0.3),
                entry("lion", "500", 0.3),
            ],
        ),
    )
    gpu = write_json(
        tmp_path / "gpu.json",
        output(
            GPU,
            [
                entry("adam", "500", 0.1),
                entry("adam", "full", 0.01),
                entry("sgd", "500", 0.05, seeds=2),  # different seeds: flagged, not compared
                entry("dog", "500", 0.1),
            ],
        ),
    )  # only on the GPU
    out = tmp_path / "out" / "cmp.md"
    assert main(["compare", str(cpu), str(gpu), "--out", str(out)]) == 0
    text = out.read_text()
    adam = [line for line in text.splitlines() if line.startswith("| adam |")]
    assert adam[0] == "| adam | 200 ms (10.0 ms) | 10.0 ms (10.0 ms) | 20.00× |  |"  # full batch first
    assert adam[1] == "| adam | 8.00 ms (200 µs) | 2.00 ms (200 µs) | 4.00× |  |"
    sgd = next(line for line in text.splitlines() if line.startswith("| sgd |"))
    assert "not compared" in sgd and "⚠ B differs from A: seeds 8 vs 2" in sgd
    assert "not run in B" in next(line for line in text.splitlines() if line.startswith("| lion |"))
    assert "not run in A" in next(line for line in text.splitlines() if line.startswith("| dog |"))
    assert (
        "B vs A: geometric-mean speed-up 4.00× over 1 optimizers (range 4.00–4.00×); 1 flagged as mismatched."
    ) in text
    assert "| A | cpu-test-cpu-9000 | laptop.json |" in text and "| B | gpu-nvidia-h100-80gb-hbm3 | gpu.json |" in text
    assert "![speed-up over A](cmp.png)" in text
    assert (tmp_path / "out" / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["cmp.md", "cmp.png"]  # no staging left over
    assert "comparison:" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json at all", "is not JSON"),
        ({"schema": 1, "preset": "lesson", "runs": []}, "is not pytest-benchmark JSON"),  # an optax-lab results.json
        ([1, 2, 3], "is not pytest-benchmark JSON"),
        (output(CPU, []), "holds no optimizer benchmarks (an empty selection)"),
        (
            output(CPU, [{"name": "test_lesson_end_to_end_seconds", "extra_info": {}, "stats": {"median": 1.0}}]),
            "holds no optimizer benchmarks",
        ),
    ],
)
def test_compare_bad_input_is_one_line_and_exit_2(tmp_path, error_line, content, message):
    good = write_json(tmp_path / "good.json", output(CPU, [entry("adam", "500", 0.1)]))
    bad = write_json(tmp_path / "bad.json", content)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["compare", str(good), str(bad), "--out", str(out)]) == 2
    line = error_line()
    assert message in line and "bad.json" in line
    assert list(out.iterdir()) == []


def test_compare_needs_two_files_that_share_a_benchmark(tmp_path, error_line):
    a = write_json(tmp_path / "a.json", output(CPU, [entry("adam", "500", 0.1)]))
    b = write_json(tmp_path / "b.json", output(GPU, [entry("sgd", "500", 0.1)]))
    assert main(["compare", str(a), "--out", str(tmp_path / "x.md")]) == 2
    assert "two or more" in error_line()
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "x.md")]) == 2
    assert "share no optimizer × batch mode" in error_line()
    assert main(["compare", str(a), str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in error_line()
    assert main(["compare"]) == 2
    error_line()
    assert not (tmp_path / "x.md").exists()


# ---------------------------------------------------------------------------------------------
# FLOPs from XLA's cost analysis


def mlp_matmul_flops(widths: tuple[int, ...], examples: int) -> tuple[int, int]:
    """(forward, forward + backward) matmul FLOPs of a Dense stack for `examples` examples: a
    layer's forward and its weight gradient are 2·in·out each per example, its input gradient
    another 2·in·out except for the first layer (the data needs no gradient)."""
    layers = list(zip(widths, widths[1:], strict=False))
    forward = sum(2 * a * b for a, b in layers) * examples
    backward = sum((2 if i else 1) * 2 * a * b for i, (a, b) in enumerate(layers)) * examples
    return forward, forward + backward


def test_step_flops_from_a_loop_counted_once_or_per_trip():
    from optax_lab.benchmarking.roofline import step_flops

    once = step_flops(reported=1_100.0, fixed=1_000.0, steps=50, counted_once=True, unknown_loops=0)
    assert (once.per_step, once.per_epoch, once.exact) == (100.0, 1_000.0 + 50 * 100.0, True)
    per_trip = step_flops(reported=6_000.0, fixed=1_000.0, steps=50, counted_once=False, unknown_loops=1)
    assert (per_trip.per_step, per_trip.per_epoch, per_trip.exact) == (100.0, 6_000.0, False)


@pytest.fixture(scope="module")
def small_data():
    from optax_lab.data.synthetic import generate
    from optax_lab.engine import Arrays

    return Arrays.from_numpy(*generate(100, 0, 2_000, 1_000))


@pytest.mark.slow  # CI time (~20 s): the roofline's FLOP count against a hand count
@pytest.mark.parametrize("batch", [500, None])
def test_flops_per_step_match_an_analytic_count_of_the_default_mlp(small_data, batch):
    """XLA counts the epoch's scan body once (jax 0.10: checked by `loop_body_counted_once`);
    the derived per-step FLOPs must still match the MLP's matmuls, plus a little elementwise."""
    from optax_lab.benchmarking.epoch import EpochBench
    from optax_lab.benchmarking.roofline import fixed_epoch_flops
    from optax_lab.lessons import RunSpec

    seeds, examples = 2, batch or 2_000
    bench = EpochBench(RunSpec("sgd", "sgd", {}, batch), small_data, tuple(range(seeds)), IMDB_MLP)
    flops = bench.flops()
    _, train_step = mlp_matmul_flops((100, 32, 32, 1), examples)
    validation, _ = mlp_matmul_flops((100, 32, 32, 1), 1_000)
    assert train_step * seeds <= flops.per_step <= 1.25 * train_step * seeds, (flops, train_step * seeds)
    # The timed epoch does not validate: outside the steps there is only the shuffle (none at full batch).
    assert not bench.settings.validate and 0 <= flops.fixed <= 0.05 * train_step * seeds
    assert (flops.fixed == 0) == (batch is None)
    # What validation would add, counted on its own, is the test split's forward pass.
    with_validation = fixed_epoch_flops(bench.model_config, 2_000, 1_000, 100, seeds, batch is None, True)
    assert validation * seeds <= with_validation - flops.fixed <= 1.25 * validation * seeds
    steps = 2_000 // examples
    assert flops.per_epoch == pytest.approx(flops.fixed + steps * flops.per_step)
    assert flops.exact


@pytest.mark.slow  # the bench's smoke run in CI drives the same epoch benchmark
def test_epoch_bench_carries_state_and_records_json_safe_extra_info(small_data):
    from optax_lab.benchmarking.epoch import EpochBench, extra_info
    from optax_lab.benchmarking.roofline import MatmulPeak
    from optax_lab.lessons import RunSpec

    bench = EpochBench(RunSpec("sgd", "sgd", {"learning_rate": 0.1}, 500), small_data, (0, 1), IMDB_MLP)
    warm = bench.time_epoch()
    first_val = float(bench.evaluate()["val_loss"].mean())
    bench.train_until(3)
    validation = bench.evaluate()
    bench.train_until(4)
    losses = [float(m["train_loss"].mean()) for m in bench.history]
    assert len(losses) == 4 and losses[-1] < losses[0]  # the state carried: training went on
    assert float(validation["val_loss"].mean()) < first_val
    assert "val_loss" not in bench.history[0]  # the timed epoch does not validate
    info = extra_info(
        bench,
        dataset="synthetic",
        warmup_s=warm,
        rounds=3,
        timed_epochs=4,
        val_epochs=3,
        validation=validation,
        flops=bench.flops(),
        peak=MatmulPeak(100.0, 256, 3),
        compile_cache=False,
        stats={"median": 0.02, "iqr": 0.001},
    )
    json.dumps(info, allow_nan=False)
    assert info["steps_per_epoch"] == 4 and info["seeds"] == 2 and info["batch"] == "500"
    assert info["train_loss"] == pytest.approx(losses[-1])
    assert info["val_loss"] == pytest.approx(float(validation["val_loss"].mean()))
    assert info["step_s_median"] == pytest.approx(0.005) and info["samples_per_s"] == pytest.approx(2 * 2000 / 0.02)
    assert info["peak_fraction"] == pytest.approx(info["flops_per_epoch"] / 0.02 / 1e9 / 100.0)


# ---------------------------------------------------------------------------------------------
# The real thing: pytest bench/ --benchmark-json, then compare


@pytest.mark.slow  # a measuring `pytest bench/` in a subprocess (~25 s); the smoke run in CI covers the bench itself
def test_bench_json_carries_extra_and_machine_info_and_compares(tmp_path, capsys):
    """One measuring `pytest bench/` run (smoke sizes, one program): its JSON alone must be
    enough for `optax-lab compare`, and the timing table goes where --bench-report says."""
    data, table = tmp_path / "bench.json", tmp_path / "table.md"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "bench/bench_optimizers.py",
        "--smoke",
        "--optimizers",
        "sgd",
        "--batch",
        "500",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--benchmark-json={data}",
        "--bench-report",
        str(table),
    ]
    # Not an xdist worker, whatever this test runs under: pytest-benchmark measures nothing in one.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_XDIST")}
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    saved = json.loads(data.read_text())
    assert saved["machine_info"]["jax"]["platform"] and saved["machine_info"]["fp32_matmul_peak"]["gflops"] > 0
    (bench,) = saved["benchmarks"]
    info = bench["extra_info"]
    assert info["optimizer"] == "sgd" and info["batch"] == "500" and info["seeds"] == 2
    assert bench["stats"]["rounds"] == info["rounds"] >= 2
    assert info["step_s_median"] == pytest.approx(bench["stats"]["median"] / info["steps_per_epoch"])
    assert all(math.isfinite(info[key]) for key in ("compile_s", "flops_per_step", "gflops_per_s", "val_loss"))
    assert "| sgd |" in table.read_text()
    copy = write_json(tmp_path / "again.json", saved)
    assert main(["compare", str(data), str(copy), "--out", str(tmp_path / "cmp.md")]) == 0
    assert "1.00×" in (tmp_path / "cmp.md").read_text()


def test_a_measuring_bench_refuses_the_tests_quick_compile_flags():
    """The tests compile with QUICK_COMPILE_FLAGS in XLA_FLAGS (conftest), which a subprocess
    inherits: a measuring `pytest bench` must refuse them in one line, a --smoke run takes them."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_XDIST")}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "bench/bench_workloads.py",
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    refused = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    assert refused.returncode == pytest.ExitCode.USAGE_ERROR
    assert "XLA_FLAGS holds the tests' quick compile flags" in refused.stderr and "Traceback" not in refused.stderr
    smoke = subprocess.run([*command, "--smoke"], cwd=REPO, capture_output=True, text=True, env=env)
    assert smoke.returncode == 0, smoke.stdout[-2000:] + smoke.stderr[-2000:]
