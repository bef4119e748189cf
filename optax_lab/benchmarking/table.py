"""The markdown timing table of a `pytest bench/` session, and where it goes.

Rendered from benchmark records alone (`optax_lab.benchmarking.records`): the machine block, the
step times per optimizer and batch mode, and the roofline. The formatting helpers here serve
`optax-lab compare` too. Pure Python: no JAX needed to render.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from optax_lab.benchmarking.records import Row, is_number
from optax_lab.errors import UsageError

__all__ = [
    "DASH",
    "batch_modes",
    "machine_label",
    "machine_text",
    "markdown_table",
    "mode_title",
    "peak_text",
    "rate_text",
    "report_path",
    "seconds_text",
    "section_header",
    "timing_markdown",
    "versions_text",
]

DASH = "—"


# ---------------------------------------------------------------------------------------------
# The machine


def machine_label(machine_info: Mapping[str, Any]) -> str:
    """A short file-name-safe name: `gpu-nvidia-h100-80gb-hbm3`, `cpu-intel-r-xeon-r-processor`."""
    device = machine_info.get("jax") or {}
    platform = device.get("platform") or "unknown"
    model = (machine_info.get("cpu") or {}).get("brand_raw") if platform == "cpu" else device.get("device_kind")
    slug = re.sub(r"[^a-z0-9]+", "-", f"{platform} {model or machine_info.get('machine') or ''}".lower()).strip("-")
    return slug[:60].rstrip("-") or "machine"


def machine_text(machine_info: Mapping[str, Any]) -> str:
    device, cpu = machine_info.get("jax") or {}, machine_info.get("cpu") or {}
    system = f"{machine_info.get('system', '')} {machine_info.get('release', '')}".strip()
    host = ", ".join(
        str(part)
        for part in (
            cpu.get("brand_raw") or machine_info.get("processor"),
            f"{cpu['count']} cores" if cpu.get("count") else None,
            system,
            f"Python {machine_info.get('python_version', '?')}",
        )
        if part
    )
    return (
        f"{device.get('platform', '?')} ({device.get('device_kind', '?')}) × {device.get('device_count', '?')}; "
        f"host {host}"
    )


def versions_text(machine_info: Mapping[str, Any]) -> str:
    device = machine_info.get("jax") or {}
    return ", ".join(f"{lib} {device[lib]}" for lib in ("jax", "jaxlib", "optax", "flax") if lib in device) or DASH


def peak_text(machine_info: Mapping[str, Any]) -> str:
    peak = machine_info.get("fp32_matmul_peak") or {}
    if not is_number(peak.get("gflops")):
        return "not measured"
    return (
        f"{peak['gflops']:.1f} GFLOP/s ({peak.get('size')}×{peak.get('size')} fp32 product at JAX's default "
        f"precision, best of {peak.get('repeats')}, measured in the same session)"
    )


# ---------------------------------------------------------------------------------------------
# Formatting


def seconds_text(seconds: Any) -> str:
    """3 significant digits in a unit that suits: 812 µs, 4.12 ms, 1.50 s."""
    if not is_number(seconds):
        return DASH
    for unit, scale in (("s", 1.0), ("ms", 1e3), ("µs", 1e6)):
        if seconds >= 1 / scale or unit == "µs":
            return f"{_sig(seconds * scale)} {unit}"
    raise AssertionError("unreachable")


def _sig(value: float) -> str:
    """3 significant digits, trailing zeros kept (3.30, not 3.3)."""
    value = float(f"{value:.3g}")
    decimals = 2 - math.floor(math.log10(value)) if value > 0 else 2
    return f"{value:.{max(0, decimals)}f}"


def rate_text(value: Any) -> str:
    if not is_number(value):
        return DASH
    return next(
        (f"{_sig(value / scale)}{suffix}" for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)) if value >= scale),
        _sig(value),
    )


def loss_text(info: Mapping[str, Any], key: str = "val_loss") -> str:
    seeds, diverged = info.get("seeds") or 0, info.get("diverged_seeds") or 0
    value = info.get(key)
    if not is_number(value):
        return f"diverged ({diverged}/{seeds})" if diverged else DASH
    return f"{value:.4f}" + (f" ({diverged}/{seeds} diverged)" if diverged else "")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    head: Sequence[str], lines: Iterable[Sequence[Any]], rest: str = "---:", aligns: Sequence[str] | None = None
) -> list[str]:
    """A markdown table: the first column left-aligned (names), the others by `rest` (numbers:
    right), unless `aligns` gives each column's."""
    aligns = aligns or ["---"] + [rest] * (len(head) - 1)
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(aligns) + "|",
        *("| " + " | ".join(_cell(c) for c in line) + " |" for line in lines),
    ]


