"""The training engine: compile each program once, then run it with the clock around the
compiled call alone (after `block_until_ready`), so compile time and run time are recorded apart.

Executables are kept in-process per configuration (the last COMPILED_KEPT) and, when
`enable_compile_cache()` is on, in JAX's persistent cache across processes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optax_lab import optimizers, workloads
from optax_lab.config import DEFAULT_WORKLOAD, MAX_REPLICAS, ModelConfig, Order, RunSpec
from optax_lab.compiling import (BACKEND_COMPILE_EVENT, COMPILED_KEPT, aot_compile, compiled_programs, compiler_options,
                                  counting_compiles, enable_compile_cache, forget_compiled)
from optax_lab.devices import memory_per_device
from optax_lab.memory import estimate_memory, replicas_per_call
from optax_lab.program import Arrays, ProgramSettings, make_program, program_key, program_settings, split_hyperparams

__all__ = ["BACKEND_COMPILE_EVENT", "COMPILED_KEPT", "Layout", "RunResult", "replica_layout", "call_shape", "compile_program", "compiler_options", "counting_compiles",
           "enable_compile_cache", "forget_compiled", "points_per_call", "program_id", "replica_devices", "replica_inputs",
           "seed_epochs_per_second", "train", "train_points"]


@dataclasses.dataclass
class RunResult:
    """One hyperparameter point's runs (all seeds), and the program that computed them."""

    spec: RunSpec
    hyperparams: dict[str, Any]
    settings: ProgramSettings  # the compiled program's (its replicas may hold several points)
    seeds: tuple[int, ...]
    history: dict[str, np.ndarray]  # each [seeds, epochs]
    compile_s: float  # the program's trace + lower + XLA compile (near zero on a compilation-cache hit)
    run_s: float  # this point's share of the program's execution, after block_until_ready
    model: ModelConfig = ModelConfig()  # the model it trained (the spec's changes applied)
    program: str = ""  # id of the compiled program: shared by every point it computed
    program_run_s: float = 0.0  # the whole program's execution, all its points and calls
    program_calls: int = 1  # how many times the compiled program ran for these points
    devices: int = 1  # devices the program's replicas were split over
    replicas_per_call: int = 1  # seeds x points one call held (padding included)
    memory_per_device: int = 0  # estimated bytes of one call on each device (`optax_lab.memory`)
    memory_bound: bool = False  # whether memory, not --max-replicas, set the replicas per call
    workload: workloads.Workload | None = None  # what it trained (None: the default workload)

