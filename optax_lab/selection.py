"""Choosing among hyperparameter points and telling optimizers apart: the criterion a tuner
minimises, the best point of a grid, and whether two runs differ by more than seed noise.

Works on histories as arrays or as a saved results.json's lists (None for NaN), numpy and scipy
only, so the tuner and the report apply the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.stats

from optax_lab.grids import Criterion
from optax_lab.schema import diverged_seeds

__all__ = ["TIE_ALPHA", "best_index", "criterion_text", "on_edge", "paired_tie", "per_seed", "score"]

TIE_ALPHA = 0.05  # two-sided paired t-test over shared seeds: p >= this is a tie


def _val_loss(history: Mapping[str, Any]) -> np.ndarray:
    return np.array([[math.nan if v is None else v for v in row] for row in history["val_loss"]], np.float64)


def per_seed(history: Mapping[str, Any], criterion: Criterion, target: float) -> np.ndarray:
    """[S] each seed's value of `criterion` (lower is better); inf for a diverged seed, and for
    epochs-to-target a seed that never reached `target`."""
    criterion = Criterion(criterion)  # a saved file's string works too
    losses = _val_loss(history)
    diverged = diverged_seeds(history)
    if criterion is Criterion.FINAL_VAL_LOSS:
        values = losses[:, -1]
    elif criterion is Criterion.BEST_VAL_LOSS:
        values = np.where(np.isfinite(losses), losses, np.inf).min(axis=1)
    else:
        reached = losses <= target
        values = np.where(reached.any(axis=1), reached.argmax(axis=1) + 1.0, np.inf)
    return np.where(diverged | ~np.isfinite(values), np.inf, values)


def score(history: Mapping[str, Any], criterion: Criterion, target: float) -> tuple[float, float]:
    """(criterion mean over seeds, final val loss mean): what a tuner minimises, in order. Any
    diverged seed makes the point infinitely bad: a rate that diverges on some seeds is no choice.
    Epochs to target breaks its ties (equal epochs are common) by the final val loss."""
    values = per_seed(history, criterion, target)
    final = per_seed(history, Criterion.FINAL_VAL_LOSS, target)
    return (
        float(values.mean()) if np.isfinite(values).all() else math.inf,
        float(final.mean()) if np.isfinite(final).all() else math.inf,
    )


def best_index(histories: Sequence[Mapping[str, Any]], criterion: Criterion, target: float) -> int | None:
    """The index of the best point, or None when every point diverged or missed."""
    scores = [score(history, criterion, target) for history in histories]
    best = min(range(len(scores)), key=scores.__getitem__)
    return None if scores[best][0] == math.inf and scores[best][1] == math.inf else best


def on_edge(index: int, count: int) -> str:
    """'low' or 'high' when the chosen point is the grid's first or last, else ''."""
    return "low" if index == 0 and count > 1 else "high" if index == count - 1 and count > 1 else ""


def paired_tie(first: np.ndarray, second: np.ndarray, alpha: float = TIE_ALPHA) -> tuple[bool, float]:
    """(tied, p): whether two optimizers' per-seed values over the same seeds differ by no more
    than seed noise, by a two-sided paired t-test. Seeds share the init and the shuffling, so
    pairing removes their common part. Fewer than 2 finite pairs: not tied (p NaN)."""
    first, second = np.asarray(first, np.float64), np.asarray(second, np.float64)
    keep = np.isfinite(first) & np.isfinite(second)
    if keep.sum() < 2:
        return False, math.nan
    differences = first[keep] - second[keep]
    if np.allclose(differences, differences[0]):  # no spread: equal runs tie, a constant gap does not
        return bool(np.isclose(differences[0], 0.0)), 1.0 if np.isclose(differences[0], 0.0) else 0.0
    p = float(scipy.stats.ttest_rel(first[keep], second[keep]).pvalue)
    return p >= alpha, p


def criterion_text(criterion: Criterion, target: float) -> str:
    return {
        Criterion.FINAL_VAL_LOSS: "the final validation loss, mean over seeds",
        Criterion.BEST_VAL_LOSS: "the best validation loss over the epochs, mean over seeds",
        Criterion.EPOCHS_TO_TARGET: f"the epochs to a validation loss of {target:g}, mean over seeds "
        "(ties broken by the final validation loss)",
    }[criterion]
