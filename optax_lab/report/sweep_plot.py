"""The sweep section's plots: small multiples of the loss against the swept value, one panel per
optimizer with one swept hyperparameter, and a heatmap of the criterion for an optimizer with two."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from optax_lab.grids import Criterion
from optax_lab.report.formatting import count_text, point_text
from optax_lab.report.plotting import figure, png_bytes
from optax_lab.report.ranking_plot import CHANCE_CEILING
from optax_lab.report.records import LessonRuns, Stat, finite, healthy_history, healthy_seeds
from optax_lab.report.sweep_grids import (
    Grid,
    heatmap_grids,
    heatmap_png,
    sensitivity_pngs,
    sweep_criterion,
    sweep_grids,
)

__all__ = ["clipped_top", "plot_heatmap", "plot_sensitivity", "sweep_plots"]

LOG_SPAN = 10.0  # values spanning at least this factor get a log x-axis
DIVERGED_COLOR = "C3"
CHOSEN_COLOR = "0.25"


def sweep_plots(lessons: Sequence[LessonRuns], results: Mapping) -> dict[str, bytes]:
    ((lesson, runs),) = lessons  # one section per batch mode
    criterion, target = sweep_criterion(lesson, runs)
    grids = sweep_grids(runs, criterion, target)
    pngs = {name: plot_sensitivity(part, criterion) for name, part in sensitivity_pngs(lesson, grids)}
    pngs.update({heatmap_png(lesson, grid): plot_heatmap(grid, criterion, target) for grid in heatmap_grids(grids)})
    return pngs


def clipped_top(values: Sequence[float], low: float, floor: float | None = CHANCE_CEILING) -> float:
    """The top of an axis over `values` that one exploding point does not set: the largest value, at
    most twice the median's distance above `low`, but at least `floor` (for losses: just above
    chance level, so that a point stuck at chance stays in view)."""
    values = np.asarray([v for v in values if finite(v)], np.float64)
    if not values.size:
        return low + 1.0
    cap = low + 2.0 * (float(np.median(values)) - low)
    if floor is not None:
        cap = max(cap, floor)
    return float(min(values.max(), cap)) if cap > low else float(values.max())


def _log_scale(values: Sequence[float]) -> bool:
    positive = [v for v in values if finite(v) and v > 0]
    return len(positive) == len(values) > 1 and max(positive) / min(positive) >= LOG_SPAN


# ---------------------------------------------------------------------------------------------
# Sensitivity: loss against one swept hyperparameter


def _loss_stats(run: Mapping) -> tuple[Stat, Stat]:
    """Final and best validation loss over the healthy seeds: mean and 95% CI."""
    val = healthy_history(run, "val_loss")
    if val.ndim != 2 or not val.size:
        return Stat.of([]), Stat.of([])
    return Stat.of(val[:, -1]), Stat.of(val.min(axis=1))


def plot_sensitivity(grids: list[Grid], criterion: Criterion) -> bytes:
    """One panel per optimizer: final (solid) and best (dashed) val loss against the swept value."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    # One row up to 4 panels, then the squarest grid at most 5 wide (20 panels: 5 x 4).
    ncols = max(1, len(grids) if len(grids) <= 4 else min(5, math.ceil(math.sqrt(len(grids)))))
    nrows = max(1, math.ceil(len(grids) / ncols))
    width = max(3.0 * ncols + 0.4, 7.0)  # one panel still leaves room for the legend
    fig = figure(width, 2.6 * nrows + 1.2)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for index, (ax, grid) in enumerate(zip(axes, grids, strict=False)):
        _sensitivity_panel(ax, grid, criterion)
        if index % ncols == 0:
            ax.set_ylabel("validation loss", fontsize=7.5)
    for ax in axes[len(grids) :]:
        ax.remove()
    handles = [
        Line2D([], [], color="C0", marker="o", markersize=3, label="final val loss"),
        Line2D([], [], color="C1", linestyle="--", marker="o", markersize=3, label="best val loss"),
        Patch(color="0.3", alpha=0.2, label="95% CI over seeds"),
        Line2D([], [], color=CHOSEN_COLOR, marker="*", markersize=9, linestyle=":", label="chosen point"),
        Line2D([], [], color=DIVERGED_COLOR, marker="x", linestyle="", label="a seed diverged"),
        Line2D([], [], color="0.3", marker="^", linestyle="", label="above the axis"),
    ]
    fig.legend(
        handles=handles,
        loc="outside upper center",
        frameon=False,
        fontsize=8,
        ncols=6 if width >= 9 else 3,
        title="Validation loss against the swept value",
        title_fontsize=10,
    )
    return png_bytes(fig, dpi=100)


