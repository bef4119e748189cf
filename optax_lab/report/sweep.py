"""A hyperparameter sweep (lessons of kind "sweep", one per batch mode): every optimizer at every
point of its grid (or a tune's sampled trials), its best point chosen by the lesson's criterion with
the tuner's own rules (`sweep_grids`), a table of the best points, best first, and how the loss
responds to the swept values. Its plots are in `sweep_plot`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from optax_lab.grids import Criterion
from optax_lab.report.formatting import DASH, count_text, mean_ci, names_text, point_text, section_head, table_row
from optax_lab.report.records import LessonRuns, final_stat
from optax_lab.report.sweep_grids import (
    Grid,
    heatmap_grids,
    heatmap_png,
    sensitivity_pngs,
    sweep_criterion,
    sweep_grids,
)
from optax_lab.report.sweep_search import sampled_search, search_sentence
from optax_lab.selection import criterion_text

__all__ = ["sweep_section"]


def _ranked(grids: list[Grid]) -> list[Grid]:
    """Best first by the chosen point's score; optimizers without one last."""
    return sorted(grids, key=lambda grid: grid.scores[grid.best] if grid.best is not None else (math.inf, math.inf))


# ---------------------------------------------------------------------------------------------
# The section


def sweep_section(lessons: Sequence[LessonRuns], results: Mapping) -> list[str]:
    ((lesson, runs),) = lessons  # one section per batch mode
    criterion, target = sweep_criterion(lesson, runs)
    grids = sweep_grids(runs, criterion, target)
    sampled = sampled_search(lesson, results) is not None
    lines = section_head(lesson, runs)
    stage = f" (stage {lesson['stage']} of the tuner)" if lesson.get("stage") else ""
    missed = ", nor one where a seed never reaches the target" if criterion is Criterion.EPOCHS_TO_TARGET else ""
    lines += [
        (
            f"Each optimizer's best point{stage} is the one that minimises {criterion_text(criterion, target)}. "
            f"A point where any seed diverged counts as infinitely bad: it is never chosen{missed}."
        ),
        "",
        *_best_table(lesson, grids, criterion, target, sampled),
        "",
    ]
    batch = "full" if runs and runs[0].get("full_batch") else str(runs[0].get("batch_size")) if runs else ""
    notes = [
        search_sentence(lesson, results, batch),
        _edge_sentence(lesson, grids, sampled),
        _extension_sentence(lesson),
        _unswept_sentence(grids),
        _timing_sentence(runs),
    ]
    lines += [" ".join(note for note in notes if note), ""]
    for name, part in sensitivity_pngs(lesson, grids):
        lines += [
            (
                f"![Final and best validation loss against {names_text(sorted({*part[0].values}))} "
                f"for {names_text([grid.optimizer for grid in part])}]({name})"
            ),
            "",
        ]
    if sensitivity_pngs(lesson, grids):
        lines += [_sensitivity_caption(criterion), ""]
    for grid in heatmap_grids(grids):
        first, second = grid.values
        lines += [
            f"![{grid.optimizer}: the criterion over {first} × {second}]({heatmap_png(lesson, grid)})",
            "",
            _heatmap_caption(grid, criterion, target),
            "",
        ]
    many = [grid for grid in grids if len(grid.values) >= 3 or (len(grid.values) == 2 and not grid.is_product())]
    if many:
        listed = names_text([f"{grid.optimizer} ({len(grid.values)} swept hyperparameters)" for grid in many])
        why = (
            "sampled points of several dimensions form no grid to draw"
            if sampled
            else ("a grid of three or more dimensions does not fit one picture")
        )
        lines += [f"{listed}: no plot, since {why}; the table above gives the best point.", ""]
    return lines[:-1]


def _best_table(lesson: Mapping, grids: list[Grid], criterion: Criterion, target: float, sampled: bool) -> list[str]:
    def head(text: str, chosen_by: Criterion) -> str:
        return text + (" (criterion)" if criterion is chosen_by else "")

    heads = [
        "#",
        "Optimizer",
        "Best point",
        head("Final val loss ± 95% CI", Criterion.FINAL_VAL_LOSS),
        head("Best val loss ± 95% CI", Criterion.BEST_VAL_LOSS),
    ]
    epochs = criterion is Criterion.EPOCHS_TO_TARGET
    if epochs:  # the other criteria are a column already
        heads.append(f"Epochs to {target:g} (criterion)")
    heads += [
        "Points",
        "Points with a diverged seed",
        "Best at a sampled extreme" if sampled else "Best on the grid's edge",
    ]
    lines = [table_row(heads), "|---:|---|---|---:|---:|" + "---:|" * epochs + "---:|---:|---|"]
    for rank, grid in enumerate(_ranked(grids), 1):
        run = grid.best_run
        if run is None:
            cells = [rank, grid.optimizer, "none: every point diverged" + (" or missed" if epochs else ""), DASH, DASH]
            cells += [DASH] * epochs
        else:
            cells = [
                rank,
                grid.optimizer,
                point_text(run.get("point") or {}),
                mean_ci(final_stat(run, "val_loss")),
                mean_ci(final_stat(run, "best_val_loss")),
            ]
            cells += [count_text(grid.scores[grid.best][0])] * epochs
        cells += [len(grid.runs), grid.diverged_points(), _edge_cell(lesson, grid)]
        lines.append(table_row(cells))
    return lines


