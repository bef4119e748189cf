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

__all__ = ["MAIN", "MAX_DECADES", "Criterion", "Protocol", "Sweep", "around_value", "parse_sweep"]

MAIN = "main"  # the hyperparameter name that stands for each optimizer's main scale
# The widest around: grid. Wider ones reach values no float32 program can use (and past ~600
# decades Python's float overflows); a tune's grid may still grow past it by --extend decades.
MAX_DECADES = 30.0
_EXAMPLE = "e.g. --sweep learning_rate=log:1e-4:1e-1:16 or --sweep adam.b1=0.8,0.9,0.95"


@dataclasses.dataclass(frozen=True)
class Sweep:
    """One --sweep. Either `values` (absolute) or `around` = (decades, points) relative to the default."""

    text: str
    hyperparam: str
    optimizer: str | None = None
    values: tuple[float, ...] = ()
    around: tuple[float, int] | None = None

    def values_for(self, default: float | None) -> tuple[float, ...]:
        """The values this sweep tries for an optimizer whose default is `default`."""
        if self.around is None:
            return self.values
        if not isinstance(default, (int, float)) or isinstance(default, bool) or default <= 0:
            raise UsageError(
                f"--sweep {self.text}: around: needs a positive default, and "
                f"{self.optimizer or 'this optimizer'}'s {self.hyperparam} default is {default!r}; "
                "give absolute values instead, e.g. log:1e-4:1e-1:16"
            )
        return tuple(around_value(default, *self.around, i) for i in range(self.around[1]))


def around_value(default: float, decades: float, points: int, index: int) -> float:
    """Point `index` of an around: grid (0 .. points-1; beyond either end extends it at the same
    spacing), to 4 significant digits."""
    try:
        return float(f"{default * 10 ** (decades * (index / (points - 1) - 0.5)):.4g}")
    except OverflowError:  # a grid extended far past float range: the domain check refuses inf in one line
        return math.inf


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


class Criterion(enum.StrEnum):
    """What a tuner minimises over a grid (lower is better; a diverged seed is infinitely bad)."""

    FINAL_VAL_LOSS = "final-val-loss"
    BEST_VAL_LOSS = "best-val-loss"  # the minimum over epochs: what early stopping would keep
    EPOCHS_TO_TARGET = "epochs-to-target"


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The tuning protocol's knobs (the defaults are the committed tune report's)."""

    points: int = 17  # stage-1 grid points of the main scale, both ends included
    decades: float = 4.0  # the grid's span, centred on the registry default
    search_seeds: int = 2  # stage-1 seeds per point
    max_extensions: int = 2  # decades a grid may grow on its winning edge
    criterion: Criterion = Criterion.FINAL_VAL_LOSS

    def __post_init__(self):
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
        return self

    def grid(self) -> Sweep:
        """Stage 1's grid: `points` values of each optimizer's main scale around its default."""
        return Sweep(f"main=around:{self.decades:g}:{self.points}", MAIN, around=(self.decades, self.points))

    @property
    def per_decade(self) -> int:
        return max(1, round((self.points - 1) / self.decades))
