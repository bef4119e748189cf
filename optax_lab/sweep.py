"""The grammar of a hyperparameter sweep, part of the configuration stage (imports only errors).

    [OPTIMIZER.]HYPERPARAMETER=VALUES
    VALUES:  log:LOW:HIGH:N     N log-spaced values, both ends included (LOW > 0)
             lin:LOW:HIGH:N     N evenly spaced values, both ends included
             around:DECADES:N   N log-spaced multiples of each optimizer's default, spanning
                                DECADES decades centred on it (the tuner's stage-1 grid)
             V1,V2,...          these values

Without an optimizer prefix a sweep applies to every optimizer that takes the hyperparameter;
`main` names each optimizer's main scale (its learning rate; polyak_sgd's max_learning_rate).
Several sweeps give their cartesian product.
"""

from __future__ import annotations

import dataclasses
import enum
import math

from optax_lab.errors import UsageError
from optax_lab.grids import MAIN, Criterion, Sweep, around_value

__all__ = ["MAX_DECADES", "Protocol", "Search", "parse_sweep"]

# The widest around: grid. Wider ones reach values no float32 program can use (and past ~600
# decades Python's float overflows); a tune's grid may still grow past it by --extend decades.
MAX_DECADES = 30.0
_EXAMPLE = "e.g. --sweep learning_rate=log:1e-4:1e-1:16 or --sweep adam.b1=0.8,0.9,0.95"