def _side_text(grid: Grid, name: str, side: str) -> str:
    return f"{name} {side}" if len(grid.values) > 1 else side


def _extensions(lesson: Mapping, optimizer: str) -> str:
    """`low ×1, high ×2`: how often the tuner extended this optimizer's grid, per side."""
    sides = list((lesson.get("extended") or {}).get(optimizer) or ())
    return ", ".join(f"{side} ×{sides.count(side)}" for side in dict.fromkeys(sides))


def _edge_cell(lesson: Mapping, grid: Grid) -> str:
    """`**high**`, with the tuner's extensions and whether its limit left the point on the edge."""
    edges = [f"**{_side_text(grid, name, side)}**" for name, side in grid.edges().items()]
    text = ", ".join(edges) or "no"
    notes = [f"extended {extended}" for extended in [_extensions(lesson, grid.optimizer)] if extended]
    if grid.optimizer in (lesson.get("limit_reached") or ()):
        notes.append("still on the edge at the extension limit")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _edge_sentence(lesson: Mapping, grids: list[Grid], sampled: bool = False) -> str:
    edged = [
        f"{grid.optimizer} ({', '.join(_side_text(grid, n, s) for n, s in grid.edges().items())})"
        for grid in grids
        if grid.edges()
    ]
    if not edged:
        inside = "among its sampled values" if sampled else "inside its grid"
        return f"Every best point lies {inside}." if any(grid.values for grid in grids) else ""
    if sampled:
        return (
            f"At the lowest or highest value sampled: {names_text(edged)}. The best value there may lie beyond "
            f"the search space: widen it on that side (--space) before trusting the point."
        )
    return (
        f"On the grid's edge: {names_text(edged)}. The best value there may lie beyond the grid: "
        f"extend it on that side before trusting the point."
    )


def _extension_sentence(lesson: Mapping) -> str:
    extended = [
        f"{optimizer} ({_extensions(lesson, optimizer)})"
        for optimizer, sides in (lesson.get("extended") or {}).items()
        if sides
    ]
    limited = list(lesson.get("limit_reached") or ())
    text = (
        f"The tuner extended the grid by a decade per step, where the best point was on its edge: "
        f"{names_text(extended)}."
        if extended
        else ""
    )
    if limited:
        text += (
            f" Still on the edge after the extension limit: {names_text(limited)}; their best point is the "
            f"grid's last, not a minimum."
        )
    return text.strip()


def _unswept_sentence(grids: list[Grid]) -> str:
    unswept = [grid.optimizer for grid in grids if not grid.values]
    if not unswept:
        return ""
    return f"Nothing was swept for {names_text(unswept)} (no swept hyperparameter applies): one point, its defaults."


def _timing_sentence(runs: list[Mapping]) -> str:
    """Points, compiled programs and seconds: a program's compile seconds are on its first run only."""
    timings = [run.get("timing") or {} for run in runs]
    programs = {timing.get("program") for timing in timings} - {None}
    compile_s = sum(timing.get("compile_s") or 0.0 for timing in timings)
    run_s = sum(timing.get("run_s") or 0.0 for timing in timings)
    if not programs:
        return ""
    return (
        f"{len(runs)} points in {len(programs)} compiled program{'s' if len(programs) > 1 else ''}: "
        f"{compile_s:.1f} s compiling, {run_s:.1f} s running."
    )


def _sensitivity_caption(criterion: Criterion) -> str:
    chosen = {Criterion.FINAL_VAL_LOSS: "final", Criterion.BEST_VAL_LOSS: "best"}.get(criterion, "final")
    return (
        f"*Solid: the final validation loss; dashed: the best over the epochs; each the mean over the seeds "
        f"that did not diverge, the band its 95% CI (Student t). ★ on the {chosen} curve and the dotted line: "
        f"the chosen point. × at the top: a point where some seed diverged (its line, if any, is the other "
        f"seeds' mean); ▲: a mean above the y-axis, which is clipped to the finite values' lower part (up to "
        f"twice their median's distance from the minimum, at least to just above chance level, ln 2), so that "
        f"one exploding point does not flatten the others. The x-axis is logarithmic where the values are "
        f"positive and span a factor of 10 or more.*"
    )


def _heatmap_caption(grid: Grid, criterion: Criterion, target: float) -> str:
    missed = f"; —: some seed never reaches {target:g}" if criterion is Criterion.EPOCHS_TO_TARGET else ""
    return (
        f"*{grid.optimizer}: {criterion_text(criterion, target)}, at each point of the grid. ×: some seed "
        f"diverged{missed}; the outlined cell is the chosen point. Colours run from the lowest value to the "
        f"finite values' lower part; a cell beyond it takes the top colour and keeps its number.*"
    )
