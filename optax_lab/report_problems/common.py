"""What the three sections share: per-seed numbers from run records, formatting, plot helpers.

Statistics are over seeds: the mean and the half-width of its 95% CI (Student t, `metrics.ci95`),
leaving out the seeds whose loss stopped being finite, as the run's own `final` summary does.
The formatting helpers here are report.py's too (it imports this package, not the other way round).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from optax_lab.stats import ci95

DASH = "—"  # a value that is missing, e.g. the loss of a run whose seeds all diverged
BAND = "min–max across seeds"  # what the shaded band in the curves shows; named in captions
CHANCE_LOSS = math.log(2)  # the loss of always predicting 50 %: the best constant guess on balanced labels
CHANCE_TOLERANCE = 0.005  # a final val loss this close to ln 2 counts as "at chance": nothing learned


# ---------------------------------------------------------------------------------------------
# Numbers from run records


class Stat(NamedTuple):
    """Mean and 95% CI half-width over the seeds with a finite value (ci NaN below 2 seeds)."""

    mean: float
    ci: float
    n: int

    @classmethod
    def of(cls, values: Any) -> "Stat":
        values = np.asarray(values, np.float64).ravel()
        values = values[np.isfinite(values)]
        if not values.size:
            return NO_STAT
        return cls(float(values.mean()), ci95(values), int(values.size))

    @property
    def has_ci(self) -> bool:
        return finite(self.mean) and finite(self.ci)

    def clears(self, other: "Stat") -> bool:
        """Whether the two 95% CIs do not overlap (False when either has none)."""
        return self.has_ci and other.has_ci and abs(self.mean - other.mean) > self.ci + other.ci


NO_STAT = Stat(math.nan, math.nan, 0)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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


def healthy_seeds(run: Mapping) -> np.ndarray:
    """[S] bool: the seeds whose training and validation loss stayed finite (metrics' rule)."""
    losses = [history(run, key) for key in ("train_loss", "val_loss")]
    seeds = len(run.get("seeds") or ()) or max((len(values) for values in losses), default=0)
    healthy = np.ones(seeds, bool)
    for values in losses:
        if values.ndim == 2 and len(values) == seeds:
            healthy &= np.isfinite(values).all(axis=1)
    return healthy


def healthy_history(run: Mapping, key: str) -> np.ndarray:
    """`history(run, key)` of the healthy seeds only; empty if it wasn't recorded."""
    values, healthy = history(run, key), healthy_seeds(run)
    if values.ndim < 2 or len(values) != len(healthy):
        return np.zeros((0, 0))
    return values[healthy]


def final_stat(run: Mapping, key: str) -> Stat:
    """The run's own summary (`final`) of `key`: `<key>_mean` ± `<key>_ci95`."""
    final = run.get("final") or {}
    mean, ci = final.get(f"{key}_mean"), final.get(f"{key}_ci95")
    return Stat(mean if finite(mean) else math.nan, ci if finite(ci) else math.nan, len(run.get("seeds") or ()))


def val_loss(run: Mapping) -> Stat:
    return final_stat(run, "val_loss")


def at_chance(loss: float) -> bool:
    return finite(loss) and abs(loss - CHANCE_LOSS) <= CHANCE_TOLERANCE


def above_chance(loss: float) -> bool:
    """Worse than always guessing 50 %."""
    return finite(loss) and loss > CHANCE_LOSS + CHANCE_TOLERANCE


def below_chance(loss: float) -> bool:
    """Better than always guessing 50 %: something was learned."""
    return finite(loss) and loss < CHANCE_LOSS - CHANCE_TOLERANCE


# ---------------------------------------------------------------------------------------------
# Formatting


def fmt(value: Any, digits: int, scale: float = 1.0) -> str:
    return f"{value * scale:.{digits}f}" if finite(value) else DASH


def mean_ci(stat: Stat, digits: int = 4, scale: float = 1.0) -> str:
    if not finite(stat.mean):
        return DASH
    if not finite(stat.ci):
        return fmt(stat.mean, digits, scale)
    return f"{stat.mean * scale:.{digits}f} ± {stat.ci * scale:.{digits}f}"


def signed(value: float, digits: int = 1) -> str:
    """`+0.5`, `−9.6`; `0.0` when it rounds to zero (no `−0.0`)."""
    if not finite(value):
        return DASH
    if round(value, digits) == 0:
        return f"{0:.{digits}f}"
    return f"{value:+.{digits}f}".replace("-", "−")


def count_text(value: float) -> str:
    """A mean count of epochs: `33`, or `32.5` when the seeds differ."""
    return f"{value:.1f}".removesuffix(".0") if finite(value) else DASH


def range_text(values: Any) -> str:
    """`7` when every seed agrees, else `5–9` (min–max)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return DASH
    low, high = int(round(values.min())), int(round(values.max()))
    return str(low) if low == high else f"{low}–{high}"


def cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_row(cells: list[Any]) -> str:
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def names_text(names: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def short_names(runs: list[Mapping]) -> dict[str, str]:
    """Run name -> the name for prose: without a `, <suffix>` that every run of the lesson shares
    (`zeros, Adam` -> `zeros` where the lesson's title already says Adam)."""
    names = [str(run["name"]) for run in runs]
    suffixes = {name.rpartition(", ")[2] for name in names if ", " in name}
    if len(names) > 1 and len(suffixes) == 1 and all(", " in name for name in names):
        suffix = ", " + suffixes.pop()
        return {name: name.removesuffix(suffix) for name in names}
    return {name: name for name in names}


def status_text(run: Mapping) -> str:
    diverged, seeds = run.get("diverged_seeds") or 0, len(run.get("seeds") or ())
    if diverged:
        return f"diverged ({diverged}/{seeds} seeds)"
    return str(run.get("status", "ok"))


def seed_count(runs: list[Mapping]) -> int:
    return max((len(run.get("seeds") or ()) for run in runs), default=0)


def png_name(lesson: Mapping, suffix: str) -> str:
    """`<lesson-name>-<suffix>.png`, made safe as a file name (like report.curves_name)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(lesson["name"])).strip("-.") + f"-{suffix}.png"


def title(lesson: Mapping) -> str:
    return lesson.get("title") or lesson["name"]


def section_head(lesson: Mapping, runs: list[Mapping]) -> list[str]:
    """Title, question, and the data and schedule the runs share (the lessons differ: the report's
    header can't say it for all of them)."""
    lines = [f"## {title(lesson)}", ""]
    lines += [f"*{lesson['question']}*", ""] if lesson.get("question") else []
    setup = setup_text(runs)
    return lines + ([setup, ""] if setup else [])


def setup_text(runs: list[Mapping]) -> str:
    """`Every run: the 1000 most frequent words, 2000 training reviews, batch 500, 40 epochs, 3 seeds.`,
    naming only what all runs share."""
    def shared(get):
        values = {get(run) for run in runs}
        return values.pop() if len(values) == 1 and None not in values else None

    parts = [(shared(lambda run: run.get("num_words")), "the {} most frequent words"),
             (shared(lambda run: run.get("n_train")), "{} training reviews"),
             (shared(lambda run: "full" if run.get("full_batch") else run.get("batch_size")), "batch {}"),
             (shared(lambda run: run.get("epochs")), "{} epochs"),
             (shared(lambda run: len(run.get("seeds") or ()) or None), "{} seeds")]
    known = [template.format(value) for value, template in parts if value is not None]
    return f"Every run: {', '.join(known)}." if known and runs else ""


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib's object API: no global state, no GUI backend)


def figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def draw_seeds(ax, values: np.ndarray, healthy: np.ndarray | None, color: Any, style: str = "-",
               label: str | None = None, linewidth: float = 1.4, markersize: float = 2.5) -> list[float]:
    """Mean per epoch (epochs from 1) and the min–max band over the healthy seeds (None: all) with
    an all-finite history; without one, the mean of what is finite, dotted (a diverged run).
    Returns the band's extent, or []."""
    if values.ndim != 2 or not values.size:
        return []
    epochs = np.arange(1, values.shape[1] + 1)
    line = {"color": color, "label": label, "linewidth": linewidth, "markersize": markersize,
            "marker": "o" if len(epochs) <= 10 else None}  # a one-epoch run still shows a point
    kept = values[healthy] if healthy is not None and len(healthy) == len(values) else values
    kept = kept[np.isfinite(kept).all(axis=1)]
    if len(kept):
        ax.plot(epochs, kept.mean(axis=0), style, **line)
        ax.fill_between(epochs, kept.min(axis=0), kept.max(axis=0), color=color,
                        alpha=0.18 if style == "-" else 0.08, linewidth=0)
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


def epoch_axis(ax, epochs: int) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(0.5, max(epochs, 1) + 0.5)  # whole epochs, even for a one-epoch run
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
