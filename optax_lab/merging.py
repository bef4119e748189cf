"""`optax-lab merge DIR... --out DIR`: runs of one configuration, made on other machines or at
other times (complete, interrupted, or a launched run's jobs), as one run: one results.json and
report, each program taken from the first folder that finished it, the report naming each
machine. The folders' stores (`run_store`) hold every history bit for bit and the command that
planned them, so the merged run is planned again and restored program by program, as a resumed
run is: nothing trains. Runs of other configurations are refused, naming what differs; the
machine (its devices) may differ.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from optax_lab.errors import UsageError
from optax_lab.metrics import machines_record, results_dict
from optax_lab.planning import Planner, Round, group_label, program_groups
from optax_lab.records import RunResult, program_digest
from optax_lab.run_store import PLAN_LABEL, PROGRAMS_FILE, RUNS_FILE, RunStore
from optax_lab.runner import DEVICES_LABEL, run_programs
from optax_lab.store_files import read_programs

__all__ = ["Source", "merge", "read_source"]

RESULTS_FILE = "results.json"


@dataclasses.dataclass(frozen=True)
class Source:
    """One folder's run: its store's header and its finished programs, by digest."""

    folder: Path
    header: dict[str, Any]
    programs: dict[str, dict]


def read_source(folder: Path) -> Source:
    """The run in `folder`: a complete one's programs.jsonl, else an interrupted or launched one's
    runs.jsonl and its jobs' files."""
    folder = Path(folder)
    complete, running = folder / PROGRAMS_FILE, folder / RUNS_FILE
    header, programs = read_programs(complete) if complete.is_file() else (None, {})
    if header is None and running.is_file():
        header, programs = read_programs(running)
        if header is not None:  # and the programs of a launched run's jobs, as a resumed run takes them in
            store = RunStore(folder, resume=True, command="")
            store.header, store.stored = header, programs
            store.reload_jobs()
    if header is None or "argv" not in header:
        raise UsageError(
            f"merge: {folder} holds no run to merge (no {PROGRAMS_FILE} or {RUNS_FILE} of this optax-lab): give "
            "the --out folders of `optax-lab run` or `tune`"
        )
    return Source(folder, header, programs)


def _check_one_configuration(sources: Sequence[Source]) -> None:
    first = sources[0]
    for other in sources[1:]:
        inputs = {label for label in {**first.header["inputs"], **other.header["inputs"]} if label != DEVICES_LABEL}
        differ = [
            f"{label} {_shown(first.header['inputs'].get(label))} in {first.folder.name}, "
            f"{_shown(other.header['inputs'].get(label))} in {other.folder.name}"
            for label in sorted(inputs)
            if first.header["inputs"].get(label) != other.header["inputs"].get(label)
        ]
        if len(differ) > 1:  # the plan differs because an option does: name the option
            differ = [text for text in differ if not text.startswith(PLAN_LABEL)]
        if differ:
            raise UsageError(
                f"merge: {other.folder} is a run of another configuration than {first.folder}: "
                f"{'; '.join(differ[:3])}: merge runs of one configuration"
            )


def _shown(value: Any) -> str:
    return "unset" if value is None else json.dumps(value) if not isinstance(value, str) else value


def _check_out(out: Path) -> None:
    taken = [name for name in (RESULTS_FILE, PROGRAMS_FILE, RUNS_FILE) if (out / name).exists()]
    if taken:
        raise UsageError(f"merge --out {out} holds another run ({taken[0]}): give a new or empty folder")


def merge(
    folders: Sequence[Path], out: Path, planner_for: Callable[[list[str]], Planner]
) -> tuple[dict[str, Any], Planner, RunStore]:
    """The merged results of `folders` (nothing written yet), the planner that planned them
    (`planner_for(argv)`, from the first folder's command) and the store of their programs,
    whose `close` writes the merged programs.jsonl into `out`."""
    sources = [read_source(folder) for folder in folders]
    _check_one_configuration(sources)
    _check_out(Path(out))
    header = sources[0].header
    programs: dict[str, dict] = {}
    for source in sources:
        for digest, line in source.programs.items():
            programs.setdefault(digest, line)
    store = RunStore(Path(out), resume=True, command=header["command"])
    store.header, store.stored = {**header, "merged_from": [_source_record(s) for s in sources]}, programs
    planner = planner_for(list(header["argv"]))
    results = _restored(planner, store, header["dataset"], header["command"], header.get("compile_cache", False))
    results["device"] = header.get("device", results["device"])  # the first run's, not this process's
    results["machines"] = machines_record(store.used_machines())
    results["merged_from"] = store.header["merged_from"]
    return results, planner, store


def _source_record(source: Source) -> dict[str, Any]:
    return {
        "folder": source.folder.name,
        "created": source.header.get("created"),
        "machine": source.header.get("machine"),
        "programs": len(source.programs),
    }


def _restored(planner: Planner, store: RunStore, dataset: dict[str, Any], command: str, compile_cache: bool):
    """The results dict of a run whose every program is in `store`: each round restored, none
    trained; a UsageError names the programs no folder holds."""
    config, rounds = planner.config, planner.rounds()
    results: list[RunResult] = []
    batch: Round | None = next(rounds)
    while batch is not None:
        groups = program_groups(batch.jobs)
        missing = [group_label(g) for g in groups if program_digest(g, batch.seeds) not in store.stored]
        if missing:
            raise UsageError(
                f"{len(missing)} of {len(groups)} programs are in none of the folders ({', '.join(missing)}): "
                f"finish them with `{command} --resume` where that run stopped, then merge again"
            )
        restored = run_programs(config, batch.jobs, {}, batch.seeds, None, store)
        results += restored
        try:
            batch = rounds.send(restored)
        except StopIteration:
            batch = None
    return results_dict(config, planner.lessons, dataset, results, command, compile_cache)
