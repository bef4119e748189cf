"""Each workload's speed: seed-epochs per second of its reference optimizer at its first batch mode,
8 seeds, its own epochs with validation every epoch (the figure docs/performance.md gives per
workload), compile excluded; the median of 3 runs of one compiled
program, and the machine's load beside it (a shared machine's figures are only comparable within
one session).

The words workloads (imdb-10k-mlp, imdb-logreg, imdb-fasttext) read the real IMDB archive and are
skipped without one; the others use IMDB when an archive is local, else synthetic-imdb. --smoke:
2 seeds, 2 epochs, 256 training examples, one run.

Run: pytest bench/bench_workloads.py --workloads imdb-10k-mlp,imdb-fasttext -s
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from optax_lab import engine, workloads
from optax_lab.config import FULL_BATCH
from optax_lab.engine import Arrays
from optax_lab.errors import UsageError
from optax_lab.lessons import RunSpec
from optax_lab.records import seed_epochs_per_second

REPEATS = 3
RESULTS: dict[str, dict] = {}  # workload -> its row, for the report section


def pytest_generate_tests(metafunc):
    if "workload_name" in metafunc.fixturenames:
        # --smoke checks the path on one MLP workload and one test function, not the eight
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
    except UsageError as error:  # a words workload without the archive
        pytest.skip(str(error))
    return Arrays.from_numpy(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)


def test_workload_seed_epochs_per_second(benchmark, workload_name, bench_settings, report_section):
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
    first = run()  # compiles
    results = []
    benchmark.pedantic(lambda: results.append(run()), rounds=1 if smoke else REPEATS, iterations=1)
    rates = [seed_epochs_per_second(result) for result in results or [first]]
    row = {
        "workload": workload.name,
        "optimizer": workload.reference,
        "batch": spec.batch_size or "full",
        "seeds": seeds,
        "epochs": epochs,
        "seed_epochs_per_s": float(np.median(rates)),
        "runs": [round(rate, 2) for rate in rates],
        "compile_s": first.compile_s,
        "load": [round(value, 2) for value in os.getloadavg()],
    }
    benchmark.extra_info.update(row)
    print(
        f"\n{workload.name}: {workload.reference} @{row['batch']}, {seeds} seeds x {epochs} epochs: "
        f"{row['seed_epochs_per_s']:.2f} seed-epochs/s (median of {row['runs']}), compile {first.compile_s:.1f} s, "
        f"load {row['load']}"
    )
    assert np.isfinite(first.history["train_loss"]).all()
    if not RESULTS:
        report_section("Workloads: seed-epochs/s of each reference optimizer", _render)
    RESULTS[workload.name] = row


def _render(stem: str):
    lines = [
        "| workload | optimizer | batch | seeds x epochs | seed-epochs/s (median) | runs | compile s "
        "| load (1, 5, 15 min) |",
        "|---|---|---|---|---:|---|---:|---|",
    ]
    for row in RESULTS.values():
        lines.append(
            f"| {row['workload']} | {row['optimizer']} | {row['batch']} | {row['seeds']} x {row['epochs']} | "
            f"{row['seed_epochs_per_s']:.2f} | {', '.join(map(str, row['runs']))} | {row['compile_s']:.1f} | "
            f"{', '.join(map(str, row['load']))} |"
        )
    return "\n".join(lines) + "\n", {}
