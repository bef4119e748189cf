"""A sweep's points per optimizer, as the sweep section and its plots read them: each optimizer's
`Grid` (its points, their swept values, their scores, and the point the lesson's criterion chose
with the tuner's own rules, `selection`), and which plots each grid gets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from optax_lab.grids import Criterion
from optax_lab.report.formatting import png_name
from optax_lab.report.ranking import target_value
from optax_lab.report.records import LessonRuns, finite, healthy_seeds
from optax_lab.selection import best_index, on_edge, score

__all__ = ["MAX_PANELS", "Grid", "heatmap_grids", "heatmap_png", "sensitivity_pngs", "sweep_criterion", "sweep_grids"]

MAX_PANELS = 20  # sensitivity panels per PNG: more would shrink each below legibility


class Grid(NamedTuple):
    """One optimizer's points in a sweep lesson and the one the criterion chose."""

    optimizer: str
    runs: list[Mapping]  # in the lesson's order
    values: dict[str, list[Any]]  # each swept hyperparameter -> its distinct values, ascending
    scores: list[tuple[float, float]]  # per run: selection.score (criterion mean, final val loss mean)
    best: int | None  # index into runs; None: every point diverged (or, for epochs to target, missed)

    @property
    def best_run(self) -> Mapping | None:
        return None if self.best is None else self.runs[self.best]

    def edges(self) -> dict[str, str]:
        """Each swept hyperparameter whose chosen value is its grid's lowest or highest -> 'low'/'high'."""
        if self.best_run is None:
            return {}
        point = self.best_run.get("point") or {}
        sides = {
            name: on_edge(values.index(point[name]), len(values))
            for name, values in self.values.items()
            if name in point
        }
        return {name: side for name, side in sides.items() if side}

    def diverged_points(self) -> int:
        return sum(1 for run in self.runs if not healthy_seeds(run).all())

    def is_product(self) -> bool:
        """Whether its points are every combination of its swept values (a grid, not sampled points)."""
        return len(self.runs) == math.prod(len(values) for values in self.values.values())


def sweep_criterion(lesson: Mapping, runs: list[Mapping]) -> tuple[Criterion, float]:
    """The lesson's criterion and target loss (the lesson's target when it has no target_val_loss)."""
    criterion = Criterion(lesson["criterion"])
    target = lesson.get("target_val_loss")
    if not finite(target):
        target = target_value([LessonRuns(lesson, runs)])
    return criterion, target if finite(target) else math.nan  # NaN: no loss reaches it


def sweep_grids(runs: list[Mapping], criterion: Criterion, target: float) -> list[Grid]:
    """One Grid per optimizer, in the order the lesson first names them."""
    per_optimizer: dict[str, list[Mapping]] = {}
    for run in runs:
        per_optimizer.setdefault(run["optimizer"], []).append(run)
    grids = []
    for optimizer, points in per_optimizer.items():
        names = list(dict.fromkeys(name for run in points for name in run.get("point") or {}))
        values = {name: sorted({(run.get("point") or {}).get(name) for run in points} - {None}) for name in names}
        histories = [run["history"] for run in points]
        grids.append(
            Grid(
                optimizer,
                points,
                values,
                [score(h, criterion, target) for h in histories],
                best_index(histories, criterion, target),
            )
        )
    return grids


def sensitivity_pngs(lesson: Mapping, grids: list[Grid]) -> list[tuple[str, list[Grid]]]:
    """(PNG name, its grids) for the optimizers with one swept hyperparameter, at most MAX_PANELS a PNG."""
    swept = [grid for grid in grids if len(grid.values) == 1]
    parts = [swept[i : i + MAX_PANELS] for i in range(0, len(swept), MAX_PANELS)]
    return [
        (png_name(lesson, "sensitivity" if index == 0 else f"sensitivity-{index + 1}"), part)
        for index, part in enumerate(parts)
    ]


def heatmap_png(lesson: Mapping, grid: Grid) -> str:
    return png_name(lesson, f"{grid.optimizer}-heatmap")


def heatmap_grids(grids: list[Grid]) -> list[Grid]:
    """The optimizers whose points form a grid of two hyperparameters: a heatmap each."""
    return [grid for grid in grids if len(grid.values) == 2 and grid.is_product()]
