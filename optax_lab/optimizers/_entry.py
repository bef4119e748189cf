"""What one optimizer is to the suite: an `OptimizerEntry` (how to build an optax optimizer and
feed its update()), and the vocabulary of what update() may need beyond gradients."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import optax

from optax_lab.optimizers._domains import DOMAINS, Domain

__all__ = ["EXTRA_INPUTS", "NEEDS", "OptimizerEntry", "current_params"]


# What an entry's update() may ask the engine for, besides (grads, state, params):
#   value    - the loss at params on this batch
#   grad     - the gradient again (lbfgs' linesearch wants it by that name)
#   value_fn - params -> loss on this batch
#   obj_fn   - the same function under the name Sophia's Hessian probes differentiate
#   grad_fn  - (params, i) -> gradient on this batch (SAM's inner adversarial steps)
EXTRA_INPUTS = ("value", "grad", "value_fn", "obj_fn", "grad_fn")
# What else an entry may need, which changes how the engine builds or feeds it:
#   key               - a PRNG key of the seed's own (noise must differ per seed): the constructor's
#                       `key` argument, or with `key_field` that field of the state after init
#   per_example_grads - gradients with a leading batch axis instead of the batch mean (DP-SGD
#                       clips each example's); padded examples of a ragged batch are zero
NEEDS = EXTRA_INPUTS + ("key", "per_example_grads")


def current_params(state: optax.OptState, params: optax.Params) -> optax.Params:
    """Validate where training is: the default `eval_params`."""
    del state
    return params


class OptimizerEntry(NamedTuple):
    """One row of the registry: how to build an optax optimizer and feed its update(), not the optimizer itself."""

    name: str
    constructor: Callable[..., optax.GradientTransformation]
    defaults: Mapping[str, Any]
    needs: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()  # "core"/"contrib" are added from optax_name
    note: str = ""
    optax_name: str = ""  # what it runs, e.g. "adam", "contrib.sam"; found from `constructor` if ""
    expected_slow: str = ""  # why a short run may not lower the loss; "" = it must
    eval_params: Callable[[optax.OptState, optax.Params], optax.Params] = current_params
    key_field: str = ""  # state field that takes the seed's key, when the constructor takes none
    main: str = "learning_rate"  # the scale a tuner sweeps first; "" when there is none (say why in no_main)
    no_main: str = ""
    domains: Mapping[str, Domain] = {}  # where this entry's hyperparameter differs from DOMAINS[name]
    static: frozenset[str] = frozenset()  # real hyperparameters its code branches on: not traced
    one_cpu_device: str = ""  # why its programs must run on one CPU device, when they must
    # The constructor argument that takes which parameters are hidden weight matrices (Muon's
    # `muon_weight_dimension_numbers`), given when the workload declares them.
    matrices_arg: str = ""

    def domain(self, hyperparam: str) -> Domain:
        return self.domains.get(hyperparam) or DOMAINS[hyperparam]

    @property
    def all_defaults(self) -> dict[str, Any]:
        """Every hyperparameter with a default: the constructor's, with the registry's on top."""
        params = inspect.signature(self.constructor).parameters
        return {
            **{n: params[n].default for n in self.accepted if params[n].default is not inspect.Parameter.empty},
            **self.defaults,
        }

    @property
    def accepted(self) -> tuple[str, ...]:
        """Hyperparameters the constructor takes (the PRNG key is the engine's, not the user's)."""
        params = inspect.signature(self.constructor).parameters
        return tuple(
            n for n, p in params.items() if n not in ("key", "seed") and p.kind is not inspect.Parameter.VAR_KEYWORD
        )
