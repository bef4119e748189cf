"""Optimizers of one's own: a factory named `module:function` on the command line, or registered
under the entry-point group `optax_lab.optimizers`, read into an `OptimizerEntry` like the
registry's, so that it runs wherever a registry optimizer does.

A factory is a plain function returning an `optax.GradientTransformation`. Its keyword parameters
are its hyperparameters, each with a default: real-valued ones are traced on the replica axis
(a sweep of them compiles once), the rest compiled in. Their domains are the registry's where the
name is one optax uses (`learning_rate`, `b1`, `weight_decay`, ...), else read from the default's
type. `declare` adds what a signature cannot say. Everything is checked before any compile.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import inspect
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import optax

from optax_lab.errors import UsageError
from optax_lab.optimizers._domains import DOMAINS, Domain, Kind
from optax_lab.optimizers._entry import NEEDS, OptimizerEntry, current_params

__all__ = [
    "ENTRY_POINTS",
    "Declaration",
    "check_on_params",
    "declare",
    "entry_point_names",
    "forget_loaded",
    "provenance",
    "source_digest",
    "user_entry",
]

ENTRY_POINTS = "optax_lab.optimizers"  # the entry-point group other packages register optimizers in
_ATTRIBUTE = "__optax_lab__"  # where `declare` leaves its record on the factory
_ENGINE_ARGUMENTS = ("key", "seed")  # the seed's PRNG key is the engine's to pass, never a hyperparameter
_FIX = "give --optimizers module:function with the module importable (on PYTHONPATH)"
_LOADED: dict[str, OptimizerEntry] = {}


@dataclasses.dataclass(frozen=True)
class Declaration:
    """What a factory's signature cannot say, in the registry's vocabulary: its main scale (the
    hyperparameter a tuner sweeps; default `learning_rate` when it takes one), domains of its
    hyperparameters, real ones it branches on (`static`: compiled in, not traced), what its
    update() needs beyond gradients (`optimizers.NEEDS`: value, value_fn, grad_fn, key...), and
    where its answer is (`eval_params(state, params)`, e.g. an averaged iterate)."""

    main: str | None = None
    no_main: str = ""
    domains: Mapping[str, Domain] = dataclasses.field(default_factory=dict)
    static: frozenset[str] = frozenset()
    needs: frozenset[str] = frozenset()
    eval_params: Callable[[Any, Any], Any] = current_params
    note: str = ""


def declare(
    *,
    main: str | None = None,
    no_main: str = "",
    domains: Mapping[str, Domain] | None = None,
    static: Iterable[str] = (),
    needs: Iterable[str] = (),
    eval_params: Callable[[Any, Any], Any] = current_params,
    note: str = "",
) -> Callable[[Callable], Callable]:
    """A decorator for an optimizer factory: `@declare(needs=("value",), static=("nesterov",))`."""
    declaration = Declaration(
        main, no_main, dict(domains or {}), frozenset(static), frozenset(needs), eval_params, note
    )
    unknown = sorted(declaration.needs - set(NEEDS))
    if unknown:
        raise UsageError(f"declare(needs=...): {', '.join(unknown)} is not among {', '.join(NEEDS)}")

    def mark(factory: Callable) -> Callable:
        setattr(factory, _ATTRIBUTE, declaration)
        return factory

    return mark


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINTS)}


def entry_point_names() -> list[str]:
    """The optimizers other packages registered, by name."""
    return sorted(_entry_points())


def forget_loaded() -> None:
    """Forget the factories loaded so far (tests load theirs anew)."""
    _LOADED.clear()


def user_entry(name: str) -> OptimizerEntry | None:
    """The entry of an entry point or a `module:function` name, loaded and checked once; None
    for any other name (the registry's, or unknown)."""
    if name in _LOADED:
        return _LOADED[name]
    points = _entry_points()
    if name in points:
        origin, reference = f"entry point {name!r} ({points[name].value})", points[name].value
        factory = _load(points[name].load, origin)
    elif ":" in name:
        module, _, function = name.partition(":")
        origin = reference = name
        factory = _load(lambda: getattr(importlib.import_module(module), function), origin)
    else:
        return None
    _LOADED[name] = _entry(name, reference, factory, origin)
    return _LOADED[name]


def _load(load: Callable[[], Any], origin: str) -> Callable:
    try:
        factory = load()
    except Exception as error:  # the user's module: any import failure is one line naming it
        raise UsageError(f"optimizer {origin}: cannot load it ({type(error).__name__}: {error}); {_FIX}") from None
    if not callable(factory):
        raise UsageError(
            f"optimizer {origin} is a {type(factory).__name__}, not a function returning an "
            "optax.GradientTransformation"
        )
    return factory


def _entry(name: str, reference: str, factory: Callable, origin: str) -> OptimizerEntry:
    declaration = getattr(factory, _ATTRIBUTE, Declaration())
    accepted = _hyperparameters(factory, origin)
    for field, names in (("static", declaration.static), ("domains", declaration.domains)):
        for hyperparam in sorted(set(names) - set(accepted)):
            raise UsageError(f"optimizer {origin}: declare({field}=...) names {hyperparam!r}, which it does not take")
    defaults = {hyperparam: inspect.signature(factory).parameters[hyperparam].default for hyperparam in accepted}
    domains = {h: declaration.domains.get(h) or DOMAINS.get(h) or _inferred(defaults[h]) for h in accepted}
    for hyperparam, default in defaults.items():  # a default outside its own domain is the factory's mistake
        domains[hyperparam].check(f"{name}.{hyperparam}", default)
    main = (
        declaration.main if declaration.main is not None else ("learning_rate" if "learning_rate" in accepted else "")
    )
    if main and main not in accepted:
        raise UsageError(f"optimizer {origin}: declare(main={main!r}) names a hyperparameter it does not take")
    no_main = declaration.no_main or ("" if main else "it takes no learning_rate and declares no main scale")
    entry = OptimizerEntry(
        name,
        factory,
        {},
        needs=declaration.needs | ({"key"} if "key" in inspect.signature(factory).parameters else set()),
        tags=frozenset({"user"}),
        note=declaration.note or f"{reference}, source sha256 {source_digest(factory)}",
        optax_name=reference,
        eval_params=declaration.eval_params,
        main=main,
        no_main=no_main,
        domains=domains,
        static=declaration.static,
    )
    _check_returns_a_transformation(entry, defaults, origin)
    return entry


def _hyperparameters(factory: Callable, origin: str) -> tuple[str, ...]:
    """The factory's keyword parameters; one without a default is one line."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError) as error:
        raise UsageError(f"optimizer {origin}: cannot read its parameters ({error})") from None
    accepted = []
    for hyperparam, parameter in parameters.items():
        if hyperparam in _ENGINE_ARGUMENTS or parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            continue
        if parameter.default is inspect.Parameter.empty:
            raise UsageError(
                f"optimizer {origin}: parameter {hyperparam!r} has no default: give every hyperparameter a "
                f"default, its value when nothing sets it (e.g. {hyperparam}=0.001)"
            )
        accepted.append(hyperparam)
    return tuple(accepted)


def _inferred(default: Any) -> Domain:
    """A hyperparameter's domain from its default, where neither the declaration nor the
    registry's vocabulary gives one: a float is real (traced), an int an integer, a bool a switch."""
    if isinstance(default, bool):
        return Domain(Kind.BOOLEAN)
    if isinstance(default, int):
        return Domain(Kind.INTEGER)
    if isinstance(default, float) and math.isfinite(default):
        return Domain(Kind.REAL)
    return Domain(Kind.OTHER, optional=default is None)


def _check_returns_a_transformation(entry: OptimizerEntry, defaults: Mapping[str, Any], origin: str) -> None:
    import jax

    kwargs = dict(defaults) | ({"key": jax.random.key(0)} if "key" in entry.needs else {})
    try:
        transformation = entry.constructor(**kwargs)
    except Exception as error:  # the user's code: one line naming what it raised
        raise UsageError(
            f"optimizer {origin} fails when built at its defaults ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(transformation, optax.GradientTransformation):
        raise UsageError(
            f"optimizer {origin} returned a {type(transformation).__name__}, not an optax.GradientTransformation: "
            "return one, e.g. optax.chain(...)"
        )


def source_digest(factory: Callable) -> str:
    """The first 16 hex digits of the sha256 of the factory's module source (its function's
    own where the module's cannot be read): an edited optimizer is another optimizer."""
    module = sys.modules.get(getattr(factory, "__module__", ""), None)
    try:
        source = inspect.getsource(module) if module is not None else inspect.getsource(factory)
    except (OSError, TypeError):
        source = repr(getattr(factory, "__code__", factory))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def check_on_params(entry: OptimizerEntry, transformation: Any, params: Any, where: str) -> None:
    """Before any compile: `transformation` (built from `entry`) initialises on `params` (abstract
    arrays) and updates them with gradients like them, giving updates of the same structure, all
    checked abstractly with `jax.eval_shape`; else one line naming the error."""
    import jax
    import jax.numpy as jnp

    def value_fn(p):
        return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(p))

    def one_step(p):
        state = transformation.init(p)
        extra = {"value": value_fn(p), "grad": p, "value_fn": value_fn, "obj_fn": value_fn, "grad_fn": lambda q, _: q}
        return transformation.update(p, state, p, **{k: extra[k] for k in entry.needs if k in extra})[0]

    try:
        updates = jax.eval_shape(one_step, params)
    except Exception as error:  # the user's code: one line naming what failed
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise UsageError(
            f"optimizer {entry.name}: init/update fail on {where} ({type(error).__name__}: {reason})"
        ) from None
    shapes = jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype), params)
    if jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype), updates) != shapes:
        raise UsageError(f"optimizer {entry.name}: its updates on {where} are not shaped like the parameters")


def provenance(entry: OptimizerEntry) -> dict[str, str] | None:
    """Where an optimizer of one's own comes from, for results.json and the resume fingerprint:
    its `module:function` and its source's digest; None for the registry's."""
    if "user" not in entry.tags:
        return None
    return {"reference": entry.optax_name, "source_sha256": source_digest(entry.constructor)}
