"""What one example adds to a program's memory through its model's activations, for any Flax
model, from shapes alone: traced with `jax.make_jaxpr` (nothing runs, nothing compiles).

Each count is the difference between a batch of 3 and a batch of 2 (a batch of 1 traces another
program: size-1 axes are squeezed away), so what does not grow with the batch (parameters, a
causal mask, positions) is left out. In bytes:

- `saved`: the values `jax.vjp` keeps for the backward pass, its residuals: the input of each
  matmul (on CPU a convolution's image patches), an attention's weights [heads, T, T], the masks of
  ReLUs and dropout, less the model's input itself (the data or a step's gathered batch, which the
  estimate counts apart).
- `forward`: the most bytes live at once in a forward pass, walking its jaxpr in order and
  freeing each value after its last use, as XLA's buffer assignment does before its fusions. A
  loop or branch inside the model counts as its outputs.
- `expanded`: what XLA:CPU adds to a gradient beyond the jaxpr: a max pool whose windows overlap
  (`reduce_window_max`; windows that tile the image can be a reshape and a max, which adds none)
  has its gradient expanded into int32 indices of every input element. Other backends need less.

A gradient holds all three: the residuals, cotangents about as large as the forward's live
values while it runs back through the layers, and the expansions. The loss is counted as
LOSS_COPIES copies of the model's outputs, since its targets' shapes are the data's. Against
XLA:CPU's figure for a step (`compiled.memory_analysis()`, per example) a gradient's count is
1.3x on mnist-cnn and 1.6x on imdb-char-lm, whose GELUs and LayerNorms JAX saves values of that
XLA's fusions recompute; an evaluation's `forward` 1.4x and 1.1x.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import flax.linen as nn
import jax
from jax.extend import core

__all__ = ["Activations", "activations"]

LOSS_COPIES = 2  # the loss's softmax of the outputs, and the outputs' cotangent
# Call primitives whose body runs once with the call's operands: inlined into the walk.
_CALLS = frozenset(
    {"pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "remat", "checkpoint"}
)
_BATCHES = (2, 3)
# XLA:CPU expands an overlapping max pool's gradient (select-and-scatter) into int32 indices of
# every input element: copies of the padded input and a scatter's index rows, about this many
# copies of the pool's input in all (read from cifar10-3c3d's buffer assignment).
SELECT_AND_SCATTER_COPIES = 6


class _Step(NamedTuple):
    primitive: str
    inputs: list
    outputs: list


@dataclasses.dataclass(frozen=True)
class Activations:
    """Bytes one example adds: `saved` for the backward pass, `forward` at a forward pass's
    peak, and `expanded`, what XLA:CPU's expansion of a gradient adds beyond the jaxpr."""

    saved: int
    forward: int
    expanded: int

    @property
    def gradient(self) -> int:
        """A gradient's: the residuals, the backward's cotangents (as large as the forward's
        peak), and XLA's expansions."""
        return self.saved + self.forward + self.expanded


def activations(model: nn.Module, params, example: jax.ShapeDtypeStruct, dropout: bool = False) -> Activations:
    """The per-example `Activations` of `model` with `params` (arrays or shapes) on inputs like
    `example` (one row: its shape and dtype); `dropout`: the training pass, with its masks."""

    def apply(p, x):
        if not dropout:
            return model.apply({"params": p}, x)
        return model.apply({"params": p}, x, train=True, rngs={"dropout": jax.random.key(0)})

    def residuals(p, x):
        return jax.tree.leaves(jax.vjp(lambda q: apply(q, x), p)[1])

    saved, forward, outputs = [], [], []
    for size in _BATCHES:
        x = jax.ShapeDtypeStruct((size, *example.shape), example.dtype)
        saved.append(_new_outputs_bytes(jax.make_jaxpr(residuals)(params, x)))
        forward.append(jax.make_jaxpr(apply)(params, x))
        outputs.append(sum(_bytes(var) for var in forward[-1].jaxpr.outvars))
    loss = LOSS_COPIES * (outputs[1] - outputs[0])
    peak, pooled = _forward(*forward)
    return Activations(saved[1] - saved[0] + loss, peak + loss, SELECT_AND_SCATTER_COPIES * pooled)


