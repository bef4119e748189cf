"""The overfitting section's plots: the train/val gap per epoch, and one panel per run with its
training and validation loss."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from optax_lab.report.formatting import lesson_title, png_name
from optax_lab.report.overfitting import fit, train_curve
from optax_lab.report.plotting import draw_seeds, epoch_axis, figure, frame, png_bytes
from optax_lab.report.records import LessonRuns, healthy_seeds, history


def overfitting_plots(lessons: Sequence[LessonRuns], results: Mapping) -> dict[str, bytes]:
    ((lesson, runs),) = lessons  # one section per lesson
    return {png_name(lesson, "gap"): _plot_gaps(lesson, runs), png_name(lesson, "curves"): _plot_fits(lesson, runs)}


def _plot_gaps(lesson: Mapping, runs: list[Mapping]) -> bytes:
    fig = figure(9, 4.8)
    ax = fig.subplots()
    epochs = 1
    for index, run in enumerate(runs):
        val, train = history(run, "val_loss"), history(run, "train_eval_loss")  # the gap: dropout off only
        if val.shape == train.shape and val.ndim == 2:
            draw_seeds(ax, val - train, healthy_seeds(run), f"C{index % 10}", label=run["name"])
            epochs = max(epochs, val.shape[1])
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation − training loss")
    epoch_axis(ax, epochs)
    ax.grid(alpha=0.3)
    ax.set_title(f"{lesson_title(lesson)}: train/val gap per epoch")
    fig.legend(loc="outside right upper", frameon=False, fontsize=8)
    return png_bytes(fig, dpi=100)


def _plot_fits(lesson: Mapping, runs: list[Mapping]) -> bytes:
    from matplotlib.lines import Line2D

    columns = min(3, max(len(runs), 1))
    rows = max(1, math.ceil(len(runs) / columns))
    fig = figure(3.3 * columns + 0.6, 2.7 * rows + 1.0)
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    flat = [ax for row in axes for ax in row]
    bounds, epochs = [], 1
    for index, (ax, run) in enumerate(zip(flat, runs, strict=False)):
        color, healthy = f"C{index % 10}", healthy_seeds(run)
        val, train = history(run, "val_loss"), train_curve(run)
        for values, style in ((val, "-"), (train, "--")):
            bounds += draw_seeds(ax, values, healthy, color, style)
        if val.shape == train.shape and val.ndim == 2 and len(val) == len(healthy) and healthy.any():
            kept_val, kept_train = val[healthy], train[healthy]
            if np.isfinite(kept_val).all() and np.isfinite(kept_train).all():
                steps = np.arange(1, val.shape[1] + 1)
                ax.fill_between(
                    steps, kept_train.mean(axis=0), kept_val.mean(axis=0), color=color, alpha=0.07, linewidth=0
                )
            epochs = max(epochs, val.shape[1])
        best = fit(run).best_epoch
        if best.size:
            ax.axvline(best.mean(), color="0.35", linestyle=":", linewidth=1)
        ax.set_title(run["name"], fontsize=9)
        ax.grid(alpha=0.3, linewidth=0.4)
        ax.tick_params(labelsize=7)
    for ax in flat[len(runs) :]:
        ax.remove()
    frame(flat[:1], bounds)  # shared y: one call frames them all
    for index, ax in enumerate(flat[: len(runs)]):
        epoch_axis(ax, epochs)
        if index + columns >= len(runs):  # the lowest panel of each column
            ax.set_xlabel("epoch", fontsize=8)
        if index % columns == 0:
            ax.set_ylabel("binary cross-entropy", fontsize=8)
    handles = [
        Line2D([], [], color="0.3", label="validation"),
        Line2D([], [], color="0.3", linestyle="--", label="training (whole set, dropout off)"),
        Line2D([], [], color="0.35", linestyle=":", label="mean best epoch"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False, fontsize=8)
    fig.suptitle(f"{lesson_title(lesson)}: training vs validation loss")
    return png_bytes(fig, dpi=100)
