"""Numbers from the run records of a results dict (results.json): the lessons' runs, per-seed
histories as arrays, statistics over seeds, and chance level.

Statistics are over seeds: the mean and the half-width of its 95% CI (Student t, `stats.ci95`),
leaving out the seeds that diverged, as the run's own `final` summary does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from optax_lab.schema import diverged_seeds
from optax_lab.stats import ci95

CHANCE_LOSS = math.log(2)  # the loss of always predicting 50 %: the best constant guess on balanced labels
CHANCE_TOLERANCE = 0.005  # a final val loss this close to ln 2 counts as "at chance": nothing learned


class LessonRuns(NamedTuple):
    """A lesson of the results and its run records, in the lesson's order."""

    lesson: Mapping
    runs: list[Mapping]


def runs_by_name(results: Mapping) -> dict[str, Mapping]:
    return {run["name"]: run for run in results["runs"]}


def lesson_runs(results: Mapping) -> list[LessonRuns]:
    """Every lesson with its runs, in the results' order (check_results vouches for the names)."""
    runs = runs_by_name(results)
    return [LessonRuns(lesson, [runs[name] for name in lesson["runs"]]) for lesson in results["lessons"]]


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Stat(NamedTuple):
    """Mean and 95% CI half-width over the seeds with a finite value (ci NaN below 2 seeds)."""

    mean: float
    ci: float
    n: int

    @classmethod
    def of(cls, values: Any) -> Stat:
        values = np.asarray(values, np.float64).ravel()
        values = values[np.isfinite(values)]
        if not values.size:
            return NO_STAT
        return cls(float(values.mean()), ci95(values), int(values.size))

    @property
    def has_ci(self) -> bool:
        return finite(self.mean) and finite(self.ci)

    def clears(self, other: Stat) -> bool:
        """Whether the two 95% CIs do not overlap (False when either has none)."""
        return self.has_ci and other.has_ci and abs(self.mean - other.mean) > self.ci + other.ci


NO_STAT = Stat(math.nan, math.nan, 0)


def final_stat(run: Mapping, key: str) -> Stat:
    """The run's own summary (`final`) of `key`: `<key>_mean` ± `<key>_ci95`."""
    final = run.get("final") or {}
    mean, ci = final.get(f"{key}_mean"), final.get(f"{key}_ci95")
    return Stat(mean if finite(mean) else math.nan, ci if finite(ci) else math.nan, len(run.get("seeds") or ()))


def val_loss(run: Mapping) -> Stat:
    return final_stat(run, "val_loss")


def seed_count(runs: list[Mapping]) -> int:
    return max((len(run.get("seeds") or ()) for run in runs), default=0)


# ---------------------------------------------------------------------------------------------
# Histories: [seeds, epochs, ...] per key, None in the file for NaN


def _nan_for_none(rows: Any) -> Any:
    if isinstance(rows, (list, tuple)):
        return [_nan_for_none(row) for row in rows]
    return math.nan if rows is None else rows


def history(run: Mapping, key: str) -> np.ndarray:
    """A history entry as a float array ([seeds, epochs] or [seeds, epochs, layers] ...), NaN for
    None; empty (shape (0,)) when the run did not record it or its rows are ragged."""
    rows = (run.get("history") or {}).get(key)
    if not rows:
        return np.zeros(0)
    try:
        return np.asarray(_nan_for_none(rows), np.float64)
    except ValueError:  # ragged: not something this engine writes
        return np.zeros(0)


def seed_matrix(rows: Any) -> np.ndarray:
    """History rows (seeds x epochs, None for NaN, maybe ragged) -> a float array padded with NaN,
    so that the loss and accuracy curves still show what a ragged file holds."""
    rows = [[np.nan if v is None else v for v in row] for row in (rows or [])]
    epochs = max((len(row) for row in rows), default=0)
    matrix = np.full((len(rows), epochs), np.nan)
    for i, row in enumerate(rows):
        matrix[i, : len(row)] = row
    return matrix


def healthy_seeds(run: Mapping) -> np.ndarray:
    """[S] bool: the seeds that did not diverge (schema's rule). All of them when the loss curves
    don't have one row per seed: a hand-made or damaged file, drawn as it is rather than refused."""
    try:
        diverged = diverged_seeds(run.get("history") or {})
    except (TypeError, ValueError):  # rows that aren't lists, or curves that disagree on the seeds
        diverged = np.zeros(0, bool)
    seeds = len(run.get("seeds") or ()) or len(diverged)
    return ~diverged if len(diverged) == seeds else np.ones(seeds, bool)


def healthy_history(run: Mapping, key: str) -> np.ndarray:
    """`history(run, key)` of the healthy seeds only; empty if it wasn't recorded."""
    values, healthy = history(run, key), healthy_seeds(run)
    if values.ndim < 2 or len(values) != len(healthy):
        return np.zeros((0, 0))
    return values[healthy]


# ---------------------------------------------------------------------------------------------
# Chance level


def at_chance(loss: float) -> bool:
    return finite(loss) and abs(loss - CHANCE_LOSS) <= CHANCE_TOLERANCE


def above_chance(loss: float) -> bool:
    """Worse than always guessing 50 %."""
    return finite(loss) and loss > CHANCE_LOSS + CHANCE_TOLERANCE


def below_chance(loss: float) -> bool:
    """Better than always guessing 50 %: something was learned."""
    return finite(loss) and loss < CHANCE_LOSS - CHANCE_TOLERANCE
