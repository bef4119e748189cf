"""`optax-lab tune`: every optimizer tuned the same way before it is ranked, as DeepOBS and
AlgoPerf's external-tuning ruleset do it, in miniature. `TunePlanner` plans the programs; the
runner (`runner.run`) trains them, as it trains any planner's.

Stage 1, by `Protocol.search`: a log grid of each optimizer's main scale around its registry
default (17 points over 4 decades by default), where a winner on the grid's edge extends the grid
by a decade on that side, up to `max_extensions` times; or a sampled search (`optax_lab.search`):
`studies` studies of `trials` points of a search space of several hyperparameters. Either runs on
a few search seeds, all points of one optimizer on the replica axis of one compiled program, and
the best point by the stated criterion wins. Stage 2: the winner rerun on the full seed count,
with seeds disjoint from the search seeds (no winner's curse in the ranking). The tuned points go
to tuned.json, which `optax-lab run --tuned` ranks at.

A resumed tune plans the same programs: its choices (grid extensions, winners) are made from
the same histories, restored from the store.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

from optax_lab import optimizers, schema, search, studies
from optax_lab.config import Config, Tuned, batch_label
from optax_lab.errors import UsageError
from optax_lab.grids import Criterion, around_value
from optax_lab.lessons import Lesson
from optax_lab.planning import Round, distinct_jobs, plan, program_groups, selected_workloads, target_loss
from optax_lab.records import RunResult
from optax_lab.selection import best_index, on_edge
from optax_lab.sweep import Protocol, Search

__all__ = ["TUNED_KIND", "TunePlanner", "read_tuned", "read_tuned_files", "tuned_record"]

TUNED_KIND = "optax-lab tuned points"  # tuned.json's "kind": how a foreign JSON file is told apart


def _winners(
    lessons: tuple[Lesson, ...], results: list[RunResult], criterion: Criterion, target: float, points_are: str
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, str]]:
    """optimizer -> batch label -> the best point; and a note per optimizer whose points (`points_are`:
    "grid point", "trial") all diverged."""
    points: dict[str, dict[str, dict[str, Any]]] = {}
    notes: dict[str, str] = {}
    for lesson in lessons:
        batch = batch_label(lesson.runs[0].batch_size)
        for name in dict.fromkeys(run.optimizer for run in lesson.runs):
            mine = [r for r in results if r.spec.optimizer == name and r.spec in lesson.runs]
            index = best_index([r.history for r in mine], criterion, target)
            if index is None:
                notes[name] = f"every {points_are} diverged: registry default kept"
            points.setdefault(name, {})[batch] = dict(mine[index].spec.point) if index is not None else {}
    return points, notes


class TunePlanner:
    """The planner of `optax-lab tune` on one workload: stage 1's search on the search seeds (a
    grid with a round for each decade it grows, or every study of a sampled search in one round),
    then stage 2's ranking at the winners on the ranking seeds. `config` is the search's (the
    ranking's with stage 1's grid, or a sampled search's criterion): what results.json records.
    `space` is a sampled search's (default: `search.default_space`)."""

    command = "tune"

    def __init__(self, config: Config, protocol: Protocol = Protocol(), space: search.Space | None = None):
        chosen = selected_workloads(config)
        if len(chosen) != 1:
            raise UsageError(
                f"tune works on one workload at a time (tuned.json holds one's points), not "
                f"{', '.join(w.name for w in chosen)}: give one --workloads NAME"
            )
        if space is not None and not protocol.search.sampled:
            raise UsageError(f"{space.source or '--space'} is a sampled search's space: add --search halton or random")
        self.workload, self.protocol, self.ranking_config = chosen[0], protocol, config
        self.space = space or search.default_space(protocol.decades)
        grid_config = dataclasses.replace(config, sweeps=(protocol.grid(),), criterion=protocol.criterion)
        sampled_config = dataclasses.replace(config, criterion=protocol.criterion)  # no --sweep: its own points
        self.config = sampled_config if protocol.search.sampled else grid_config
        self.ranking = plan(config)  # at the registry's defaults: what stage 2 ranks, and the host must hold
        self.memory_jobs = distinct_jobs(config, self.ranking)
        # Optimizers without a main scale have nothing to search: they go straight to the ranking.
        grids = plan(grid_config)  # a sampled search takes its lessons' shape and who has a main scale
        self.programs, self.grows = len(program_groups(distinct_jobs(config, grids))), True
        self.lessons = tuple(
            dataclasses.replace(lesson, runs=tuple(run for run in lesson.runs if run.point)) for lesson in grids
        )
        self.unsearched = {
            name: f"registry defaults: {optimizers.get(name).no_main}"
            for name in self._ranked_names()
            if not optimizers.get(name).main
        }
        self.study_seeds = tuple(range(config.seed, config.seed + protocol.studies))  # each study's sampling seed
        self.study_runs: studies.StudyRuns = {}
        self.axes: dict[str, tuple[search.Axis, ...]] = {}
        if protocol.search.sampled:
            self._plan_studies()
        self.not_started = "stage 2 (each optimizer's tuned point on the ranking seeds)"
        # The search seeds follow the ranking's: disjoint, so the ranking does not reuse the seeds it was chosen on.
        first_search_seed = config.seed + config.seeds
        self.search_seeds = tuple(range(first_search_seed, first_search_seed + protocol.search_seeds))
        self.seeds = tuple(range(config.seed, config.seed + config.seeds))
        self.resume_extras = self._resume_extras()
        self.points: dict[str, dict[str, dict[str, Any]]] = {}
        self.notes: dict[str, str] = {}

    def _plan_studies(self) -> None:
        """A sampled search's stage 1: each optimizer's axes of the space, and its trials in place of the grid."""
        names = list(dict.fromkeys(run.optimizer for lesson in self.lessons for run in lesson.runs))
        self.axes = search.space_axes(self.space, names, self._defaults)
        for name in (name for name, axes in self.axes.items() if not axes):
            self.unsearched[name] = "registry defaults: it takes none of the search space's hyperparameters"
        self.lessons, self.study_runs = studies.study_lessons(
            self.lessons, self.ranking, self.axes, self.protocol, self.study_seeds
        )
        self.programs = len(program_groups(distinct_jobs(self.ranking_config, self.lessons)))

    def _resume_extras(self) -> dict[str, Any]:
        """The tune's own options for the resume fingerprint. A grid's name no ruleset: a
        fingerprint without one stands for the grid, as a tuning record without "search" does."""
        protocol, seeds = self.protocol, self.ranking_config.seeds
        if not protocol.search.sampled:
            return {
                "--seeds": seeds,
                "--points": protocol.points,
                "--decades": protocol.decades,
                "--search-seeds": protocol.search_seeds,
                "--extend": protocol.max_extensions,
            }
        return {
            "--seeds": seeds,
            "--search": protocol.search.value,
            "--trials": protocol.trials,
            "--studies": protocol.studies,
            "--search-seeds": protocol.search_seeds,
            "--space": self.space.record(),
        }

    def _ranked_names(self) -> list[str]:
        return list(dict.fromkeys(run.optimizer for lesson in self.ranking for run in lesson.runs))

    def _defaults(self, name: str) -> dict[str, Any]:
        """Optimizer `name`'s values where this tune runs: the registry's, the workload's, then --set."""
        return {
            **optimizers.get(name).all_defaults,
            **self.workload.defaults_for(name),
            **self.config.overrides.get(name, {}),
        }

    def rounds(self) -> Generator[Round, list[RunResult], None]:
        results = list((yield Round(distinct_jobs(self.config, self.lessons), self.search_seeds)))
        searched = []
        for lesson in self.lessons:
            if self.protocol.search.sampled:
                searched.append(dataclasses.replace(lesson, extra={**lesson.extra, "stage": 1}))
            else:
                searched.append((yield from self._grown(lesson, results)))
        self.lessons = tuple(searched)
        target = target_loss(self.workload, self.protocol.criterion)
        points_are = "trial" if self.protocol.search.sampled else "grid point"
        self.points, self.notes = _winners(self.lessons, results, self.protocol.criterion, target, points_are)
        for name in self._ranked_names():
            if name in self.unsearched:
                self.notes[name] = self.unsearched[name]
                batches = self.ranking_config.batches or self.workload.batches
                self.points[name] = {batch_label(batch): {} for batch in batches}
        tuned = {self.workload.name: Tuned(self.points, "this tune")}
        stage2 = tuple(
            dataclasses.replace(lesson, extra={**lesson.extra, "stage": 2})
            for lesson in plan(dataclasses.replace(self.ranking_config, tuned=tuned))
        )
        self.lessons, self.not_started = self.lessons + stage2, ""
        yield Round(distinct_jobs(self.ranking_config, stage2), self.seeds)

    def _grown(self, lesson: Lesson, results: list[RunResult]) -> Generator[Round, list[RunResult], Lesson]:
        """Stage 1 of one sweep lesson: each optimizer's grid, extended a decade (one round) at a
        time while its best point is on an edge; the lesson with the extension runs added and
        where they were extended. `results` gains every extension run."""
        protocol, extended, limit, runs = self.protocol, {}, [], list(lesson.runs)
        for name in dict.fromkeys(run.optimizer for run in lesson.runs):
            main = optimizers.get(name).main
            if not main:
                continue
            default = self._defaults(name)[main]
            grid = {around_value(default, protocol.decades, protocol.points, i): i for i in range(protocol.points)}
            while True:
                mine = sorted(
                    (r for r in results if r.spec.optimizer == name and r.spec in runs),
                    key=lambda r: r.spec.point[main],
                )
                index = best_index(
                    [r.history for r in mine], protocol.criterion, target_loss(self.workload, protocol.criterion)
                )
                side = on_edge(index, len(mine)) if index is not None else ""
                if not side:
                    break
                if len(extended.get(name, [])) >= protocol.max_extensions:
                    limit.append(name)
                    break
                extended.setdefault(name, []).append(side)
                template = mine[0].spec
                new = []
                for i, value in protocol.extension(default, list(grid.values()), side):
                    grid[value] = i
                    new.append(
                        dataclasses.replace(
                            template,
                            name=template.name.rsplit(" ", 1)[0] + f" {main}={value:g}",
                            hyperparams={**template.hyperparams, main: value},
                            point={main: value},
                        )
                    )
                runs += new
                growth = (dataclasses.replace(lesson, runs=tuple(new)),)
                results += yield Round(distinct_jobs(self.config, growth), self.search_seeds)
        return dataclasses.replace(
            lesson, runs=tuple(runs), extra={**lesson.extra, "stage": 1, "extended": extended, "limit_reached": limit}
        )

    def finish(self, results: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The tuning record in `results`, and tuned.json beside it."""
        protocol = self.protocol
        if protocol.search.sampled:
            results["tuning"] = {
                **studies.search_record(protocol, self.space, self.axes, self.study_seeds),
                "criterion": protocol.criterion,
                "search_seeds": list(self.search_seeds),
                "seeds": list(self.seeds),
                "notes": self.notes,
                "time_to_target": studies.time_to_target(self.lessons, self.study_runs, results["runs"]),
            }
        else:
            grid = ("points", "decades", "search_seeds", "max_extensions", "criterion")
            results["tuning"] = {
                **{field: getattr(protocol, field) for field in grid},
                "search_seeds": list(self.search_seeds),
                "seeds": list(self.seeds),
                "notes": self.notes,
                "search": protocol.search.value,
            }
        return {"tuned.json": tuned_record(results, self.points, self.notes)}


def tuned_record(results: Mapping[str, Any], points: Mapping, notes: Mapping[str, str]) -> dict[str, Any]:
    """What tuned.json holds: the tuned point per optimizer and batch mode, and how it was chosen
    (the ruleset, `search`, and its grid or its studies)."""
    tuning = results["tuning"]
    if tuning["search"] == Search.GRID:
        how = {
            "grid": {
                "points": tuning["points"],
                "decades": tuning["decades"],
                "max_extensions": tuning["max_extensions"],
                "search_seeds": tuning["search_seeds"],
            }
        }
    else:
        sampled = ("trials", "studies", "study_seeds", "search_seeds", "space", "space_source", "ranges")
        how = {"studies": {k: tuning[k] for k in sampled}}
    return {
        "schema": schema.SCHEMA,
        "kind": TUNED_KIND,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": results["command"],
        "dataset": {k: results["dataset"][k] for k in ("name", "source")},
        "workload": results["lessons"][0]["workload"],
        "criterion": tuning["criterion"],
        "epochs": results["lessons"][0]["epochs"],
        "search": tuning["search"],
        **how,
        "points": points,
        "notes": dict(notes),
    }


def read_tuned_files(paths: Sequence[str | Path]) -> dict[str, Tuned]:
    """Each --tuned file's points by the workload it was tuned on (`read_tuned`); two files of
    one workload are one line."""
    tuned: dict[str, Tuned] = {}
    for path in paths:
        workload, points = read_tuned(path)
        if workload in tuned:
            raise UsageError(
                f"--tuned {path} and {tuned[workload].source} both hold points of workload {workload}: "
                "give one tuned.json per workload"
            )
        tuned[workload] = points
    return tuned


def read_tuned(path: str | Path) -> tuple[str, Tuned]:
    """(the workload it was tuned on, its points: optimizer -> batch label -> point, and
    "NAME (sha256 ...)") from a tuned.json; a missing or foreign file is a UsageError saying
    how to make one."""
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
    if record.get("schema") != schema.SCHEMA or not isinstance(record.get("points"), dict):
        raise UsageError(f"--tuned {path} has schema {record.get('schema')!r}, not {schema.SCHEMA}; tune again")
    record = schema.upgrade_tuned(record)
    for name, modes in record["points"].items():
        if not isinstance(modes, dict) or not all(isinstance(p, dict) for p in modes.values()):
            raise UsageError(f"--tuned {path}: the points of {name!r} are not batch -> {{hyperparameter: value}}")
        for point in modes.values():  # unknown optimizers, hyperparameters and values fail here
            optimizers.hyperparams(name, point)
    source = f"{Path(path).name} (sha256 {hashlib.sha256(raw).hexdigest()[:16]})"
    return record["workload"], Tuned(record["points"], source)
