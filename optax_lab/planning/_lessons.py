"""A configuration's lessons: a preset's, a ranking of --optimizers per workload and batch mode,
a sweep of their hyperparameters, or each workload's reference optimizer, with the user's --set
overrides on top of the registry's and the workload's defaults.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from optax_lab import data, optimizers, presets, workloads
from optax_lab.config import DEFAULT_WORKLOAD, Config, Tuned, batch_label
from optax_lab.errors import UsageError
from optax_lab.grids import MAIN, Criterion, Sweep
from optax_lab.lessons import Lesson, RunSpec
from optax_lab.schema import LessonKind

__all__ = [
    "plan",
    "point_text",
    "ranking_lessons",
    "selected_workloads",
    "sweep_lessons",
    "sweep_points",
    "target_loss",
]


def _selected(names: tuple[str, ...]) -> list[str]:
    """The registry names `names` stands for; a name given twice, or `all` beside names, is a
    UsageError (a typo more often than a wish: a run would silently happen once)."""
    if names == ("all",):
        return optimizers.every_name()
    if "all" in names:
        raise UsageError(
            f"--optimizers {','.join(names)}: all already names every optimizer; give all or names, "
            "e.g. --optimizers all or --optimizers adam,sgd"
        )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(
            f"--optimizers {','.join(names)} names {twice[0]} twice: give each once, "
            f"e.g. --optimizers {','.join(dict.fromkeys(names))}"
        )
    return [optimizers.get(n).name for n in names]


def ranking_lessons(
    names: tuple[str, ...],
    batches: tuple[int | None, ...] | None,
    tuned: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
    tuned_source: str = "",
    *,
    workload: workloads.Workload,
) -> tuple[Lesson, ...]:
    """One lesson per batch mode (`batches`, else the workload's own), each running every
    optimizer of `names` ("all": the registry) on `workload`, at its defaults
    there (the registry's, with the workload's on top) or, with `tuned`, at its tuned point for
    that batch mode."""
    selected = _selected(names)

    def point(name: str, batch: int | None) -> dict[str, Any]:
        if tuned is None:
            return {}
        found = tuned.get(name, {}).get(batch_label(batch))
        if found is None:
            raise UsageError(
                f"--tuned {tuned_source}: no tuned point for {name} at batch {batch_label(batch)}: "
                f"tune it (optax-lab tune --optimizers {name} --batch {batch_label(batch)}) "
                "or leave it out of --optimizers"
            )
        return {hyperparam: optimizers.check_value(name, hyperparam, value) for hyperparam, value in found.items()}

    extra = {"target": workload.target.record()} | ({} if tuned is None else {"tuned_source": tuned_source})
    return tuple(
        Lesson(
            _named(workload, f"batch-{batch_label(batch)}"),
            _named(
                workload,
                f"All optimizers, {'full batch' if batch is None else f'batch {batch}'}"
                + (", at tuned points" if tuned is not None else ""),
                ": ",
            ),
            "Which optimizer reaches the lowest validation loss, and which gets to the target first?",
            tuple(
                RunSpec(
                    _named(workload, f"{name} @{batch_label(batch)}", ": "),
                    name,
                    {**_defaults(workload, name), **values},
                    batch,
                    point=values,
                )
                for name in selected
                for values in [point(name, batch)]
            ),
            kind=LessonKind.RANKING,
            extra=extra,
            **_lesson_data(workload),
        )
        for batch in batches or workload.batches
    )


def _defaults(workload: workloads.Workload, name: str) -> dict[str, Any]:
    """The workload's own defaults for optimizer `name`, checked like --set: a workload of your own
    (--workload module:function) with a bad one fails here, in one line, before any work."""
    try:
        return {k: optimizers.check_value(name, k, v) for k, v in workload.defaults_for(name).items()}
    except UsageError as error:
        raise UsageError(f"workload {workload.name}'s optimizer_defaults: {error}") from None


def _named(workload: workloads.Workload, name: str, separator: str = " ") -> str:
    """A lesson's or run's name, prefixed with its workload's unless that is the default one, the
    lesson's own workload, whose names stay short: `adam @500`."""
    return name if workload.name == DEFAULT_WORKLOAD else f"{workload.name}{separator}{name}"


def _lesson_data(workload: workloads.Workload) -> dict[str, Any]:
    return {"workload": workload.name, "num_words": workload.num_words, "epochs": workload.epochs}


def sweep_points(name: str, sweeps: Sequence[Sweep], base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cartesian product of the sweeps that apply to optimizer `name` (on top of `base`
    overrides); [{}] when none does. Every value is checked against its domain."""
    entry = optimizers.get(name)
    axes: dict[str, tuple[float, ...]] = {}
    for sweep in sweeps:
        if sweep.optimizer not in (None, name):
            continue
        hyperparam = entry.main if sweep.hyperparam == MAIN else sweep.hyperparam
        if not hyperparam or hyperparam not in entry.accepted:
            if sweep.optimizer is None:
                continue  # an unprefixed sweep applies to the optimizers that take it
            if sweep.hyperparam == MAIN:
                optimizers.main_scale(name)  # raises, saying why it has none
            raise UsageError(
                f"--sweep {sweep.text}: optimizer {name!r} takes no hyperparameter {hyperparam!r}: "
                f"it accepts {', '.join(entry.accepted)}"
            )
        if hyperparam in axes:
            raise UsageError(f"--sweep {sweep.text}: {name}.{hyperparam} is swept twice; give one --sweep for it")
        default = {**entry.all_defaults, **base}.get(hyperparam)
        try:  # normalised: a swept integer (lookahead's sync_period) reaches optax as an int
            axes[hyperparam] = tuple(
                optimizers.check_value(name, hyperparam, value) for value in sweep.values_for(default)
            )
        except (UsageError, ValueError) as error:
            raise UsageError(f"--sweep {sweep.text}: {error}") from None
    return [dict(zip(axes, combination, strict=True)) for combination in itertools.product(*axes.values())]


def point_text(point: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


def sweep_lessons(config: Config, workload: workloads.Workload) -> tuple[Lesson, ...]:
    """One sweep lesson per batch mode: every selected optimizer at every point of its grid, on
    `workload`, around its defaults there."""
    selected = _selected(config.optimizers)
    for sweep in config.sweeps:
        if sweep.optimizer is not None and optimizers.get(sweep.optimizer).name not in selected:
            raise UsageError(f"--sweep {sweep.text}: {sweep.optimizer} is not among --optimizers; add it")
    grids = {
        name: sweep_points(name, config.sweeps, {**_defaults(workload, name), **config.overrides.get(name, {})})
        for name in selected
    }
    for sweep in config.sweeps:
        if sweep.optimizer is None and not any(
            sweep.hyperparam == MAIN and optimizers.get(n).main or sweep.hyperparam in optimizers.get(n).accepted
            for n in selected
        ):
            if sweep.hyperparam == MAIN:  # say why (cocob, lbfgs), not that nobody takes "main"
                optimizers.main_scale(selected[0])
            raise UsageError(
                f"--sweep {sweep.text}: none of the optimizers takes {sweep.hyperparam!r}; "
                "see `optax-lab list` for their hyperparameters"
            )
    extra = {
        "criterion": config.criterion,
        "target_val_loss": target_loss(workload, config.criterion),
        "target": workload.target.record(),
    }
    return tuple(
        Lesson(
            _named(workload, f"sweep-{batch_label(batch)}"),
            _named(workload, f"Hyperparameter sweep, {'full batch' if batch is None else f'batch {batch}'}", ": "),
            "How sensitive is each optimizer to its hyperparameters, and where is its best point?",
            tuple(
                RunSpec(
                    _named(workload, f"{name} @{batch_label(batch)}", ": ")
                    + (f" {point_text(point)}" if point else ""),
                    name,
                    {**_defaults(workload, name), **point},
                    batch,
                    point=point,
                )
                for name in selected
                for point in grids[name]
            ),
            kind=LessonKind.SWEEP,
            extra=extra,
            **_lesson_data(workload),
        )
        for batch in config.batches or workload.batches
    )


def target_loss(workload: workloads.Workload, criterion: Criterion) -> float:
    """The validation loss the epochs-to-target criterion counts epochs to: the workload's target
    (TARGET_VAL_LOSS, 0.60, for imdb-mlp); a target on another metric cannot serve."""
    if workload.target.metric == "val_loss":
        return workload.target.value
    if Criterion(criterion) is Criterion.EPOCHS_TO_TARGET:
        raise UsageError(
            f"--criterion {criterion} counts epochs to a validation-loss target, and workload "
            f"{workload.name}'s target is {workload.target.metric}: use final-val-loss or best-val-loss"
        )
    return workloads.TARGET_VAL_LOSS


def _with_overrides(lessons: tuple[Lesson, ...], overrides) -> tuple[Lesson, ...]:
    used = {run.optimizer for lesson in lessons for run in lesson.runs}
    for name in overrides:
        if optimizers.get(name).name not in used:
            raise UsageError(f"--set {name}.…: no run uses optimizer {name!r}; the runs use {', '.join(sorted(used))}")
    # every name and value checked, and normalised (--set lookahead_adam.sync_period=6.0 reaches optax as 6)
    overrides = {
        name: {k: optimizers.check_value(name, k, v) for k, v in values.items()} for name, values in overrides.items()
    }

    def override(run: RunSpec) -> RunSpec:  # --set wins over a preset's values; a swept or tuned point wins over --set
        extra = overrides.get(run.optimizer)
        return dataclasses.replace(run, hyperparams={**run.hyperparams, **extra, **run.point}) if extra else run

    return tuple(dataclasses.replace(lesson, runs=tuple(map(override, lesson.runs))) for lesson in lessons)


def selected_workloads(config: Config) -> tuple[workloads.Workload, ...]:
    """The workloads the run trains, each once (unknown names fail here, with the closest ones)."""
    return tuple(workloads.get(name) for name in workloads.names(config.workloads))


def _tuned_per_workload(config: Config, chosen: tuple[workloads.Workload, ...]) -> Mapping[str, Tuned]:
    """With --tuned, every ranked workload at its own tuned points: a workload without a tuned.json,
    or a tuned.json of a workload the run does not train, is one line."""
    if config.tuned is None:
        return {}
    names = [workload.name for workload in chosen]
    for name, tuned in config.tuned.items():
        if name not in names:
            raise UsageError(
                f"--tuned {tuned.source} holds points tuned on workload {name}, which this run does not "
                f"train ({', '.join(names)}): add --workloads {name}, or leave that file out"
            )
    missing = [name for name in names if name not in config.tuned]
    if missing:
        raise UsageError(
            f"--tuned: no tuned.json for workload {', '.join(missing)}: rank every workload at tuned "
            f"points (optax-lab tune --workloads {missing[0]} --optimizers ..., then add --tuned its "
            "tuned.json) or leave it out of --workloads"
        )
    return config.tuned


def _ranked_modes(
    workload: workloads.Workload, chosen: tuple[workloads.Workload, ...]
) -> tuple[int | None, ...] | None:
    """The batch modes a ranking trains on `workload` without --batch: every one of its own when it
    is the only workload; over several, the first alone, the one the performance profiles rank
    (its other modes would be trained and never ranked: imdb-mlp's and imdb-logreg's full batch
    are 16 of the 80 programs and 2 of the 15.7 minutes of an 8-optimizer ranking with them)."""
    return workload.batches[:1] if len(chosen) > 1 else None


def plan(config: Config) -> tuple[Lesson, ...]:
    """The lessons to run: a sweep or a ranking of --optimizers on every workload, each workload's
    reference optimizer when only --workloads is given, else the preset's (on imdb-mlp). Unknown
    presets, workloads, datasets, optimizers and values fail here, in one line, before any work."""
    data.check_dataset_name(config.dataset)
    chosen = selected_workloads(config)
    if config.sweeps:
        lessons = tuple(lesson for workload in chosen for lesson in sweep_lessons(config, workload))
    elif config.optimizers:
        tuned = _tuned_per_workload(config, chosen)
        lessons = tuple(
            lesson
            for workload in chosen
            for lesson in ranking_lessons(
                config.optimizers,
                config.batches or _ranked_modes(workload, chosen),
                *tuned.get(workload.name, (None, "")),
                workload=workload,
            )
        )
    elif config.workloads != (DEFAULT_WORKLOAD,):
        lessons = tuple(
            lesson
            for workload in chosen
            for lesson in ranking_lessons((workload.reference,), config.batches, workload=workload)
        )
    else:
        lessons = presets.get(config.preset)
    return _with_overrides(lessons, config.overrides)
