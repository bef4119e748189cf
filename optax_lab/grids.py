"""A hyperparameter grid as data: a `--sweep` (`Sweep`), the spacing of a tuner's grid around a
default (`around_value`), and what a tuner minimises over one (`Criterion`). Plain records that
import nothing of ours: the user's options, the planners and the report all read them.
"""

from __future__ import annotations

import dataclasses
import enum
import math

__all__ = ["MAIN", "Criterion", "Sweep", "around_value"]

MAIN = "main"  # the hyperparameter name that stands for each optimizer's main scale


class Criterion(enum.StrEnum):
    """What a tuner minimises over a grid (lower is better; a diverged seed is infinitely bad)."""

    FINAL_VAL_LOSS = "final-val-loss"
    BEST_VAL_LOSS = "best-val-loss"  # the minimum over epochs: what early stopping would keep
    EPOCHS_TO_TARGET = "epochs-to-target"


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
            raise ValueError(  # the planner says it in one line, naming the optimizer
                f"around: needs a positive default, and "
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
