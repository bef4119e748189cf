"""The training engine: compile each program once, then run it with the clock around the
compiled call alone (after `block_until_ready`), so compile time and run time are recorded apart.

Executables are kept in-process per configuration (the last COMPILED_KEPT) and, when
`enable_compile_cache()` is on, in JAX's persistent cache across processes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optax_lab import optimizers
from optax_lab.config import ModelConfig, Order, RunSpec
from optax_lab.files import cache_dir
from optax_lab.program import Arrays, ProgramSettings, make_program, program_settings

__all__ = ["COMPILED_KEPT", "RunResult", "compile_program", "compiler_options", "counting_compiles",
           "enable_compile_cache", "forget_compiled", "replica_inputs", "seed_epochs_per_second", "train"]


@dataclasses.dataclass
class RunResult:
    spec: RunSpec
    hyperparams: dict[str, Any]
    settings: ProgramSettings
    seeds: tuple[int, ...]
    history: dict[str, np.ndarray]  # each [seeds, epochs]
    compile_s: float  # trace + lower + XLA compile (near zero on a compilation-cache hit)
    run_s: float  # execution only, after block_until_ready
    model: ModelConfig = ModelConfig()  # the model it trained (the spec's changes applied)

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


def _input_specs(settings: ProgramSettings):
    return jax.ShapeDtypeStruct((settings.num_seeds,), jnp.int32), jax.ShapeDtypeStruct((), jnp.int32)


def compile_program(model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings, data: Arrays):
    """The compiled whole-training program for this configuration (`model_config` resolved) and
    its compile seconds; compiled once per process while it is among the last COMPILED_KEPT used
    (a repeat returns the cached executable and its original compile time)."""
    cache_key = (model_config, spec.program_key, settings)
    if cache_key in _COMPILED:
        _COMPILED.move_to_end(cache_key)
    else:
        program = make_program(model_config, spec, settings)
        _COMPILED[cache_key] = _aot_compile(program.train, *_input_specs(settings), data)
        while len(_COMPILED) > COMPILED_KEPT:
            _COMPILED.popitem(last=False)
    return _COMPILED[cache_key]


def replica_inputs(seeds: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """The seeds [S] and the shared-order seed (the first one) on the device, ready before any clock.
    device_put, not jnp.asarray: building arrays from Python ints would compile tiny programs."""
    return jax.block_until_ready((jax.device_put(np.asarray(seeds, np.int32)), jax.device_put(np.int32(seeds[0]))))


def train(spec: RunSpec, data: Arrays, *, seeds: tuple[int, ...], epochs: int, order: Order = Order.PER_SEED,
          model_config: ModelConfig = ModelConfig(), eval_train: bool = False,
          on_compiled: Callable[[float], None] | None = None) -> RunResult:
    """Train `spec` for every seed at once on the base model `model_config` with the spec's model
    changes applied. History: train/val loss and accuracy and "distinct_units" as [seeds, epochs], "grad_norms"
    [seeds, epochs, layers] (each epoch's mean over its steps), "init_grad_norms" [seeds, layers]
    and "init_distinct_units" [seeds] (at initialisation);
    with `eval_train`, also "train_eval_loss"/"train_eval_acc" [seeds, epochs]."""
    model = spec.model_config(model_config)
    settings = program_settings(spec, data, epochs, len(seeds), order, eval_train)
    hyperparams = optimizers.hyperparams(spec.optimizer, spec.hyperparams)
    compiled, compile_s = compile_program(model, spec, settings, data)
    if on_compiled is not None:
        on_compiled(compile_s)
    seed_array, order_seed = replica_inputs(seeds)
    jax.block_until_ready(data)
    start = time.perf_counter()
    history = jax.block_until_ready(compiled(seed_array, order_seed, data))
    run_s = time.perf_counter() - start
    # scan stacks epochs first under the vmap: [S, E, ...] already.
    return RunResult(spec, hyperparams, settings, tuple(seeds), {k: np.asarray(v) for k, v in history.items()},
                     compile_s, run_s, model)


def seed_epochs_per_second(result: RunResult) -> float:
    return len(result.seeds) * result.settings.epochs / result.run_s
