"""The initialisation section's plot: validation loss and distinct first-layer units per epoch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from optax_lab.report.formatting import lesson_title, png_name
from optax_lab.report.initialisation import first_width
from optax_lab.report.plotting import corner_notes, draw_seeds, epoch_axis, figure, frame, png_bytes
from optax_lab.report.records import CHANCE_LOSS, LessonRuns, finite, healthy_seeds, history, val_loss

LOSS_CEILING = CHANCE_LOSS + 0.08  # the loss axis' top: runs far above chance would flatten the rest


def initialisation_plots(lessons: Sequence[LessonRuns], results: Mapping) -> dict[str, bytes]:
    ((lesson, runs),) = lessons  # one section per lesson
    return {png_name(lesson, "curves"): plot_initialisation(lesson, runs)}


def plot_initialisation(lesson: Mapping, runs: list[Mapping]) -> bytes:
    """Validation loss and distinct first-layer units per epoch, one line per initialiser."""
    fig = figure(12, 5.4)
    loss_ax, units_ax = fig.subplots(1, 2)
    bounds, epochs = [], 1
    for index, run in enumerate(runs):
        color, healthy = f"C{index % 10}", healthy_seeds(run)
        values = history(run, "val_loss")
        bounds += draw_seeds(loss_ax, values, healthy, color, label=run["name"])
        draw_seeds(units_ax, history(run, "distinct_units"), healthy, color)
        epochs = max(epochs, values.shape[-1] if values.ndim == 2 else 1)
    loss_ax.axhline(CHANCE_LOSS, color="0.5", linestyle=":", linewidth=1)
    frame([loss_ax], bounds, top=LOSS_CEILING)
    corner_notes(loss_ax, _notes_above(runs, loss_ax.get_ylim()[1]), x=0.98, y=0.97, step=0.06, fontsize=7, alpha=0.75)
    width = next((first_width(run) for run in runs if first_width(run)), None) or 32
    units_ax.set_ylim(0, width + 1.5)
    for ax, heading, ylabel in (
        (loss_ax, "Validation loss", "binary cross-entropy"),
        (units_ax, "Distinct first-layer units", f"units (of {width})"),
    ):
        ax.set_title(heading)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        epoch_axis(ax, epochs)
        ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=4, frameon=False, fontsize=8)
    fig.suptitle(f"{lesson_title(lesson)}: validation loss and distinct units per epoch")
    return png_bytes(fig, dpi=100)


def _notes_above(runs: list[Mapping], top: float) -> list[tuple[str, int]]:
    """In words, in the run's colour, what the clipped axis can't show: divergence, a loss above it."""
    notes = []
    for index, run in enumerate(runs):
        loss = val_loss(run).mean
        if run.get("diverged_seeds"):
            seeds = len(run.get("seeds") or ())
            notes.append((f"{run['name']}: {run['diverged_seeds']}/{seeds} seeds diverged", index))
        elif finite(loss) and loss > top:
            notes.append((f"{run['name']}: ends at {loss:.3g} ↑", index))
    return notes
