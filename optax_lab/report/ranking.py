"""The optimizer ranking (lessons of kind "ranking", one per batch mode): every optimizer once per
batch mode, ranked in one table with the batch modes side by side, whether each optimizer differs
from the next one down by more than seed noise (`selection.paired_tie`), and a summary read off the
numbers. Its plot is in `ranking_plot`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from optax_lab.config import DEFAULT_WORKLOAD
from optax_lab.report.formatting import (
    DASH,
    cell,
    count_text,
    fmt,
    hyperparams_text,
    mean_ci,
    names_text,
    point_text,
    status_text,
    table_row,
)
from optax_lab.report.plotting import BAND
from optax_lab.report.ranking_ties import Neighbours, neighbours, neighbours_caption, neighbours_table, ties_sentence
from optax_lab.report.records import LessonRuns, final_stat, finite, seed_count
from optax_lab.report.workloads import curves_png, trajectory_lines, workload_lines, workload_of

__all__ = [
    "Mode",
    "Row",
    "batch_modes",
    "mode_neighbours",
    "mode_prose",
    "ranking_rows",
    "ranking_section",
    "summarize_ranking",
    "target_text",
    "target_value",
]

Mode = tuple[str, list[Mapping]]  # a batch mode's label (`full` or the batch size) and its runs
Row = tuple[str, list[Mapping | None]]  # an optimizer and its run per batch mode (None: not run there)


def batch_modes(lessons: Sequence[LessonRuns]) -> list[Mode]:
    """(label, runs) per batch mode, in the lessons' order."""
    return [(_mode_label(lesson, runs), runs) for lesson, runs in lessons]


def _mode_label(lesson: Mapping, runs: list[Mapping]) -> str:
    """From the runs' own batch fields; the lesson's name (`batch-500`) only if they lack them."""
    first = runs[0] if runs else {}
    if first.get("full_batch"):
        return "full"
    if first.get("batch_size"):
        return str(first["batch_size"])
    return str(lesson["name"]).removeprefix("batch-")


def mode_prose(label: str) -> str:
    return "full batch" if label == "full" else f"batch {label}"


def _rank_key(run: Mapping | None) -> tuple:
    """Healthy runs by final val loss, then runs where some seed diverged, then no finite loss."""
    loss = run["final"].get("val_loss_mean") if run else None
    if not finite(loss):
        return (2, math.inf)
    return (1 if run.get("diverged_seeds") else 0, loss)


def ranking_rows(modes: list[Mode]) -> list[Row]:
    """(optimizer, its run per batch mode or None), ranked by the first batch mode."""
    per_optimizer: dict[str, list[Mapping | None]] = {}
    for index, (_, runs) in enumerate(modes):
        for run in runs:
            slots = per_optimizer.setdefault(run["optimizer"], [None] * len(modes))
            slots[index] = slots[index] or run  # a repeated optimizer keeps its first run
    return sorted(per_optimizer.items(), key=lambda row: _rank_key(row[1][0] if row[1] else None))


def _mode_ranked(runs: list[Mapping]) -> list[Mapping]:
    """A mode's runs with a finite loss, in ranking order: [best, runner-up, ...]."""
    return sorted((run for run in runs if finite(run["final"].get("val_loss_mean"))), key=_rank_key)


def mode_neighbours(modes: list[Mode]) -> list[Neighbours]:
    """Each batch mode's adjacent pairs in its own ranking, tested seed by seed."""
    return neighbours([(mode_prose(label), _mode_ranked(runs)) for label, runs in modes])


def target_value(lessons: Sequence[LessonRuns]) -> float | None:
    """The val-loss time-to-target threshold: the workload's, on its lessons; None for a target on
    another metric, or none."""
    target = next((lesson["target"] for lesson, _ in lessons if isinstance(lesson.get("target"), Mapping)), None)
    if target is None:
        return None
    return target.get("value") if target.get("metric") == "val_loss" and finite(target.get("value")) else None


