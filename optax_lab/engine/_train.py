"""Training: prepare each program (its call shape, layout and executable, compiled once), then
run it with the clock around the compiled call alone (after `block_until_ready`), so compile time
and run time are recorded apart. A program whose replicas exceed one call (`max_replicas`, or
what fits in memory) runs as several calls of the same executable. Preparing and running are two
halves, so that a runner can compile the next programs while one runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from optax_lab import devices as device_info
from optax_lab import optimizers
from optax_lab.config import ModelConfig, Order
from optax_lab.devices import MAX_REPLICAS
from optax_lab.engine._executables import compile_program, program_id
from optax_lab.engine._inputs import Arrays, program_settings
from optax_lab.engine._layout import Layout, fetch, put, replica_devices, replica_inputs, replica_layout
from optax_lab.engine._memory import estimate_memory, replicas_per_call
from optax_lab.lessons import RunSpec
from optax_lab.records import ProgramSettings, RunResult, program_key, split_hyperparams
from optax_lab.workloads import Workload

__all__ = ["Prepared", "call_shape", "points_per_call", "prepare_points", "run_prepared", "train", "train_points"]


def points_per_call(num_points: int, num_seeds: int, max_replicas: int = MAX_REPLICAS) -> int:
    """How many hyperparameter points one call of the program holds: all of them when their
    replicas fit `max_replicas`, else as few calls as fit, balanced (at least one point a call)."""
    if num_points * num_seeds <= max_replicas:
        return num_points
    calls = math.ceil(num_points / max(1, max_replicas // num_seeds))
    return math.ceil(num_points / calls)


def call_shape(num_seeds: int, num_points: int, max_replicas: int, fits: tuple[int, int]) -> tuple[int, int]:
    """(seeds, points) of one call: within `max_replicas` and within what memory `fits` (the
    largest (seeds, points) `replicas_per_call` allows), in as few balanced calls as that
    leaves. Seeds are split only when one point's seeds do not fit."""
    seeds_cap = min(num_seeds, max(1, max_replicas), fits[0])
    if seeds_cap < num_seeds:
        return math.ceil(num_seeds / math.ceil(num_seeds / seeds_cap)), 1
    per_call = points_per_call(num_points, num_seeds, max_replicas)
    if per_call > fits[1]:
        per_call = math.ceil(num_points / math.ceil(num_points / fits[1]))
    return num_seeds, per_call


def _chunks(items: Sequence, size: int) -> list[list]:
    """`items` in runs of `size`, the last one padded by repeating its last item (one shape)."""
    chunks = [list(items[first : first + size]) for first in range(0, len(items), size)]
    return [chunk + chunk[-1:] * (size - len(chunk)) for chunk in chunks]


@dataclasses.dataclass(frozen=True)
class Prepared:
    """One program compiled and laid out, ready to run (`prepare_points`): what `run_prepared`
    needs. Made on any thread: a runner compiles the next programs while one runs."""

    specs: tuple[RunSpec, ...]
    workload: Workload
    seeds: tuple[int, ...]
    model: ModelConfig
    settings: ProgramSettings
    layout: Layout
    call: tuple[int, int]  # (seeds, points) of one call
    padded: tuple[int, int]  # the same, padded to a multiple of the devices
    compiled: Any
    compile_s: float
    program: str
    memory_per_device: int
    memory_bound: bool


def prepare_points(
    specs: Sequence[RunSpec],
    data: Arrays,
    *,
    workload: Workload,
    seeds: tuple[int, ...],
    epochs: int,
    order: Order = Order.PER_SEED,
    model_config: ModelConfig = ModelConfig(),
    eval_train: bool = False,
    max_replicas: int = MAX_REPLICAS,
    devices: int | None = None,
) -> Prepared:
    """The compiled program of `train_points` (same arguments), its call shape and layout."""
    if len({program_key(spec) for spec in specs}) != 1:
        raise ValueError(f"train_points needs the points of one program, got {len(specs)} specs of several")
    model = specs[0].model_config(model_config)
    devices = replica_devices(devices)
    single_process_cpu = jax.process_count() == 1 and jax.default_backend() == "cpu"
    if single_process_cpu and optimizers.get(specs[0].optimizer).one_cpu_device:
        devices = 1
    estimate = estimate_memory(
        model, specs[0], program_settings(specs[0], data, epochs, 1, order, eval_train), workload, data.x_train
    )
    fits = replicas_per_call(estimate, len(seeds), len(specs), device_info.memory_per_device(devices), devices)
    call_seeds, call_points = call_shape(len(seeds), len(specs), max_replicas, fits)
    layout, padded_seeds, padded_points = replica_layout(call_seeds, call_points, devices)
    settings = program_settings(specs[0], data, epochs, padded_seeds, order, eval_train, padded_points)
    compiled, compile_s = compile_program(model, specs[0], settings, data, workload, layout)
    memory_bound = (call_seeds, call_points) != call_shape(
        len(seeds), len(specs), max_replicas, (len(seeds), len(specs))
    )
    per_device = estimate.bytes_for(
        math.ceil(padded_seeds / layout.devices) if layout.axis == 0 else padded_seeds,
        padded_points if layout.axis == 0 else math.ceil(padded_points / layout.devices),
    )
    return Prepared(
        tuple(specs),
        workload,
        tuple(seeds),
        model,
        settings,
        layout,
        (call_seeds, call_points),
        (padded_seeds, padded_points),
        compiled,
        compile_s,
        program_id(model, specs[0], settings, workload, layout),
        per_device,
        memory_bound,
    )


