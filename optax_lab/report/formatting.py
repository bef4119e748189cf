"""Numbers and run records as report text: table cells, mean ± CI, run settings, lists of names,
and the head every section starts with. One spelling for each, whichever section prints it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from optax_lab.report.records import Stat, finite
from optax_lab.schema import Status

DASH = "—"  # a value that is missing, e.g. the loss of a run whose seeds all diverged


def fmt(value: Any, digits: int, scale: float = 1.0) -> str:
    return f"{value * scale:.{digits}f}" if finite(value) else DASH


def mean_ci(stat: Stat, digits: int = 4, scale: float = 1.0) -> str:
    """`0.5432 ± 0.0034`; the mean alone without a CI; — without a mean."""
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
    """Text that stays inside one markdown table cell."""
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


# ---------------------------------------------------------------------------------------------
# A run's settings and outcome


def status_text(run: Mapping) -> str:
    """`ok`, `diverged (1/3 seeds)`; a status that disagrees with the diverged count says both."""
    status = run.get("status", Status.OK)
    diverged, seeds = run.get("diverged_seeds") or 0, len(run.get("seeds") or ())
    if status == Status.DIVERGED:
        return f"diverged ({diverged}/{seeds} seeds)"
    if diverged:
        return f"{status} ({diverged}/{seeds} seeds diverged)"
    return str(status)


def seeds_text(seeds: list) -> str:
    """`3 seeds (0–2)`, `2 seeds (0, 5)`, `no seeds`."""
    if not seeds:
        return "no seeds"
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{len(seeds)} seeds ({seeds[0]}–{seeds[-1]})"
    return f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})"


def _hyperparam(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def hyperparams_text(run: Mapping) -> str:
    """`lr=0.01, momentum=0.7`: a run's hyperparameters, compact."""
    return ", ".join(
        f"{'lr' if key == 'learning_rate' else key}={_hyperparam(value)}"
        for key, value in (run.get("hyperparams") or {}).items()
    )


def point_text(point: Mapping[str, Any]) -> str:
    """`learning_rate=0.00316, b1=0.9`: a swept or tuned point; `defaults` when it is empty."""
    return (
        ", ".join(
            f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}" for name, value in point.items()
        )
        or "defaults"
    )


def optimizer_text(run: Mapping) -> str:
    """`sgd(lr=0.01, momentum=0.7)`: the optimizer and its hyperparameters, compact."""
    return f"{run['optimizer']}({hyperparams_text(run)})"


def batch_text(run: Mapping, n_train: Any) -> str:
    """`50`, or `full (300)` with the training set's size when it is known."""
    if run.get("full_batch"):
        size = run.get("batch_size") or n_train
        return f"full ({size})" if size else "full"
    return str(run.get("batch_size", DASH))


# ---------------------------------------------------------------------------------------------
# Lessons


def lesson_title(lesson: Mapping) -> str:
    return lesson.get("title") or lesson["name"]


def png_name(lesson: Mapping, suffix: str) -> str:
    """`<lesson-name>-<suffix>.png`, made safe as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(lesson["name"])).strip("-.") + f"-{suffix}.png"


def section_head(lesson: Mapping, runs: list[Mapping]) -> list[str]:
    """Title, question, and the data and schedule the runs share (the lessons differ: the report's
    header can't say it for all of them)."""
    lines = [f"## {lesson_title(lesson)}", ""]
    lines += [f"*{lesson['question']}*", ""] if lesson.get("question") else []
    setup = setup_text(runs)
    return lines + ([setup, ""] if setup else [])


def setup_text(runs: list[Mapping]) -> str:
    """`Every run: the 1000 most frequent words, 2000 training reviews, batch 500, 40 epochs, 3 seeds.`,
    naming only what all runs share."""

    def shared(get):
        values = {get(run) for run in runs}
        return values.pop() if len(values) == 1 and None not in values else None

    parts = [
        (shared(lambda run: run["num_words"]), "the {} most frequent words"),
        (shared(lambda run: run["n_train"]), "{} training reviews"),
        (shared(lambda run: "full" if run.get("full_batch") else run.get("batch_size")), "batch {}"),
        (shared(lambda run: run.get("epochs")), "{} epochs"),
        (shared(lambda run: len(run.get("seeds") or ()) or None), "{} seeds"),
    ]
    known = [template.format(value) for value, template in parts if value is not None]
    return f"Every run: {', '.join(known)}." if known and runs else ""
