"""Compiling our programs: XLA options, JAX's persistent cache, the in-process executables kept,
and counting compiles (how tests and benchmarks prove that a program compiled once). Every
program of the suite, the benchmarks' included, compiles through `aot_compile`."""

from __future__ import annotations

import collections
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax

from optax_lab.files import cache_dir

__all__ = [
    "BACKEND_COMPILE_EVENT",
    "COMPILED_KEPT",
    "QUICK_COMPILE_FLAGS",
    "aot_compile",
    "compiled_programs",
    "compiler_options",
    "counting_compiles",
    "enable_compile_cache",
    "forget_compiled",
    "quick_compiles_in_env",
    "use_quick_compiles",
]

# The most recent executables, by configuration. Bounded: each one holds JIT-compiled machine code
# in its own memory mappings, and a sweep of a few hundred programs in one process otherwise runs
# into the kernel's mapping limit ("LLVM compilation error: Cannot allocate memory").
compiled_programs: collections.OrderedDict[tuple, tuple[Any, float]] = collections.OrderedDict()
COMPILED_KEPT = 8


# For programs that are checked, not timed (the tests, `pytest bench --smoke`), in XLA_FLAGS so that
# every compile and every subprocess gets them: LLVM at -O0 and XLA:CPU's elemental emitters
# instead of its MLIR fusion emitters, which build an MLIR context per kernel. Measured on the
# tests' engine program: 2.7 s -> 0.9 s to compile; programs then run about 10 % slower (imdb-deep
# at half speed), so the engine keeps its own options.
QUICK_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"


def quick_compiles_in_env() -> bool:
    return QUICK_COMPILE_FLAGS in os.environ.get("XLA_FLAGS", "")


def use_quick_compiles() -> None:
    """Put QUICK_COMPILE_FLAGS in XLA_FLAGS, for this process (before JAX starts its CPU client)
    and every subprocess it starts."""
    if not quick_compiles_in_env():
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_COMPILE_FLAGS}".strip()


def compiler_options(gathers_rows: bool = False) -> dict[str, Any]:
    """XLA options for our programs. On CPU, LLVM at -O1 instead of the default: this engine's
    kernels are small, and measured here it halves compile time with no loss of speed. Programs
    that gather and scatter rows (`gathers_rows`: an embedding bag) get -O3, whose vectorised
    scatter loops made imdb-10k-mlp's training steps 2.7x faster (3.6 -> 1.35 ms; a batch's
    gradient scatter 2.9 -> 0.3 ms; -O2 was slower than -O1) for ~25 % more compile time.
    An optimisation level in XLA_FLAGS wins over ours (see QUICK_COMPILE_FLAGS)."""
    if jax.default_backend() != "cpu" or "--xla_backend_optimization_level" in os.environ.get("XLA_FLAGS", ""):
        return {}
    return {"xla_backend_optimization_level": 3 if gathers_rows else 1}


def enable_compile_cache() -> None:
    """JAX's persistent compilation cache in our user cache: a second process skips XLA compiles."""
    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax-compilation-cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def counting_compiles(function: str | None = None) -> Iterator[list[float]]:
    """`with counting_compiles() as compiles:` collects the seconds of every XLA backend compile
    in the block (persistent-cache hits are not compiles), or only of the functions named
    `function` (e.g. "_train", a training program; eager operations compile too): how tests and
    benchmarks prove that a program compiled once."""
    compiles: list[float] = []

    def listener(event, duration, **kwargs):
        if event == BACKEND_COMPILE_EVENT and (function is None or kwargs.get("fun_name") == f"jit({function})"):
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield compiles
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def forget_compiled() -> None:
    """Drop every executable this process keeps, ours and JAX's: the next program compiles cold
    (unless the persistent cache is on)."""
    compiled_programs.clear()
    jax.clear_caches()


def aot_compile(function: Callable, *args, gathers_rows: bool = False) -> tuple[Any, float]:
    """Trace, lower and XLA-compile `function` for `args` (arrays or ShapeDtypeStructs); seconds."""
    start = time.perf_counter()
    compiled = jax.jit(function).lower(*args).compile(compiler_options(gathers_rows))
    return compiled, time.perf_counter() - start
