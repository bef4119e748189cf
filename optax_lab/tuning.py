"""`tune(config, protocol)`: every optimizer tuned the same way before it is ranked, as DeepOBS
and AlgoPerf's external-tuning ruleset do it, in miniature.

Stage 1: a log grid of each optimizer's main scale around its registry default (17 points over
4 decades by default), on a few search seeds, all points of one optimizer on the replica axis of
one compiled program. The best point by the stated criterion wins; a winner on the grid's edge
extends the grid by a decade on that side, up to `max_extensions` times. Stage 2: the winner
rerun on the full seed count, with seeds disjoint from the search seeds (no winner's curse in the
ranking). The tuned points go to tuned.json, which `optax-lab run --tuned` ranks at.

Given a `RunStore`, every program of both stages is saved as it finishes; a resumed tune
restores them, and since the choices (grid extensions, winners) are made from the same
histories, it plans and restores the same programs before training the missing ones.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from optax_lab import optimizers, workloads
from optax_lab.config import DEFAULT_WORKLOAD, Config, Criterion, Lesson, Tuned, batch_label
from optax_lab.errors import UsageError
from optax_lab.experiment import (Progress, check_host_memory, distinct_jobs, load_arrays, partial_results, plan,
                                  resume_inputs, run_jobs, selected_workloads)
from optax_lab.metrics import results_dict
from optax_lab.planning import target_loss
from optax_lab.run_store import RunStore, Unfinished, fingerprint
from optax_lab.schema import SCHEMA
from optax_lab.selection import best_index, on_edge
from optax_lab.sweep import MAIN, Protocol, Sweep, around_value
from optax_lab.train import RunResult

__all__ = ["TUNED_KIND", "read_tuned", "tune", "tuned_record"]

TUNED_KIND = "optax-lab tuned points"  # tuned.json's "kind": how a foreign JSON file is told apart


def _extension(default: float, protocol: Protocol, indices: list[int], side: str) -> list[tuple[int, float]]:
    """A decade of new (grid index, value) pairs beyond the grid's `side` edge, at its spacing."""
    edge = min(indices) if side == "low" else max(indices)
    step = -1 if side == "low" else 1
    return [(edge + step * k, around_value(default, protocol.decades, protocol.points, edge + step * k))
            for k in range(1, protocol.per_decade + 1)]


def _search(config: Config, protocol: Protocol, lessons: tuple[Lesson, ...], arrays, seeds,
            progress: Progress | None, workload: workloads.Workload,
            store: RunStore | None = None) -> tuple[tuple[Lesson, ...], list[RunResult]]:
    """Stage 1: each sweep lesson's grids, extended on winning edges; the lessons with their
    extension runs added and where they were extended, and every run."""
    target = target_loss(workload, protocol.criterion)
    results = run_jobs(config, distinct_jobs(config, lessons), arrays, seeds, progress, store)
    done = []
    for lesson in lessons:
        extended: dict[str, list[str]] = {}
        limit: list[str] = []
        runs = list(lesson.runs)
        for name in dict.fromkeys(run.optimizer for run in lesson.runs):
            if not optimizers.get(name).main:
                continue
            main = optimizers.get(name).main
            default = {**optimizers.get(name).all_defaults, **workload.defaults_for(name),
                       **config.overrides.get(name, {})}[main]
            grid = {around_value(default, protocol.decades, protocol.points, i): i for i in range(protocol.points)}
            while True:
                mine = sorted((r for r in results if r.spec.optimizer == name and r.spec in runs),
                              key=lambda r: r.spec.point[main])
                index = best_index([r.history for r in mine], protocol.criterion, target)
                side = on_edge(index, len(mine)) if index is not None else ""
                if not side:
                    break
                if len(extended.get(name, [])) >= protocol.max_extensions:
                    limit.append(name)
                    break
                extended.setdefault(name, []).append(side)
                template = mine[0].spec
                new = []
                for i, value in _extension(default, protocol, list(grid.values()), side):
                    grid[value] = i
                    new.append(dataclasses.replace(template, name=template.name.rsplit(" ", 1)[0] + f" {main}={value:g}",
                                                   hyperparams={**template.hyperparams, main: value},
                                                   point={main: value}))
                runs += new
                results += run_jobs(config, distinct_jobs(config, (dataclasses.replace(lesson, runs=tuple(new)),)),
                                    arrays, seeds, progress, store)
        done.append(dataclasses.replace(lesson, runs=tuple(runs), extra={
            **lesson.extra, "stage": 1, "extended": extended, "limit_reached": limit}))
    return tuple(done), results