def target_text(run: Mapping) -> str:
    """`3 ep / 150 steps / 0.42 s`, `(k/S seeds)` when not every seed got there, — when none did."""
    target = run["target"]
    reached, seeds = target.get("reached_seeds") or 0, len(run.get("seeds") or ())
    if not reached or not finite(target.get("epochs_mean")):
        return DASH
    steps = target.get("steps_mean")
    steps = f"{steps:.0f}" if finite(steps) and steps >= 100 else count_text(steps)  # 316.7 steps: noise
    text = f"{count_text(target['epochs_mean'])} ep / {steps} steps / {fmt(target.get('seconds_mean'), 2)} s"
    return text + (f" ({reached}/{seeds} seeds)" if reached < seeds else "")


def _loss_text(run: Mapping) -> str:
    return mean_ci(final_stat(run, "val_loss"))


# ---------------------------------------------------------------------------------------------
# The section


def ranking_section(lessons: Sequence[LessonRuns], results: Mapping) -> list[str]:
    """All the ranking's lessons (its batch modes) in one section."""
    modes = batch_modes(lessons)
    rows = ranking_rows(modes)
    target = target_value(lessons)
    workload = workload_of(lessons)
    title = f"Ranking: {len(rows)} optimizers × {', '.join(mode_prose(label) for label, _ in modes)}"
    lines = [f"## {title}" if workload == DEFAULT_WORKLOAD else f"## {workload}: {title}", ""]
    lines += workload_lines(results, workload)
    question = next((lesson.get("question") for lesson, _ in lessons if lesson.get("question")), "")
    if question:
        lines += [f"*{question}*", ""]
    seeds = seed_count([run for _, runs in lessons for run in runs])
    tuned_source = next((lesson.get("tuned_source") for lesson, _ in lessons if lesson.get("tuned_source")), "")
    pairs = mode_neighbours(modes)
    lines += [
        summarize_ranking(modes, rows, target),
        "",
        *_ranking_table(modes, rows, target),
        "",
        _ranking_caption(modes, target, seeds, tuned_source),
        "",
    ]
    if pairs:
        lines += ["### Neighbours: tied or different?", "", *neighbours_table(pairs), "", neighbours_caption(), ""]
    lines += ["### Hyperparameters", "", *_hyperparams_table(modes, rows, tuned_source)]
    lines += [
        "",
        f"![Validation loss per epoch of every optimizer, in ranking order]({curves_png(lessons)})",
        "",
        (
            f"*Validation loss per epoch, one panel per optimizer in ranking order, one line per batch mode: "
            f"the mean over the seeds that did not diverge, the band spans the {BAND}; a run whose every "
            f"seed diverged is dotted. Dashed: the target. The shared y-axis is clipped, so a run far above "
            f"chance level leaves its panel.*"
        ),
        "",
    ]
    return lines + trajectory_lines(lessons)


def _to_target_head(target: float | None) -> str:
    return f"to {target:g}" if target is not None else "to target"


def _ranking_table(modes: list[Mode], rows: list[Row], target: float | None) -> list[str]:
    """One row per optimizer, its batch modes side by side as column groups `<mode>: ...`."""
    heads = ["#", "Optimizer"] + [
        f"{label}: {head}"
        for label, _ in modes
        for head in ("val loss ± 95% CI", "val acc %", _to_target_head(target), "compile s", "seed-ep/s", "status")
    ]
    best = [next(iter(_mode_ranked(runs)), None) for _, runs in modes]
    lines = ["| " + " | ".join(heads) + " |", "|---:|---|" + "---:|---:|---:|---:|---:|---|" * len(modes)]
    for rank, (optimizer, runs) in enumerate(rows, 1):
        cells = [rank, optimizer]
        for run, mode_best in zip(runs, best, strict=False):
            cells += _ranking_cells(run, is_best=run is not None and run is mode_best)
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return lines