@dataclasses.dataclass(frozen=True)
class Layout:
    """How a program's [seeds, points] replicas map to devices: `axis` (0 seeds, 1 points) split
    over the first `devices` local devices of a one-axis mesh; the data and the rest replicated."""

    devices: int = 1
    axis: int = 0

    def mesh(self) -> jax.sharding.Mesh:
        return _replica_mesh(self.devices)

    def specs(self, traced: tuple[str, ...]):
        """PartitionSpecs of (seeds, hyperparams, order seed, data), and of the outputs."""
        split = P("replicas")
        return ((split if self.axis == 0 else P(), dict.fromkeys(traced, split if self.axis == 1 else P()), P(), P()),
                split if self.axis == 0 else P(None, "replicas"))

    def shardings(self, traced: tuple[str, ...]):
        """NamedShardings of (seeds, hyperparams, order seed, data)."""
        return jax.tree.map(lambda spec: NamedSharding(self.mesh(), spec), self.specs(traced)[0],
                            is_leaf=lambda x: isinstance(x, P))

    def local(self, settings: ProgramSettings) -> ProgramSettings:
        """The settings of one device's share: its seeds or points."""
        if self.devices == 1:
            return settings
        field = "num_seeds" if self.axis == 0 else "num_points"
        return dataclasses.replace(settings, **{field: getattr(settings, field) // self.devices})

    def shard(self, function: Callable, traced: tuple[str, ...]) -> Callable:
        """`function` (a program's train, written for `local` settings) on each device's share of
        the replicas (`jax.shard_map`): replicas never talk, so every device runs its own seeds
        or points alone, and no partitioner has to see through the program's loops."""
        inputs, outputs = self.specs(traced)
        # No collectives and no gradient through the map: the varying-axes check (which would
        # have every loop carry built from constants cast to varying) has nothing to protect.
        mapped = jax.shard_map(function, mesh=self.mesh(), in_specs=inputs, out_specs=outputs, check_vma=False)
        return jax.jit(mapped, in_shardings=self.shardings(traced))


@functools.cache  # one mesh per device count: every call of a chunked program reuses it
def _replica_mesh(devices: int) -> jax.sharding.Mesh:
    if jax.process_count() > 1:  # every process's devices (`replica_devices` makes it all of them)
        return jax.make_mesh((devices,), ("replicas",))
    return jax.make_mesh((devices,), ("replicas",), devices=jax.local_devices()[:devices])


def replica_devices(requested: int | None = None) -> int:
    """The devices a program's replicas are split over: `requested` local ones (default all);
    in a multi-process run every device of every process, so that each process holds a share."""
    if jax.process_count() > 1:
        return jax.device_count()
    return requested or jax.local_device_count()


def _put(tree, shardings):
    """Host values onto the layout's devices. In a multi-process run each process builds the
    shards it holds of the one global array (every process passes the same values)."""
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)
    return jax.tree.map(lambda value, sharding: jax.make_array_from_callback(
        np.shape(value), sharding, lambda index, value=np.asarray(value): value[index]), tree, shardings)


def _fetch(history) -> dict[str, np.ndarray]:
    """The history on the host: in a multi-process run, every process's shards gathered."""
    if jax.process_count() > 1:
        return {k: np.asarray(v) for k, v in multihost_utils.process_allgather(history, tiled=True).items()}
    return {k: np.asarray(v) for k, v in history.items()}


def replica_layout(num_seeds: int, num_points: int, devices: int) -> tuple[Layout, int, int]:
    """(layout, seeds, points) for S x P replicas on up to `devices` devices: the axis split is
    the one that needs less padding to a multiple of the device count (padded replicas repeat
    the last seed or point and are dropped)."""
    # A multi-process run uses every device even for few replicas: each process must hold a share.
    used = devices if jax.process_count() > 1 else min(devices, num_seeds * num_points)
    if used <= 1:
        return Layout(), num_seeds, num_points
    seeds, points = math.ceil(num_seeds / used) * used, math.ceil(num_points / used) * used
    if seeds * num_points <= num_seeds * points:
        return Layout(used, 0), seeds, num_points
    return Layout(used, 1), num_seeds, points


def _input_specs(settings: ProgramSettings, traced: tuple[str, ...], data: Arrays, layout: Layout):
    """The program's abstract inputs, placed as the layout places them."""
    shapes = (jax.ShapeDtypeStruct((settings.num_seeds,), jnp.int32),
              dict.fromkeys(traced, jax.ShapeDtypeStruct((settings.num_points,), jnp.float32)),
              jax.ShapeDtypeStruct((), jnp.int32), jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), data))
    if layout.devices == 1:
        return shapes
    shardings = layout.shardings(traced)
    shardings = (*shardings[:3], jax.tree.map(lambda _: shardings[3], data))
    return jax.tree.map(lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding),
                        shapes, shardings)


def _cache_key(model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings, layout: Layout,
               workload: workloads.Workload | None = None) -> tuple:
    # The default workload adds nothing: its programs keep the ids they had before workloads.
    extra = () if workload is None or workload.key == workloads.get(DEFAULT_WORKLOAD).key else (workload.key,)
    return (model_config, program_key(spec), settings, layout, *extra)


def program_id(model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings, layout: Layout = Layout(),
               workload: workloads.Workload | None = None) -> str:
    """A short stable id of one compiled program (the same in every process)."""
    return hashlib.sha1(repr(_cache_key(model_config, spec, settings, layout, workload)).encode()).hexdigest()[:10]


