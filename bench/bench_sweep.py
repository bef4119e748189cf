"""Hyperparameter grids on the replica axis, timed with pytest-benchmark.

Adam, batch 500, 20 epochs with validation every epoch, on IMDB when an archive is available
locally (else synthetic-imdb), each layout one compiled program:
- today's 8-seed program (1 point x 8 seeds) beside a tuner's stage-1 grid (16 points x 2 seeds),
  and a sampled tune's Halton study of 16 trials x 2 seeds (learning rate, b1 and b2 all traced:
  `tune --search halton`'s default space for Adam);
- 5 rates x 8 seeds as one call of a 40-replica program, and as 5 calls of an 8-replica
  program (the traced-value loop): on a CPU the grid mostly saves compiles, on a GPU it fills it.
The figure is replica-epochs per second (replicas = points x seeds), compile excluded.

Each benchmark checks what it measured: one compile per layout (none on a persistent-cache hit),
none in the timed rounds, finite histories of the right shape.

Run: pytest bench/bench_sweep.py --benchmark-columns=median,iqr,rounds
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from optax_lab import engine, optimizers, search, workloads
from optax_lab.lessons import RunSpec
from optax_lab.sweep import Search, parse_sweep

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows

# (points, seeds, max replicas per call)
LAYOUTS = {
    "8 seeds": (1, 8, 64),
    "16 points x 2 seeds": (16, 2, 64),
    "Halton study, 16 trials x 2 seeds": (16, 2, 64),
    "5 points x 8 seeds, one call": (5, 8, 40),
    "5 points x 8 seeds, 5 calls": (5, 8, 8),
}


def _specs(layout: str, points: int) -> list[RunSpec]:
    """Adam at `points` learning rates of a log grid, or at the trials of one Halton study of the
    default search space (each its own learning rate, b1 and b2)."""
    if layout.startswith("Halton"):
        adam = optimizers.get("adam")
        axes = search.optimizer_axes("adam", search.default_space(4.0).ranges, adam.all_defaults, strict=False)
        trials = search.study_points(Search.HALTON, axes, points, seed=0)
        return [RunSpec(f"adam trial {i}", "adam", point, 500, point=point) for i, point in enumerate(trials, 1)]
    rates = parse_sweep(f"learning_rate=log:1e-3:1e-1:{points}").values if points > 1 else (0.01,)
    return [RunSpec(f"adam {rate:g}", "adam", {"learning_rate": rate}, 500) for rate in rates]


@pytest.fixture(scope="module")
def epochs(smoke):
    return 2 if smoke else 20


@pytest.mark.parametrize("layout", LAYOUTS)
def test_grid_replica_epochs_per_second(benchmark, bench_data, smoke, epochs, layout, bench_settings):
    name, arrays = bench_data
    points, seeds, max_replicas = LAYOUTS[layout]
    if smoke:  # the path, not the figure: the smallest grid of the same shape of layout
        points, seeds, max_replicas = min(points, 2), 2, 4
    specs = _specs(layout, points)

    def run():
        return engine.train_points(
            specs, arrays, workload=IMDB_MLP, seeds=tuple(range(seeds)), epochs=epochs, max_replicas=max_replicas
        )

    if not smoke:  # a smoke run lets its same-shaped layouts share one executable
        engine.forget_compiled()
    with engine.counting_compiles() as warm_compiles:
        warm = run()
    results = []
    with engine.counting_compiles() as timed_compiles:
        benchmark.pedantic(lambda: results.append(run()), rounds=1 if smoke else 3, iterations=1)
    rates_per_s = [points * seeds * epochs / r[0].program_run_s for r in results]
    benchmark.extra_info.update(
        dataset=name,
        points=points,
        seeds=seeds,
        replicas=warm[0].settings.num_replicas,
        calls=warm[0].program_calls,
        epochs=epochs,
        compile_s=warm[0].compile_s,
        replica_epochs_per_s_median=float(np.median(rates_per_s)),
    )
    assert len(warm_compiles) == 1 or ((bench_settings.compile_cache or smoke) and not warm_compiles), warm_compiles
    assert timed_compiles == [], f"{len(timed_compiles)} compiles in the timed rounds"
    assert all(math.isfinite(rate) and rate > 0 for rate in rates_per_s), rates_per_s
    for result in warm:
        assert result.history["val_loss"].shape == (seeds, epochs) and np.isfinite(result.history["val_loss"]).all()
