"""The search spaces of the tuner's sampled searches (AlgoPerf's external-tuning ruleset in
miniature) and their samplers: a space of several hyperparameters at once, its points drawn per
study from a scrambled Halton sequence or uniformly at random, each study from its own seed.
`studies` makes the tuner's stage 1 of them.

A space maps names to ranges (a JSON file of `--space`, or `default_space`):

    {"learning_rate": {"min": 1e-4, "max": 1e-1, "scale": "log"},   a hyperparameter by name
     "1-b1":          {"min": 1e-2, "max": 0.5, "scale": "log"},     b1 = 1 - x, x in the range
     "main":          {"decades": 4}}                                 log-uniform over 4 decades centred
                                                                      on each optimizer's default
`main` stands for each optimizer's main scale. A range applies to the optimizers that take its
hyperparameter (`optimizers.get(name).accepted`); each sampled value is a traced program input,
so every trial of every study is a replica of one compiled program.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import qmc

from optax_lab import optimizers
from optax_lab.errors import UsageError
from optax_lab.grids import MAIN, around_value
from optax_lab.sweep import MAX_DECADES, Search

__all__ = [
    "COMPLEMENT",
    "Axis",
    "Range",
    "Scale",
    "Space",
    "default_space",
    "optimizer_axes",
    "parse_space",
    "read_space",
    "space_axes",
    "study_points",
]

COMPLEMENT = "1-"  # a range named 1-NAME samples x and sets NAME = 1 - x (momenta near 1, on a log scale)
_FIX = 'e.g. {"learning_rate": {"min": 1e-4, "max": 0.1, "scale": "log"}} (see docs/sweeps.md, search spaces)'


class Scale(enum.StrEnum):
    LOG = "log"  # uniform in log10(x): x > 0
    LINEAR = "linear"


@dataclasses.dataclass(frozen=True)
class Range:
    """One entry of a search space: `name` (a hyperparameter, `main`, or 1-NAME) over [low, high]
    on `scale`, or, with `decades`, log-uniform over that many decades centred on each
    optimizer's default."""

    name: str
    low: float = math.nan
    high: float = math.nan
    scale: Scale = Scale.LOG
    decades: float | None = None

    @property
    def complement(self) -> bool:
        return self.name.startswith(COMPLEMENT)

    @property
    def hyperparam(self) -> str:
        """The hyperparameter name it samples (`main` still stands for each optimizer's main scale)."""
        return self.name.removeprefix(COMPLEMENT)

    def record(self) -> dict[str, Any]:
        if self.decades is not None:
            return {"decades": self.decades}
        return {"min": self.low, "max": self.high, "scale": self.scale.value}


class Space(NamedTuple):
    """A search space and where it comes from: `--space FILE`, or "" for `default_space`'s."""

    ranges: tuple[Range, ...]
    source: str = ""

    def record(self) -> dict[str, dict[str, Any]]:
        return {item.name: item.record() for item in self.ranges}


class Axis(NamedTuple):
    """A range resolved for one optimizer: x in [low, high] on `scale`; the hyperparameter is x, or 1 - x."""

    hyperparam: str
    low: float
    high: float
    scale: Scale
    complement: bool
    name: str  # the range's, as the space names it

    def value(self, unit: float) -> float:
        """The hyperparameter's value at `unit` in [0, 1): x at that fraction of the range, on its scale."""
        if self.scale is Scale.LOG:
            x = 10 ** (math.log10(self.low) + unit * (math.log10(self.high) - math.log10(self.low)))
        else:
            x = self.low + unit * (self.high - self.low)
        return 1.0 - x if self.complement else x

    def ends(self) -> tuple[float, float]:
        """The hyperparameter's values at both ends of the range."""
        return (1.0 - self.high, 1.0 - self.low) if self.complement else (self.low, self.high)

    def record(self) -> dict[str, Any]:
        """The hyperparameter, the space's range it comes from (1-b1 gives b1), and x's bounds."""
        return {
            "hyperparam": self.hyperparam,
            "range": self.name,
            "min": self.low,
            "max": self.high,
            "scale": self.scale.value,
        }