def _bytes(var) -> int:
    aval = var.aval
    return math.prod(aval.shape) * aval.dtype.itemsize if hasattr(aval, "shape") else 0


def _new_outputs_bytes(closed: core.ClosedJaxpr) -> int:
    """Bytes of a jaxpr's outputs that it computes: not literals, not its inputs passed through."""
    inputs = set(closed.jaxpr.invars)
    outputs = {var for var in closed.jaxpr.outvars if not isinstance(var, core.Literal) and var not in inputs}
    return sum(_bytes(var) for var in outputs)


def _steps(closed: core.ClosedJaxpr) -> tuple[list[_Step], list]:
    """The jaxpr's equations in order, calls inlined; and its outputs."""
    steps = []

    def walk(jaxpr: core.Jaxpr, names: dict) -> None:
        def name(var):
            return None if isinstance(var, core.Literal) else names.get(var, var)

        for eqn in jaxpr.eqns:
            inner = next(iter(core.jaxprs_in_params(eqn.params)), None) if eqn.primitive.name in _CALLS else None
            if inner is not None and len(inner.invars) == len(eqn.invars) and len(inner.outvars) == len(eqn.outvars):
                inner_names = {mine: name(outer) for mine, outer in zip(inner.invars, eqn.invars, strict=True)}
                walk(inner, inner_names)
                for outer, mine in zip(eqn.outvars, inner.outvars, strict=True):
                    names[outer] = None if isinstance(mine, core.Literal) else inner_names.get(mine, mine)
                continue
            inputs = [name(var) for var in eqn.invars if name(var) is not None]
            steps.append(_Step(eqn.primitive.name, inputs, list(eqn.outvars)))

    names: dict = {}
    walk(closed.jaxpr, names)
    outputs = [names.get(var, var) for var in closed.jaxpr.outvars if not isinstance(var, core.Literal)]
    return steps, outputs


def _peak(steps: list[_Step], outputs: list, sizes: dict) -> int:
    """The most bytes (`sizes` of each value) live at once: a value lives from the step that
    makes it to its last use (the jaxpr's outputs, to the end)."""
    last_use = {var: index for index, step in enumerate(steps) for var in step.inputs}
    last_use.update({var: len(steps) for var in outputs})
    freed_after: dict[int, list] = {}
    live = peak = 0
    for index, step in enumerate(steps):
        for var in step.outputs:
            live += sizes.get(var, 0)
            freed_after.setdefault(last_use.get(var, index), []).append(var)
        peak = max(peak, live)
        live -= sum(sizes.get(var, 0) for var in freed_after.pop(index, []))
    return peak


def _pooled(steps: list[_Step], sizes: dict) -> int:
    """Bytes of the inputs of max pools whose windows are not a reshape (`reduce_window_max`)."""
    return sum(sizes.get(step.inputs[0], 0) for step in steps if step.primitive == "reduce_window_max")


def _forward(small: core.ClosedJaxpr, large: core.ClosedJaxpr) -> tuple[int, int]:
    """(peak, pooled) of the forward for one example: each value's bytes in the larger batch less
    the smaller's, when both trace the same equations; else the differences of the batches' totals."""
    (small_steps, small_out), (large_steps, large_out) = _steps(small), _steps(large)
    same = len(small_steps) == len(large_steps) and all(
        len(one.outputs) == len(other.outputs) for one, other in zip(small_steps, large_steps, strict=True)
    )
    if same:
        sizes = {
            mine: _bytes(theirs) - _bytes(mine)
            for one, other in zip(small_steps, large_steps, strict=True)
            for mine, theirs in zip(one.outputs, other.outputs, strict=True)
        }
        return _peak(small_steps, small_out, sizes), _pooled(small_steps, sizes)
    totals = []
    for steps, outputs in ((small_steps, small_out), (large_steps, large_out)):
        sizes = {var: _bytes(var) for step in steps for var in step.outputs}
        totals.append((_peak(steps, outputs, sizes), _pooled(steps, sizes)))
    return totals[1][0] - totals[0][0], totals[1][1] - totals[0][1]