def _winners(lessons: tuple[Lesson, ...], results: list[RunResult], criterion: Criterion, target: float
             ) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, str]]:
    """optimizer -> batch label -> the best point; and a note per optimizer whose grid all diverged."""
    points: dict[str, dict[str, dict[str, Any]]] = {}
    notes: dict[str, str] = {}
    for lesson in lessons:
        batch = batch_label(lesson.runs[0].batch_size)
        for name in dict.fromkeys(run.optimizer for run in lesson.runs):
            mine = [r for r in results if r.spec.optimizer == name and r.spec in lesson.runs]
            index = best_index([r.history for r in mine], criterion, target)
            if index is None:
                notes[name] = "every grid point diverged: registry default kept"
            points.setdefault(name, {})[batch] = dict(mine[index].spec.point) if index is not None else {}
    return points, notes


def tune(config: Config, protocol: Protocol = Protocol(), *, command: str = "", progress: Progress | None = None,
         warn: Callable[[str], None] | None = None, compile_cache: bool = False,
         store: RunStore | None = None) -> tuple[dict, dict]:
    """(results, tuned record): both stages' runs in one results dict (stage-1 sweep lessons,
    then the stage-2 ranking at the tuned points), and what tuned.json holds. With a `store`, a
    stop during training raises `Unfinished` with the finished runs' results, marked incomplete."""
    config.validate()
    protocol.validate()
    chosen = selected_workloads(config)
    if len(chosen) != 1:
        raise UsageError(f"tune works on one workload at a time (tuned.json holds one's points), not "
                         f"{', '.join(w.name for w in chosen)}: give one --workloads NAME")
    workload = chosen[0]
    search_config = dataclasses.replace(
        config, sweeps=(Sweep(f"main=around:{protocol.decades:g}:{protocol.points}", MAIN,
                              around=(protocol.decades, protocol.points)),), criterion=protocol.criterion)
    # Optimizers without a main scale have nothing to search: they go straight to the ranking.
    stage1 = tuple(dataclasses.replace(lesson, runs=tuple(run for run in lesson.runs if run.point))
                   for lesson in plan(search_config))
    check_host_memory(config, distinct_jobs(config, plan(config)))
    start = time.perf_counter()
    arrays, dataset_info = load_arrays(config, distinct_jobs(config, stage1), warn)
    # The search seeds follow the ranking's: disjoint, so the ranking does not reuse the seeds it was chosen on.
    search_seeds = tuple(range(config.seed + config.seeds, config.seed + config.seeds + protocol.search_seeds))
    seeds = tuple(range(config.seed, config.seed + config.seeds))
    if store is not None:
        inputs = resume_inputs(search_config, distinct_jobs(config, stage1), dataset_info, search_seeds, "tune")
        inputs.update({"--seeds": config.seeds, "--points": protocol.points, "--decades": protocol.decades,
                       "--search-seeds": protocol.search_seeds, "--extend": protocol.max_extensions})
        store.begin(fingerprint(inputs))  # a resumed tune whose options differ stops here
    if progress:
        progress("loaded", dataset_info["name"], time.perf_counter() - start)
    planned, not_started = stage1, "stage 2 (each optimizer's tuned point on the ranking seeds)"
    try:
        stage1, results = _search(search_config, protocol, stage1, arrays, search_seeds, progress, workload, store)
        planned = stage1
        points, notes = _winners(stage1, results, protocol.criterion, target_loss(workload, protocol.criterion))
        for name in dict.fromkeys(run.optimizer for lesson in plan(config) for run in lesson.runs):
            if not optimizers.get(name).main:
                notes[name] = f"registry defaults: {optimizers.get(name).no_main}"
                points[name] = {batch_label(batch): {} for batch in config.batches or workload.batches}
        stage2 = tuple(dataclasses.replace(lesson, extra={**lesson.extra, "stage": 2})
                       for lesson in plan(dataclasses.replace(config, tuned={workload.name: Tuned(points, "this tune")})))
        planned, not_started = stage1 + stage2, ""
        results += run_jobs(config, distinct_jobs(config, stage2), arrays, seeds, progress, store)
    except BaseException as cause:
        if store is None:
            raise
        partial = (partial_results(search_config, planned, dataset_info, store.finished, command, compile_cache,
                                   not_started) if store.finished else None)
        raise Unfinished(partial, cause) from cause
    record = results_dict(search_config, stage1 + stage2, dataset_info, results, command, compile_cache)
    record["tuning"] = {**dataclasses.asdict(protocol), "search_seeds": list(search_seeds), "seeds": list(seeds),
                        "notes": notes}
    return record, tuned_record(record, points, notes)


