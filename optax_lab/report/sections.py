"""Which section reports which lesson: one table from each lesson kind to its Section. The
results are `schema.upgrade`d: every lesson has a kind this version knows (a missing or unknown
one is compare, the generic section).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from optax_lab.report.compare import compare_plots, compare_section
from optax_lab.report.initialisation import initialisation_section
from optax_lab.report.initialisation_plot import initialisation_plots
from optax_lab.report.overfitting import overfitting_section
from optax_lab.report.overfitting_plot import overfitting_plots
from optax_lab.report.ranking import ranking_section
from optax_lab.report.ranking_plot import ranking_plots
from optax_lab.report.records import LessonRuns, lesson_runs
from optax_lab.report.sweep import sweep_section
from optax_lab.report.sweep_plot import sweep_plots
from optax_lab.report.vanishing import vanishing_section
from optax_lab.report.vanishing_plot import vanishing_plots
from optax_lab.schema import LessonKind


@dataclasses.dataclass(frozen=True)
class Section:
    """How one kind of lesson is reported. Both functions take the lessons the section covers,
    each with its runs, and the whole results."""

    markdown: Callable[[Sequence[LessonRuns], Mapping], list[str]]  # -> report.md lines
    plots: Callable[[Sequence[LessonRuns], Mapping], dict[str, bytes]]  # -> {PNG file name: bytes} it links to
    # True: consecutive lessons of this kind make one section (the ranking's batch modes, side by
    # side in one table); False: each lesson is a section of its own.
    together: bool = False
    report_title: str | None = None  # the report's title when it has no other kind of section
    timed: str = "Run s and seed-epochs/s"  # what the section times; the footer says it excludes compilation


SECTIONS: Mapping[LessonKind, Section] = MappingProxyType(
    {
        LessonKind.COMPARE: Section(compare_section, compare_plots),
        LessonKind.RANKING: Section(
            ranking_section,
            ranking_plots,
            together=True,
            report_title="optimizer ranking",
            timed="Seconds to target and seed-epochs/s",
        ),
        # One section per batch mode: a mode's table and plots are already as much as a page holds.
        LessonKind.SWEEP: Section(sweep_section, sweep_plots, report_title="hyperparameter sweep", timed="Run seconds"),
        LessonKind.VANISHING_GRADIENTS: Section(vanishing_section, vanishing_plots),
        LessonKind.INITIALISATION: Section(initialisation_section, initialisation_plots),
        LessonKind.OVERFITTING: Section(overfitting_section, overfitting_plots),
    }
)


def lesson_kind(lesson: Mapping) -> LessonKind:
    """The kind of an upgraded lesson (`schema.upgrade`)."""
    return LessonKind(lesson["kind"])


def section_for(lesson: Mapping) -> Section:
    return SECTIONS[lesson_kind(lesson)]


def section_groups(results: Mapping) -> list[tuple[Section, list[LessonRuns]]]:
    """Each section of the report and the lessons it covers, in the lessons' order; a section
    never spans two workloads."""
    groups: list[tuple[Section, list[LessonRuns]]] = []
    for entry in lesson_runs(results):
        section = section_for(entry.lesson)
        if (
            groups
            and section.together
            and groups[-1][0] is section
            and groups[-1][1][-1].lesson["workload"] == entry.lesson["workload"]
        ):
            groups[-1][1].append(entry)
        else:
            groups.append((section, [entry]))
    return groups
