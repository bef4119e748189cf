"""Ranking across workloads as AlgoPerf does it: performance profiles of time to target.

Per workload, an optimizer's time (or steps) to the workload's target over the fastest
optimizer's is its ratio r ≥ 1; a missed target counts as never (r = ∞). Its performance profile
ρ(τ) is the share of workloads it finishes within τ× the best, and its score the area under ρ
from τ = 1 to TAU_MAX (4, AlgoPerf's), divided by TAU_MAX − 1: 1 when it is the fastest
everywhere, 0 when it is never within 4× of the best (Dolan & Moré 2002; AlgoPerf 2023).

An optimizer's time on a workload is the median over its seeds of the seconds to the target
(a seed that never reaches it counts as never): so more than half of the seeds must reach it.
Pure numpy on the results' records; matplotlib only to draw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.integrate import trapezoid

from optax_lab.report.formatting import DASH
from optax_lab.report.plotting import figure, png_bytes

__all__ = ["TAU_MAX", "median_to_target", "profile", "profile_markdown", "profile_plot", "ratios", "scores"]

TAU_MAX = 4.0
TAUS = np.linspace(1.0, TAU_MAX, 301)  # the grid the area is integrated on (steps of 0.01)

Times = Mapping[str, Mapping[str, float]]  # workload -> optimizer -> seconds (or steps); inf: missed


def median_to_target(per_seed: Sequence[float]) -> float:
    """The median over seeds of their time to the target, a missed seed (NaN or inf) counting as
    never: finite only when more than half of the seeds reach it."""
    values = np.sort(np.where(np.isfinite(np.asarray(per_seed, float)), np.asarray(per_seed, float), math.inf))
    return float(np.median(values)) if values.size else math.inf


def ratios(times: Times) -> dict[str, dict[str, float]]:
    """Each workload's times over its fastest optimizer's (∞ where missed, or where no optimizer
    reached the target at all)."""
    result = {}
    for workload, by_optimizer in times.items():
        finite = [t for t in by_optimizer.values() if math.isfinite(t) and t > 0]
        best = min(finite) if finite else math.inf
        result[workload] = {
            name: (t / best if math.isfinite(t) and math.isfinite(best) and t > 0 else math.inf)
            for name, t in by_optimizer.items()
        }
    return result


def profile(ratio: Mapping[str, Mapping[str, float]], optimizer: str, taus: np.ndarray = TAUS) -> np.ndarray:
    """ρ(τ): the share of the workloads the optimizer finishes within τ× the best (a workload it
    did not run counts as missed)."""
    values = np.array([by_optimizer.get(optimizer, math.inf) for by_optimizer in ratio.values()])
    if not values.size:
        return np.zeros_like(taus)
    return (values[None, :] <= taus[:, None]).mean(axis=1)


def scores(ratio: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Each optimizer's area under ρ(τ) on [1, TAU_MAX] over TAU_MAX − 1, best first."""
    names = sorted({name for by_optimizer in ratio.values() for name in by_optimizer})
    area = {name: float(trapezoid(profile(ratio, name), TAUS) / (TAU_MAX - 1)) for name in names}
    return dict(sorted(area.items(), key=lambda item: (-item[1], item[0])))


def _ratio_text(value: float) -> str:
    return "never" if not math.isfinite(value) else f"{value:.2f}×"


def profile_markdown(times: Times, unit: str = "s", plot: str | None = None, measure: str = "time") -> str:
    """The score per optimizer, then the per-workload table behind it (time and ratio)."""
    ratio = ratios(times)
    score = scores(ratio)
    lines = ["| Optimizer | score | " + " | ".join(f"{w}" for w in times) + " |", "|---|---:|" + "---:|" * len(times)]
    for name in score:
        cells = []
        for workload, by_optimizer in times.items():
            value = by_optimizer.get(name)
            cells.append(
                DASH
                if value is None
                else f"{_ratio_text(ratio[workload][name])} ({value:.3g} {unit})"
                if math.isfinite(value)
                else "never"
            )
        lines.append(f"| {name} | {score[name]:.3f} | " + " | ".join(cells) + " |")
    text = (
        f"Score: the area under each optimizer's performance profile ρ(τ) for τ from 1 to {TAU_MAX:g}, over "
        f"{TAU_MAX - 1:g} (1: fastest to the target on every workload; 0: never within {TAU_MAX:g}× the "
        f"fastest). Each cell: {measure} to the workload's target over the fastest optimizer's, and the {measure} "
        "(median over seeds; a seed that misses the target counts as never)."
    )
    missed = [
        workload for workload, by_optimizer in times.items() if not any(math.isfinite(t) for t in by_optimizer.values())
    ]
    if missed:
        text += (
            f" No optimizer reached the target on {', '.join(missed)}: "
            f"{'that workload counts' if len(missed) == 1 else 'those workloads count'} as missed for all."
        )
    figure_line = [f"![performance profiles]({plot})", ""] if plot else []
    return "\n".join([text, "", *figure_line, *lines]) + "\n"


def profile_plot(times: Times, unit: str = "time") -> bytes:
    """ρ(τ) of every optimizer, τ from 1 to TAU_MAX, as PNG bytes; `unit` names what was counted."""
    ratio = ratios(times)
    fig = figure(7.0, 4.2)
    ax = fig.add_subplot()
    for name, score in scores(ratio).items():
        ax.step(TAUS, profile(ratio, name), where="post", label=f"{name} ({score:.2f})", linewidth=1.3)
    ax.set_xlim(1.0, TAU_MAX)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"τ: {unit} to target within τ× the fastest")
    ax.set_ylabel("ρ(τ): share of workloads")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncols=2)
    return png_bytes(fig, 120)