def batch_modes(rows: Iterable[Row]) -> list[str]:
    """The batch modes present: full batch first, then mini-batches from large to small."""
    modes = {row.info["batch"] for row in rows}
    return sorted(modes, key=lambda mode: (mode != "full", -int(mode) if mode.isdigit() else 0, mode))


def by_optimizer(rows: Iterable[Row]) -> dict[str, dict[str, Row]]:
    grouped: dict[str, dict[str, Row]] = {}
    for row in rows:
        grouped.setdefault(row.info["optimizer"], {})[row.info["batch"]] = row
    return grouped


def sorted_optimizers(grouped: Mapping[str, Mapping[str, Row]], modes: Sequence[str]) -> list[str]:
    """Fastest first by step time in the smallest mini-batch mode (the usual way to train), then
    in the others; an optimizer missing from a mode goes after those that have it."""
    order = list(reversed(modes))

    def key(name):
        return tuple(
            (mode not in grouped[name], grouped[name][mode].rates["step_s_median"] if mode in grouped[name] else 0.0)
            for mode in order
        ) + (name,)

    return sorted(grouped, key=key)


def mode_title(mode: str) -> str:
    return "full batch" if mode == "full" else f"batch {mode}"


# ---------------------------------------------------------------------------------------------
# The table


def timing_markdown(machine_info: Mapping[str, Any], rows: Sequence[Row], meta: Mapping[str, Any]) -> str:
    """The session's report: the machine block, then step times, then the roofline table.
    meta: command, created (ISO time), wall_s (the session's seconds), all optional."""
    if not rows:
        raise UsageError("no optimizer benchmarks to tabulate: select some with --optimizers/--batch/-k")
    modes, grouped = batch_modes(rows), by_optimizer(rows)
    names = sorted_optimizers(grouped, modes)
    first = rows[0].info
    lines = [f"# optax-lab benchmark: {machine_label(machine_info)}", "", *machine_block(machine_info, rows, meta), ""]
    val_epochs = sorted({row.info.get("val_epochs") for row in rows if row.info.get("val_epochs")})
    lines += [
        "## Step time",
        "",
        "Step time is one epoch call (all its steps in a `lax.scan`, with the epoch's shuffle, no "
        "validation) over its steps: median (IQR) over the timed rounds, compile excluded. Samples/s counts "
        "training examples of all seeds. Compile s is trace + lower + XLA compile of the epoch program. Val "
        f"loss is on the {first.get('n_test', '?')} test examples after a fixed short training of "
        f"{'/'.join(map(str, val_epochs)) or '?'} epochs (before the timed rounds), mean over the seeds. "
        "Sorted by step time in "
        f"{mode_title(modes[-1])}, fastest first.",
        "",
    ]
    head = ["Optimizer"]
    for label in ("step: median (IQR)", "samples/s", "compile s", "val loss"):
        head += [f"{mode_title(mode)}: {label}" for mode in modes]
    body = []
    for name in names:
        cells = [name]
        per_mode = [grouped[name].get(mode) for mode in modes]
        cells += [
            f"{seconds_text(r.rates['step_s_median'])} ({seconds_text(r.rates['step_s_iqr'])})" if r else DASH
            for r in per_mode
        ]
        cells += [rate_text(r.rates["samples_per_s"]) if r else DASH for r in per_mode]
        cells += [f"{r.info['compile_s']:.2f}" if r and is_number(r.info.get("compile_s")) else DASH for r in per_mode]
        cells += [loss_text(r.info) if r else DASH for r in per_mode]
        body.append(cells)
    lines += markdown_table(head, body)
    lines += ["", *roofline_section(machine_info, grouped, names, modes)]
    return "\n".join(lines) + "\n"


