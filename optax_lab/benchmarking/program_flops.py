"""FLOPs of a whole training program, counted on its jaxpr with every loop at its trip count.

A training program nests loops: its epochs, each epoch's steps, the evaluation's chunks, seeds
mapped one after another. XLA's cost analysis counts a loop's body once (see `roofline`), while
a jaxpr keeps each `scan`'s length, so counting there is exact for any workload, and nothing is
compiled. The rules follow XLA's cost analysis: a matmul or a convolution is 2 FLOPs per
multiply-add; floating-point arithmetic is 1 per output element (transcendentals included, which
XLA counts apart); a reduction is 1 per input element; data movement (gathers, reshapes,
selects, conversions), comparisons and integer arithmetic are none. Equations whose results
nothing uses are skipped, as XLA removes them.

What is counted is the program as traced for this backend: on CPU the conv nets' convolutions
are image patches (themselves a convolution with a one-hot kernel) times a matrix, and both count. A `while`
loop runs an unknown number of times (a line search): its body counts once and the total is a
lower bound; a `cond` counts its costliest branch. Either makes `Flops.exact` False.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.extend import core

from optax_lab import engine
from optax_lab.config import ModelConfig
from optax_lab.lessons import RunSpec
from optax_lab.records import ProgramSettings, RunResult, split_hyperparams
from optax_lab.workloads import Workload

__all__ = ["Flops", "function_flops", "jaxpr_flops", "run_flops", "training_flops"]

# Floating-point arithmetic, one FLOP per output element.
ELEMENTWISE = frozenset(
    "abs acos acosh add add_any asin asinh atan atan2 atanh cbrt ceil clamp cos cosh digamma div erf erf_inv "
    "erfc exp exp2 expm1 floor integer_pow lgamma log log1p logistic max min mul neg nextafter pow reciprocal "
    "rem round rsqrt sign sin sinh sqrt square sub tan tanh".split()
)
# Reductions and scans along an axis, one FLOP per input element.
REDUCTIONS = frozenset(
    "argmax argmin cumlogsumexp cummax cummin cumprod cumsum reduce_max reduce_min reduce_prod reduce_sum".split()
)


@dataclasses.dataclass(frozen=True)
class Flops:
    total: float
    exact: bool = True  # False: a while loop counted once (a lower bound) or a cond's costliest branch

    def __add__(self, other: Flops) -> Flops:
        return Flops(self.total + other.total, self.exact and other.exact)

    def times(self, count: float) -> Flops:
        return Flops(self.total * count, self.exact)


def _size(var) -> int:
    return math.prod(var.aval.shape)


def _floating(var) -> bool:
    return jnp.issubdtype(var.aval.dtype, jnp.inexact)


def _dot_general(eqn) -> float:
    (contracting, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    return 2.0 * _size(eqn.outvars[0]) * math.prod(lhs[d] for d in contracting)


def _convolution(eqn) -> float:
    """2 × output elements × the kernel's multiply-adds per output element (its size over its
    output features, which already holds only one feature group's inputs)."""
    rhs = eqn.invars[1].aval.shape
    out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
    return 2.0 * _size(eqn.outvars[0]) * math.prod(rhs) / out_features


def _arithmetic(eqn) -> float:
    if eqn.primitive.name in ELEMENTWISE:
        return float(sum(_size(v) for v in eqn.outvars if _floating(v)))
    if eqn.primitive.name in REDUCTIONS and _floating(eqn.invars[0]):
        return float(_size(eqn.invars[0]))
    return 0.0


_LEAF_RULES: dict[str, Callable] = {"dot_general": _dot_general, "conv_general_dilated": _convolution}


def _scan(eqn) -> Flops:
    return jaxpr_flops(eqn.params["jaxpr"]).times(eqn.params["length"])


def _while(eqn) -> Flops:
    once = jaxpr_flops(eqn.params["cond_jaxpr"]) + jaxpr_flops(eqn.params["body_jaxpr"])
    return Flops(once.total, False)


def _cond(eqn) -> Flops:
    branches = [jaxpr_flops(branch) for branch in eqn.params["branches"]]
    costliest = max(branches, key=lambda flops: flops.total)
    same = len({flops.total for flops in branches}) == 1
    return Flops(costliest.total, costliest.exact and same)


# Higher-order primitives whose sub-programs do not run exactly once; any other one's run once.
_NESTED_RULES: dict[str, Callable] = {"scan": _scan, "while": _while, "cond": _cond}


def _live(jaxpr: core.Jaxpr) -> list:
    """The equations whose results reach the outputs (or have effects), in order."""
    needed = {v for v in jaxpr.outvars if isinstance(v, core.Var)}
    live = []
    for eqn in reversed(jaxpr.eqns):
        if eqn.effects or any(v in needed for v in eqn.outvars):
            live.append(eqn)
            needed.update(v for v in eqn.invars if isinstance(v, core.Var))
    return live[::-1]


def jaxpr_flops(jaxpr: core.Jaxpr | core.ClosedJaxpr) -> Flops:
    """The FLOPs of one run of `jaxpr` (rules: the module's doc)."""
    flops = Flops(0.0)
    for eqn in _live(getattr(jaxpr, "jaxpr", jaxpr)):
        name = eqn.primitive.name
        if name in _NESTED_RULES:
            flops += _NESTED_RULES[name](eqn)
        elif name in _LEAF_RULES:
            flops += Flops(_LEAF_RULES[name](eqn))
        else:
            flops += Flops(_arithmetic(eqn))
            for inner in core.jaxprs_in_params(eqn.params):  # pjit, custom_jvp/vjp calls, remat...
                flops += jaxpr_flops(inner)
    return flops


def function_flops(function: Callable, *args) -> Flops:
    """The FLOPs of `function` on `args` (arrays or ShapeDtypeStructs), traced, not compiled."""
    return jaxpr_flops(jax.make_jaxpr(function)(*args))


def training_flops(
    workload: Workload, model_config: ModelConfig, spec: RunSpec, settings: ProgramSettings, data: engine.Arrays
) -> Flops:
    """One call of `spec`'s whole-training program of `workload` (its init, then every epoch's
    steps, shuffle and validation) for all of `settings`' replicas: what `engine.train_points`
    compiles, counted on one device's program holding every replica."""
    program = engine.make_program(model_config, spec, settings, workload)
    seeds = tuple(range(settings.num_seeds))
    points = [split_hyperparams(spec)[1]] * settings.num_points
    return function_flops(program.train, *engine.replica_inputs(seeds, points), data)


def run_flops(result: RunResult, data: engine.Arrays, workload: Workload) -> Flops:
    """The FLOPs behind `result.program_run_s`: every call of its program on `data`."""
    flops = training_flops(workload, result.model, result.spec, result.settings, data)
    return flops.times(result.program_calls)
