"""What the sections' plots share: a figure, per-seed curves drawn as a mean and a band, common
axes, and the PNG bytes.

matplotlib's object API, not pyplot: no global state, no GUI backend, safe off the main thread.
matplotlib is imported inside the functions: reading results or writing markdown doesn't need it.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np

BAND = "min–max across seeds"  # what the shaded band around a mean line shows; named in captions


def figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def png_bytes(fig, dpi: int) -> bytes:
    """The figure as a PNG file's bytes: rendered in memory, so that a failed report writes nothing."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def draw_seeds(
    ax,
    values: np.ndarray,
    healthy: np.ndarray | None,
    color: Any,
    style: str = "-",
    label: str | None = None,
    linewidth: float = 1.4,
    markersize: float = 2.5,
) -> list[float]:
    """Mean per epoch (epochs from 1) and the min–max band over the healthy seeds (None: all) with
    an all-finite history; without one, the mean of what is finite, dotted (a diverged run).
    Returns the band's extent, or []."""
    if values.ndim != 2 or not values.size:
        return []
    epochs = np.arange(1, values.shape[1] + 1)
    line = {
        "color": color,
        "label": label,
        "linewidth": linewidth,
        "markersize": markersize,
        "marker": "o" if len(epochs) <= 10 else None,
    }  # a one-epoch run still shows a point
    kept = values[healthy] if healthy is not None and len(healthy) == len(values) else values
    kept = kept[np.isfinite(kept).all(axis=1)]
    if len(kept):
        ax.plot(epochs, kept.mean(axis=0), style, **line)
        ax.fill_between(
            epochs, kept.min(axis=0), kept.max(axis=0), color=color, alpha=0.18 if style == "-" else 0.08, linewidth=0
        )
        return [float(kept.min()), float(kept.max())]
    with warnings.catch_warnings():  # an epoch where every seed is NaN is expected here
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(np.where(np.isfinite(values), values, np.nan), axis=0)
    ax.plot(epochs, mean, ":", **line)
    return []


def frame(axes, bounds: list[float], top: float | None = None) -> None:
    """The same y-limits on every axis of `axes`: the drawn bands' extent, capped at `top`."""
    if not bounds:
        return
    low, high = min(bounds), max(bounds)
    high = min(high, top) if top is not None and low < top else high
    pad = (high - low) * 0.05 or 0.05
    for ax in axes:
        ax.set_ylim(low - pad, high + pad)


def epoch_axis(ax, epochs: int, nbins: int | None = None) -> None:
    """An x-axis of whole epochs from 1, even for a one-epoch run; at most `nbins` ticks."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(0.5, max(epochs, 1) + 0.5)
    ticks = {"nbins": nbins} if nbins else {}
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1, **ticks))


def corner_notes(
    ax, notes: list[tuple[str, int]], x: float, y: float, step: float, fontsize: float, alpha: float
) -> None:
    """(text, color index) lines top right, each in its run's color `C<index>`: what a clipped
    axis can't show, such as a divergence or a loss above the frame."""
    for line, (text, index) in enumerate(notes):
        ax.text(
            x,
            y - step * line,
            text,
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=fontsize,
            color=f"C{index % 10}",
            bbox={"facecolor": "white", "alpha": alpha, "linewidth": 0, "pad": 0.5},
        )
