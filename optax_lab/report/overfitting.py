"""The overfitting section (lessons of kind "overfitting"): a big MLP on few reviews for many
epochs, without a remedy (the lesson's first run, the baseline) and with each remedy (L2,
decoupled weight decay, dropout, a smaller model). Its plots are in `overfitting_plot`.

The train/val gap uses the loss on the whole training set after each epoch with dropout off
(`train_eval_loss`), not the training-time loss, which dropout inflates. Early stopping is not a
run: it is replayed on each seed's validation losses as Keras' EarlyStopping would stop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from optax_lab.report.formatting import (
    count_text,
    fmt,
    lesson_title,
    mean_ci,
    optimizer_text,
    png_name,
    range_text,
    section_head,
    status_text,
    table_row,
)
from optax_lab.report.plotting import BAND
from optax_lab.report.records import (
    NO_STAT,
    LessonRuns,
    Stat,
    final_stat,
    finite,
    healthy_history,
    healthy_seeds,
    history,
    seed_count,
)

EARLY_STOPPING_PATIENCE = 3  # Keras EarlyStopping(patience=3, restore_best_weights=True)


@dataclasses.dataclass(frozen=True)
class Fit:
    """One run's per-seed numbers over its healthy seeds (Stats: mean ± 95% CI over them)."""

    run: Mapping
    epochs: int
    train_end: Stat  # training loss after the last epoch (whole training set, dropout off)
    val_end: Stat
    gap_end: Stat  # val − train after the last epoch
    best_val: Stat  # each seed's lowest val loss of any epoch
    best_epoch: np.ndarray  # [S] where (epochs from 1)
    rise: Stat  # val at the end − the seed's lowest: how far it climbs back after its best epoch
    stop_epoch: np.ndarray  # [S] the epoch after which early stopping ends training
    stop_val: Stat  # the val loss it returns (the best weights up to there)
    stop_gain: Stat  # val at the end − what early stopping returns
    seconds_per_epoch: float  # the run's time (all seeds train together) ÷ epochs

    @property
    def epochs_saved(self) -> float:
        return float(self.epochs - self.stop_epoch.mean()) if self.stop_epoch.size else math.nan

    @property
    def seconds_saved(self) -> float:
        return self.epochs_saved * self.seconds_per_epoch


def early_stop_epochs(val: np.ndarray, patience: int = EARLY_STOPPING_PATIENCE) -> np.ndarray:
    """[S] the epoch (from 1) after which EarlyStopping(patience) stops each seed: the first epoch
    `patience` epochs past the lowest val loss so far; the last epoch if there is none."""
    stops = []
    for row in val:
        best, stop = 0, len(row)
        for epoch in range(1, len(row)):
            if row[epoch] < row[best]:
                best = epoch
            elif epoch - best >= patience:
                stop = epoch + 1
                break
        stops.append(stop)
    return np.asarray(stops, np.int64)


def train_curve(run: Mapping) -> np.ndarray:
    """[S, E] the training loss drawn beside the val loss: whole training set, dropout off; the
    training-time loss only if that wasn't recorded."""
    values = history(run, "train_eval_loss")
    return values if values.size else history(run, "train_loss")


def fit(run: Mapping) -> Fit:
    healthy = healthy_seeds(run)
    val, train = healthy_history(run, "val_loss"), history(run, "train_eval_loss")
    train = train[healthy] if train.ndim == 2 and len(train) == len(healthy) else np.zeros((0, 0))
    epochs = val.shape[1] if val.ndim == 2 else 0
    run_s = (run.get("timing") or {}).get("run_s")
    seconds = run_s / epochs if finite(run_s) and epochs else math.nan
    if not val.size:
        return Fit(
            run,
            epochs,
            NO_STAT,
            NO_STAT,
            NO_STAT,
            NO_STAT,
            np.zeros(0),
            NO_STAT,
            np.zeros(0),
            NO_STAT,
            NO_STAT,
            seconds,
        )
    has_train = train.shape == val.shape
    stop = early_stop_epochs(val)
    returned = np.array([row[:end].min() for row, end in zip(val, stop, strict=False)])
    return Fit(
        run,
        epochs,
        Stat.of(train[:, -1]) if has_train else NO_STAT,
        Stat.of(val[:, -1]),
        Stat.of(val[:, -1] - train[:, -1]) if has_train else NO_STAT,
        Stat.of(val.min(axis=1)),
        val.argmin(axis=1) + 1,
        Stat.of(val[:, -1] - val.min(axis=1)),
        stop,
        Stat.of(returned),
        Stat.of(val[:, -1] - returned),
        seconds,
    )


# ---------------------------------------------------------------------------------------------
# Text


