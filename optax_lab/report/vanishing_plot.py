"""The vanishing-gradients section's plots: each Dense layer's gradient norm per family and
depth, and the loss and first layer's gradient norm per epoch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optax_lab.report.formatting import lesson_title, png_name
from optax_lab.report.plotting import draw_seeds, epoch_axis, figure, frame, png_bytes
from optax_lab.report.records import CHANCE_LOSS, LessonRuns, healthy_seeds, history
from optax_lab.report.vanishing import TINY_NORM, DepthRun, depth_grid, end_norms, init_norms, log10


def vanishing_plots(lessons: Sequence[LessonRuns], results: Mapping) -> dict[str, bytes]:
    ((lesson, runs),) = lessons  # one section per lesson
    grid = depth_grid(runs)
    return {
        png_name(lesson, "grad-norms"): _plot_layer_norms(lesson, grid),
        png_name(lesson, "curves"): _plot_depth_curves(lesson, grid),
    }


def _depth_colors(grid: dict[str, dict[int, DepthRun]]) -> dict[int, Any]:
    """Deeper = darker, the same colour for a depth in every panel."""
    from matplotlib import colormaps

    depths = sorted({d for cells in grid.values() for d in cells})
    return {d: colormaps["viridis"](0.85 - 0.8 * i / max(len(depths) - 1, 1)) for i, d in enumerate(depths)}


def _draw_log(ax, values: np.ndarray, color: Any) -> None:
    """[S, N] values against 1..N: geometric mean over the all-finite rows and their min–max band."""
    rows = values[np.isfinite(values).all(axis=1)] if values.ndim == 2 else np.zeros((0, 0))
    if not rows.size:
        return
    rows = np.maximum(rows, TINY_NORM)  # a zero norm sits at the bottom instead of leaving a log axis
    x = np.arange(1, rows.shape[1] + 1)
    ax.plot(
        x,
        10 ** log10(rows).mean(axis=0),
        "-",
        color=color,
        linewidth=1.3,
        marker="o" if len(x) <= 20 else None,
        markersize=2.5,
    )
    ax.fill_between(x, rows.min(axis=0), rows.max(axis=0), color=color, alpha=0.15, linewidth=0)


def _depth_legend(fig, colors: dict[int, Any], extra: list | None = None) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color, label=f"depth {depth}") for depth, color in colors.items()]
    handles += extra or []
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize=8)


def _plot_layer_norms(lesson: Mapping, grid: dict[str, dict[int, DepthRun]]) -> bytes:
    from matplotlib.ticker import MaxNLocator

    colors = _depth_colors(grid)
    fig = figure(max(3.0 * len(grid), 6.0), 6.4)
    # One log scale for every panel: the families' gradients are compared across them.
    axes = fig.subplots(2, max(len(grid), 1), squeeze=False, sharex=True, sharey=True)
    for column, (family, cells) in enumerate(grid.items()):
        for row_index, norms_of in enumerate((init_norms, end_norms)):
            ax = axes[row_index][column]
            for depth, row in cells.items():
                _draw_log(ax, norms_of(row.run), colors[depth])
            ax.set_yscale("log")
            ax.grid(alpha=0.3, linewidth=0.4)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axes[0][column].set_title(family, fontsize=10)
        axes[1][column].set_xlabel("Dense layer (input → output)", fontsize=8)
    axes[0][0].set_ylabel("at initialisation\ngradient norm (L2)", fontsize=8)
    axes[1][0].set_ylabel("in the last epoch\ngradient norm (L2)", fontsize=8)
    _depth_legend(fig, colors)
    fig.suptitle(f"{lesson_title(lesson)}: gradient norm per layer")
    return png_bytes(fig, dpi=100)


def _plot_depth_curves(lesson: Mapping, grid: dict[str, dict[int, DepthRun]]) -> bytes:
    from matplotlib.lines import Line2D

    colors = _depth_colors(grid)
    fig = figure(max(3.0 * len(grid), 6.0), 6.2)
    # Shared y per row, the gradient row on a log scale: the families are compared across panels.
    axes = fig.subplots(2, max(len(grid), 1), squeeze=False, sharex=True, sharey="row")
    bounds, val_tops, epochs = [], [], 1
    for column, (family, cells) in enumerate(grid.items()):
        loss_ax, grad_ax = axes[0][column], axes[1][column]
        for depth, row in cells.items():
            healthy = healthy_seeds(row.run)
            for key, style in (("val_loss", "-"), ("train_loss", "--")):
                values = history(row.run, key)
                extent = draw_seeds(loss_ax, values, healthy, colors[depth], style)
                bounds += extent
                val_tops += extent[1:] if key == "val_loss" else []
                epochs = max(epochs, values.shape[-1] if values.ndim == 2 else 1)
            norms = history(row.run, "grad_norms")
            if norms.ndim == 3 and norms.size and len(norms) == len(healthy):
                _draw_log(grad_ax, norms[healthy][:, :, 0], colors[depth])
        loss_ax.axhline(CHANCE_LOSS, color="0.5", linestyle=":", linewidth=1)
        loss_ax.set_title(family, fontsize=10)
        grad_ax.set_yscale("log")
        grad_ax.set_xlabel("epoch", fontsize=8)
        for ax in (loss_ax, grad_ax):
            ax.grid(alpha=0.3, linewidth=0.4)
            ax.tick_params(labelsize=7)
            epoch_axis(ax, epochs)
    # Up to a little above the validation losses and chance: the first epoch's training loss
    # (averaged while the net still starts up) may be far above both.
    frame(axes[0], bounds, top=max([*val_tops, CHANCE_LOSS]) + 0.05)
    axes[0][0].set_ylabel("loss (binary cross-entropy)", fontsize=8)
    axes[1][0].set_ylabel("first hidden layer's\ngradient norm (L2)", fontsize=8)
    _depth_legend(
        fig,
        colors,
        [
            Line2D([], [], color="0.3", label="validation"),
            Line2D([], [], color="0.3", linestyle="--", label="training"),
        ],
    )
    fig.suptitle(f"{lesson_title(lesson)}: loss and first-layer gradient per epoch")
    return png_bytes(fig, dpi=100)
