"""FLOPs of a compiled epoch program, from XLA's cost analysis, and the machine's fp32 matmul peak.

XLA's `cost_analysis()` counts a while loop's body once, not once per trip (checked at run time
by `loop_body_counted_once`, and in tests/test_benchmarks.py). The engine's epoch is a
`lax.scan` over its steps, so its reported FLOPs are

    reported = fixed + body        fixed: validation on the test split + the epoch's shuffle
                                   body:  one training step (full batch: the only one)

and a step's FLOPs are `reported - fixed`, with `fixed` taken from the cost analysis of those
parts compiled on their own. An epoch is then `fixed + steps × step`. Loops inside a step are
counted once too: where one has no known trip count (lbfgs' line search), the step's FLOPs are
a lower bound, and `StepFlops.exact` says so.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_lab import engine
from optax_lab.config import ModelConfig
from optax_lab.workloads import build_model

__all__ = [
    "MatmulPeak",
    "StepFlops",
    "default_matmul_size",
    "fixed_epoch_flops",
    "loop_body_counted_once",
    "matmul_peak",
    "step_flops",
    "unknown_trip_count_loops",
    "xla_flops",
]


def xla_flops(executable: Any) -> float:
    """The FLOPs XLA's cost analysis reports for a compiled or lowered program (NaN if none)."""
    analysis = executable.cost_analysis()
    if isinstance(analysis, (list, tuple)):  # older jax: one dict per device program
        analysis = analysis[0] if analysis else None
    return float((analysis or {}).get("flops", math.nan))


def _compiled_flops(function, *args) -> float:
    return xla_flops(engine.aot_compile(function, *args)[0])


@functools.cache
def loop_body_counted_once() -> bool:
    """Does this XLA count a loop's body once, whatever the trip count? (It did in jax 0.10.)"""

    def chain(trips: int) -> float:
        step = lambda carry, m: (carry @ m, None)  # noqa: E731
        return _compiled_flops(
            lambda c, ms: jax.lax.scan(step, c, ms)[0],
            jax.ShapeDtypeStruct((16, 16), jnp.float32),
            jax.ShapeDtypeStruct((trips, 16, 16), jnp.float32),
        )

    # Not one trip: a one-trip loop is inlined and counted exactly either way.
    return chain(10) == chain(50)


def unknown_trip_count_loops(compiled: Any) -> int:
    """While loops in a compiled program whose trip count XLA does not know (data-dependent,
    like a line search): the cost analysis counts their body once however often it runs."""
    whiles = [line for line in compiled.as_text().splitlines() if re.search(r"\bwhile\(", line)]
    return sum("known_trip_count" not in line for line in whiles)


@functools.cache
def fixed_epoch_flops(
    model_config: ModelConfig,
    n_train: int,
    n_test: int,
    num_features: int,
    num_seeds: int,
    full_batch: bool,
    validate: bool = True,
) -> float:
    """FLOPs of an epoch's work outside its step loop, as the epoch's cost analysis counts it:
    validation (forward pass and loss on the test split) for every seed when the program
    validates and, for mini-batches, the shuffle (its rounds loop also counted once)."""
    flops = 0.0
    if validate:
        model = build_model(model_config)
        params = jax.eval_shape(lambda key: model.init(key, jnp.zeros((1, num_features)))["params"], jax.random.key(0))
        seeded = jax.tree.map(lambda p: jax.ShapeDtypeStruct((num_seeds, *p.shape), p.dtype), params)

        def validation(params, x, y):
            def one(p):
                logits = model.apply({"params": p}, x)
                return optax.sigmoid_binary_cross_entropy(logits, y).mean(), ((logits > 0) == (y > 0.5)).mean()

            return jax.vmap(one)(params)

        flops += _compiled_flops(
            validation,
            seeded,
            jax.ShapeDtypeStruct((n_test, num_features), jnp.float32),
            jax.ShapeDtypeStruct((n_test,), jnp.float32),
        )
    if not full_batch:  # a full batch is one step on the unshuffled set
        keys = jax.random.split(jax.random.key(0), num_seeds)
        flops += _compiled_flops(jax.vmap(lambda key: engine.shuffled_indices(key, n_train)), keys)
    return flops


@dataclasses.dataclass(frozen=True)
class StepFlops:
    reported: float  # what XLA's cost analysis says for the whole epoch program
    fixed: float  # the part outside the step loop (validation, shuffle)
    per_step: float
    per_epoch: float  # fixed + steps × per_step
    exact: bool  # False: a loop without a known trip count was counted once (a lower bound)


def step_flops(reported: float, fixed: float, steps: int, counted_once: bool, unknown_loops: int) -> StepFlops:
    """A step's and an epoch's FLOPs from the epoch program's reported FLOPs (see the module doc)."""
    loop = reported - fixed
    per_step = loop if counted_once else loop / steps
    return StepFlops(reported, fixed, per_step, fixed + steps * per_step, unknown_loops == 0)


@dataclasses.dataclass(frozen=True)
class MatmulPeak:
    gflops: float  # best of `repeats` calls
    size: int  # n of the n×n @ n×n fp32 product
    repeats: int


def default_matmul_size() -> int:
    """Big enough to reach the peak, small enough to take about a second: CPU vs accelerators."""
    return 1024 if jax.default_backend() == "cpu" else 8192


def matmul_peak(size: int | None = None, repeats: int = 20) -> MatmulPeak:
    """This machine's fp32 matmul throughput: the best of `repeats` n×n products, at JAX's default
    matmul precision (the one the benchmarks run at; TF32 on recent NVIDIA GPUs)."""
    size = size or default_matmul_size()
    rng = np.random.default_rng(0)
    a, b = (jax.device_put(rng.standard_normal((size, size), dtype=np.float32)) for _ in range(2))
    matmul = jax.jit(jnp.matmul).lower(a, b).compile()
    jax.block_until_ready(matmul(a, b))  # first call: allocation, thread pools
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a, b))
        best = min(best, time.perf_counter() - start)
    return MatmulPeak(2 * size**3 / best / 1e9, size, repeats)
