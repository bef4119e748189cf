"""The one orchestrator: a planner's programs in, the results dict out. For each planned
program, once: compile and run it (`engine`), store it as it finishes (`run_store`, so a stop keeps
it and `--resume` restores it), report progress, and collect its results (`metrics`).

`train_and_evaluate(config)` is the main job, as the Flax examples name it: the configuration's
plan (`planning.RunPlanner`) run to its results. `optax-lab tune` runs a `tuning.TunePlanner`
through the same `run`. Writing the report is the caller's last step, so tests can check results
without touching the disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import jax

from optax_lab import engine, optimizers, workloads
from optax_lab.compile_ahead import AUTO, CompileAhead, auto_compile_workers
from optax_lab.config import Config, batch_label
from optax_lab.devices import MAX_REPLICAS, host_available_bytes
from optax_lab.metrics import device_info, machines_record, partial_results, results_dict
from optax_lab.planning import Planner, Round, RunPlanner, group_label, program_groups
from optax_lab.records import Job, RunResult, fingerprint, program_digest, split_hyperparams
from optax_lab.run_store import PLAN_LABEL, RunStore, Unfinished, package_versions

__all__ = [
    "DEVICES_LABEL",
    "Progress",
    "load_arrays",
    "max_replicas",
    "resume_inputs",
    "run",
    "run_programs",
    "train_and_evaluate",
]

# progress(event, name, seconds): "loaded" once the dataset `name` is in memory, then per program
# "compiled" after it compiles and "trained" after it ran (name: its first run, +k points), or
# "restored" when a resumed run found it finished (seconds: its original run time).
Progress = Callable[[str, str, float], None]


DEVICES_LABEL = "devices"  # the inputs' one label that names the machine, not the configuration


def load_arrays(
    config: Config,
    jobs: Sequence[Job],
    warn: Callable[[str], None] | None = None,
    arrays: dict[tuple, engine.Arrays] | None = None,
) -> tuple[dict[tuple, engine.Arrays], dict[str, Any]]:
    """The data of every job on the device, keyed by `Job.data_key` (added to `arrays` when given),
    each workload's model checked against it and every batch size too, before any training; and
    the first loaded dataset's record, with each workload's under "workloads"."""
    arrays = {} if arrays is None else arrays
    records: dict[str, dict[str, Any]] = {}
    warned: set[str] = set()
    checked: set[tuple] = set()
    for job in jobs:
        if job.data_key not in arrays:
            dataset, warning = job.workload.data(
                workloads.DataRequest(
                    job.workload.name, config.dataset, config.imdb_archive, job.num_words, job.train_examples
                )
            )
            if warning and warn and warning not in warned:
                warn(warning)
                warned.add(warning)
            arrays[job.data_key] = engine.Arrays.from_numpy(
                dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test
            )
            records.setdefault(job.workload.name, dataset.record())
        data = arrays[job.data_key]
        if (job.workload.key, job.model(config)) not in checked:  # a model that does not fit its loss fails here
            workloads.check_fits(job.workload, job.model(config), data.x_train, data.y_train)
            checked.add((job.workload.key, job.model(config)))
        engine.program_settings(job.spec, data, job.epochs, config.seeds, config.order)
        if "user" in optimizers.get(job.spec.optimizer).tags and (job.spec.key, job.workload.key) not in checked:
            _check_optimizer_on(config, job, data)  # an optimizer of one's own, on this model's parameters
            checked.add((job.spec.key, job.workload.key))
    first = next(iter(records.values()), {})  # none when every job's data was in `arrays` already
    return arrays, {**first, "workloads": records}


def _check_optimizer_on(config: Config, job: Job, data: engine.Arrays) -> None:
    module = job.workload.build(job.model(config))
    params = jax.eval_shape(lambda x: module.init(jax.random.key(0), x)["params"], data.x_train[:1])
    static, traced = split_hyperparams(job.spec)
    transformation = optimizers.build(job.spec.optimizer, {**static, **traced}, key=jax.random.key(0))
    where = f"workload {job.workload.name}'s parameters"
    optimizers.check_on_params(optimizers.get(job.spec.optimizer), transformation, params, where)


def run_programs(
    config: Config,
    jobs: Sequence[Job],
    arrays: Mapping[tuple, engine.Arrays],
    seeds: tuple[int, ...],
    progress: Progress | None = None,
    store: RunStore | None = None,
    ahead: CompileAhead | None = None,
) -> list[RunResult]:
    """Every job's runs, one compiled program per group of points (`program_groups`), in order;
    the next programs compile on `ahead`'s threads while one runs (none: each in turn). With a
    `store`, each program is saved as soon as it finishes, and one that finished before restored."""
    groups = program_groups(jobs)
    digests = [program_digest(group, seeds) for group in groups]
    restored = [
        store.restore(digest, [job.spec for job in group], group[0].model(config), group[0].workload) if store else None
        for group, digest in zip(groups, digests, strict=True)
    ]
    to_train = [group for group, stored in zip(groups, restored, strict=True) if stored is None]
    tasks = [functools.partial(_prepare, config, group, arrays[group[0].data_key], seeds) for group in to_train]
    prepared = iter(ahead.in_order(tasks)) if ahead else (_done(task) for task in tasks)
    results = []
    for group, digest, stored in zip(groups, digests, restored, strict=True):
        label = group_label(group)
        if stored is not None:
            if progress:
                progress("restored", label, stored[0].program_run_s)
            results += stored
            continue
        program = next(prepared).result()  # a program that failed to compile raises here, in its turn
        if progress:
            progress("compiled", label, program.compile_s)
        start = time.perf_counter()
        trained = engine.run_prepared(program, arrays[group[0].data_key])
        if ahead:
            overlap = ahead.overlap_s(start, time.perf_counter())
            trained = [dataclasses.replace(result, overlap_s=overlap) for result in trained]
        if store:
            store.add(digest, label, trained)
        if progress:
            progress("trained", label, trained[0].program_run_s)
        results += trained
    return results


def _prepare(config: Config, group: Sequence[Job], data: engine.Arrays, seeds: tuple[int, ...]) -> engine.Prepared:
    first = group[0]
    return engine.prepare_points(
        [job.spec for job in group],
        data,
        workload=first.workload,
        seeds=seeds,
        epochs=first.epochs,
        order=config.order,
        model_config=first.base_model(config),
        eval_train=first.eval_train,
        max_replicas=max_replicas(config),
        devices=config.devices,
    )


def _done(task: Callable[[], Any]) -> Future:
    """`task` run now, on this thread, as a finished future (what compiling in turn is)."""
    future: Future = Future()
    try:
        future.set_result(task())
    except Exception as error:
        future.set_exception(error)
    return future


def _one_or_all(values) -> Any:
    distinct = sorted(set(values), key=lambda value: (value is None, value or 0))
    return distinct[0] if len(distinct) == 1 else distinct


def resume_inputs(
    config: Config, jobs: Sequence[Job], dataset_info: Mapping[str, Any], seeds: tuple[int, ...], command: str = "run"
) -> dict[str, Any]:
    """What changes this run's results, by the labels a user knows (hashed by `records.fingerprint`):
    the options as they took effect, the data by name and checksum, the devices, the package
    versions, and a digest of every planned program (what the presets and the registry make of them)."""
    device = jax.devices()[0]
    inputs = {
        "subcommand": command,
        "--preset": None if config.optimizers else config.preset,
        "--optimizers": list(config.optimizers) or None,
        "--workloads": list(config.workloads),
        "--batch": None if config.batches is None else [batch_label(batch) for batch in config.batches],
        "--set": {name: dict(sorted(values.items())) for name, values in sorted(config.overrides.items())} or None,
        "--sweep": [sweep.text for sweep in config.sweeps] or None,
        "--tuned": {name: tuned.source for name, tuned in sorted(config.tuned.items())} if config.tuned else None,
        "--criterion": str(config.criterion),
        "--seeds": config.seeds,
        "--seed": config.seed,
        "--epochs": _one_or_all(job.epochs for job in jobs),
        "--num-words": _one_or_all(job.num_words for job in jobs),
        "--train-examples": _one_or_all(job.train_examples for job in jobs),
        "shuffling order": str(config.order),
        "model options": config.model.describe() if config.model else None,
        "--max-replicas": max_replicas(config),
        DEVICES_LABEL: f"{engine.replica_devices(config.devices)} x {device.platform} ({device.device_kind})",
    }
    for name, data in (dataset_info.get("workloads") or {"": dataset_info}).items():
        inputs[f"data {name}".strip()] = (
            f"{data['name']} from {data['source']}: {data['n_train']} train / "
            f"{data['n_test']} test, {data['num_words']} words"
        )
    for name in dict.fromkeys(job.spec.optimizer for job in jobs):  # an edited optimizer is another one
        source = optimizers.provenance(optimizers.get(name))
        if source is not None:
            inputs[f"optimizer {name}"] = f"{source['reference']}, source sha256 {source['source_sha256']}"
    inputs.update(package_versions())
    groups = program_groups(jobs)
    inputs[PLAN_LABEL] = (
        f"{len(groups)} programs of {len(jobs)} runs, seeds {seeds[0]}..{seeds[-1]} "
        f"(digest {program_digest(jobs, seeds)})"
    )
    return inputs


def max_replicas(config: Config) -> int:
    return MAX_REPLICAS if config.max_replicas is None else config.max_replicas


def _check_host_memory(config: Config, jobs: Sequence[Job]) -> None:
    """Refuse, before loading anything, a run whose histories cannot fit the host (`--seeds` huge)."""
    engine.check_results_fit(
        config.seeds * len(jobs),
        max(job.epochs for job in jobs),
        max(job.model(config).depth for job in jobs),
        host_available_bytes(),
        config.seeds,
    )


def run(
    planner: Planner,
    *,
    command: str = "",
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    compile_cache: bool = False,
    store: RunStore | None = None,
    compile_workers: int | str | None = AUTO,
    launcher: Callable[..., list[RunResult]] | None = None,
) -> dict[str, Any]:
    """The results dict of every program `planner` plans. With a `store`, a stop during training
    (Ctrl-C, SIGTERM, an error) raises `Unfinished` with the finished runs' results, marked
    incomplete; a resumed run whose options differ stops before any training. `compile_workers`
    threads compile the next programs while one runs (None: each compiles in turn, so that
    nothing shares the host with a run; "auto": `compile_ahead.auto_compile_workers`, none on a
    CPU); the histories are the same either way. A `launcher` (`launch.Launcher`) trains each
    round's programs in jobs of its own instead of this process."""
    config = planner.config
    _check_host_memory(config, planner.memory_jobs)
    rounds = planner.rounds()
    first: Round = next(rounds)
    start = time.perf_counter()
    arrays, dataset_info = load_arrays(config, first.jobs, warn)
    if store is not None:
        inputs = resume_inputs(config, first.jobs, dataset_info, first.seeds, planner.command)
        # What a merge needs besides the plan.
        details = {"dataset": dataset_info, "compile_cache": compile_cache, "device": device_info()}
        store.begin(fingerprint({**inputs, **planner.resume_extras}), details)
    if progress:
        progress("loaded", dataset_info["name"], time.perf_counter() - start)
    results: list[RunResult] = []
    if compile_workers == AUTO:
        compile_workers = auto_compile_workers()
    ahead = CompileAhead(compile_workers) if compile_workers is not None else None
    try:
        with ahead or contextlib.nullcontext():
            batch: Round | None = first
            while batch is not None:
                if batch is not first:  # a later round's new data and models, checked as the first round's were
                    load_arrays(config, batch.jobs, warn, arrays)
                trained = (launcher or run_programs)(config, batch.jobs, arrays, batch.seeds, progress, store, ahead)
                results += trained
                batch = _next_round(rounds, trained)
    except BaseException as cause:
        if store is None:
            raise
        partial = (
            partial_results(
                config, planner.lessons, dataset_info, store.finished, command, compile_cache, planner.not_started
            )
            if store.finished
            else None
        )
        raise Unfinished(partial, cause) from cause
    return {
        **results_dict(config, planner.lessons, dataset_info, results, command, compile_cache),
        "compile_workers": compile_workers or 0,
        **({"machines": machines_record(store.used_machines())} if store is not None else {}),
    }


def _next_round(rounds, trained: list[RunResult]) -> Round | None:
    try:
        return rounds.send(trained)
    except StopIteration:
        return None


def train_and_evaluate(
    config: Config,
    *,
    command: str = "",
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    compile_cache: bool = False,
    store: RunStore | None = None,
    compile_workers: int | str | None = AUTO,
) -> dict[str, Any]:
    """The results dict of `config`'s runs (see `run`)."""
    return run(
        RunPlanner(config),
        command=command,
        progress=progress,
        warn=warn,
        compile_cache=compile_cache,
        store=store,
        compile_workers=compile_workers,
    )
