"""The registry: one declarative table of entries, and `get` / `hyperparams` / `build` on it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from types import FunctionType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

from optax_lab.errors import UsageError, closest
from optax_lab.optimizers._domains import DOMAINS, Domain, Kind
from optax_lab.optimizers._entry import NEEDS, OptimizerEntry
from optax_lab.optimizers._user import user_entry
from optax_lab.optimizers._variants import (
    dpsgd,
    keras_adagrad,
    lookahead_adam,
    lookahead_eval_params,
    mechanize_adam,
    reduce_on_plateau_adam,
    sam_sgd,
    schedule_free_adam,
)

# --- The registry -----------------------------------------------------------------------------


def _entries() -> list[OptimizerEntry]:
    sf_eval = optax.contrib.schedule_free_eval_params
    lr_free = frozenset({"lr_free"})  # learning_rate is a multiplier of a step size found online
    wrapper = frozenset({"wrapper"})
    value = frozenset({"value"})
    return [
        # optax, top level
        OptimizerEntry(
            "sgd",
            optax.sgd,
            {"learning_rate": 0.3162},
            note="momentum=None is plain SGD; optax's trace equals Keras' velocity at constant lr",
        ),
        OptimizerEntry("momentum", optax.sgd, {"learning_rate": 0.01777, "momentum": 0.9}),
        OptimizerEntry("nesterov", optax.sgd, {"learning_rate": 0.01777, "momentum": 0.9, "nesterov": True}),
        OptimizerEntry(
            "noisy_sgd",
            optax.noisy_sgd,
            {"learning_rate": 0.05623},
            needs=frozenset({"key"}),
            note="annealed Gaussian gradient noise drawn from the seed's key",
        ),
        OptimizerEntry("sign_sgd", optax.sign_sgd, {"learning_rate": 0.0005619}),
        OptimizerEntry("signum", optax.signum, {"learning_rate": 0.0001778}),
        OptimizerEntry("adagrad", optax.adagrad, {"learning_rate": 0.5623}),
        OptimizerEntry(
            "rmsprop",
            optax.rmsprop,
            {"learning_rate": 0.0005619},
            note="optax's eps; the lesson preset sets Keras' eps=1e-7 outside the sqrt (eps_in_sqrt=False)",
        ),
        OptimizerEntry(
            "adam",
            optax.adam,
            {"learning_rate": 0.0005619},
            note="optax's eps; the lesson preset sets Keras' 1e-7 (Keras also scales eps by sqrt(1-b2^t): "
            "the difference fades after a few steps)",
        ),
        OptimizerEntry("adamw", optax.adamw, {"learning_rate": 0.0005619}),
        OptimizerEntry("nadam", optax.nadam, {"learning_rate": 0.05619}),
        OptimizerEntry("nadamw", optax.nadamw, {"learning_rate": 0.0316}),
        OptimizerEntry("amsgrad", optax.amsgrad, {"learning_rate": 0.03162}),
        OptimizerEntry("adamax", optax.adamax, {"learning_rate": 0.05623}),
        OptimizerEntry("adamaxw", optax.adamaxw, {"learning_rate": 0.05623}),
        OptimizerEntry("adabelief", optax.adabelief, {"learning_rate": 0.0005619}),
        OptimizerEntry(
            "radam",
            optax.radam,
            {"learning_rate": 0.001},
            note="no adaptive step for the first ~5 steps (rectification)",
        ),
        OptimizerEntry("yogi", optax.yogi, {"learning_rate": 0.001778}),
        OptimizerEntry("adan", optax.adan, {"learning_rate": 0.0005619}),
        OptimizerEntry("novograd", optax.novograd, {"learning_rate": 0.001}, note="layer-wise second moment"),
        OptimizerEntry("lamb", optax.lamb, {"learning_rate": 0.001}, note="layer-wise trust ratio on Adam"),
        OptimizerEntry(
            "lars",
            optax.lars,
            {"learning_rate": 0.3},
            note="layer-wise trust ratio (1e-3 |w|/|g|) on momentum SGD; zero-init biases take the full rate "
            "(1.0 diverges here)",
        ),
        OptimizerEntry(
            "lion",
            optax.lion,
            {"learning_rate": 0.0001777},
            note="sign updates: its paper advises 3-10x below Adam's rate; the tune agrees (about 3x)",
        ),
        OptimizerEntry(
            "adadelta",
            optax.adadelta,
            {"learning_rate": 0.5619},
            note="the paper uses 1.0, the tune picked 0.562 (optax's None applies no rate; Keras' 0.001 barely moves)",
        ),
        OptimizerEntry(
            "adafactor",
            optax.adafactor,
            {"learning_rate": 0.00316, "min_dim_size_to_factor": 32},
            note="factors kernels with both dims >= 32 (optax's 128 would factor none here); "
            "steps relative to the parameter scale",
        ),
        OptimizerEntry(
            "sm3", optax.sm3, {"learning_rate": 0.0316}, note="Adagrad-like, with per row/column accumulators"
        ),
        OptimizerEntry(
            "fromage",
            optax.fromage,
            {"learning_rate": 0.003162},
            note="steps relative to each layer's norm: zero-initialised biases move only slowly",
        ),
        OptimizerEntry(
            "rprop",
            optax.rprop,
            {"learning_rate": 0.01},
            note="learning_rate is the initial per-weight step; sign-based, meant for full batches",
        ),
        OptimizerEntry(
            "optimistic_gradient_descent",
            optax.optimistic_gradient_descent,
            {"learning_rate": 0.3162},
            domains={"beta": Domain(Kind.REAL, 0.0)},
            note="made for min-max games",
        ),
        OptimizerEntry(
            "optimistic_adam_v2",
            optax.optimistic_adam_v2,
            {"learning_rate": 0.001},
            domains={"beta": Domain(Kind.REAL, 0.0)},
            note="made for min-max games",
        ),
        OptimizerEntry(
            "optimistic_adam",
            optax.optimistic_adam,
            {"learning_rate": 0.001},
            tags=frozenset({"deprecated"}),
            note="deprecated by optax in favour of optimistic_adam_v2",
        ),
        OptimizerEntry(
            "polyak_sgd",
            optax.polyak_sgd,
            {"max_learning_rate": 0.316},
            needs=value,
            main="max_learning_rate",
            note="step (loss - f_min) / |g|^2 with f_min = 0 (BCE's floor), capped at max_learning_rate",
        ),
        OptimizerEntry(
            "lbfgs",
            optax.lbfgs,
            {},
            needs=frozenset({"value", "grad", "value_fn"}),
            tags=frozenset({"second-order"}),
            main="",
            domains={"learning_rate": DOMAINS["learning_rate"]._replace(optional=True)},
            no_main="its zoom linesearch picks each step's length: there is no rate to tune",
            note="zoom linesearch on each mini-batch (up to 15 extra loss evaluations per step)",
        ),
        # optax.contrib
        OptimizerEntry(
            "acprop",
            optax.contrib.acprop,
            {"learning_rate": 0.000316},
            note="scales by the previous step's belief: a rare word's first gradient divides by ~0, "
            "so Adam's 0.01 diverges",
        ),
        OptimizerEntry("ademamix", optax.contrib.ademamix, {"learning_rate": 0.0316}),
        OptimizerEntry(
            "simplified_ademamix",
            optax.contrib.simplified_ademamix,
            {"learning_rate": 0.0001},
            note="heavy momentum (b1 0.99) without bias correction: 0.01 oscillates",
        ),
        OptimizerEntry("adopt", optax.contrib.adopt, {"learning_rate": 0.001}),
        OptimizerEntry("madgrad", optax.contrib.madgrad, {"learning_rate": 0.001}),
        OptimizerEntry(
            "galore",
            optax.contrib.galore,
            {"learning_rate": 0.01, "rank": 8, "update_proj_gap": 50},
            note="Adam in a rank-8 gradient subspace of each kernel, re-projected every 50 steps "
            "(optax's rank 128 exceeds our kernels: no projection at all); biases plain Adam",
            one_cpu_device="its batched SVD (a LAPACK call) waits on XLA:CPU's thread pool from inside it: "
            "with a device per core the pool deadlocks",
        ),
        OptimizerEntry(
            "muon",
            optax.contrib.muon,
            {"learning_rate": 0.002, "adam_learning_rate": 0.01},
            note="orthogonalised momentum for the hidden weight matrices (every 2-D kernel unless the workload "
            "declares them), Adam for the rest",
            matrices_arg="muon_weight_dimension_numbers",
        ),
        OptimizerEntry(
            "sophia",
            optax.contrib.sophia,
            {"learning_rate": 0.0001687},
            needs=frozenset({"obj_fn", "key"}),
            tags=frozenset({"second-order"}),
            key_field="key",
            note="Hutchinson Hessian-diagonal probes every 10 steps, from the seed's key",
        ),
        OptimizerEntry(
            "cocob",
            optax.contrib.cocob,
            {"learning_rate": 3.16},
            tags=lr_free,
            main="",
            no_main="optax scales the gradients by learning_rate before COCOB's scale-free bets, so "
            "it changes nothing (a test checks it): COCOB has no rate to tune",
            note="coin betting, scale-free: tuning-free by design",
        ),
        OptimizerEntry(
            "dog",
            optax.contrib.dog,
            {"learning_rate": 1.0},
            tags=lr_free,
            note="distance over gradients: learning_rate only scales the step it finds",
        ),
        OptimizerEntry(
            "dowg",
            optax.contrib.dowg,
            {"learning_rate": 0.316},
            tags=lr_free,
            note="distance over weighted gradients: learning_rate only scales the step it finds",
        ),
        OptimizerEntry(
            "prodigy", optax.contrib.prodigy, {"learning_rate": 10}, tags=lr_free, note="estimates Adam's rate online"
        ),
        OptimizerEntry(
            "dadapt_adamw",
            optax.contrib.dadapt_adamw,
            {"learning_rate": 0.1},
            tags=lr_free,
            note="D-Adaptation estimates Adam's rate online",
        ),
        OptimizerEntry(
            "momo",
            optax.contrib.momo,
            {"learning_rate": 0.316},
            needs=value,
            tags=lr_free,
            note="model-based momentum: steps capped by the loss' distance to its floor 0",
        ),
        OptimizerEntry(
            "momo_adam",
            optax.contrib.momo_adam,
            {"learning_rate": 0.0316},
            needs=value,
            tags=lr_free,
            note="Momo on Adam's preconditioned steps",
        ),
        OptimizerEntry(
            "schedule_free_sgd",
            optax.contrib.schedule_free_sgd,
            {"learning_rate": 0.5},
            eval_params=sf_eval,
            note="validated at the averaged iterate x (schedule_free_eval_params)",
        ),
        OptimizerEntry(
            "schedule_free_adamw",
            optax.contrib.schedule_free_adamw,
            {"learning_rate": 0.0008885},
            eval_params=sf_eval,
            note="validated at the averaged iterate x",
        ),
        OptimizerEntry(
            "dpsgd",
            dpsgd,
            {"learning_rate": 0.1, "l2_norm_clip": 5.0, "noise_multiplier": 1.1, "momentum": 0.9},
            needs=frozenset({"per_example_grads", "key"}),
            tags=frozenset({"private"}),
            optax_name="contrib.dpsgd",
            key_field="rng_key",
            note="clips each example's gradient to norm 5 (~their 95th percentile at init: clipping at "
            "1-3 down-weights the hard examples and the train loss climbs after a few epochs), adds "
            "Gaussian noise of 1.1 x that from the seed's key; a ragged last batch divides by its "
            "padded size",
        ),
        # wrappers, each around a base that its docs test it with
        OptimizerEntry(
            "mechanize_adam",
            mechanize_adam,
            {"learning_rate": 0.1},
            tags=wrapper | lr_free,
            optax_name="contrib.mechanize",
            note="Mechanic tunes the scale of Adam's steps (its docs use base rate 1; the sweep picked 0.1)",
        ),
        OptimizerEntry(
            "schedule_free_adam",
            schedule_free_adam,
            {"learning_rate": 0.00158},
            tags=wrapper,
            optax_name="contrib.schedule_free",
            eval_params=sf_eval,
            note="validated at the averaged iterate x",
        ),
        OptimizerEntry(
            "sam_sgd",
            sam_sgd,
            {"learning_rate": 0.05, "momentum": 0.9, "rho": 0.05},
            needs=frozenset({"grad_fn"}),
            tags=wrapper,
            optax_name="contrib.sam",
            domains={"rho": Domain(Kind.REAL, 0.0)},
            note="two gradients per step (opaque mode)",
        ),
        OptimizerEntry(
            "reduce_on_plateau_adam",
            reduce_on_plateau_adam,
            {"learning_rate": 0.0316},
            needs=value,
            tags=wrapper,
            optax_name="contrib.reduce_on_plateau",
            static=frozenset({"factor", "rtol", "min_scale"}),  # checked in Python by optax
            note="watches the train loss (the value fed to update)",
        ),
        OptimizerEntry(
            "lookahead_adam",
            lookahead_adam,
            {"learning_rate": 0.001},
            tags=wrapper,
            optax_name="lookahead",
            eval_params=lookahead_eval_params,
            note="validated at the slow weights",
        ),
        # ours
        OptimizerEntry(
            "keras_adagrad",
            keras_adagrad,
            {"learning_rate": 0.1, "decay": 0.0},
            tags=frozenset({"keras"}),
            domains={"decay": Domain(Kind.REAL, 0.0)},
            note="eps outside the sqrt, accumulator from 0.1, legacy decay",
        ),
    ]


# Optax constructors deliberately not registered (name as in optax / optax.contrib -> why).
EXCLUDED: dict[str, str] = {
    "contrib.differentially_private_aggregate": "DP-SGD's clip-and-noise step alone; registered inside dpsgd",
    "contrib.hutchinson_estimator_diag_hessian": "Sophia's Hessian-diagonal estimator; registered inside sophia",
    "contrib.split_real_and_imaginary": "a wrapper for complex parameters; the MLP's are real",
    "normalize_by_update_norm": "a building block (rescales updates to a fixed norm), no optimizer by itself",
}


def _optax_functions() -> dict[Callable, str]:
    """Every public optax / optax.contrib function -> its name there ("adam", "contrib.sam");
    partials too: optax.nadam is `partial(adam, nesterov=True)`."""
    names = {}
    for module, prefix in ((optax.contrib, "contrib."), (optax, "")):
        names.update(
            {
                getattr(module, n): prefix + n
                for n in dir(module)
                if not n.startswith("_") and isinstance(getattr(module, n), (FunctionType, partial))
            }
        )
    return names


def _complete(entries: list[OptimizerEntry]) -> dict[str, OptimizerEntry]:
    """The table with what it leaves implicit filled in: the optax name of a plain constructor,
    the core/contrib tag it implies, and an expected_slow tag where a reason is given."""
    functions = _optax_functions()
    registry = {}
    for entry in entries:
        optax_name = entry.optax_name or functions.get(entry.constructor, "")
        origin = {"contrib"} if optax_name.startswith("contrib.") else {"core"} if optax_name else set()
        slow = {"expected_slow"} if entry.expected_slow else set()
        assert entry.name not in registry, f"optimizer {entry.name!r} is registered twice"
        assert entry.needs <= set(NEEDS), f"{entry.name}: needs {sorted(entry.needs - set(NEEDS))}, not in NEEDS"
        registry[entry.name] = entry._replace(optax_name=optax_name, tags=entry.tags | origin | slow)
    return registry


REGISTRY: dict[str, OptimizerEntry] = _complete(_entries())


def get(name: str) -> OptimizerEntry:
    """The entry `name`: the registry's, or one of your own (an entry point of the group
    `optax_lab.optimizers`, or a `module:function` factory)."""
    if name in REGISTRY:
        return REGISTRY[name]
    entry = user_entry(name)
    if entry is None:
        near = closest(name, sorted(REGISTRY), all_up_to=12)
        listed = f"`optax-lab list` shows all {len(REGISTRY)}"
        raise UsageError(
            f"unknown optimizer {name!r}: "
            + (f"did you mean {near}? ({listed})" if near else f"none has a close name; {listed}")
        )
    return entry


def check_value(name: str, hyperparam: str, value: Any) -> Any:
    """`value` as the constructor wants it (a whole float of an integer domain as an int), or a
    UsageError naming the optimizer, the hyperparameter, the value, its domain and an example
    (text, NaN, infinity, a wrong sign...; an unknown hyperparameter says which ones it takes)."""
    entry = get(name)
    if hyperparam not in entry.accepted:
        raise UsageError(
            f"optimizer {name!r} takes no hyperparameter {hyperparam!r}: it accepts {', '.join(entry.accepted)}"
        )
    return entry.domain(hyperparam).check(f"{name}.{hyperparam}", value, entry.all_defaults.get(hyperparam))


def hyperparams(name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The registry defaults of `name` with `overrides` on top, every name and value checked."""
    entry = get(name)
    # traced values (jax arrays) were checked before they were traced
    checked = {k: v if isinstance(v, jax.Array) else check_value(name, k, v) for k, v in overrides.items()}
    return {**entry.defaults, **checked}