def compile_program(model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings, data: Arrays,
                    layout: Layout = Layout(), workload: workloads.Workload | None = None):
    """The compiled whole-training program for this configuration (`model_config` resolved) and
    its compile seconds; compiled once per process while it is among the last COMPILED_KEPT used
    (a repeat returns the cached executable and its original compile time). Any traced
    hyperparameter's value, e.g. another learning rate, is the same program."""
    cache_key = _cache_key(model_config, spec, settings, layout, workload)
    if cache_key in compiled_programs:
        compiled_programs.move_to_end(cache_key)
    else:
        program = make_program(model_config, spec, layout.local(settings), workload)
        traced = tuple(split_hyperparams(spec)[1])
        function = layout.shard(program.train, traced) if layout.devices > 1 else program.train
        compiled_programs[cache_key] = aot_compile(function, *_input_specs(settings, traced, data, layout),
                                                   gathers_rows=settings.gathers_rows)
        while len(compiled_programs) > COMPILED_KEPT:
            compiled_programs.popitem(last=False)
    return compiled_programs[cache_key]


def replica_inputs(seeds: tuple[int, ...], points: Sequence[Mapping[str, float]] = ({},), layout: Layout = Layout(),
                   order_seed: int | None = None):
    """(seeds [S], traced hyperparameters {name: [P]}, shared-order seed: `order_seed`, else the
    first seed) on the device(s) as the layout splits them, ready before any clock. device_put,
    not jnp.asarray: building arrays from Python ints would compile tiny programs."""
    values = {name: np.asarray([point[name] for point in points], np.float32) for name in points[0]}
    inputs = (np.asarray(seeds, np.int32), values, np.int32(seeds[0] if order_seed is None else order_seed))
    if layout.devices > 1:
        return jax.block_until_ready(_put(inputs, layout.shardings(tuple(values))[:3]))
    return jax.block_until_ready(jax.device_put(inputs))


