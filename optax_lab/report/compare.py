"""The generic lesson section ("compare", and any kind this version doesn't know): a few runs side
by side in one table, a summary read off their numbers, and their loss and accuracy curves.

Every clause of the summary is chosen and filled from the numbers: change them and the text follows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from optax_lab.report.formatting import (
    batch_text,
    cell,
    fmt,
    lesson_title,
    mean_ci,
    names_text,
    optimizer_text,
    png_name,
    status_text,
)
from optax_lab.report.plotting import BAND, draw_seeds, epoch_axis, figure, png_bytes
from optax_lab.report.records import LessonRuns, final_stat, finite, seed_count, seed_matrix

TABLE_HEAD = (
    "| Run | Optimizer | Batch | Val loss ± 95% CI | Val acc % ± 95% CI | Best epoch "
    "| Compile s | Run s | Seed-epochs/s | Status |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
)


def compare_section(lessons: Sequence[LessonRuns], results: Mapping) -> list[str]:
    ((lesson, runs),) = lessons  # one section per lesson
    n_train = results["dataset"].get("n_train")
    best = _best_run(runs)
    lines = [f"## {lesson_title(lesson)}", "", f"*{lesson.get('question', '')}*", "", TABLE_HEAD]
    for run in runs:
        timing = run.get("timing") or {}
        loss = mean_ci(final_stat(run, "val_loss"))
        cells = [
            run["name"],
            optimizer_text(run),
            batch_text(run, n_train),
            f"**{loss}**" if run is best else loss,
            mean_ci(final_stat(run, "val_acc"), 2, scale=100),
            fmt(run["final"].get("best_epoch_mean"), 1),
            fmt(timing.get("compile_s"), 2),
            fmt(timing.get("run_s"), 2),
            fmt(timing.get("seed_epochs_per_s"), 1),
            status_text(run),
        ]
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    lines += [
        "",
        summarize_lesson(runs),
        "",
        f"![{lesson_title(lesson)}: loss and accuracy per epoch]({png_name(lesson, 'curves')})",
        "",
        f"*Loss (left) and accuracy (right) per epoch; solid: validation, dashed: training. "
        f"Lines are the mean over {seed_count(runs)} seeds, bands span the {BAND}; "
        f"seeds that diverged are left out of both, and a run whose every seed diverged is drawn "
        f"dotted up to where it blew up.*",
    ]
    return lines


def compare_plots(lessons: Sequence[LessonRuns], results: Mapping) -> dict[str, bytes]:
    ((lesson, runs),) = lessons
    return {png_name(lesson, "curves"): plot_curves(lesson, runs)}


# ---------------------------------------------------------------------------------------------
# The summary


def _best_run(runs: list[Mapping]) -> Mapping | None:
    scored = [run for run in runs if finite(run["final"].get("val_loss_mean"))]
    return min(scored, key=lambda run: run["final"]["val_loss_mean"], default=None)


def summarize_lesson(runs: list[Mapping]) -> str:
    """2-4 sentences read off the numbers: the winner and its margins, whether the 95% CIs
    separate it from the others, the train/val gap, the speed difference, divergences."""
    best = _best_run(runs)
    if best is None:
        return "No run ended with a finite validation loss: every seed of every run diverged."
    loss = lambda run: run["final"]["val_loss_mean"]  # noqa: E731
    others = sorted((run for run in runs if run is not best and finite(loss(run))), key=loss)
    sentences = [_winner_sentence(best, others, runs)]
    if others:
        sentences.append(_ci_sentence(best, others))
    sentences += [s for s in (_gap_speed_sentence(runs), _diverged_sentence(runs)) if s]  # may be ""
    return " ".join(sentences)


def _winner_sentence(best: Mapping, others: list[Mapping], runs: list[Mapping]) -> str:
    best_loss = best["final"]["val_loss_mean"]
    if others:
        margins = names_text(
            [
                f"{run['name']} ({run['final']['val_loss_mean']:.4f}) by "
                f"{run['final']['val_loss_mean'] - best_loss:.4f}"
                for run in others
            ]
        )
        text = f"**{best['name']}** ends with the lowest validation loss, {best_loss:.4f}, below {margins}"
    else:
        text = f"**{best['name']}** ends with validation loss {best_loss:.4f}"
    with_acc = [run for run in runs if finite(run["final"].get("val_acc_mean"))]
    top = max(with_acc, key=lambda run: run["final"]["val_acc_mean"], default=None)
    if top is best and len(with_acc) > 1:
        text += f", and also the highest validation accuracy ({top['final']['val_acc_mean'] * 100:.2f} %)"
    elif top is not None and top is not best:
        text += (
            f"; {top['name']} has the highest validation accuracy ({top['final']['val_acc_mean'] * 100:.2f} %"
            f" vs {fmt(best['final'].get('val_acc_mean'), 2, 100)} %)"
        )
    return text + "."


def _possessive(names: list[str]) -> str:
    return names_text([f"{name}'s" for name in names])


def _ci_sentence(best: Mapping, others: list[Mapping]) -> str:
    def interval(run):
        mean, ci = run["final"]["val_loss_mean"], run["final"].get("val_loss_ci95")
        return (mean - ci, mean + ci) if finite(ci) else None

    if interval(best) is None:
        return "Without a 95% CI for it (too few seeds), seed noise can't be told from the margin."
    overlap = [run["name"] for run in others if interval(run) and interval(run)[0] <= interval(best)[1]]
    clear = [run["name"] for run in others if interval(run) and interval(run)[0] > interval(best)[1]]
    seeds = len(best.get("seeds") or ())
    if not overlap and not clear:
        return "The other runs have no 95% CI (too few seeds) to compare against."
    if not overlap:
        return f"Its 95% CI does not overlap {_possessive(clear)}, so the lead is larger than the seed-to-seed noise."
    text = f"Its 95% CI overlaps {_possessive(overlap)}, so {seeds} seeds do not separate them"
    return text + (f"; it clears {_possessive(clear)}." if clear else ".")


def _gap_speed_sentence(runs: list[Mapping]) -> str:
    clauses = []
    gaps = {
        run["name"]: run["final"]["val_loss_mean"] - run["final"]["train_loss_mean"]
        for run in runs
        if finite(run["final"].get("val_loss_mean")) and finite(run["final"].get("train_loss_mean"))
    }
    if gaps:
        listed = ", ".join(f"{name} {gap:+.4f}" for name, gap in gaps.items())
        widest = max(gaps, key=gaps.get)
        clauses.append(f"Val − train loss at the end: {listed}" + (f" (widest: {widest})" if len(gaps) > 1 else ""))
    rates = {
        run["name"]: run["timing"]["seed_epochs_per_s"]
        for run in runs
        if finite((run.get("timing") or {}).get("seed_epochs_per_s"))
    }
    if len(rates) > 1:
        fast, slow = max(rates, key=rates.get), min(rates, key=rates.get)
        if rates[slow] > 0 and rates[fast] / rates[slow] >= 1.05:
            clauses.append(
                f"{fast} trains fastest, {rates[fast]:.1f} seed-epochs/s, "
                f"{rates[fast] / rates[slow]:.1f}× {slow}'s {rates[slow]:.1f}"
            )
        else:
            clauses.append(f"all train at about the same speed ({rates[slow]:.1f}–{rates[fast]:.1f} seed-epochs/s)")
    elif rates:
        name, rate = next(iter(rates.items()))
        clauses.append(f"{name} trains at {rate:.1f} seed-epochs/s")
    return "; ".join(clauses) + "." if clauses else ""


def _diverged_sentence(runs: list[Mapping]) -> str:
    diverged = [
        f"{run['name']} on {run['diverged_seeds']} of {len(run.get('seeds') or ())} seeds"
        for run in runs
        if run.get("diverged_seeds")
    ]
    return f"Diverged (NaN loss): {', '.join(diverged)}." if diverged else ""


# ---------------------------------------------------------------------------------------------
# The curves


def plot_curves(lesson: Mapping, runs: list[Mapping]) -> bytes:
    """Loss and accuracy per epoch for the lesson's runs, like the Keras lesson's two plots."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig = figure(11, 4.6)
    ax_loss, ax_acc = fig.subplots(1, 2)
    bounds = {ax_loss: [], ax_acc: []}  # finite extents of the kept seeds, to frame the axes
    handles, epochs = [], 1
    for index, run in enumerate(runs):
        color = f"C{index % 10}"
        history = run.get("history") or {}
        for key, ax, scale in (
            ("val_loss", ax_loss, 1),
            ("train_loss", ax_loss, 1),
            ("val_acc", ax_acc, 100),
            ("train_acc", ax_acc, 100),
        ):
            values = seed_matrix(history.get(key)) * scale
            if values.size:
                style = "-" if key.startswith("val") else "--"
                bounds[ax] += draw_seeds(ax, values, None, color, style, linewidth=1.5, markersize=3)
                epochs = max(epochs, values.shape[1])
        diverged, seeds = run.get("diverged_seeds") or 0, len(run.get("seeds") or ())
        label = run["name"] + (f" ({diverged}/{seeds} seeds diverged)" if diverged else "")
        handles.append(Line2D([], [], color=color, label=label, linestyle=":" if diverged >= seeds > 0 else "-"))
    handles += [
        Line2D([], [], color="0.3", label="validation"),
        Line2D([], [], color="0.3", linestyle="--", label="training"),
        Patch(color="0.3", alpha=0.2, label=BAND),
    ]
    for ax, heading, ylabel in ((ax_loss, "Loss", "binary cross-entropy"), (ax_acc, "Accuracy", "accuracy (%)")):
        ax.set_title(heading)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        epoch_axis(ax, epochs)
        ax.grid(alpha=0.3)
        if bounds[ax]:  # frame the kept seeds; a diverged seed's blow-up leaves the frame
            low, high = min(bounds[ax]), max(bounds[ax])
            pad = (high - low) * 0.05 or abs(high) * 0.05 or 0.05
            ax.set_ylim(low - pad, high + pad)
    fig.suptitle(f"{lesson_title(lesson)}: loss and accuracy per epoch")
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False)
    return png_bytes(fig, dpi=110)