def default_space(decades: float) -> Space:
    """The space of a sampled search without --space: each optimizer's main scale log-uniform over
    `decades` decades centred on its default (the grid's span); 1-b1, 1-b2 and the weight decay
    log-uniform (b1 in [0.5, 0.99], b2 in [0.9, 0.999]); each for the optimizers that take it."""
    ranges = (
        Range(MAIN, decades=decades),
        Range(f"{COMPLEMENT}b1", 1e-2, 0.5),
        Range(f"{COMPLEMENT}b2", 1e-3, 0.1),
        Range("weight_decay", 1e-5, 0.1),
    )
    return Space(ranges)


def read_space(path: str | Path) -> Space:
    """The space in a --space JSON file; an unreadable or bad one is one line."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise UsageError(f"--space {path}: cannot read it ({reason}); give a JSON file, {_FIX}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        raise UsageError(f"--space {path} is not JSON; {_FIX}") from None
    return Space(parse_space(raw, f"--space {path}"), f"--space {path}")


def parse_space(raw: Any, source: str) -> tuple[Range, ...]:
    """A space from its JSON object: hyperparameter -> {"min", "max", "scale"} or {"decades"}."""
    if not isinstance(raw, dict) or not raw:
        raise UsageError(f"{source}: a space is a JSON object of hyperparameter -> range, {_FIX}")
    space = tuple(_range(name, spec, source) for name, spec in raw.items())
    sampled = [r.hyperparam for r in space]
    twice = sorted({name for name in sampled if sampled.count(name) > 1})
    if twice:
        raise UsageError(f"{source} samples {twice[0]} twice (as {twice[0]} and {COMPLEMENT}{twice[0]}): keep one")
    return space


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{what} is {value!r}, not a finite number; {_FIX}")
    return float(value)


def _range(name: str, spec: Any, source: str) -> Range:
    where = f"{source}: {name!r}"
    if not name.removeprefix(COMPLEMENT):
        raise UsageError(f"{where} names no hyperparameter; {_FIX}")
    if name.startswith(COMPLEMENT) and name.removeprefix(COMPLEMENT) == MAIN:
        raise UsageError(f"{where}: {MAIN} is a scale, not a momentum: give {MAIN} itself; {_FIX}")
    if isinstance(spec, dict) and set(spec) == {"decades"}:
        decades = _number(spec["decades"], f"{where}'s decades")
        if not 0 < decades <= MAX_DECADES or name.startswith(COMPLEMENT):
            raise UsageError(
                f"{where}: decades spans a positive number of decades, at most {MAX_DECADES:g}, around a "
                f'default (not of a 1- range), e.g. "main": {{"decades": 4}}'
            )
        return Range(name, decades=decades)
    if not isinstance(spec, dict) or not {"min", "max", "scale"} <= set(spec) or set(spec) - {"min", "max", "scale"}:
        raise UsageError(f'{where} is not {{"min": LOW, "max": HIGH, "scale": "log" or "linear"}}; {_FIX}')
    low, high = _number(spec["min"], f"{where}'s min"), _number(spec["max"], f"{where}'s max")
    try:
        scale = Scale(spec["scale"])
    except (ValueError, TypeError):  # TypeError: a list or object where the scale's name belongs
        raise UsageError(f"{where}: unknown scale {spec['scale']!r}: use log or linear") from None
    if not low < high:
        raise UsageError(f"{where}: min {low:g} must be below max {high:g}")
    if scale is Scale.LOG and low <= 0:
        raise UsageError(f"{where}: a log scale needs a positive min, not {low:g}; use a linear scale, or min > 0")
    return Range(name, low, high, scale)


def optimizer_axes(
    name: str, space: Sequence[Range], defaults: Mapping[str, Any], *, strict: bool = True
) -> tuple[Axis, ...]:
    """The ranges of `space` that optimizer `name` takes, resolved (`defaults`: its values where
    the tune runs, for `decades` ranges), each end checked against the hyperparameter's domain.
    A hyperparameter it takes but compiles in (an integer, a switch), or a range that reaches
    outside its domain, is one line when `strict` (a user's space), else left out (the default
    space: an optimizer of one's own may declare other domains)."""
    entry = optimizers.get(name)
    axes = []
    for item in space:
        hyperparam = entry.main if item.hyperparam == MAIN else item.hyperparam
        if not hyperparam or hyperparam not in entry.accepted:
            continue
        twice = next((axis for axis in axes if axis.hyperparam == hyperparam), None)
        if twice is not None:
            raise UsageError(f"space ranges {twice.name!r} and {item.name!r} both sample {name}.{hyperparam}: keep one")
        axis = _resolved(name, hyperparam, item, defaults.get(hyperparam))
        if not all(optimizers.is_traced(name, hyperparam, value) for value in axis.ends()):
            if not strict:
                continue
            raise UsageError(
                f"space range {item.name!r}: {name}.{hyperparam} is compiled into its program, not traced, so its "
                f"trials could not share one program: leave it out of the space (sample real-valued ones)"
            )
        outside = [reason for value in axis.ends() for reason in [_outside(name, hyperparam, value)] if reason]
        if outside and not strict:
            continue
        if outside:
            raise UsageError(f"space range {item.name!r}: at its end, {outside[0]}")
        axes.append(axis)
    return tuple(axes)


def _outside(name: str, hyperparam: str, value: float) -> str:
    """Why `value` is no value of `name`'s `hyperparam` (its domain check's line), or ""."""
    try:
        optimizers.check_value(name, hyperparam, value)
    except UsageError as error:
        return str(error)
    return ""


def space_axes(
    space: Space, names: Sequence[str], defaults: Callable[[str], Mapping[str, Any]]
) -> dict[str, tuple[Axis, ...]]:
    """Each optimizer of `names` -> its axes in `space` (`optimizer_axes`; `defaults(name)`: its
    values where the tune runs). A user's space is strict: a static hyperparameter in it, or a range
    none of them takes (a typo more often than a wish), is one line naming the file. The default
    space leaves out what an optimizer does not take or trace."""
    strict = bool(space.source)
    try:
        axes = {name: optimizer_axes(name, space.ranges, defaults(name), strict=strict) for name in names}
        used = {axis.name for found in axes.values() for axis in found}
        unused = [item.name for item in space.ranges if item.name not in used]
        if strict and unused:
            raise UsageError(
                f"space range {unused[0]!r}: none of the optimizers tuned ({', '.join(names)}) takes "
                f"{unused[0].removeprefix(COMPLEMENT)!r}; see `optax-lab list` for their hyperparameters"
            )
    except UsageError as error:
        raise UsageError(f"{space.source or 'the default search space'}: {error}") from None
    return axes


def _resolved(name: str, hyperparam: str, item: Range, default: Any) -> Axis:
    if item.decades is None:
        return Axis(hyperparam, item.low, item.high, item.scale, item.complement, item.name)
    if isinstance(default, bool) or not isinstance(default, (int, float)) or not default > 0:
        raise UsageError(
            f"space range {item.name!r}: decades centre on a positive default, and {name}'s {hyperparam} "
            f'default is {default!r}: give "min", "max" and "scale" instead'
        )
    low, high = (around_value(default, item.decades, 2, end) for end in (0, 1))  # the grid's ends, to 4 digits
    return Axis(hyperparam, low, high, Scale.LOG, False, item.name)


def study_points(search: Search, axes: Sequence[Axis], trials: int, seed: int) -> list[dict[str, float]]:
    """One study's `trials` points over `axes`: the first points of a scrambled Halton sequence
    (`search` halton) or uniform draws (random), from `seed` alone."""
    unit_TxD = _UNIT[Search(search)](len(axes), trials, seed)
    return [{axis.hyperparam: axis.value(float(u)) for axis, u in zip(axes, row, strict=True)} for row in unit_TxD]


def _halton(dims: int, trials: int, seed: int) -> np.ndarray:
    return qmc.Halton(d=dims, scramble=True, seed=np.random.default_rng(seed)).random(trials)


def _uniform(dims: int, trials: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((trials, dims))


_UNIT: Mapping[Search, Callable[[int, int, int], np.ndarray]] = {Search.HALTON: _halton, Search.RANDOM: _uniform}