def tuned_record(results: Mapping[str, Any], points: Mapping, notes: Mapping[str, str]) -> dict[str, Any]:
    """What tuned.json holds: the tuned point per optimizer and batch mode, and how it was chosen."""
    tuning = results["tuning"]
    return {"schema": SCHEMA, "kind": TUNED_KIND,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": results["command"], "dataset": {k: results["dataset"][k] for k in ("name", "source")},
            "workload": results["lessons"][0].get("workload", DEFAULT_WORKLOAD),
            "criterion": tuning["criterion"], "epochs": results["lessons"][0]["epochs"],
            "grid": {"points": tuning["points"], "decades": tuning["decades"],
                     "max_extensions": tuning["max_extensions"], "search_seeds": tuning["search_seeds"]},
            "points": points, "notes": dict(notes)}


def read_tuned_files(paths: Sequence[str | Path]) -> dict[str, Tuned]:
    """Each --tuned file's points by the workload it was tuned on (`read_tuned`); two files of
    one workload are one line."""
    tuned: dict[str, Tuned] = {}
    for path in paths:
        try:
            workload = json.loads(Path(path).read_bytes()).get("workload", DEFAULT_WORKLOAD)
        except (OSError, ValueError, AttributeError):
            workload = DEFAULT_WORKLOAD  # read_tuned says what is wrong with the file
        points, source = read_tuned(path, workload)
        if workload in tuned:
            raise UsageError(f"--tuned {path} and {tuned[workload].source} both hold points of workload {workload}: "
                             "give one tuned.json per workload")
        tuned[workload] = Tuned(points, source)
    return tuned


def read_tuned(path: str | Path, workload: str = DEFAULT_WORKLOAD) -> tuple[dict[str, dict[str, dict[str, Any]]], str]:
    """(optimizer -> batch label -> point, "NAME (sha256 ...)") from a tuned.json of `workload`;
    a missing or foreign file, or one tuned on another workload, is a UsageError saying how to
    make one."""
    fix = "pass the tuned.json that `optax-lab tune` wrote, e.g. --tuned reports/tune/tuned.json"
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"--tuned {path}: cannot read it ({error.strerror or error}); {fix}") from None
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError(f"--tuned {path} is not JSON; {fix}") from None
    if not isinstance(record, dict) or record.get("kind") != TUNED_KIND:
        raise UsageError(f"--tuned {path} is not a tuned.json (its kind is not {TUNED_KIND!r}); {fix}")
    if record.get("schema") != SCHEMA or not isinstance(record.get("points"), dict):
        raise UsageError(f"--tuned {path} has schema {record.get('schema')!r}, not {SCHEMA}; tune again")
    tuned_on = record.get("workload", DEFAULT_WORKLOAD)  # files from before workloads: the lesson's
    if tuned_on != workload:
        raise UsageError(f"--tuned {path} holds points tuned on workload {tuned_on}, not {workload}: tune "
                         f"{workload} (optax-lab tune --workloads {workload} --optimizers ...) or rank on {tuned_on}")
    for name, modes in record["points"].items():
        if not isinstance(modes, dict) or not all(isinstance(p, dict) for p in modes.values()):
            raise UsageError(f"--tuned {path}: the points of {name!r} are not batch -> {{hyperparameter: value}}")
        for point in modes.values():  # unknown optimizers, hyperparameters and values fail here
            optimizers.hyperparams(name, point)
    return record["points"], f"{Path(path).name} (sha256 {hashlib.sha256(raw).hexdigest()[:16]})"