def is_traced(name: str, hyperparam: str, value: Any) -> bool:
    """Whether the engine feeds this value into the compiled program (else it is compiled in)."""
    entry = get(name)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return numeric and entry.domain(hyperparam).kind is Kind.REAL and hyperparam not in entry.static


def split(name: str, values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """(static, traced): the hyperparameters a program is compiled on, and those it takes as inputs."""
    static = {k: v for k, v in values.items() if not is_traced(name, k, v)}
    return static, {k: float(v) for k, v in values.items() if k not in static}


def main_scale(name: str) -> str:
    """The hyperparameter a tuner sweeps: the entry's main scale, or a UsageError saying why there is none."""
    entry = get(name)
    if not entry.main:
        raise UsageError(
            f"optimizer {name!r} has no main scale to sweep: {entry.no_main}; leave it out of "
            "--optimizers, or sweep a hyperparameter by name"
        )
    return entry.main


def _with_state_key(
    tx: optax.GradientTransformationExtraArgs, field: str, key: jax.Array
) -> optax.GradientTransformationExtraArgs:
    """`tx` whose state field `field` (a PRNG key) starts from `key`, in the form `tx` keeps it."""

    def init_fn(params):
        state = tx.init(params)
        typed = jnp.issubdtype(optax.tree_utils.tree_get(state, field).dtype, jax.dtypes.prng_key)
        return optax.tree_utils.tree_set(state, **{field: key if typed else jax.random.key_data(key)})

    return optax.GradientTransformationExtraArgs(init_fn, tx.update)


def _matrix_dimensions(hidden_matrices: Callable[[Any], Any], params) -> Any:
    """Muon's dimension numbers: a 2-D kernel's (in, out) for each hidden matrix, None (Adam) elsewhere."""
    dimensions = optax.contrib.MuonDimensionNumbers(reduction_axis=0, output_axis=1)
    return jax.tree.map(lambda matrix: dimensions if matrix else None, hidden_matrices(params))


def _as_program_inputs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """`kwargs` with every real hyperparameter the engine can trace, the constructor's own
    defaults included, as the float32 scalar a program input is, so that optax computes the same
    arithmetic whether a value is compiled in or traced. With a Python float it would not: optax
    takes `1 - b2` in float64 and rounds once, where a float32 input rounds b2 first; at 0.999
    the two differ by 1.3e-5 of themselves, and only the float32 one cancels Adam's bias
    correction, which is float32 either way."""
    values = {**get(name).all_defaults, **kwargs}
    compiled_in = {k: v for k, v in values.items() if not isinstance(v, jax.Array) and is_traced(name, k, v)}
    return {**kwargs, **{k: np.float32(v) for k, v in compiled_in.items()}}


def build(
    name: str,
    overrides: Mapping[str, Any],
    key: jax.Array | None = None,
    hidden_matrices: Callable[[Any], Any] | None = None,
) -> optax.GradientTransformationExtraArgs:
    """The optimizer `name` with its hyperparameters; `key` is the seed's own PRNG key;
    `hidden_matrices` (params -> tree of bools) the workload's hidden weight matrices, for an
    optimizer that treats them apart (Muon)."""
    entry = get(name)
    kwargs = _as_program_inputs(name, hyperparams(name, overrides))
    if entry.matrices_arg and hidden_matrices is not None:
        kwargs[entry.matrices_arg] = partial(_matrix_dimensions, hidden_matrices)
    if "key" in entry.needs:
        if key is None:
            raise ValueError(f"optimizer {name!r} draws random numbers: build it with the seed's key")
        if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.wrap_key_data(key)  # a legacy uint32 key
        if not entry.key_field:
            kwargs["key"] = key
    tx = optax.with_extra_args_support(entry.constructor(**kwargs))
    return _with_state_key(tx, entry.key_field, key) if entry.key_field else tx
