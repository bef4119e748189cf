"""The whole report in memory: report.md (a header on the data, device, model and plan, then each
section in the lessons' order, then a footer) and the PNGs it links to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optax_lab.config import Order
from optax_lab.report.across import across_plots, across_section
from optax_lab.report.formatting import DASH, cell, seeds_text
from optax_lab.report.records import runs_by_name
from optax_lab.report.sections import SECTIONS, Section, section_groups
from optax_lab.schema import LessonKind, upgrade

SHUFFLING = {Order.PER_SEED: "each seed its own shuffling", Order.SHARED: "all seeds share one shuffling per epoch"}


def render_markdown(results: Mapping) -> str:
    """The whole report.md. Expects `schema.to_jsonable` results (missing numbers are None) of any
    version: the sections read them `schema.upgrade`d."""
    results = upgrade(results)
    groups = section_groups(results)
    sections = [section for section, _ in groups]
    parts = [f"# optax-lab report: {_title(results, sections)}", "", *_header(results), ""]
    for section, lessons in groups:
        parts += section.markdown(lessons, results) + [""]
    parts += across_section(results)
    parts += _footer(results, sections)
    return "\n".join(parts) + "\n"


def render_plots(results: Mapping) -> dict[str, bytes]:
    """Every PNG report.md links to: {file name: PNG bytes}. Results as `render_markdown` takes them."""
    results = upgrade(results)
    pngs: dict[str, bytes] = {}
    for section, lessons in section_groups(results):
        pngs.update(section.plots(lessons, results))
    pngs.update(across_plots(results))
    return pngs


def _title(results: Mapping, sections: list[Section]) -> str:
    titles = {section.report_title for section in sections}
    if len(titles) == 1 and None not in titles:
        return titles.pop()
    return f"preset `{results['preset']}`"


def _header(results: Mapping) -> list[str]:
    data, device, model = results["dataset"], results["device"], results.get("model") or {}
    dataset = (
        f"**{data.get('name', 'unnamed')}** from {data.get('source', 'an unnamed source')}: "
        f"{data.get('n_train', '?')} training / {data.get('n_test', '?')} test examples"
    )
    if data.get("num_words", "?"):  # images, characters and generated problems have no vocabulary
        dataset += f", the {data.get('num_words', '?')} most frequent words"
    if str(data.get("name", "")).startswith("synthetic"):
        dataset += " (synthetic stand-in, not real reviews: compare its numbers only with other synthetic runs)"
    versions = ", ".join(f"{lib} {device[lib]}" for lib in ("jax", "jaxlib", "optax", "flax") if lib in device)
    hardware = f"{device.get('platform', '?')} ({device.get('device_kind', '?')}) × {device.get('device_count', '?')}"
    if device["process_count"] > 1:
        hardware += f" over {device['process_count']} processes"
    hardware += f"; {versions}"
    widths = ", ".join(map(str, model.get("widths", []))) or "none"
    mlp = (
        f"MLP, hidden widths {widths}, {model.get('activation', '?')} activation, "
        f"{model.get('kernel_init', '?')} kernels, one output logit (sigmoid cross-entropy)"
    )
    if "widths" not in model and model.get("describe"):  # a workload's own model, not the MLP
        mlp = str(model["describe"])
    if len({str(run["model"]) for run in results["runs"]}) > 1:  # the lessons vary the model
        mlp = f"varies by run (each section says how); the base: {mlp}"
    lesson_data = [
        f"{lesson['name']}: "
        + ", ".join(
            ([f"{lesson['num_words']} words"] if lesson["num_words"] else [])
            + ([f"{lesson['train_examples']} training reviews"] if lesson["train_examples"] else [])
        )
        for lesson in results["lessons"]
        if (lesson["num_words"] and lesson["num_words"] != data.get("num_words")) or lesson["train_examples"]
    ]
    if lesson_data:
        dataset += "; lessons with their own data: " + "; ".join(lesson_data)
    shuffling = SHUFFLING.get(results.get("order"), str(results.get("order", "unknown")))
    rows = [
        ("Dataset", dataset),
        ("Device", hardware),
        ("Model", mlp),
        ("Seeds", _plans_text(results)),
        ("Replicas", replicas_text(results["programs"])),
        ("Shuffling", shuffling),
        ("Compile cache", compile_cache_text(results.get("compile_cache"))),
        ("Created", results.get("created", DASH)),
    ]
    if results.get("merged_from") or len(results.get("machines") or ()) > 1:  # a merge, or launched jobs
        rows.insert(2, ("Machines", machines_text(results.get("machines") or [], results.get("merged_from") or [])))
    if results.get("compile_workers"):  # recorded by runs that compile ahead
        rows.insert(-1, ("Compiled ahead", compile_ahead_text(results["compile_workers"], results["programs"])))
    # Written only when some run trained an optimizer of one's own.
    for name, source in (results.get("user_optimizers") or {}).items():
        rows.insert(
            3, (f"Optimizer `{name}`", f"your own: {source['reference']}, source sha256 {source['source_sha256']}")
        )
    return ["| | |", "|---|---|", *(f"| {key} | {cell(value)} |" for key, value in rows)]


def _plans_text(results: Mapping) -> str:
    """Seeds and epochs: one phrase when every run shares them, else one per group of lessons."""
    runs = runs_by_name(results)
    groups: dict[tuple, list[str]] = {}
    for lesson in results["lessons"]:
        for name in lesson["runs"]:
            run = runs.get(name, {})
            key = (seeds_text(run.get("seeds") or []), run.get("epochs"))
            if lesson["name"] not in groups.setdefault(key, []):
                groups[key].append(lesson["name"])
    if len(groups) == 1:
        seeds, epochs = next(iter(groups))
        return f"{seeds}, {epochs} epochs per run"
    return "; ".join(
        f"{', '.join(lessons)}: {seeds}, {epochs} epochs per run" for (seeds, epochs), lessons in groups.items()
    )


def replicas_text(programs: Mapping[str, Mapping]) -> str:
    """How the programs' replicas met the devices: split over how many, and which ran in chunks
    because memory (or --max-replicas) capped a call."""
    if not programs:
        return "not recorded"
    devices = sorted({program["devices"] for program in programs.values()})
    text = f"split over {'/'.join(map(str, devices))} device{'s' if devices != [1] else ''}"
    chunked = [program for program in programs.values() if program.get("calls", 1) > 1]
    bound = [program for program in chunked if program["memory_bound"]]
    if bound:
        largest = max(bound, key=lambda program: program["memory_per_device"])
        text += (
            f"; {len(bound)} program{'s' if len(bound) > 1 else ''} ran in chunks because memory allows "
            f"{largest['replicas_per_call']} replicas a call (about "
            f"{largest['memory_per_device'] / 1e9:.2g} GB a device, estimated before compiling)"
        )
    if len(chunked) > len(bound):
        text += f"; {len(chunked) - len(bound)} ran in several calls of at most --max-replicas replicas"
    return text + "; one compile each"


def machines_text(machines: Sequence[Mapping], merged_from: Sequence[Mapping]) -> str:
    """Which machine ran how many programs, and the runs a merge combined."""
    text = "; ".join(
        f"{machine.get('host', DASH)} ({machine.get('cpu', DASH)}, {machine.get('cores', DASH)} cores, "
        f"{machine.get('devices', DASH)}): {machine['programs']} program{'s' if machine['programs'] != 1 else ''}"
        for machine in machines
    )
    if merged_from:
        text += "; merged from " + ", ".join(
            f"{source['folder']} ({source['programs']} programs, made {source.get('created') or DASH} on "
            f"{(source.get('machine') or {}).get('host', DASH)})"
            for source in merged_from
        )
    return text


def compile_ahead_text(workers: int, programs: Mapping[str, Mapping]) -> str:
    """How the compiles ahead met the runs: on a CPU host they share its cores."""
    run_s = sum(program.get("run_s") or 0.0 for program in programs.values())
    shared_s = sum(program.get("overlap_s") or 0.0 for program in programs.values())
    return (
        f"{workers} thread{'s' if workers > 1 else ''} compiled the next programs while one ran; "
        f"{shared_s:.1f} s of the {run_s:.1f} s of running shared the host with a compile"
    )


def compile_cache_text(cache: Any) -> str:
    if cache is True:
        return "on: JAX's persistent compilation cache was used, so compile s may be cache loads, not compiles"
    if cache is False:
        return "off: every compile s is a real XLA compilation"
    return "not recorded"


def _footer(results: Mapping, sections: list[Section]) -> list[str]:
    # Zero sections time what compare's would; sections that time different things share one word.
    timed = {section.timed for section in sections} or {SECTIONS[LessonKind.COMPARE].timed}
    return [
        "---",
        "",
        f"Reproduce: `{results.get('command') or 'optax-lab run --preset ' + str(results['preset'])}`",
        "",
        f"{timed.pop() if len(timed) == 1 else 'Timings'} exclude compilation, which is listed separately as "
        "compile s. The numbers behind this report are in [results.json](results.json).",
    ]
