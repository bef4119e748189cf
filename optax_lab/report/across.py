"""Across workloads: the optimizers of a ranking over several workloads, scored as AlgoPerf does,
by performance profiles of the time (and the steps) to each workload's target (`profiles`).

Each workload contributes its first ranking lesson (its first batch mode), so every optimizer is
timed once per workload. An optimizer's time is the median over its seeds of epochs-to-target ×
its program's seconds per epoch (validation runs once per epoch: that is the resolution); its
steps are epochs-to-target × steps per epoch. A seed that never reaches the target counts as
never, so more than half of them must reach it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from optax_lab.report.profiles import Times, median_to_target, profile_markdown, profile_plot
from optax_lab.report.ranking import batch_modes, mode_prose
from optax_lab.report.records import LessonRuns, lesson_runs
from optax_lab.report.sections import lesson_kind
from optax_lab.schema import LessonKind

__all__ = ["PROFILE_PNG", "PROFILE_STEPS_PNG", "across_plots", "across_section", "workload_times"]

PROFILE_PNG, PROFILE_STEPS_PNG = "performance-profiles.png", "performance-profiles-steps.png"


def _first_rankings(results: Mapping) -> dict[str, LessonRuns]:
    """Each ranked workload's first ranking lesson and its runs, in the lessons' order."""
    first: dict[str, LessonRuns] = {}
    for entry in lesson_runs(results):
        if lesson_kind(entry.lesson) is LessonKind.RANKING:
            first.setdefault(entry.lesson["workload"], entry)
    return first


def _entrant(run: Mapping, runs: list[Mapping]) -> str:
    """What the profile calls a run: its optimizer, or its name when the optimizer runs twice."""
    optimizer = run.get("optimizer") or run["name"]
    return optimizer if sum((other.get("optimizer") == optimizer) for other in runs) == 1 else run["name"]


def _per_seed(run: Mapping, per_epoch: float) -> list[float]:
    epochs = run["target"].get("epochs_per_seed") or []
    return [e * per_epoch if isinstance(e, (int, float)) and math.isfinite(e) else math.inf for e in epochs]


def workload_times(results: Mapping) -> tuple[Times, Times]:
    """(seconds, steps) to the target: workload -> optimizer -> the median over seeds (inf: missed)."""
    seconds: dict[str, dict[str, float]] = {}
    steps: dict[str, dict[str, float]] = {}
    for workload, (_, runs) in _first_rankings(results).items():
        for run in runs:
            name, epochs = _entrant(run, runs), max(run.get("epochs") or 1, 1)
            seconds_per_epoch = ((run.get("timing") or {}).get("run_s") or math.nan) / epochs
            seconds.setdefault(workload, {})[name] = median_to_target(_per_seed(run, seconds_per_epoch))
            steps.setdefault(workload, {})[name] = median_to_target(_per_seed(run, run.get("steps_per_epoch") or 1))
    return seconds, steps


def _points_text(results: Mapping) -> str:
    """Which hyperparameters the profile ranks: tuned points (and from where), or the defaults."""
    sources = {
        lesson.get("tuned_source") for lesson, _ in lesson_runs(results) if lesson_kind(lesson) is LessonKind.RANKING
    }
    tuned = sorted(source for source in sources if source)
    if tuned and None not in sources and "" not in sources:
        return f"at each optimizer's tuned points from {', '.join(tuned)}"
    if tuned:
        return f"at tuned points from {', '.join(tuned)} where they exist, elsewhere at the defaults"
    return (
        "at each optimizer's defaults (the registry's, or the workload's own where it declares them; "
        "untuned, so a ranking of out-of-the-box behaviour, not of the optimizers at their best)"
    )


def across_section(results: Mapping) -> list[str]:
    """The section, when a ranking ran on two workloads or more; else nothing."""
    seconds, steps = workload_times(results)
    if len(seconds) < 2:
        return []
    modes = ", ".join(
        f"{workload} {mode_prose(batch_modes([entry])[0][0])}" for workload, entry in _first_rankings(results).items()
    )
    return [
        f"## Across {len(seconds)} workloads: performance profiles",
        "",
        f"Ranked as AlgoPerf does, {_points_text(results)}; each workload's first batch mode ({modes}), "
        "each workload's target as its section says.",
        "",
        "### By time to the target",
        "",
        profile_markdown(seconds, "s", PROFILE_PNG),
        "### By steps to the target",
        "",
        "Steps do not depend on the hardware or the load on it; time also counts what a step costs.",
        "",
        profile_markdown(steps, "steps", PROFILE_STEPS_PNG, "steps"),
    ]


def across_plots(results: Mapping) -> dict[str, bytes]:
    seconds, steps = workload_times(results)
    if len(seconds) < 2:
        return {}
    return {PROFILE_PNG: profile_plot(seconds), PROFILE_STEPS_PNG: profile_plot(steps, "steps")}