def _number(text: str, item: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--sweep {item}: {text!r} is not a number; {_EXAMPLE}") from None
    if not math.isfinite(value):
        raise UsageError(f"--sweep {item}: {text!r} is not a finite number; {_EXAMPLE}")
    return value


def _count(text: str, item: str) -> int:
    if not text.strip().isdigit() or int(text) < 2:
        raise UsageError(f"--sweep {item}: the number of points {text!r} must be an integer of at least 2; {_EXAMPLE}")
    return int(text)


def _range(kind: str, parts: list[str], item: str) -> tuple[float, ...]:
    if len(parts) != 3:
        raise UsageError(f"--sweep {item}: {kind}: takes LOW:HIGH:N; {_EXAMPLE}")
    low, high, count = _number(parts[0], item), _number(parts[1], item), _count(parts[2], item)
    if not low < high:
        raise UsageError(f"--sweep {item}: LOW {parts[0]} must be below HIGH {parts[1]}; {_EXAMPLE}")
    if kind == "log":
        if low <= 0:
            raise UsageError(f"--sweep {item}: log: bounds must be positive, not {parts[0]}; {_EXAMPLE}")
        exponents = [math.log10(low) + (math.log10(high) - math.log10(low)) * i / (count - 1) for i in range(count)]
        return tuple(float(f"{10**e:.4g}") for e in exponents)
    return tuple(float(f"{low + (high - low) * i / (count - 1):.6g}") for i in range(count))


def parse_sweep(item: str) -> Sweep:
    """`adam.b1=0.8,0.9` -> Sweep; a malformed one is a UsageError naming the part and an example."""
    target, equals, text = item.partition("=")
    optimizer, dot, hyperparam = target.strip().rpartition(".")
    if not equals or not hyperparam or (dot and not optimizer) or not text.strip():
        raise UsageError(f"--sweep {item!r} is not [OPTIMIZER.]HYPERPARAMETER=VALUES; {_EXAMPLE}")
    kind, colon, rest = text.partition(":")
    if colon and kind in ("log", "lin"):
        return Sweep(item, hyperparam, optimizer or None, values=_range(kind, rest.split(":"), item))
    if colon and kind == "around":
        parts = rest.split(":")
        if len(parts) != 2:
            raise UsageError(f"--sweep {item}: around: takes DECADES:N, e.g. --sweep main=around:4:17")
        decades = _number(parts[0], item)
        if not 0 < decades <= MAX_DECADES:
            raise UsageError(
                f"--sweep {item}: around: spans a positive number of decades, at most {MAX_DECADES:g}, "
                "e.g. main=around:4:17"
            )
        return Sweep(item, hyperparam, optimizer or None, around=(decades, _count(parts[1], item)))
    if colon:
        raise UsageError(f"--sweep {item}: unknown spacing {kind!r}: use log:, lin:, around: or a list; {_EXAMPLE}")
    values = tuple(_number(part.strip(), item) for part in text.split(","))
    if len(set(values)) != len(values):
        raise UsageError(f"--sweep {item}: a value is listed twice; {_EXAMPLE}")
    return Sweep(item, hyperparam, optimizer or None, values=values)


class Search(enum.StrEnum):
    """How the tuner's stage 1 chooses the points it tries (`optax_lab.search` samples the last two)."""

    GRID = "grid"  # a log grid of the main scale, grown on its winning edge
    HALTON = "halton"  # AlgoPerf's external tuning: scrambled Halton points of a search space, per study
    RANDOM = "random"  # the same space and studies, sampled uniformly at random

    @property
    def sampled(self) -> bool:
        return self is not Search.GRID


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The tuning protocol's knobs (the defaults are the committed tune report's)."""

    points: int = 17  # stage-1 grid points of the main scale, both ends included
    decades: float = 4.0  # the grid's span, centred on the registry default (and a sampled main scale's)
    search_seeds: int = 2  # stage-1 seeds per point
    max_extensions: int = 2  # decades a grid may grow on its winning edge
    criterion: Criterion = Criterion.FINAL_VAL_LOSS
    search: Search = Search.GRID
    # A sampled search: AlgoPerf's external-tuning ruleset's sizes, `studies` independent searches of
    # `trials` points each (each study its own seed of the sequence).
    trials: int = 20
    studies: int = 5

    def __post_init__(self):
        try:  # a caller's "halton" works too
            object.__setattr__(self, "search", Search(self.search))
        except ValueError:
            raise UsageError(f"--search {self.search!r} is not a ruleset: choose one of {', '.join(Search)}") from None
        self.validate()  # a Protocol cannot exist invalid

    def validate(self) -> Protocol:
        if self.points < 2:
            raise UsageError(f"--points {self.points}: a grid needs at least 2 points, e.g. --points 17")
        if not 0 < self.decades <= MAX_DECADES:  # also refuses nan and inf
            raise UsageError(
                f"--decades {self.decades:g}: the grid spans a positive number of decades, at most "
                f"{MAX_DECADES:g}, e.g. --decades 4"
            )
        if self.search_seeds < 1:
            raise UsageError(
                f"--search-seeds {self.search_seeds}: stage 1 needs at least 1 seed per point, e.g. --search-seeds 2"
            )
        if self.max_extensions < 0:
            raise UsageError(f"--extend {self.max_extensions}: a grid grows by 0 or more decades, e.g. --extend 2")
        if self.trials < 1:
            raise UsageError(f"--trials {self.trials}: a study needs at least 1 trial, e.g. --trials 20")
        if self.studies < 1:
            raise UsageError(f"--studies {self.studies}: a search needs at least 1 study, e.g. --studies 5")
        return self

    def grid(self) -> Sweep:
        """Stage 1's grid: `points` values of each optimizer's main scale around its default."""
        return Sweep(f"main=around:{self.decades:g}:{self.points}", MAIN, around=(self.decades, self.points))

    @property
    def per_decade(self) -> int:
        return max(1, round((self.points - 1) / self.decades))

    def extension(self, default: float, indices: list[int], side: str) -> list[tuple[int, float]]:
        """A decade of new (grid index, value) pairs beyond the grid's `side` edge, at its spacing."""
        edge = min(indices) if side == "low" else max(indices)
        step = -1 if side == "low" else 1
        return [
            (edge + step * k, around_value(default, self.decades, self.points, edge + step * k))
            for k in range(1, self.per_decade + 1)
        ]
