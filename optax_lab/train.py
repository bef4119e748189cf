"""The training engine: compile each program once, then run it with the clock around the
compiled call alone (after `block_until_ready`), so compile time and run time are recorded apart.

Executables are kept in-process per configuration (the last COMPILED_KEPT) and, when
`enable_compile_cache()` is on, in JAX's persistent cache across processes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optax_lab import optimizers
from optax_lab.config import MAX_REPLICAS, ModelConfig, Order, RunSpec
from optax_lab.files import cache_dir
from optax_lab.program import Arrays, ProgramSettings, make_program, program_key, program_settings, split_hyperparams

__all__ = ["COMPILED_KEPT", "RunResult", "compile_program", "compiler_options", "counting_compiles",
           "enable_compile_cache", "forget_compiled", "points_per_call", "program_id", "replica_inputs",
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

# The most recent executables, by configuration. Bounded: each one holds JIT-compiled machine code
# in its own memory mappings, and a sweep of a few hundred programs in one process otherwise runs
# into the kernel's mapping limit ("LLVM compilation error: Cannot allocate memory").
_COMPILED: collections.OrderedDict[tuple, tuple[Any, float]] = collections.OrderedDict()
COMPILED_KEPT = 8


def compiler_options() -> dict[str, Any]:
    """XLA options for our programs. On CPU, LLVM at -O1 instead of the default: this engine's
    kernels are small, and measured here it halves compile time with no loss of speed."""
    return {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else {}


def enable_compile_cache() -> None:
    """JAX's persistent compilation cache in our user cache: a second process skips XLA compiles."""
    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax-compilation-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def counting_compiles() -> Iterator[list[float]]:
    """`with counting_compiles() as compiles:` collects the seconds of every XLA backend compile
    in the block (persistent-cache hits are not compiles): how tests and benchmarks prove that
    a program compiled once."""
    compiles: list[float] = []

    def listener(event, duration, **kwargs):
        if event == BACKEND_COMPILE_EVENT:
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def forget_compiled() -> None:
    """Drop every executable this process keeps, ours and JAX's: the next program compiles cold
    (unless the persistent cache is on)."""
    _COMPILED.clear()
    jax.clear_caches()


def _aot_compile(function: Callable, *args) -> tuple[Any, float]:
    """Trace, lower and XLA-compile `function` for `args` (arrays or ShapeDtypeStructs); seconds."""
    start = time.perf_counter()
    compiled = jax.jit(function).lower(*args).compile(compiler_options())
    return compiled, time.perf_counter() - start


def _input_specs(settings: ProgramSettings, traced: tuple[str, ...]):
    replicas = jax.ShapeDtypeStruct((settings.num_replicas,), jnp.float32)
    return (jax.ShapeDtypeStruct((settings.num_replicas,), jnp.int32), dict.fromkeys(traced, replicas),
            jax.ShapeDtypeStruct((), jnp.int32))


def _cache_key(model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings) -> tuple:
    return (model_config, program_key(spec), settings)


def program_id(model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings) -> str:
    """A short stable id of one compiled program (the same in every process)."""
    return hashlib.sha1(repr(_cache_key(model_config, spec, settings)).encode()).hexdigest()[:10]


def compile_program(model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings, data: Arrays):
    """The compiled whole-training program for this configuration (`model_config` resolved) and
    its compile seconds; compiled once per process while it is among the last COMPILED_KEPT used
    (a repeat returns the cached executable and its original compile time). Any traced
    hyperparameter's value, e.g. another learning rate, is the same program."""
    cache_key = _cache_key(model_config, spec, settings)
    if cache_key in _COMPILED:
        _COMPILED.move_to_end(cache_key)
    else:
        program = make_program(model_config, spec, settings)
        traced = tuple(split_hyperparams(spec)[1])
        _COMPILED[cache_key] = _aot_compile(program.train, *_input_specs(settings, traced), data)
        while len(_COMPILED) > COMPILED_KEPT:
            _COMPILED.popitem(last=False)
    return _COMPILED[cache_key]


def replica_inputs(seeds: tuple[int, ...], points: Sequence[Mapping[str, float]] = ({},)):
    """(seeds [R], traced hyperparameters {name: [R]}, shared-order seed) on the device, ready
    before any clock: R = points x seeds, point-major. device_put, not jnp.asarray: building arrays
    from Python ints would compile tiny programs."""
    names = points[0].keys()
    replica_seeds = np.tile(np.asarray(seeds, np.int32), len(points))
    values = {name: np.repeat(np.asarray([p[name] for p in points], np.float32), len(seeds)) for name in names}
    return jax.block_until_ready((jax.device_put(replica_seeds), jax.device_put(values),
                                  jax.device_put(np.int32(seeds[0]))))


def points_per_call(num_points: int, num_seeds: int, max_replicas: int = MAX_REPLICAS) -> int:
    """How many hyperparameter points one call of the program holds: all of them when their
    replicas fit `max_replicas`, else as few calls as fit, balanced (at least one point a call)."""
    if num_points * num_seeds <= max_replicas:
        return num_points
    calls = math.ceil(num_points / max(1, max_replicas // num_seeds))
    return math.ceil(num_points / calls)


def train_points(specs: Sequence[RunSpec], data: Arrays, *, seeds: tuple[int, ...], epochs: int,
                 order: Order = Order.PER_SEED, model_config: ModelConfig = ModelConfig(), eval_train: bool = False,
                 max_replicas: int = MAX_REPLICAS, on_compiled: Callable[[float], None] | None = None) -> list[RunResult]:
    """Train every spec (hyperparameter points of one program: equal `program_key`) for every seed,
    points x seeds on the replica axis of one compiled program, called as few times as
    `max_replicas` allows (the last call padded by repeating its last point). Each point gets its
    own RunResult; history as in `train`."""
    keys = {program_key(spec) for spec in specs}
    if len(keys) != 1:
        raise ValueError(f"train_points needs the points of one program, got {len(keys)} programs")
    model = specs[0].model_config(model_config)
    per_call = points_per_call(len(specs), len(seeds), max_replicas)
    settings = program_settings(specs[0], data, epochs, per_call * len(seeds), order, eval_train)
    compiled, compile_s = compile_program(model, specs[0], settings, data)
    if on_compiled is not None:
        on_compiled(compile_s)
    points = [split_hyperparams(spec)[1] for spec in specs]
    jax.block_until_ready(data)
    histories, run_s, calls = [], 0.0, 0
    for first in range(0, len(points), per_call):
        chunk = points[first:first + per_call]
        inputs = replica_inputs(seeds, chunk + chunk[-1:] * (per_call - len(chunk)))
        start = time.perf_counter()
        history = jax.block_until_ready(compiled(*inputs, data))
        run_s += time.perf_counter() - start
        calls += 1
        # scan stacks epochs first under the vmap: [R, E, ...] already; R is point-major.
        history = {k: np.asarray(v).reshape(per_call, len(seeds), *v.shape[1:]) for k, v in history.items()}
        histories += [{k: v[i] for k, v in history.items()} for i in range(len(chunk))]
    program = program_id(model, specs[0], settings)
    return [RunResult(spec, optimizers.hyperparams(spec.optimizer, spec.hyperparams), settings, tuple(seeds),
                      history, compile_s, run_s / len(specs), model, program, run_s, calls)
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