def points_per_call(num_points: int, num_seeds: int, max_replicas: int = MAX_REPLICAS) -> int:
    """How many hyperparameter points one call of the program holds: all of them when their
    replicas fit `max_replicas`, else as few calls as fit, balanced (at least one point a call)."""
    if num_points * num_seeds <= max_replicas:
        return num_points
    calls = math.ceil(num_points / max(1, max_replicas // num_seeds))
    return math.ceil(num_points / calls)


def call_shape(num_seeds: int, num_points: int, max_replicas: int, fits: tuple[int, int]) -> tuple[int, int]:
    """(seeds, points) of one call: within `max_replicas` and within what memory `fits` (the
    largest (seeds, points) `memory.replicas_per_call` allows), in as few balanced calls as that
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
    chunks = [list(items[first:first + size]) for first in range(0, len(items), size)]
    return [chunk + chunk[-1:] * (size - len(chunk)) for chunk in chunks]


def train_points(specs: Sequence[RunSpec], data: Arrays, *, seeds: tuple[int, ...], epochs: int,
                 order: Order = Order.PER_SEED, model_config: ModelConfig = ModelConfig(), eval_train: bool = False,
                 max_replicas: int = MAX_REPLICAS, devices: int | None = None,
                 on_compiled: Callable[[float], None] | None = None,
                 workload: workloads.Workload | None = None) -> list[RunResult]:
    """Train every spec (hyperparameter points of one program: equal `program_key`) for every seed,
    seeds x points on the replica axes of one compiled program, split over up to `devices` local
    devices (default: all; see `replica_layout`). One call holds at most `max_replicas` replicas
    and what fits in memory (`optax_lab.memory`; one replica that cannot fit is a UsageError);
    more run as further calls of the same executable, the last padded by repeating its last point
    or seed. Each point gets its own RunResult; history as in `train`. `workload` is what is
    trained (default imdb-mlp: the lesson's MLP on `data`)."""
    keys = {program_key(spec) for spec in specs}
    if len(keys) != 1:
        raise ValueError(f"train_points needs the points of one program, got {len(keys)} programs")
    model = specs[0].model_config(model_config)
    devices = replica_devices(devices)
    estimate = estimate_memory(model, specs[0], program_settings(specs[0], data, epochs, 1, order, eval_train),
                               workload, data.x_train)
    fits = replicas_per_call(estimate, len(seeds), len(specs), memory_per_device(devices), devices)
    call_seeds, call_points = call_shape(len(seeds), len(specs), max_replicas, fits)
    layout, padded_seeds, padded_points = replica_layout(call_seeds, call_points, devices)
    settings = program_settings(specs[0], data, epochs, padded_seeds, order, eval_train, padded_points)
    compiled, compile_s = compile_program(model, specs[0], settings, data, layout, workload)
    if on_compiled is not None:
        on_compiled(compile_s)
    if layout.devices > 1:  # replicated on every device of the mesh
        data = _put(data, jax.tree.map(lambda _: layout.shardings(())[3], data))
    jax.block_until_ready(data)
    points = [split_hyperparams(spec)[1] for spec in specs]
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in specs]  # each point's histories, by seed chunk
    run_s, calls = 0.0, 0
    for seed_first, seed_chunk in zip(range(0, len(seeds), call_seeds), _chunks(seeds, call_seeds)):
        real_seeds = min(call_seeds, len(seeds) - seed_first)
        run_seeds = seed_chunk + seed_chunk[-1:] * (padded_seeds - len(seed_chunk))
        for first, chunk in zip(range(0, len(points), call_points), _chunks(points, call_points)):
            chunk = chunk + chunk[-1:] * (padded_points - len(chunk))  # and to a multiple of the devices
            inputs = replica_inputs(tuple(run_seeds), chunk, layout, order_seed=seeds[0])
            start = time.perf_counter()
            history = jax.block_until_ready(compiled(*inputs, data))
            run_s += time.perf_counter() - start
            calls += 1
            history = _fetch(history)  # numpy: slicing compiles nothing
            for i in range(first, min(first + call_points, len(specs))):
                parts[i].append({k: v[:real_seeds, i - first] for k, v in history.items()})
    histories = [{k: np.concatenate([part[k] for part in point_parts]) for k in point_parts[0]}
                 for point_parts in parts]
    program = program_id(model, specs[0], settings, layout, workload)
    memory_bound = (call_seeds, call_points) != call_shape(len(seeds), len(specs), max_replicas,
                                                           (len(seeds), len(specs)))
    per_device = estimate.bytes_for(math.ceil(padded_seeds / layout.devices) if layout.axis == 0 else padded_seeds,
                                    padded_points if layout.axis == 0 else math.ceil(padded_points / layout.devices))
    return [RunResult(spec, optimizers.hyperparams(spec.optimizer, spec.hyperparams), settings, tuple(seeds),
                      history, compile_s, run_s / len(specs), model, program, run_s, calls, layout.devices,
                      settings.num_replicas, per_device, memory_bound, workload)
            for spec, history in zip(specs, histories)]


def train(spec: RunSpec, data: Arrays, *, seeds: tuple[int, ...], epochs: int, order: Order = Order.PER_SEED,
          model_config: ModelConfig = ModelConfig(), eval_train: bool = False,
          on_compiled: Callable[[float], None] | None = None) -> RunResult:
    """Train `spec` for every seed at once on the base model `model_config` with the spec's model
    changes applied. History: train/val loss and accuracy and "distinct_units" as [seeds, epochs], "grad_norms"
    [seeds, epochs, layers] (each epoch's mean over its steps), "init_grad_norms" [seeds, layers]
    and "init_distinct_units" [seeds] (at initialisation);
    with `eval_train`, also "train_eval_loss"/"train_eval_acc" [seeds, epochs]."""
    return train_points([spec], data, seeds=seeds, epochs=epochs, order=order, model_config=model_config,
                        eval_train=eval_train, max_replicas=max(len(seeds), MAX_REPLICAS),
                        on_compiled=on_compiled)[0]


def seed_epochs_per_second(result: RunResult) -> float:
    """Seed-epochs of this point per second of its share of the program."""
    return len(result.seeds) * result.settings.epochs / result.run_s
