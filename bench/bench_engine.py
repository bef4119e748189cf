"""Engine speed (issue 2's targets), timed with pytest-benchmark.

Adam, batch 500, 8 seeds vmapped, 20 epochs with validation every epoch, on IMDB when an
archive is available locally (else synthetic-imdb; same shapes, same speed):
- seed-epochs per second, shared order and per-seed order, compile excluded;
- cold compile seconds of that program (trace + lower + XLA compile, no cache);
- `optax-lab run --preset lesson` end to end, cold, in a fresh process.

Run: pytest bench/bench_engine.py --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from optax_lab.config import ModelConfig, RunSpec
from optax_lab.train import ProgramShape, compile_program, train, _COMPILED

ADAM = RunSpec("Adam", "adam", {"learning_rate": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-7}, 500)


@pytest.fixture(scope="module")
def sizes(smoke):
    return {"seeds": 2, "epochs": 2} if smoke else {"seeds": 8, "epochs": 20}


@pytest.mark.parametrize("order", ["shared", "per-seed"])
def test_adam_seed_epochs_per_second(benchmark, full_data, sizes, order):
    name, arrays = full_data
    seeds = tuple(range(sizes["seeds"]))
    run = lambda: train(ADAM, arrays, seeds=seeds, epochs=sizes["epochs"], shared_order=order == "shared")  # noqa: E731
    warm = run()  # compiles; the timed rounds reuse the executable
    results = []
    benchmark.pedantic(lambda: results.append(run()), rounds=5, iterations=1)
    # The engine's own clock (around the compiled call only, after block_until_ready) per round.
    rates = [len(seeds) * sizes["epochs"] / r.run_s for r in results]
    benchmark.extra_info.update(dataset=name, order=order, seeds=len(seeds), epochs=sizes["epochs"],
                                compile_s=warm.compile_s, seed_epochs_per_s_median=float(np.median(rates)),
                                device=jax.devices()[0].device_kind)


def test_adam_cold_compile_seconds(benchmark, full_data, sizes):
    _, arrays = full_data
    shape = ProgramShape(arrays.x_train.shape[0], arrays.x_test.shape[0], arrays.x_train.shape[1], 500,
                         sizes["epochs"], sizes["seeds"], False)

    def forget_compiled():  # no in-memory reuse: every round traces, lowers and compiles
        _COMPILED.clear()
        jax.clear_caches()

    seconds = []
    persistent = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)  # cold even under --compile-cache
    try:
        benchmark.pedantic(lambda: seconds.append(compile_program(ModelConfig(), ADAM, shape, arrays)[1]),
                           setup=forget_compiled, rounds=3, iterations=1)
    finally:
        jax.config.update("jax_enable_compilation_cache", persistent)
    benchmark.extra_info.update(compile_s_median=float(np.median(seconds)))


def test_lesson_end_to_end_seconds(benchmark, sizes, tmp_path):
    """The whole `optax-lab run --preset lesson` in a fresh process: import, data, 6 compiles, training."""
    command = [sys.executable, "-m", "optax_lab.cli", "run", "--preset", "lesson", "--no-compile-cache",
               "--seeds", str(sizes["seeds"]), "--epochs", str(sizes["epochs"]), "--out", str(tmp_path)]

    def run():
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=os.environ.copy())
        return time.perf_counter() - start

    benchmark.pedantic(run, rounds=1, iterations=1)
