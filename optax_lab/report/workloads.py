"""What the report says about workloads: which one a section's lessons ran on, the lines that
introduce a workload other than the lesson's, and the ranking plot's file per workload."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from optax_lab.report.records import LessonRuns

__all__ = ["DEFAULT_WORKLOAD", "RANKING_CURVES", "curves_png", "workload_lines", "workload_of"]

RANKING_CURVES = "ranking-curves.png"
DEFAULT_WORKLOAD = "imdb-mlp"  # results from before workloads ran on it; its sections keep their old names


def workload_of(lessons: Sequence[LessonRuns]) -> str:
    return next((lesson.get("workload") for lesson, _ in lessons if lesson.get("workload")), DEFAULT_WORKLOAD)


def curves_png(lessons: Sequence[LessonRuns]) -> str:
    """The ranking plot's file: one per workload."""
    workload = workload_of(lessons)
    return RANKING_CURVES if workload == DEFAULT_WORKLOAD else f"ranking-curves-{workload}.png"



def workload_lines(results: Mapping, workload: str) -> list[str]:
    """What a workload other than the lesson's trains, and its target (the lesson's is the report's header)."""
    record = (results.get("workloads") or {}).get(workload)
    if workload == DEFAULT_WORKLOAD or not record:
        return []
    target = record.get("target") or {}
    reach = "at most" if target.get("direction") == "min" else "at least"
    data = (record.get("dataset") or {}).get("source", "")
    return [f"Workload **{workload}**: {record.get('description', '')}; model {record.get('model', '?')}"
            + (f"; data {data}" if data else "") + f". Target: {target.get('metric', '?')} {reach} "
            f"{target.get('value', '?')} ({target.get('source', 'source not recorded')}).", ""]