def summarize_overfitting(runs: list[Mapping]) -> str:
    """Three sentences read off the numbers: the baseline's (the lesson's first run's) gap and
    where its val loss turns; how many remedies narrow the gap, which most, which reaches the
    lowest val loss; what early stopping saves on the baseline, against the best remedy."""
    if not runs:
        return ""
    base, remedies = fit(runs[0]), [f for f in map(fit, runs[1:]) if finite(f.val_end.mean)]
    if not finite(base.val_end.mean):
        text = f"Baseline ({base.run['name']}): every seed diverged, so there is no gap to measure the remedies by."
        if remedies:
            lowest = min(remedies, key=lambda f: f.val_end.mean)
            text += (
                f" The lowest validation loss after the last epoch is {lowest.run['name']}'s, "
                f"{mean_ci(lowest.val_end)}."
            )
        return text
    sentences = [_baseline_sentence(base), _remedies_sentence(base, remedies), _early_stopping_sentence(base, remedies)]
    return " ".join(s for s in sentences if s)


def _baseline_sentence(base: Fit) -> str:
    name = f"Baseline ({base.run['name']})"
    if (base.best_epoch == base.epochs).all():
        text = (
            f"{name}: the validation loss is still falling at the last epoch, {base.epochs} ({mean_ci(base.val_end)})"
        )
    else:
        # "rises" only when the climb after each seed's best epoch is more than the seed noise
        rises = base.rise.mean > 0 and (not finite(base.rise.ci) or base.rise.mean > base.rise.ci)
        text = (
            f"{name}: the validation loss is lowest at epoch {range_text(base.best_epoch)} "
            f"({mean_ci(base.best_val)}) and {'then rises to' if rises else 'ends at'} {mean_ci(base.val_end)} "
            f"after epoch {base.epochs}"
        )
    if finite(base.train_end.mean):
        text += (
            f", while the training loss (whole training set, dropout off) ends at {base.train_end.mean:.4f}: "
            f"a train/val gap of {mean_ci(base.gap_end)}"
        )
    return text + "."


def _remedies_sentence(base: Fit, remedies: list[Fit]) -> str:
    if not remedies:
        return ""
    clauses = []
    gapped = [f for f in remedies if finite(f.gap_end.mean)]
    if gapped and finite(base.gap_end.mean):
        narrowest = min(gapped, key=lambda f: f.gap_end.mean)
        narrower = [f for f in gapped if f.gap_end.mean < base.gap_end.mean]
        if narrowest.gap_end.clears(base.gap_end):
            noise = "95% CIs apart"
        elif narrowest.gap_end.has_ci and base.gap_end.has_ci:
            noise = "95% CIs overlap"
        else:
            noise = "too few seeds for a CI"
        text = (
            f"{len(narrower)} of {len(gapped)} remedies narrow the final gap; the narrowest is "
            f"{narrowest.run['name']}'s, {mean_ci(narrowest.gap_end)} against {mean_ci(base.gap_end)} ({noise})"
        )
        runner_up = min((f for f in gapped if f is not narrowest), key=lambda f: f.gap_end.mean, default=None)
        if runner_up is not None and narrowest.gap_end.has_ci and runner_up.gap_end.has_ci:
            text += (
                f", {'clear of' if narrowest.gap_end.clears(runner_up.gap_end) else 'its 95% CI overlapping'} "
                f"the next, {runner_up.run['name']}'s {mean_ci(runner_up.gap_end)}"
            )
        clauses.append(text)
    everyone = [base, *remedies]
    lowest = min((f for f in everyone if finite(f.best_val.mean)), key=lambda f: f.best_val.mean)
    clauses.append(
        f"the lowest validation loss of any epoch is {lowest.run['name']}'s, {mean_ci(lowest.best_val)} "
        f"at epoch {range_text(lowest.best_epoch)}"
    )
    ending = min(everyone, key=lambda f: f.val_end.mean)
    clauses.append(f"the lowest after the last epoch is {ending.run['name']}'s, {mean_ci(ending.val_end)}")
    text = "; ".join(clauses)
    return text[0].upper() + text[1:] + "."