def _ranking_caption(modes: list[Mode], target: float | None, seeds: int, tuned_source: str) -> str:
    first = mode_prose(modes[0][0]) if modes else "the first batch mode"
    tuned = (
        f"Every run is at its optimizer's tuned point for that batch mode, from {tuned_source} (listed under "
        f"Hyperparameters). "
        if tuned_source
        else ""
    )
    return (
        f"*{tuned}Ranked by the final validation loss at {first} (mean over those of the {seeds} seeds that did "
        f"not diverge; **bold**: lowest per batch mode); runs where a seed diverged rank after the others, "
        f'runs without a finite loss last. "{_to_target_head(target).capitalize()}": epochs / optimizer '
        f"steps / seconds until the validation "
        f"{f'loss first reaches {target:g}' if target is not None else 'metric first reaches the target'} "
        f"(checked once per epoch), mean over the "
        f"seeds that reach it, with (k/S seeds) when not all do; {DASH}: no seed reaches it. "
        f"Seconds are the run time per epoch × epochs needed. Compile s: the compiled program's, on the "
        f"first run that used it, 0 on the runs that share it.*"
    )


def _ranking_cells(run: Mapping | None, is_best: bool) -> list[str]:
    if run is None:
        return [DASH] * 5 + ["not run"]
    final, timing = run["final"], run.get("timing") or {}
    loss = _loss_text(run)
    return [
        f"**{loss}**" if is_best else loss,
        fmt(final.get("val_acc_mean"), 2, scale=100),
        target_text(run),
        fmt(timing.get("compile_s"), 2),
        fmt(timing.get("seed_epochs_per_s"), 1),
        status_text(run),
    ]


def _hyperparams_table(modes: list[Mode], rows: list[Row], tuned_source: str) -> list[str]:
    """One row per optimizer; with a tuned point per batch mode when the runs are at tuned points."""
    if not tuned_source:
        return [
            "| Optimizer | Hyperparameters |",
            "|---|---|",
            *(table_row([optimizer, _row_hyperparams(modes, runs)]) for optimizer, runs in rows),
        ]
    lines = ["| Optimizer | Tuned point | Hyperparameters |", "|---|---|---|"]
    for optimizer, runs in rows:
        points = {
            label: point_text(run.get("point") or {}) for (label, _), run in zip(modes, runs, strict=False) if run
        }
        point = (
            next(iter(points.values()))
            if len(set(points.values())) == 1
            else "; ".join(f"{label}: {text}" for label, text in points.items())
        )
        lines.append(table_row([optimizer, point, _row_hyperparams(modes, runs)]))
    return lines


def _row_hyperparams(modes: list[Mode], runs: list[Mapping | None]) -> str:
    """One optimizer's hyperparameters; per batch mode only where the modes differ (--set)."""
    texts = {label: hyperparams_text(run) or "(none)" for (label, _), run in zip(modes, runs, strict=False) if run}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return "; ".join(f"{label}: {text}" for label, text in texts.items())


# ---------------------------------------------------------------------------------------------
# The summary


def summarize_ranking(modes: list[Mode], rows: list[Row], target: float | None) -> str:
    """2-5 sentences read off the numbers: the best per batch mode and whether its CI clears the
    runner-up's, the neighbours that seed noise does not separate, the fastest to the target, the
    divergences, and how the batch modes compare."""
    sentences = [
        _winners_sentence(modes),
        ties_sentence(mode_neighbours(modes)),
        _target_sentence(modes, target),
        _diverged_sentence(modes, rows),
        _modes_sentence(modes, rows),
    ]
    return " ".join(s for s in sentences if s)


def _winners_sentence(modes: list[Mode]) -> str:
    clauses = []
    for label, runs in modes:
        ranked = _mode_ranked(runs)
        if not ranked:
            clauses.append(f"at {mode_prose(label)} no run ends with a finite loss")
            continue
        best = ranked[0]
        clause = f"at {mode_prose(label)} **{best['optimizer']}** ({_loss_text(best)})"
        if len(ranked) > 1:
            runner_up = ranked[1]
            clause += (
                f", {_ci_relation(best, runner_up)} runner-up {runner_up['optimizer']}'s ({_loss_text(runner_up)})"
            )
        clauses.append(clause)
    text = "; ".join(clauses)
    return f"Lowest final validation loss: {text}." if clauses else ""


