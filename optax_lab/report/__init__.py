"""The report stage, the last one: a results dict -> results.json, report.md and the PNGs of each
lesson's section.

It works from the plain results dict alone (the one saved as results.json), so a report can be
regenerated from a saved run with `write_report(read_results(path), out_dir)`.

Modules, each importing only those before it: `records` (numbers from run records), `formatting`,
`plotting`; one module per kind of section (`compare`, `ranking` with its ties in `ranking_ties`,
`sweep`, `vanishing`, `initialisation`, `overfitting`, the larger ones with their plots in a `*_plot`
module); `sections` (the table from lesson kind to section); `render` (report.md and the PNGs, in
memory); `publish` (the files).
"""

from optax_lab.report.publish import FIX_OUT, check_writable, read_results, write_report
from optax_lab.report.render import render_markdown, render_plots
from optax_lab.report.sections import SECTIONS, Section, lesson_kind, section_for

__all__ = [
    "FIX_OUT",
    "SECTIONS",
    "Section",
    "check_writable",
    "lesson_kind",
    "read_results",
    "render_markdown",
    "render_plots",
    "section_for",
    "write_report",
]