def _sensitivity_panel(ax, grid: Grid, criterion: Criterion) -> None:
    (name,) = grid.values
    order = sorted(range(len(grid.runs)), key=lambda i: (grid.runs[i].get("point") or {}).get(name, math.inf))
    runs = [grid.runs[i] for i in order]
    x = np.array([(run.get("point") or {}).get(name, math.nan) for run in runs], np.float64)
    curves = list(zip(*(_loss_stats(run) for run in runs), strict=False))  # (final stats, best stats)
    # Framed by the means, not the bands: with a few seeds one point's CI (t = 12.7 at 2 seeds) would
    # set the scale; a band may leave the frame.
    means = [stat.mean for stats in curves for stat in stats if finite(stat.mean)]
    low = min(means, default=0.0)
    top = clipped_top(means, low)
    pad = (top - low) * 0.12 or 0.05
    ax.set_ylim(low - pad, top + pad)
    for stats, color, style in zip(curves, ("C0", "C1"), ("-", "--"), strict=False):
        mean = np.array([s.mean for s in stats])
        ci = np.array([s.ci if finite(s.ci) else math.nan for s in stats])
        ax.plot(x, mean, style, color=color, marker="o", markersize=3, linewidth=1.3)
        ax.fill_between(x, mean - ci, mean + ci, color=color, alpha=0.18, linewidth=0)
        above = np.isfinite(mean) & (mean > top + pad)
        if above.any():  # in axes coordinates: at the top, whatever the limits
            ax.plot(
                x[above], np.full(above.sum(), 0.93), "^", color=color, markersize=5, transform=ax.get_xaxis_transform()
            )
    diverged = np.array([not healthy_seeds(run).all() for run in runs], bool)
    if diverged.any():
        ax.plot(
            x[diverged],
            np.full(diverged.sum(), 0.97),
            "x",
            color=DIVERGED_COLOR,
            markersize=6,
            markeredgewidth=1.5,
            transform=ax.get_xaxis_transform(),
        )
    if grid.best_run is not None:
        chosen = runs.index(grid.best_run)
        ax.axvline(x[chosen], color=CHOSEN_COLOR, linestyle=":", linewidth=1)
        stat = curves[1 if criterion is Criterion.BEST_VAL_LOSS else 0][chosen]
        ax.plot([x[chosen]], [min(stat.mean, top + pad)], "*", color=CHOSEN_COLOR, markersize=11, zorder=5)
    if _log_scale(list(x)):
        ax.set_xscale("log")
    diverged_note = f", {diverged.sum()}/{len(runs)} diverged" if diverged.any() else ""
    best = f"best {point_text(grid.best_run.get('point') or {})}" if grid.best_run is not None else "no best point"
    ax.set_title(f"{grid.optimizer}{diverged_note}\n{best}", fontsize=8, pad=3)
    ax.set_xlabel(name, fontsize=7.5)
    ax.tick_params(labelsize=6.5, length=2, pad=1)
    ax.grid(alpha=0.3, linewidth=0.5)


# ---------------------------------------------------------------------------------------------
# Heatmap: the criterion over two swept hyperparameters


def _value_text(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _cell_text(value: float, diverged: bool, criterion: Criterion) -> str:
    if diverged:
        return "×"
    if not finite(value):
        return "—"  # epochs to target: some seed never got there
    return count_text(value) if criterion is Criterion.EPOCHS_TO_TARGET else f"{value:.4f}"


def plot_heatmap(grid: Grid, criterion: Criterion, target: float) -> bytes:
    """The criterion's mean over seeds per point, columns the first swept hyperparameter, rows the
    second; diverged cells grey with ×, the chosen cell outlined."""
    import matplotlib
    from matplotlib.patches import Rectangle

    (x_name, x_values), (y_name, y_values) = grid.values.items()
    values = np.full((len(y_values), len(x_values)), np.nan)
    diverged = np.zeros(values.shape, bool)
    chosen = None
    for index, (run, (criterion_mean, _)) in enumerate(zip(grid.runs, grid.scores, strict=False)):
        point = run.get("point") or {}
        if x_name not in point or y_name not in point:
            continue
        cell = (y_values.index(point[y_name]), x_values.index(point[x_name]))
        values[cell] = criterion_mean if finite(criterion_mean) else np.nan
        diverged[cell] = not healthy_seeds(run).all()
        chosen = cell if index == grid.best else chosen
    finite_values = values[np.isfinite(values)]
    low = float(finite_values.min()) if finite_values.size else 0.0
    floor = None if criterion is Criterion.EPOCHS_TO_TARGET else CHANCE_CEILING
    high = clipped_top(list(finite_values), low, floor)
    fig = figure(max(4.8, 1.0 * len(x_values) + 2.8), max(3.4, 0.6 * len(y_values) + 2.0))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis_r"].with_extremes(bad="0.85")
    image = ax.imshow(
        np.ma.masked_invalid(values), cmap=cmap, vmin=low, vmax=max(high, low + 1e-9), origin="lower", aspect="auto"
    )
    for (row, column), value in np.ndenumerate(values):
        dark = finite(value) and (value - low) / ((high - low) or 1) > 0.6  # the colormap's dark end
        text = _cell_text(value, diverged[row, column], criterion)
        ax.text(
            column,
            row,
            text,
            ha="center",
            va="center",
            fontsize=8 if len(text) > 1 else 13,
            color="white" if dark else "black",
        )
    if chosen is not None:
        ax.add_patch(Rectangle((chosen[1] - 0.5, chosen[0] - 0.5), 1, 1, fill=False, edgecolor="C3", linewidth=2.5))
    ax.set_xticks(range(len(x_values)), [_value_text(v) for v in x_values], fontsize=8)
    ax.set_yticks(range(len(y_values)), [_value_text(v) for v in y_values], fontsize=8)
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    label = {
        Criterion.FINAL_VAL_LOSS: "final val loss",
        Criterion.BEST_VAL_LOSS: "best val loss",
        Criterion.EPOCHS_TO_TARGET: f"epochs to {target:g}",
    }[criterion]
    fig.colorbar(image, ax=ax, label=f"{label}, mean over seeds (lower is better)")
    best = point_text(grid.best_run.get("point") or {}) if grid.best_run is not None else "none"
    ax.set_title(f"{grid.optimizer}: {label}; chosen (outlined): {best}", fontsize=9)
    return png_bytes(fig, dpi=100)