def _ci_relation(best: Mapping, runner_up: Mapping) -> str:
    cis = [run["final"].get("val_loss_ci95") for run in (best, runner_up)]
    if not all(finite(ci) for ci in cis):
        return "no 95% CI (too few seeds) to compare with"
    gap = abs(runner_up["final"]["val_loss_mean"] - best["final"]["val_loss_mean"])
    return "its 95% CI overlapping" if gap <= sum(cis) else "its 95% CI clear of"


def _target_sentence(modes: list[Mode], target: float | None) -> str:
    runs = [run for _, mode_runs in modes for run in mode_runs]
    if not any(run["target"] for run in runs):
        return ""  # no run recorded its time to target: nothing to compare
    reached = [run for run in runs if target_text(run) != DASH and finite(run["target"].get("seconds_mean"))]
    goal = f"val loss {target:g}" if target is not None else _goal(runs)
    if not reached:
        return f"No run reaches {goal} on any seed."
    every_seed = [run for run in reached if run["target"]["reached_seeds"] >= len(run.get("seeds") or ())]
    pool = every_seed or reached  # a run that only some seeds carry there is a weaker claim
    fastest = min(pool, key=lambda run: run["target"]["seconds_mean"])
    fewest = min(pool, key=lambda run: run["target"]["epochs_mean"])
    text = f"Fastest to {goal}: {fastest['name']}, {target_text(fastest)}"
    if fewest["target"]["epochs_mean"] < fastest["target"]["epochs_mean"]:
        text += f" (fewest epochs: {fewest['name']}, {count_text(fewest['target']['epochs_mean'])} ep)"
    if not every_seed:
        text += ", though no run gets there on every seed"
    never = len(runs) - len(reached)
    return text + (f"; {never} of {len(runs)} runs never reach it." if never else "; every run reaches it.")


def _goal(runs: list[Mapping]) -> str:
    """The target in words, from the runs' records (e.g. "val acc ≥ 0.884")."""
    record = next((run["target"] for run in runs if run["target"].get("metric")), None)
    if record is None or not finite(record.get("value")):
        return "the target"
    sign = "≥" if record.get("direction") == "max" else "≤"
    return f"{record['metric'].replace('_', ' ')} {sign} {record['value']:g}"


def _diverged_sentence(modes: list[Mode], rows: list[Row]) -> str:
    diverged = []
    for optimizer, runs in rows:
        seeds = [
            f"{label}: {run['diverged_seeds']}/{len(run.get('seeds') or ())}"
            for (label, _), run in zip(modes, runs, strict=False)
            if run and run.get("diverged_seeds")
        ]
        if seeds:
            diverged.append(f"{optimizer} ({', '.join(seeds)} seeds)")
    if not diverged:
        return "No run diverged."
    return f"{len(diverged)} optimizer{'s' if len(diverged) > 1 else ''} diverged (NaN loss): {', '.join(diverged)}."


def _modes_sentence(modes: list[Mode], rows: list[Row]) -> str:
    """Median final loss per batch mode, and per optimizer which mode ends lower."""
    if len(modes) < 2:
        return ""
    medians = []
    for label, runs in modes:
        losses = [run["final"]["val_loss_mean"] for run in runs if finite(run["final"].get("val_loss_mean"))]
        medians.append(
            f"{float(np.median(losses)):.4f} at {mode_prose(label)}" if losses else f"none at {mode_prose(label)}"
        )
    complete = [runs for _, runs in rows if all(run and finite(run["final"].get("val_loss_mean")) for run in runs)]
    wins = [0] * len(modes)
    for runs in complete:
        wins[min(range(len(runs)), key=lambda i: runs[i]["final"]["val_loss_mean"])] += 1
    text = f"Median final validation loss across optimizers: {', '.join(medians)}"
    if complete:
        counts = names_text(
            [f"{mode_prose(label)} for {count}" for (label, _), count in zip(modes, wins, strict=False) if count]
        )
        text += (
            f"; the lower loss comes from {counts} of the {len(complete)} optimizers with a finite loss in every mode"
        )
    return text + "."
