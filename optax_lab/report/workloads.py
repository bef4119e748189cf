"""What the report says about workloads: which one a section's lessons ran on, the lines that
introduce a workload other than the lesson's, and the ranking plot's file per workload."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# The default workload's sections, plot files and run names carry no workload prefix (as planning names them).
from optax_lab.config import DEFAULT_WORKLOAD
from optax_lab.report.records import LessonRuns

__all__ = ["RANKING_CURVES", "curves_png", "trajectory_lines", "trajectory_plots", "workload_lines", "workload_of"]

RANKING_CURVES = "ranking-curves.png"


def workload_of(lessons: Sequence[LessonRuns]) -> str:
    """The workload a section's lessons ran on (one: a section never spans two)."""
    return lessons[0].lesson["workload"]


def curves_png(lessons: Sequence[LessonRuns]) -> str:
    """The ranking plot's file: one per workload."""
    workload = workload_of(lessons)
    return RANKING_CURVES if workload == DEFAULT_WORKLOAD else f"ranking-curves-{workload}.png"


def _traced(lessons: Sequence[LessonRuns]) -> list[Mapping]:
    """The first lesson's runs that recorded their 2-D path (the first batch mode: one picture)."""
    runs = lessons[0].runs if lessons else []
    return [run for run in runs if "trajectory" in (run.get("history") or {})]


def _trajectories_png(lessons: Sequence[LessonRuns]) -> str:
    return f"trajectories-{workload_of(lessons)}.png"


def trajectory_lines(lessons: Sequence[LessonRuns]) -> list[str]:
    """The link to the trajectories' plot, for a workload whose runs recorded their paths."""
    if not _traced(lessons):
        return []
    return [
        f"![Every optimizer's path on the loss surface]({_trajectories_png(lessons)})",
        "",
        "*Each optimizer's path from the common start (square) on the contours of the noise-free loss, one "
        "thin line per seed, a dot where it ended; the star is the minimum. The seeds differ only in the "
        "order of the noise draws.*",
        "",
    ]


def trajectory_plots(lessons: Sequence[LessonRuns], results: Mapping) -> dict[str, bytes]:
    from optax_lab.report.trajectories import trajectories_png

    runs = _traced(lessons)
    if not runs:
        return {}
    workload = workload_of(lessons)
    optimum = results["workloads"][workload]["optimum"]
    return {_trajectories_png(lessons): trajectories_png(runs, workload, tuple(optimum) if optimum else None)}


def workload_lines(results: Mapping, workload: str) -> list[str]:
    """What a workload other than the lesson's trains, and its target (the lesson's is the report's header)."""
    if workload == DEFAULT_WORKLOAD:
        return []
    record = results["workloads"][workload]
    target = record.get("target") or {}
    reach = "at most" if target.get("direction") == "min" else "at least"
    data = (record.get("dataset") or {}).get("source", "")
    return [
        f"Workload **{workload}**: {record.get('description', '')}; model {record.get('model', '?')}"
        + (f"; data {data}" if data else "")
        + f". Target: {target.get('metric', '?')} {reach} "
        f"{target.get('value', '?')} ({target.get('source', 'source not recorded')}).",
        "",
    ]