def run_prepared(prepared: Prepared, data: Arrays) -> list[RunResult]:
    """Run a prepared program over every seed and point: each point's RunResult, timed by the
    compiled calls alone."""
    layout = prepared.layout
    if layout.devices > 1:  # replicated on every device of the mesh
        data = put(data, jax.tree.map(lambda _: layout.shardings(())[3], data))
    jax.block_until_ready(data)
    points = [split_hyperparams(spec)[1] for spec in prepared.specs]
    histories, run_s, calls = _run_calls(
        prepared.compiled, data, layout, prepared.seeds, points, prepared.call, prepared.padded
    )
    specs = prepared.specs
    return [
        RunResult(
            spec,
            prepared.workload,
            optimizers.hyperparams(spec.optimizer, spec.hyperparams),
            prepared.settings,
            prepared.seeds,
            history,
            prepared.compile_s,
            run_s / len(specs),
            prepared.model,
            prepared.program,
            run_s,
            calls,
            layout.devices,
            prepared.settings.num_replicas,
            prepared.memory_per_device,
            prepared.memory_bound,
        )
        for spec, history in zip(specs, histories, strict=True)
    ]


def train_points(
    specs: Sequence[RunSpec],
    data: Arrays,
    *,
    workload: Workload,
    seeds: tuple[int, ...],
    epochs: int,
    order: Order = Order.PER_SEED,
    model_config: ModelConfig = ModelConfig(),
    eval_train: bool = False,
    max_replicas: int = MAX_REPLICAS,
    devices: int | None = None,
    on_compiled: Callable[[float], None] | None = None,
) -> list[RunResult]:
    """Train every spec (hyperparameter points of one program: equal `program_key`) of `workload`
    for every seed, seeds x points on the replica axes of one compiled program, split over up to
    `devices` local devices (default: all; see `replica_layout`). One call holds at most
    `max_replicas` replicas and what fits in memory (one replica that cannot fit is a UsageError);
    more run as further calls of the same executable, the last padded by repeating its last point
    or seed. Each point gets its own RunResult; history as in `train`. `prepare_points` then
    `run_prepared` are its two halves, for callers that compile ahead."""
    prepared = prepare_points(
        specs,
        data,
        workload=workload,
        seeds=seeds,
        epochs=epochs,
        order=order,
        model_config=model_config,
        eval_train=eval_train,
        max_replicas=max_replicas,
        devices=devices,
    )
    if on_compiled is not None:
        on_compiled(prepared.compile_s)
    return run_prepared(prepared, data)


def _run_calls(
    compiled,
    data: Arrays,
    layout: Layout,
    seeds: tuple[int, ...],
    points: list[dict[str, float]],
    call: tuple[int, int],
    padded: tuple[int, int],
) -> tuple[list[dict[str, np.ndarray]], float, int]:
    """Run the executable over every chunk of seeds x points: (each point's history [S, E, ...],
    the seconds of the calls alone, the number of calls)."""
    (call_seeds, call_points), (padded_seeds, padded_points) = call, padded
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in points]  # each point's histories, by seed chunk
    run_s, calls = 0.0, 0
    for seed_first, seed_chunk in zip(range(0, len(seeds), call_seeds), _chunks(seeds, call_seeds), strict=True):
        real_seeds = min(call_seeds, len(seeds) - seed_first)
        run_seeds = seed_chunk + seed_chunk[-1:] * (padded_seeds - len(seed_chunk))
        for first, chunk in zip(range(0, len(points), call_points), _chunks(points, call_points), strict=True):
            chunk = chunk + chunk[-1:] * (padded_points - len(chunk))  # and to a multiple of the devices
            inputs = replica_inputs(tuple(run_seeds), chunk, layout, order_seed=seeds[0])
            start = time.perf_counter()
            history = jax.block_until_ready(compiled(*inputs, data))
            run_s += time.perf_counter() - start
            calls += 1
            history = fetch(history)  # numpy: slicing compiles nothing
            for i in range(first, min(first + call_points, len(points))):
                parts[i].append({k: v[:real_seeds, i - first] for k, v in history.items()})
    histories = [
        {k: np.concatenate([part[k] for part in point_parts]) for k in point_parts[0]} for point_parts in parts
    ]
    return histories, run_s, calls


def train(
    spec: RunSpec,
    data: Arrays,
    *,
    workload: Workload,
    seeds: tuple[int, ...],
    epochs: int,
    order: Order = Order.PER_SEED,
    model_config: ModelConfig = ModelConfig(),
    eval_train: bool = False,
    on_compiled: Callable[[float], None] | None = None,
) -> RunResult:
    """Train `spec` for every seed at once on the base model `model_config` with the spec's model
    changes applied. History: train/val loss and accuracy and "distinct_units" as [seeds, epochs], "grad_norms"
    [seeds, epochs, layers] (each epoch's mean over its steps), "init_grad_norms" [seeds, layers]
    and "init_distinct_units" [seeds] (at initialisation);
    with `eval_train`, also "train_eval_loss"/"train_eval_acc" [seeds, epochs]."""
    return train_points(
        [spec],
        data,
        workload=workload,
        seeds=seeds,
        epochs=epochs,
        order=order,
        model_config=model_config,
        eval_train=eval_train,
        max_replicas=max(len(seeds), MAX_REPLICAS),
        on_compiled=on_compiled,
    )[0]
