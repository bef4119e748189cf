"""A sampled search's stage 1, as the tuner plans and scores it: every trial of every study of an
optimizer is a point on the replica axis of one compiled program (per batch mode), and its time to
target is AlgoPerf's external-tuning one, the median over studies of each study's fastest trial.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optax_lab import optimizers, search
from optax_lab.config import batch_label
from optax_lab.lessons import Lesson
from optax_lab.sweep import Protocol

__all__ = ["StudyRuns", "fastest_median", "search_record", "study_lessons", "time_to_target", "trial_epochs"]

StudyRuns = dict[str, dict[str, list[list[str]]]]  # lesson name -> optimizer -> each study's run names


def study_lessons(
    shapes: Sequence[Lesson],
    rankings: Sequence[Lesson],
    axes: Mapping[str, Sequence[search.Axis]],
    protocol: Protocol,
    study_seeds: Sequence[int],
) -> tuple[tuple[Lesson, ...], StudyRuns]:
    """Each sweep lesson of `shapes` (a batch mode's) with its runs replaced by every trial of every
    study (`study_seeds`, one each) of each optimizer with `axes`, at its values in the ranking
    lesson of the same batch mode elsewhere; and which runs each study holds. An optimizer's
    trials differ in traced values alone, so they share one compiled program."""
    studies = {
        name: [
            [
                {k: optimizers.check_value(name, k, v) for k, v in point.items()}
                for point in search.study_points(protocol.search, found, protocol.trials, seed)
            ]
            for seed in study_seeds
        ]
        for name, found in axes.items()
        if found
    }
    lessons, study_runs = [], {}
    for shape, ranking in zip(shapes, rankings, strict=True):
        runs, mine = [], study_runs.setdefault(shape.name, {})
        for base in (run for run in ranking.runs if run.optimizer in studies):
            for study, trials in enumerate(studies[base.optimizer], 1):
                named = [
                    dataclasses.replace(
                        base,
                        name=f"{base.name} study {study} trial {trial}",
                        hyperparams={**base.hyperparams, **point},
                        point=point,
                    )
                    for trial, point in enumerate(trials, 1)
                ]
                runs += named
                mine.setdefault(base.optimizer, []).append([run.name for run in named])
        lessons.append(dataclasses.replace(shape, runs=tuple(runs)))
    return tuple(lessons), study_runs


def search_record(
    protocol: Protocol, space: search.Space, axes: Mapping[str, Sequence[search.Axis]], study_seeds: Sequence[int]
) -> dict[str, Any]:
    """How a sampled search chose its points, for results.json's tuning record and tuned.json: the
    ruleset, its sizes and seeds, the space as given, and each optimizer's ranges as sampled."""
    return {
        "search": protocol.search.value,
        "trials": protocol.trials,
        "studies": protocol.studies,
        "study_seeds": list(study_seeds),
        "space": space.record(),
        "space_source": space.source,
        "ranges": {name: [axis.record() for axis in found] for name, found in axes.items() if found},
    }


def trial_epochs(target: Mapping[str, Any], seeds: int) -> float:
    """A trial's time to the workload's target from its run's record (`run["target"]`): the mean
    epochs over its seeds when every seed reached it, else infinity (a trial that reaches it on
    some seeds only does not count as reaching it)."""
    reached, epochs = target.get("reached_seeds") or 0, target.get("epochs_mean")
    if seeds < 1 or reached < seeds or not isinstance(epochs, (int, float)) or not math.isfinite(epochs):
        return math.inf
    return float(epochs)


def fastest_median(study_times: Sequence[Sequence[float]]) -> tuple[float, list[float]]:
    """(the median over studies of each study's fastest trial, each study's fastest): AlgoPerf's
    external-tuning time to target. A study none of whose trials reached the target is infinitely
    slow, so the median is infinite when half of the studies or more never got there."""
    fastest = [min(times, default=math.inf) for times in study_times]
    return (float(np.median(fastest)) if fastest else math.inf), fastest


def time_to_target(
    lessons: Sequence[Lesson], study_runs: StudyRuns, runs: Sequence[Mapping[str, Any]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Batch label -> optimizer -> the epochs (and steps) to the workload's target by
    `fastest_median`, from the results' run records, and each study's fastest; None where the
    median study never got there."""
    by_name = {run["name"]: run for run in runs}
    record: dict[str, dict[str, dict[str, Any]]] = {}
    for lesson in lessons:
        for name, studies in study_runs.get(lesson.name, {}).items():
            trials = [[by_name[run] for run in study] for study in studies]
            times = [[trial_epochs(run["target"], len(run["seeds"])) for run in study] for study in trials]
            median, fastest = fastest_median(times)
            reached = math.isfinite(median)
            record.setdefault(batch_label(lesson.runs[0].batch_size), {})[name] = {
                "epochs": median if reached else None,
                "steps": median * trials[0][0]["steps_per_epoch"] if reached else None,
                "study_epochs": [time if math.isfinite(time) else None for time in fastest],
            }
    return record
