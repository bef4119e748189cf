"""Step time of every registry optimizer, full batch and mini-batch, timed with pytest-benchmark.

Each benchmark compiles its optimizer's epoch program once (AOT; compile seconds recorded apart),
runs one untimed warm-up epoch, whose time sizes the rounds to about --time-budget seconds, and
untimed epochs up to the fixed short training (--val-epochs, counted from the warm-up), after
which it validates: each row's val loss, so a timing row also says how well the optimizer
trained. Then `benchmark.pedantic` times rounds of one epoch call each (all steps in a
`lax.scan`, no validation; `block_until_ready` inside), the state carried from round to round.
It then checks what it measured: positive, finite times and rates, no compile in a timed round.

Run: pytest bench/bench_optimizers.py [--optimizers adam,lion] [--batch full,500] [--seeds 8]
     [-k "adam and 500"] [--compile-cache] [--benchmark-json out.json]
"""

from __future__ import annotations

import math

from optax_lab import workloads
from optax_lab.benchmarking.epoch import EpochBench, extra_info, rounds_for
from optax_lab.config import batch_label
from optax_lab.engine import counting_compiles
from optax_lab.lessons import RunSpec

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_optimizer_epoch(benchmark, optimizer, batch_size, bench_settings, bench_data, matmul_peak, record_benchmark):
    settings, (dataset, data) = bench_settings, bench_data
    benchmark.group = "full batch" if batch_size is None else f"batch {batch_size}"
    spec = RunSpec(f"{optimizer} @{batch_label(batch_size)}", optimizer, {}, batch_size)
    bench = EpochBench(spec, data, tuple(range(settings.seeds)), IMDB_MLP)  # compiles
    warmup_s = bench.time_epoch()  # epoch 1: first-call costs, and the clock that sizes the rounds
    bench.train_until(settings.val_epochs)  # the fixed short training behind the row's val loss
    validation = bench.evaluate()
    rounds = rounds_for(settings.time_budget, warmup_s, settings.min_rounds, settings.max_rounds)
    bench.reserve(len(bench.history) + rounds)
    with counting_compiles() as compiles:
        benchmark.pedantic(bench.run_epoch, rounds=rounds, iterations=1, warmup_rounds=0)
    timed_epochs = len(bench.history)
    flops = bench.flops()
    stats = benchmark.stats.stats if benchmark.stats else None  # None: --benchmark-disable
    info = extra_info(
        bench,
        dataset=dataset,
        warmup_s=warmup_s,
        rounds=rounds,
        timed_epochs=timed_epochs,
        val_epochs=settings.val_epochs,
        validation=validation,
        flops=flops,
        peak=matmul_peak,
        compile_cache=settings.compile_cache,
        stats={"median": stats.median, "iqr": stats.iqr} if stats else None,
    )
    benchmark.extra_info.update(info)
    record_benchmark(benchmark)
    assert flops.per_step > 0 and flops.per_epoch >= flops.reported * (1 - 1e-6)
    # The timed rounds reuse the one compiled epoch program; the times and rates are real.
    assert compiles == [], f"{len(compiles)} compiles in the timed rounds"
    assert timed_epochs > settings.val_epochs and all(positive(info[key]) for key in ("compile_s", "warmup_s")), info
    if stats:
        assert all(
            positive(info[key])
            for key in (
                "epoch_s_median",
                "step_s_median",
                "samples_per_s",
                "seed_epochs_per_s",
                "gflops_per_s",
                "peak_fraction",
            )
        ), info
        assert math.isfinite(info["step_s_iqr"]) and info["step_s_iqr"] >= 0, info
