"""The optimizer ranking's plot: small multiples of the validation loss per epoch, one panel per
optimizer in ranking order, one line per batch mode; ~55 panels stay legible on one page."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from optax_lab.report.plotting import BAND, corner_notes, draw_seeds, epoch_axis, figure, png_bytes
from optax_lab.report.ranking import Mode, batch_modes, mode_prose, ranking_rows, target_value
from optax_lab.report.records import LessonRuns, finite, seed_matrix
from optax_lab.report.workloads import curves_png, trajectory_plots, workload_of

CHANCE_CEILING = 0.75  # the y-axis top: a bit above ln 2, the loss of always guessing 0.5


def ranking_plots(lessons: Sequence[LessonRuns], results: Mapping) -> dict[str, bytes]:
    """One PNG for all the ranking's lessons (its batch modes)."""
    binary = "acc" in results["workloads"][workload_of(lessons)]["metrics"]  # a binary classifier measures accuracy
    return {
        curves_png(lessons): plot_ranking_curves(batch_modes(lessons), target_value(lessons), binary),
        **trajectory_plots(lessons, results),
    }


def plot_ranking_curves(modes: list[Mode], target: float | None, binary: bool = True) -> bytes:
    """Validation loss per epoch, one panel per optimizer in ranking order, one line per batch
    mode, the target dashed. A binary classifier's axis is clipped a bit above chance level; any
    other loss (the test functions') is drawn whole, on a log axis when it stays positive."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = ranking_rows(modes)
    ncols = max(1, min(8, math.ceil(math.sqrt(len(rows)))))
    nrows = max(1, math.ceil(len(rows) / ncols))
    width = max(1.9 * ncols + 0.4, 6.5)  # a few panels still leave room for the legend
    fig = figure(width, max(1.5 * nrows + 1.0, 3.0))
    # Not sharex/sharey: with ~55 shared axes every limit lookup walks all of them (seconds
    # per plot); the same limits are set on each panel below instead.
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    bounds, epochs = [], 1
    for rank, (ax, (optimizer, runs)) in enumerate(zip(axes, rows, strict=False), 1):
        for index, run in enumerate(runs):
            values = seed_matrix((run or {}).get("history", {}).get("val_loss"))
            if values.size:
                bounds += draw_seeds(ax, values, None, f"C{index % 10}", linewidth=1.1, markersize=2)
                epochs = max(epochs, values.shape[1])
        if target is not None:
            ax.axhline(target, color="0.35", linestyle="--", linewidth=0.8)
        ax.set_title(f"{rank}. {optimizer}", fontsize=7.5, pad=2)
        ax.tick_params(labelsize=6, length=2, pad=1)
        ax.grid(alpha=0.3, linewidth=0.5)
    low, high = _ranking_ylim(bounds, target) if binary else _whole_ylim(bounds)
    for index, (ax, (_, runs)) in enumerate(zip(axes, rows, strict=False)):
        epoch_axis(ax, epochs, nbins=4)
        if not binary and low > 0:
            ax.set_yscale("log")
            ax.tick_params(axis="y", which="both", labelsize=6)
        ax.set_ylim(low, high)
        # tick labels on the outer panels only: the left column, and the lowest panel of each column
        ax.tick_params(labelleft=index % ncols == 0, labelbottom=index + ncols >= len(rows))
        corner_notes(ax, _panel_notes(modes, runs, high), x=0.97, y=0.95, step=0.13, fontsize=6, alpha=0.7)
    for ax in axes[len(rows) :]:
        ax.remove()
    fig.supxlabel("epoch", fontsize=8)
    fig.supylabel("validation loss (binary cross-entropy)" if binary else "validation loss", fontsize=8)
    handles = [Line2D([], [], color=f"C{i % 10}", label=mode_prose(label)) for i, (label, _) in enumerate(modes)]
    handles += [
        Patch(color="0.3", alpha=0.2, label=BAND),
        Line2D([], [], color="0.3", linestyle=":", label="every seed diverged"),
    ]
    if target is not None:
        handles.append(Line2D([], [], color="0.35", linestyle="--", label=f"target {target:g}"))
    # The legend's title is the figure's: a suptitle and an outside legend overlap in constrained
    # layout, and at the bottom the legend would collide with the shared "epoch" label.
    fig.legend(
        handles=handles,
        loc="outside upper center",
        frameon=False,
        fontsize=8,
        ncols=len(handles) if width >= 9 else math.ceil(len(handles) / 2),
        title="Validation loss per epoch, optimizers in ranking order",
        title_fontsize=10,
    )
    return png_bytes(fig, dpi=100)


def _panel_notes(modes: list[Mode], runs: list[Mapping | None], top: float) -> list[tuple[str, int]]:
    """In words, in the mode's color, what the panel can't show: divergences, and a final loss
    above the clipped y-axis."""
    notes = []
    for index, ((label, _), run) in enumerate(zip(modes, runs, strict=False)):
        if not run:
            continue
        loss = run["final"].get("val_loss_mean")
        if run.get("diverged_seeds"):
            notes.append((f"{label}: {run['diverged_seeds']}/{len(run.get('seeds') or ())} diverged", index))
        elif finite(loss) and loss > top:
            notes.append((f"{label}: ends at {loss:.3g} ↑", index))
    return notes


def _whole_ylim(bounds: list[float]) -> tuple[float, float]:
    """Every kept value: a margin of 10 % of the range, or a factor 1.3 on a positive (log) axis."""
    if not bounds:
        return (0.0, 1.0)
    low, high = min(bounds), max(bounds)
    if low > 0:
        return (low / 1.3, high * 1.3)
    pad = (high - low) * 0.1 or 0.05
    return (low - pad, high + pad)


def _ranking_ylim(bounds: list[float], target: float | None) -> tuple[float, float]:
    """From the lowest kept value up to a bit above chance level (ln 2 ~ 0.69 for a balanced binary
    task), so that a few runs stuck far above it don't squash the others into a line."""
    if not bounds:
        return (0.0, 1.0)
    low, high = min(bounds), max(bounds)
    ceiling = max(CHANCE_CEILING, (target or 0) * 1.15)
    if low < ceiling:
        high = min(high, ceiling)
    pad = (high - low) * 0.04 or 0.05
    return (low - pad, high + pad)
