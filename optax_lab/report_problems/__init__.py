"""Report sections for the other three problems of training deep nets: vanishing gradients,
initialisation and overfitting (lessons of kind "vanishing-gradients", "initialisation",
"overfitting"). report.py looks a lesson's kind up in `SECTIONS`; any other kind ("compare")
keeps its generic section.

Every number in these sections is computed from the run records (results.json), and every
sentence is chosen by comparing those numbers: change the numbers and the text follows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

from optax_lab.report_problems.initialisation import initialisation_section, plot_initialisation
from optax_lab.report_problems.overfitting import overfitting_section, plot_overfitting
from optax_lab.report_problems.vanishing import plot_vanishing, vanishing_section


@dataclasses.dataclass(frozen=True)
class Section:
    """How one lesson kind is reported."""

    markdown: Callable[[Mapping, list[Mapping], Mapping], list[str]]  # (lesson, its runs, results) -> lines
    plots: Callable[[Mapping, list[Mapping], Path], list[str]]  # (lesson, its runs, dir) -> the PNGs it wrote there


SECTIONS: dict[str, Section] = {
    "vanishing-gradients": Section(vanishing_section, plot_vanishing),
    "initialisation": Section(initialisation_section, plot_initialisation),
    "overfitting": Section(overfitting_section, plot_overfitting),
}
