"""Ties in the optimizer ranking: whether an optimizer differs from the next one down in the same
batch mode by more than seed noise, by `selection.paired_tie` over the seeds both ran (the same seed
means the same initialisation and shuffling for every optimizer, so pairing removes what they share).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from itertools import pairwise
from typing import NamedTuple

import numpy as np

from optax_lab.grids import Criterion
from optax_lab.report.formatting import signed, table_row
from optax_lab.report.records import finite
from optax_lab.selection import TIE_ALPHA, paired_tie, per_seed

__all__ = ["Neighbours", "neighbours", "neighbours_caption", "neighbours_table", "tie_text", "ties_sentence"]


class Neighbours(NamedTuple):
    """An optimizer's run and the next one down in one batch mode's ranking, tested seed by seed."""

    mode: str  # the batch mode in words: `batch 500`, `full batch`
    upper: Mapping
    lower: Mapping
    shared: int  # seeds both ran without diverging
    gap: float  # mean over those seeds of lower's final val loss − upper's
    tied: bool
    p: float  # NaN: fewer than 2 shared seeds, not tested


def _final_per_seed(run: Mapping) -> dict:
    """Seed -> its final val loss; inf for a diverged seed."""
    values = per_seed(run["history"], Criterion.FINAL_VAL_LOSS, math.nan)  # the target only counts for epochs to it
    return dict(zip(run.get("seeds") or range(len(values)), values.tolist(), strict=False))


def neighbours(ranked_modes: list[tuple[str, list[Mapping]]]) -> list[Neighbours]:
    """Each adjacent pair of each (mode in words, its runs best first), over the seeds both have."""
    pairs = []
    for mode, ranked in ranked_modes:
        for upper, lower in pairwise(ranked):
            first, second = _final_per_seed(upper), _final_per_seed(lower)
            seeds = [seed for seed in first if seed in second]
            a, b = np.array([first[s] for s in seeds]), np.array([second[s] for s in seeds])
            tied, p = paired_tie(a, b)
            kept = np.isfinite(a) & np.isfinite(b)
            gap = float((b - a)[kept].mean()) if kept.any() else math.nan
            pairs.append(Neighbours(mode, upper, lower, int(kept.sum()), gap, tied, p))
    return pairs


def tie_text(pair: Neighbours) -> str:
    """`tied (p=0.41)`, `differs (p=0.003)`; not tested below 2 shared seeds."""
    if not finite(pair.p):
        return f"not tested ({pair.shared} shared seed{'' if pair.shared == 1 else 's'})"
    return f"{'tied' if pair.tied else 'differs'} ({_p_text(pair.p)})"


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def neighbours_table(pairs: list[Neighbours]) -> list[str]:
    lines = [
        table_row(
            ["Batch mode", "Optimizer", "Next one down", "Final val loss, next − this", "Shared seeds", "vs next"]
        ),
        "|---|---|---|---:|---:|---|",
    ]
    for pair in pairs:
        lines.append(
            table_row(
                [
                    pair.mode,
                    pair.upper["optimizer"],
                    pair.lower["optimizer"],
                    signed(pair.gap, 4),
                    pair.shared,
                    tie_text(pair),
                ]
            )
        )
    return lines


def neighbours_caption() -> str:
    return (
        f"*Each optimizer against the next one down in the same batch mode's ranking (runs with a finite loss): "
        f"a two-sided paired t-test of their final validation losses over the seeds both ran without "
        f"diverging. A seed means the same initialisation and the same shuffling for every optimizer, so "
        f"pairing removes what they share. Tied: p ≥ {TIE_ALPHA:g}, a difference within seed noise; "
        f"identical losses tie, a constant gap on every seed differs. Below 2 shared seeds: not tested.*"
    )


def ties_sentence(pairs: list[Neighbours]) -> str:
    """The neighbours that seed noise does not separate."""
    tested = [pair for pair in pairs if finite(pair.p)]
    if not tested:
        return ""
    tied: dict[str, list[str]] = {}
    for pair in tested:
        if pair.tied:
            tied.setdefault(pair.mode, []).append(
                f"{pair.upper['optimizer']}–{pair.lower['optimizer']} ({_p_text(pair.p)})"
            )
    if not tied:
        return "Each optimizer differs from the next one down by more than seed noise (paired t-test over seeds)."
    listed = "; ".join(f"at {mode} {', '.join(pairs)}" for mode, pairs in tied.items())
    return (
        f"Tied with the next one down, their order within seed noise (paired t-test over seeds, "
        f"p ≥ {TIE_ALPHA:g}): {listed}."
    )
