"""Engine speed, timed with pytest-benchmark.

Adam, batch 500, 8 seeds vmapped, 20 epochs with validation every epoch, on IMDB when an
archive is available locally (else synthetic-imdb; same shapes, same speed):
- seed-epochs per second, shared order and per-seed order, compile excluded;
- cold compile seconds of that program (trace + lower + XLA compile, no cache);
- `optax-lab run --preset lesson` end to end, cold, in a fresh process.

Each benchmark also checks what it measured: finite, positive times and rates, and the compiles
it claims (one per program, none in a timed round that reuses one). `--benchmark-disable` (CI,
with --smoke) still runs each measured function once, so the checks run there too.

Run: pytest bench/bench_engine.py --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from optax_lab import engine, workloads
from optax_lab.config import ModelConfig, Order
from optax_lab.lessons import LESSON_ADAM

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows

ADAM = LESSON_ADAM


@pytest.fixture(scope="module")
def sizes(smoke):
    # Under --smoke the end-to-end run is the smallest preset (2 programs): it proves the path works.
    return (
        {"seeds": 2, "epochs": 2, "preset": "gd-vs-sgd", "compile_rounds": 1}
        if smoke
        else {"seeds": 8, "epochs": 20, "preset": "lesson", "compile_rounds": 3}
    )


def positive(value) -> bool:
    return math.isfinite(value) and value > 0


@pytest.mark.parametrize("order", ["shared", "per-seed"])
def test_adam_seed_epochs_per_second(benchmark, full_data, sizes, order, bench_settings):
    name, arrays = full_data
    seeds = tuple(range(sizes["seeds"]))
    run = lambda: engine.train(ADAM, arrays, workload=IMDB_MLP, seeds=seeds, epochs=sizes["epochs"], order=Order(order))  # noqa: E731
    engine.forget_compiled()  # the warm-up below is this program's one compile, whatever ran before
    with engine.counting_compiles() as warm_compiles:
        warm = run()  # compiles; the timed rounds reuse the executable
    results = []
    with engine.counting_compiles() as timed_compiles:
        benchmark.pedantic(lambda: results.append(run()), rounds=5, iterations=1)
    # The engine's own clock (around the compiled call only, after block_until_ready) per round.
    rates = [len(seeds) * sizes["epochs"] / r.run_s for r in results]
    benchmark.extra_info.update(
        dataset=name,
        order=order,
        seeds=len(seeds),
        epochs=sizes["epochs"],
        compile_s=warm.compile_s,
        seed_epochs_per_s_median=float(np.median(rates)),
        device=jax.devices()[0].device_kind,
    )
    # One compile (none on a persistent-cache hit under --compile-cache), none in the timed rounds.
    assert len(warm_compiles) == 1 or (bench_settings.compile_cache and not warm_compiles), warm_compiles
    assert timed_compiles == [], f"{len(timed_compiles)} compiles in the timed rounds"
    assert results and positive(warm.compile_s) and positive(warm.run_s)
    assert all(positive(r.run_s) for r in results) and all(positive(rate) for rate in rates), rates
    assert all(
        r.settings.order is Order(order) and r.history["train_loss"].shape == (len(seeds), sizes["epochs"])
        for r in results
    )


def test_adam_cold_compile_seconds(benchmark, full_data, sizes):
    _, arrays = full_data
    model, settings = ModelConfig(), engine.program_settings(ADAM, arrays, sizes["epochs"], sizes["seeds"])
    seconds = []
    persistent = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)  # cold even under --compile-cache
    try:
        with engine.counting_compiles() as compiles:
            # forget_compiled in the untimed setup: no in-memory reuse, every round traces, lowers and compiles.
            benchmark.pedantic(
                lambda: seconds.append(engine.compile_program(model, ADAM, settings, arrays, IMDB_MLP)[1]),
                setup=engine.forget_compiled,
                rounds=sizes["compile_rounds"],
                iterations=1,
            )
    finally:
        jax.config.update("jax_enable_compilation_cache", persistent)
    benchmark.extra_info.update(compile_s_median=float(np.median(seconds)))
    # Every round one real XLA compile of the program, and nothing else.
    assert seconds and len(compiles) == len(seconds), (len(compiles), seconds)
    assert all(positive(s) for s in seconds) and all(positive(c) for c in compiles), (seconds, compiles)


@pytest.mark.slow  # a fresh process running the CLI (~20 s); CI runs the CLI in tests/test_cli.py
def test_lesson_end_to_end_seconds(benchmark, sizes, tmp_path):
    """The whole `optax-lab run --preset lesson` in a fresh process: import, data, 6 compiles, training."""
    command = [
        sys.executable,
        "-m",
        "optax_lab.cli",
        "run",
        "--preset",
        sizes["preset"],
        "--no-compile-cache",
        "--seeds",
        str(sizes["seeds"]),
        "--epochs",
        str(sizes["epochs"]),
        "--out",
        str(tmp_path),
    ]
    done = []

    def run():
        start = time.perf_counter()
        done.append(subprocess.run(command, capture_output=True, text=True, env=os.environ.copy()))
        return time.perf_counter() - start

    seconds = benchmark.pedantic(run, rounds=1, iterations=1)
    (process,) = done
    assert process.returncode == 0, process.stdout[-3000:] + process.stderr[-3000:]
    assert positive(seconds)
    for name in ("report.md", "results.json"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0, f"no {name} in {tmp_path}"