def _early_stopping_sentence(base: Fit, remedies: list[Fit]) -> str:
    if not base.stop_epoch.size:
        return ""
    rule = f"Early stopping (patience {EARLY_STOPPING_PATIENCE}, best weights restored)"
    if (base.stop_epoch == base.epochs).all():
        text = (
            f"{rule} never stops the baseline within its {base.epochs} epochs, so it returns the lowest "
            f"validation loss seen, {mean_ci(base.stop_val)}"
        )
    else:
        seconds = f", {base.seconds_saved:.2f} s of this run" if finite(base.seconds_saved) else ""
        text = (
            f"{rule} stops the baseline after epoch {range_text(base.stop_epoch)} and returns validation loss "
            f"{mean_ci(base.stop_val)} instead of {mean_ci(base.val_end)}, saving "
            f"{count_text(base.epochs_saved)} of {base.epochs} epochs{seconds}"
        )
    finished = [f for f in remedies if finite(f.val_end.mean)]
    if finished:
        best = min(finished, key=lambda f: f.val_end.mean)
        relation = "below" if base.stop_val.mean < best.val_end.mean else "above"
        noise = (
            "95% CIs apart"
            if base.stop_val.clears(best.val_end)
            else "95% CIs overlap"
            if base.stop_val.has_ci and best.val_end.has_ci
            else "too few seeds for a CI"
        )
        text += (
            f"; that is {relation} the best remedy trained to the end, {best.run['name']} with "
            f"{mean_ci(best.val_end)} ({noise})"
        )
    return text + "."


def remedy_text(run: Mapping) -> str:
    """`128-128 relu, glorot_uniform, dropout 0.5; adam(lr=0.001)`."""
    model = (run.get("model") or {}).get("describe") or ""
    return f"{model}; {optimizer_text(run)}" if model else optimizer_text(run)


def overfitting_section(lessons: Sequence[LessonRuns], results: Mapping) -> list[str]:
    ((lesson, runs),) = lessons  # one section per lesson
    fits = [fit(run) for run in runs]
    best = min((f for f in fits if finite(f.best_val.mean)), key=lambda f: f.best_val.mean, default=None)
    narrowest = min((f for f in fits if finite(f.gap_end.mean)), key=lambda f: f.gap_end.mean, default=None)
    epochs = max((f.epochs for f in fits), default=0)
    lines = section_head(lesson, runs) + [
        summarize_overfitting(runs),
        "",
        "| Run | Model; optimizer | Train loss, end | Val loss, end ± 95% CI | Gap (val − train) ± 95% CI "
        "| Best val loss ± 95% CI | Best epoch | Val acc %, end ± 95% CI | Status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f in fits:
        gap, best_val = mean_ci(f.gap_end), mean_ci(f.best_val)
        lines.append(
            table_row(
                [
                    f.run["name"],
                    remedy_text(f.run),
                    fmt(f.train_end.mean, 4),
                    mean_ci(f.val_end),
                    f"**{gap}**" if f is narrowest else gap,
                    f"**{best_val}**" if f is best else best_val,
                    range_text(f.best_epoch),
                    mean_ci(final_stat(f.run, "val_acc"), 2, 100),
                    status_text(f.run),
                ]
            )
        )
    lines += [
        "",
        f"*End: after epoch {epochs}. Mean ± 95% CI over the seeds that did not diverge, of {seed_count(runs)}. "
        f"Train loss: on the whole training set after the epoch, dropout off (the loss during training, with "
        f"dropout on, would flatter the gap). Best val loss: each seed's lowest of any epoch; best epoch: where "
        f"(min–max over seeds). **Bold**: the narrowest gap, the lowest best val loss. The first run is the "
        f"baseline the summary compares with.*",
        "",
        f"**Early stopping**: Keras' `EarlyStopping(patience={EARLY_STOPPING_PATIENCE}, restore_best_weights=True)` "
        f"replayed on each seed's validation losses",
        "",
        "| Run | Best epoch | Stops after epoch | Returns val loss ± 95% CI | Val loss at the end ± 95% CI "
        "| Lower by ± 95% CI | Epochs saved | Seconds saved |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in fits:
        lines.append(
            table_row(
                [
                    f.run["name"],
                    range_text(f.best_epoch),
                    range_text(f.stop_epoch),
                    mean_ci(f.stop_val),
                    mean_ci(f.val_end),
                    mean_ci(f.stop_gain),
                    count_text(f.epochs_saved),
                    fmt(f.seconds_saved, 2),
                ]
            )
        )
    lines += [
        "",
        f"*It stops once {EARLY_STOPPING_PATIENCE} epochs pass without a new lowest validation loss, and returns "
        f"the weights of that lowest epoch. Epochs saved: mean over seeds; seconds saved: those epochs × this "
        f"run's time per epoch (all seeds train together).*",
        "",
        f"![{lesson_title(lesson)}: train/val gap per epoch]({png_name(lesson, 'gap')})",
        "",
        f"*The train/val gap (validation − training loss, both with dropout off) per epoch, one line per run: the "
        f"mean over the seeds that did not diverge, bands the {BAND}.*",
        "",
        f"![{lesson_title(lesson)}: training and validation loss per epoch]({png_name(lesson, 'curves')})",
        "",
        f"*One panel per run: validation loss (solid) and training loss on the whole training set, dropout off "
        f"(dashed): the mean and the {BAND}; the shading between them is the gap. Dotted vertical line: the seeds' "
        f"mean best epoch.*",
    ]
    return lines
