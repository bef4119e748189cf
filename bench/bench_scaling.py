"""Throughput curves: replica-epochs/s and samples/s of the lesson's Adam run against its replicas.

Each curve is one configuration, shared or per-seed order × batch 500 or full batch × one device
or all devices, climbed as a ladder of 1, 2, 4, ... replicas (seeds), each rung one compiled
program (`engine.train_points`, one call holding every replica) run once untimed and then timed
on the engine's clock (around the compiled call, after `block_until_ready`), compile apart. A
curve stops where the next rung's call would pass --scaling-budget seconds, its memory (XLA's
figure, extrapolated) a share of the device's free memory, the ladder's cap, or the curve's wall
budget (see `optax_lab.benchmarking.scaling` for peak and saturation). Figures go in extra_info
(--benchmark-json, for `optax-lab compare`) and in a section of the bench report, with a log-log
plot. pytest-benchmark's own stats are each curve's wall time, compiles included: not a rate.

Each rung checks what it measured: one compile (none when the program was compiled before in
this process, or is a persistent-cache hit), none in its timed calls, one call, finite losses.
A rung the engine must split into several calls (memory) ends the curve unmeasured.

Run: pytest bench/bench_scaling.py [-k "500 and shared"] [--scaling-budget 2.5] [--devices N]
     [--scaling-curve-budget 70] [--scaling-max-replicas N] [--scaling-epochs 5] [--benchmark-json F]
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import numpy as np
import pytest

from optax_lab import engine, workloads
from optax_lab.benchmarking.scaling import (
    Curve,
    Point,
    curve_record,
    ladder,
    measure_point,
    next_replicas,
    scaling_markdown,
    scaling_plot,
)
from optax_lab.config import ModelConfig, Order, batch_label
from optax_lab.devices import memory_per_device
from optax_lab.lessons import LESSON_ADAM, RunSpec

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows

ADAM = LESSON_ADAM
TIMED_CALLS = 3  # per rung, after the untimed first call; the rate is their median
MEMORY_SHARE = 0.85  # of a device's free memory a rung may be predicted to use (XLA's own plan, scratch included)
# (order, batch, devices): batch 500 first, the lesson's run. Under --smoke two curves of rungs 1
# and 2 cover both orders, batch modes and device counts (the second needs 2 devices, unlike tests/).
CURVES = [
    (order, batch, devices) for batch in (500, None) for order in ("shared", "per-seed") for devices in ("1", "all")
]
SMOKE_CURVES = [("per-seed", None, "1"), ("shared", 500, "all")]  # tests/ and CI: one device, the first
_COMPILED_BEFORE: set[str] = set()  # program ids this process compiled: a rung may reuse one


def pytest_generate_tests(metafunc):
    if "curve" in metafunc.fixturenames:
        curves = SMOKE_CURVES if metafunc.config.getoption("--smoke") else CURVES
        metafunc.parametrize("curve", [pytest.param(c, id=f"{batch_label(c[1])}-{c[0]}-{c[2]}") for c in curves])


@dataclasses.dataclass(frozen=True)
class Budgets:
    call_s: float
    curve_s: float
    max_replicas: int
    epochs: int
    timed_calls: int


@pytest.fixture(scope="module")
def budgets(request, smoke) -> Budgets:
    option = request.config.getoption

    def pick(name, default, smoke_default):
        value = option(name)
        return value if value is not None else smoke_default if smoke else default

    chosen = Budgets(
        pick("--scaling-budget", 2.5, 60.0),
        pick("--scaling-curve-budget", 70.0, 120.0),
        pick("--scaling-max-replicas", 65_536, 2),
        pick("--scaling-epochs", 5, 1),
        1 if smoke else TIMED_CALLS,
    )
    problems = [
        f"{flag} {value} must be above 0"
        for flag, value in (
            ("--scaling-budget", chosen.call_s),
            ("--scaling-curve-budget", chosen.curve_s),
            ("--scaling-max-replicas", chosen.max_replicas),
            ("--scaling-epochs", chosen.epochs),
        )
        if not value > 0
    ]
    if problems:
        raise pytest.UsageError("; ".join(problems))
    return chosen


@pytest.fixture(scope="module")
def measured_curves(report_section) -> list[Curve]:
    """The curves this session measured, rendered as one section of the bench report."""
    curves: list[Curve] = []

    def render(stem: str):
        if not curves:
            return "No scaling curve ran.", {}
        plot = f"{stem}-scaling.png"
        return scaling_markdown(curves, plot), {"scaling.png": scaling_plot([("", curves)])}

    report_section("Replica scaling", render)
    return curves


def _memory_bytes(compiled) -> int | None:
    """Bytes per device XLA plans for the compiled program (None where the backend does not say)."""
    try:
        stats = compiled.memory_analysis()
        return int(
            stats.temp_size_in_bytes
            + stats.argument_size_in_bytes
            + stats.output_size_in_bytes
            - stats.alias_size_in_bytes
        )
    except (AttributeError, TypeError, NotImplementedError, RuntimeError):
        return None


def measure_rung(
    spec: RunSpec, arrays, replicas: int, order: Order, device_count: int, budgets: Budgets, compile_cache: bool
) -> Point | int:
    """The rung's point; or, where the engine splits its replicas over several calls (memory),
    how many: then it is no longer one program's call, and the curve ends."""
    seeds = tuple(range(replicas))

    def call():
        return engine.train_points(
            [spec],
            arrays,
            workload=IMDB_MLP,
            seeds=seeds,
            epochs=budgets.epochs,
            order=order,
            max_replicas=replicas,
            devices=device_count,
        )[0]

    with engine.counting_compiles() as warm_compiles:
        warm = call()  # compiles, and the first call's one-off costs stay out of the rate
    # One compile, unless this process compiled the program before or the persistent cache has it.
    assert len(warm_compiles) == 1 or (not warm_compiles and (warm.program in _COMPILED_BEFORE or compile_cache)), (
        replicas,
        warm_compiles,
    )
    _COMPILED_BEFORE.add(warm.program)
    if warm.program_calls > 1:
        return warm.program_calls
    with engine.counting_compiles() as timed_compiles:
        timed = [call() for _ in range(budgets.timed_calls)]
        layout = engine.replica_layout(warm.settings.num_seeds, warm.settings.num_points, warm.devices)[0]
        compiled, _ = engine.compile_program(
            warm.model, spec, warm.settings, arrays, IMDB_MLP, layout
        )  # in memory: no compile
    assert timed_compiles == [], f"{len(timed_compiles)} compiles in the timed calls of {replicas} replicas"
    assert all(r.program_calls == 1 and r.program == warm.program for r in timed)
    assert warm.history["train_loss"].shape == (replicas, budgets.epochs)
    assert np.isfinite(warm.history["train_loss"]).all()
    return measure_point(
        replicas,
        warm.devices,
        [r.program_run_s for r in timed],
        budgets.epochs,
        warm.settings.n_train,
        warm.compile_s,
        _memory_bytes(compiled),
    )