def machine_block(machine_info: Mapping[str, Any], rows: Sequence[Row], meta: Mapping[str, Any]) -> list[str]:
    info = rows[0].info
    seeds = sorted({row.info["seeds"] for row in rows})
    cache = {row.info.get("compile_cache") for row in rows}
    compile_total = sum(row.info.get("compile_s") or 0.0 for row in rows)
    wall = meta.get("wall_s")
    session = f"{len(rows)} benchmarks; compile {compile_total:.0f} s in all"
    if is_number(wall) and wall > 0:
        session += f" of the session's {wall:.0f} s ({compile_total / wall:.0%})"
    pairs = [
        ("Machine", machine_text(machine_info)),
        ("Versions", versions_text(machine_info)),
        ("fp32 matmul peak", peak_text(machine_info)),
        (
            "Dataset",
            f"{info.get('dataset', '?')}: {info.get('n_train', '?')} training / {info.get('n_test', '?')} "
            f"test examples × {info.get('num_words', '?')} words; model {info.get('model', '?')}",
        ),
        ("Seeds", f"{'/'.join(map(str, seeds))} vmapped in each program, {info.get('order', '?')} shuffling"),
        (
            "Compile cache",
            "on: compile s may be cache loads"
            if cache == {True}
            else "off: every compile is a real XLA compile"
            if cache == {False}
            else "mixed",
        ),
        ("Session", session),
        ("Command", f"`{meta['command']}`" if meta.get("command") else DASH),
        ("Created", meta.get("created") or DASH),
    ]
    return markdown_table(["", ""], pairs, rest="---")


def section_header(machine_info: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """The top of a bench report that has no timing table (only sections such as scaling)."""
    pairs = [
        ("Machine", machine_text(machine_info)),
        ("Versions", versions_text(machine_info)),
        ("Command", f"`{meta['command']}`" if meta.get("command") else DASH),
        ("Created", meta.get("created") or DASH),
    ]
    lines = [f"# optax-lab benchmark: {machine_label(machine_info)}", "", *markdown_table(["", ""], pairs, rest="---")]
    return "\n".join(lines) + "\n"


def roofline_section(
    machine_info: Mapping[str, Any],
    grouped: Mapping[str, Mapping[str, Row]],
    names: Sequence[str],
    modes: Sequence[str],
) -> list[str]:
    lines = [
        "## Roofline",
        "",
        f"Peak: {peak_text(machine_info)}. FLOPs per step come from XLA's cost analysis of the epoch "
        "program, which counts a loop body once: a step is the reported FLOPs minus the shuffle "
        "(compiled on its own), and an epoch is that plus steps × step. Achieved GFLOP/s "
        "is an epoch's FLOPs over its median time. † a loop inside the step has no known trip count "
        "(e.g. a line search) and was counted once, so its FLOPs and GFLOP/s are lower bounds.",
        "",
    ]
    head = ["Optimizer"]
    for label in ("FLOP/step", "GFLOP/s", "% of peak"):
        head += [f"{mode_title(mode)}: {label}" for mode in modes]
    body = []
    for name in names:
        per_mode = [grouped[name].get(mode) for mode in modes]
        mark = ["" if r is None or r.info.get("flops_exact", True) else " †" for r in per_mode]
        cells = [name]
        cells += [
            f"{rate_text(r.info['flops_per_step'])}{m}" if r and is_number(r.info.get("flops_per_step")) else DASH
            for r, m in zip(per_mode, mark, strict=False)
        ]
        cells += [
            f"{_sig(r.rates['gflops_per_s'])}{m}" if r and is_number(r.rates.get("gflops_per_s")) else DASH
            for r, m in zip(per_mode, mark, strict=False)
        ]
        cells += [
            f"{100 * r.rates['peak_fraction']:.1f} %" if r and is_number(r.rates.get("peak_fraction")) else DASH
            for r in per_mode
        ]
        body.append(cells)
    lines += markdown_table(head, body)
    return lines


# ---------------------------------------------------------------------------------------------
# Writing


def report_path(folder: str | Path, machine_info: Mapping[str, Any], today: datetime.date | None = None) -> Path:
    """`<folder>/<machine>-<date>.md`, with -2, -3, ... when that exists: a second run the same
    day (cold, then warm) must not overwrite the first."""
    stem = f"{machine_label(machine_info)}-{(today or datetime.date.today()).isoformat()}"
    folder = Path(folder)
    path, n = folder / f"{stem}.md", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.md"
    return path