def test_replica_scaling(benchmark, curve, bench_data, budgets, bench_settings, measured_curves):
    order, batch, devices = curve
    if devices == "all" and jax.local_device_count() == 1:
        pytest.skip("one device: the all-devices curve is the one-device curve")
    device_count = jax.local_device_count() if devices == "all" else 1
    dataset, arrays = bench_data
    spec = dataclasses.replace(ADAM, name=f"Adam @{batch_label(batch)}", batch_size=batch)
    memory_budget = MEMORY_SHARE * memory_per_device(device_count)
    points: list[Point] = []
    stopped = []

    def climb():
        start, replicas = time.perf_counter(), 1
        while replicas is not None:
            measured = measure_rung(
                spec, arrays, replicas, Order(order), device_count, budgets, bench_settings.compile_cache
            )
            if not isinstance(measured, Point):
                stopped.append(f"memory: the engine splits {replicas} replicas into {measured} calls")
                break
            points.append(measured)
            replicas, why = next_replicas(
                points,
                cap=budgets.max_replicas,
                device_count=device_count,
                call_budget_s=budgets.call_s,
                memory_budget_bytes=memory_budget,
                elapsed_s=time.perf_counter() - start,
                curve_budget_s=budgets.curve_s,
                calls_per_rung=1 + budgets.timed_calls,
            )
            stopped.append(why)

    benchmark.pedantic(climb, rounds=1, iterations=1, warmup_rounds=0)
    info = {
        "optimizer": ADAM.optimizer,
        "hyperparams": dict(ADAM.hyperparams),
        "order": order,
        "batch": batch_label(batch),
        "batch_size": batch or int(arrays.x_train.shape[0]),
        "devices": devices,
        "device_count": device_count,
        "device": jax.devices()[0].device_kind,
        "dataset": dataset,
        "n_train": int(arrays.x_train.shape[0]),
        "n_test": int(arrays.x_test.shape[0]),
        "num_words": int(arrays.x_train.shape[1]),
        "model": ModelConfig().describe(),
        "epochs": budgets.epochs,
        "stopped": stopped[-1],
        "budgets": dataclasses.asdict(budgets),
        "memory_budget_bytes": memory_budget,
        "compile_cache": bench_settings.compile_cache,
    }
    assert points, f"no rung measured: {stopped[-1]}"
    benchmark.extra_info.update(curve_record(info, points))
    measured_curves.append(Curve(info, tuple(points)))
    # The ladder as climbed: doubling from 1, each rung within the cap, every rate real.
    assert [p.replicas for p in points] == ladder(points[-1].replicas) and points[-1].replicas <= budgets.max_replicas
    assert all(
        math.isfinite(p.replica_epochs_per_s)
        and p.replica_epochs_per_s > 0
        and p.samples_per_s > 0
        and p.compile_s >= 0
        for p in points
    ), points
    assert all(p.devices == min(device_count, p.replicas) for p in points), [p.devices for p in points]
    assert stopped[-1], "a curve ends for a reason"
