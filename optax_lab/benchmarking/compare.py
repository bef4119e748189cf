"""`optax-lab compare A.json B.json [...]`: the same optimizer benchmarks on different machines.

Reads `pytest bench/ --benchmark-json` files (a laptop CPU, a GPU box, ...) and writes a
markdown report: per optimizer and batch mode, the step time on each machine and its speed-up
over the first file (the baseline), plus a bar chart of the speed-ups. Rows whose runs differ in
what was measured (seeds, batch, data, model, hyperparameters) are flagged, never compared.
Where the files hold replica-scaling curves (`bench/bench_scaling.py`), a section follows with
each machine's peaks and one log-log plot overlaying their curves (`<report>-scaling.png`).
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from optax_lab.benchmarking.records import FIX_JSON, Row, benchmark_rows, read_benchmark_json
from optax_lab.benchmarking.scaling import Curve, overlay_markdown, scaling_curves, scaling_plot
from optax_lab.benchmarking.table import (
    DASH,
    batch_modes,
    machine_label,
    machine_text,
    markdown_table,
    mode_title,
    peak_text,
    seconds_text,
    versions_text,
)
from optax_lab.errors import UsageError
from optax_lab.files import write_files

__all__ = ["SAME_MEASUREMENT", "Run", "compare", "load_runs", "mismatch", "render_markdown", "speedup", "speedup_chart"]

# What must agree for two rows to be the same measurement (step time is per step, so the
# epoch's length may differ only through these, which must match).
SAME_MEASUREMENT = (
    "seeds",
    "batch_size",
    "steps_per_epoch",
    "dataset",
    "n_train",
    "n_test",
    "num_words",
    "model",
    "hyperparams",
    "order",
)


@dataclasses.dataclass(frozen=True)
class Run:
    """One --benchmark-json file."""

    path: Path
    label: str
    output: Mapping[str, Any]
    rows: Mapping[tuple[str, str], Row]  # by (optimizer, batch mode)
    curves: Mapping[tuple[str, str, str], Curve] = dataclasses.field(default_factory=dict)  # by (batch, order, devices)


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    if len(paths) < 2:
        raise UsageError(
            "compare needs two or more --benchmark-json files, e.g. `optax-lab compare laptop.json gpu.json`"
        )
    loaded = []
    for path in map(Path, paths):
        output = read_benchmark_json(path)
        rows, curves = benchmark_rows(output, str(path)), scaling_curves(output, str(path))
        if not rows and not curves:
            raise UsageError(
                f"{path} holds no optimizer benchmarks (an empty selection): {FIX_JSON} "
                "with at least one optimizer selected"
            )
        loaded.append((path, output, {row.key: row for row in rows}, {curve.key: curve for curve in curves}))
    # Short column labels, A, B, ...: the machine names are long and may repeat (cold vs warm).
    runs = [
        Run(path, chr(ord("A") + i) if i < 26 else f"#{i + 1}", output, rows, curves)
        for i, (path, output, rows, curves) in enumerate(loaded)
    ]
    shared_curves = any(key in run.curves for key in runs[0].curves for run in runs[1:])
    if not shared_curves and not any(key in run.rows for key in runs[0].rows for run in runs[1:]):
        if any(run.curves for run in runs):
            raise UsageError(
                f"{', '.join(str(run.path) for run in runs[1:])} share no optimizer × batch mode "
                f"and no scaling curve with the baseline {runs[0].path}: benchmark the same "
                "--optimizers/--batch, or the same bench_scaling curves, on each machine"
            )
        raise UsageError(
            f"{', '.join(str(run.path) for run in runs[1:])} share no optimizer × batch mode with "
            f"the baseline {runs[0].path} (an empty selection): benchmark the same "
            "--optimizers/--batch on each machine"
        )
    return runs


def _all_keys(runs: Sequence[Run]) -> set[tuple[str, str]]:
    return {key for run in runs for key in run.rows}


def mismatch(rows: Sequence[Row | None]) -> str:
    """'' when the present rows measured the same thing, else what differs, e.g. 'seeds 8 vs 2'."""
    present = [row for row in rows if row is not None]
    differences = []
    for field in SAME_MEASUREMENT:
        values = [row.info.get(field) for row in present]
        if any(value != values[0] for value in values):
            differences.append(f"{field} " + " vs ".join(str(value) for value in values))
    return "; ".join(differences)


def speedup(baseline: Row | None, other: Row | None) -> float | None:
    if baseline is None or other is None:
        return None
    return baseline.rates["step_s_median"] / other.rates["step_s_median"]


def compare(paths: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write the comparison of the --benchmark-json files `paths` (the first is the baseline) as
    markdown with a speed-up chart beside it (when they hold optimizer benchmarks) and the
    overlaid scaling plot (when they hold scaling curves); returns the markdown's path."""
    runs = load_runs(paths)
    markdown_path = _out_path(out, runs)
    files: dict[Path, bytes | str] = {}
    if any(run.rows for run in runs):
        chart_path = markdown_path.with_suffix(".png")
        markdown = render_markdown(runs, chart_path.name)
        files[chart_path] = speedup_chart(runs)
    else:  # scaling curves alone
        markdown = "\n".join(_header(runs)) + "\n"
    if any(run.curves for run in runs):
        plot_path = markdown_path.with_name(f"{markdown_path.stem}-scaling.png")
        machines = [(run.label, list(run.curves.values())) for run in runs]
        markdown = markdown.rstrip("\n") + "\n\n## Replica scaling\n\n" + overlay_markdown(machines, plot_path.name)
        files[plot_path] = scaling_plot(machines)
    write_files({**files, markdown_path: markdown})  # the markdown last
    return markdown_path


def _out_path(out: str | Path | None, runs: Sequence[Run]) -> Path:
    name = "compare-" + "-vs-".join(machine_label(run.output["machine_info"]) for run in runs) + ".md"
    if out is None:
        return Path("reports") / "bench" / name
    out = Path(out).expanduser()
    if out.is_dir():
        return out / name
    if out.suffix != ".md":
        raise UsageError(f"--out {out} must be a .md file or an existing folder, e.g. --out reports/bench/compare.md")
    return out


def _header(runs: Sequence[Run]) -> list[str]:
    """The title and the machines table."""
    machines = [machine_label(run.output["machine_info"]) for run in runs]
    lines = [f"# optax-lab compare: {' vs '.join(machines)}", ""]
    head = ["Run", "Machine", "File", "Device and host", "Versions", "fp32 matmul peak", "Created"]
    body = [
        [
            run.label,
            machine,
            run.path.name,
            machine_text(run.output["machine_info"]),
            versions_text(run.output["machine_info"]),
            peak_text(run.output["machine_info"]),
            run.output.get("datetime", DASH),
        ]
        for run, machine in zip(runs, machines, strict=False)
    ]
    return lines + markdown_table(head, body, rest="---")


def render_markdown(runs: Sequence[Run], chart_name: str) -> str:
    baseline = runs[0]
    lines = _header(runs)
    lines += [
        "",
        f"Step time: median (IQR) of an epoch call over its steps (see the timing tables). Speed-up: "
        f"{baseline.label}'s step time over the machine's (above 1: faster than {baseline.label}). A row "
        "whose runs differ in seeds, batch, data, model or hyperparameters is flagged ⚠ and not compared.",
        "",
        f"![speed-up over {baseline.label}]({chart_name})",
        "",
    ]
    keys = _all_keys(runs)
    for mode in batch_modes(row for run in runs for row in run.rows.values()):
        names = _sorted_names(runs, {name for name, batch in keys if batch == mode}, mode)
        lines += [f"## {mode_title(mode)}", "", *_summary(runs, mode), ""]
        head = [
            "Optimizer",
            *(f"{run.label} step" for run in runs),
            *(f"{run.label} speed-up" for run in runs[1:]),
            "Note",
        ]
        body = []
        for name in names:
            rows = [run.rows.get((name, mode)) for run in runs]
            problems = {run.label: mismatch([rows[0], row]) for run, row in zip(runs[1:], rows[1:], strict=False)}
            steps = [
                f"{seconds_text(r.rates['step_s_median'])} ({seconds_text(r.rates['step_s_iqr'])})" if r else DASH
                for r in rows
            ]
            ratios = [
                "not compared" if problems[run.label] else _ratio_text(speedup(rows[0], row))
                for run, row in zip(runs[1:], rows[1:], strict=False)
            ]
            absent = [run.label for run, r in zip(runs, rows, strict=False) if r is None]
            notes = [
                f"⚠ {label} differs from {runs[0].label}: {problem}" for label, problem in problems.items() if problem
            ]
            notes += [f"not run in {', '.join(absent)}"] if absent else []
            body.append([name, *steps, *ratios, "; ".join(notes)])
        lines += markdown_table(head, body, aligns=["---"] + ["---:"] * (len(head) - 2) + ["---"]) + [""]
    return "\n".join(lines)


def _ratio_text(ratio: float | None) -> str:
    return DASH if ratio is None else f"{ratio:.2f}×"


def _sorted_names(runs: Sequence[Run], names: set[str], mode: str) -> list[str]:
    """By the baseline's step time, fastest first; those it lacks after, by name."""

    def key(name):
        row = runs[0].rows.get((name, mode))
        return (row is None, row.rates["step_s_median"] if row else 0.0, name)

    return sorted(names, key=key)


def _summary(runs: Sequence[Run], mode: str) -> list[str]:
    """The geometric mean speed-up of each machine over the rows it shares with the baseline."""
    lines = []
    for run in runs[1:]:
        ratios, flagged = [], 0
        for (name, batch), row in run.rows.items():
            base = runs[0].rows.get((name, batch))
            if batch != mode or base is None:
                continue
            if mismatch([base, row]):
                flagged += 1
            else:
                ratios.append(speedup(base, row))
        if ratios:
            mean = math.exp(sum(map(math.log, ratios)) / len(ratios))
            text = (
                f"{run.label} vs {runs[0].label}: geometric-mean speed-up {mean:.2f}× over {len(ratios)} "
                f"optimizers (range {min(ratios):.2f}–{max(ratios):.2f}×)"
            )
        else:
            text = f"{run.label} vs {runs[0].label}: no comparable optimizers"
        lines.append(f"- {text}" + (f"; {flagged} flagged as mismatched" if flagged else "") + ".")
    return lines


def speedup_chart(runs: Sequence[Run]) -> bytes:
    """PNG: per batch mode, a horizontal bar per optimizer and machine of its speed-up over the
    baseline (log scale); mismatched or missing rows get a label instead of a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    modes = batch_modes(row for run in runs for row in run.rows.values())
    keys = _all_keys(runs)
    names = {mode: _sorted_names(runs, {n for n, b in keys if b == mode}, mode)[::-1] for mode in modes}
    others = runs[1:]
    height = max(3.0, 0.22 * max(len(v) for v in names.values()) * len(others) + 1.5)
    figure, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), height), squeeze=False)
    bar = 0.8 / len(others)
    for axis, mode in zip(axes[0], modes, strict=False):
        labelled, extent = set(), math.log10(2.0)
        for i, name in enumerate(names[mode]):
            base = runs[0].rows.get((name, mode))
            for j, run in enumerate(others):
                row, y = run.rows.get((name, mode)), i - 0.4 + bar * (j + 0.5)
                ratio = speedup(base, row)
                if ratio is None or mismatch([base, row]):
                    text = f" {run.label}: mismatch" if ratio is not None else f" {run.label}: not run"
                    axis.text(1.0, y, text, va="center", fontsize=6, color="0.4")
                    continue
                # From 1 to the ratio: left of the line slower than the baseline, right faster.
                axis.barh(
                    y,
                    ratio - 1.0,
                    left=1.0,
                    height=bar,
                    color=f"C{j}",
                    label=None if j in labelled else f"{run.label}: {machine_label(run.output['machine_info'])}",
                )
                labelled.add(j)
                extent = max(extent, abs(math.log10(ratio)))
        axis.axvline(1.0, color="0.3", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlim(10 ** (-1.2 * extent), 10 ** (1.2 * extent))
        axis.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}×"))
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
        axis.set_yticks(range(len(names[mode])), names[mode], fontsize=7)
        axis.set_ylim(-0.6, len(names[mode]) - 0.4)
        axis.set_xlabel(f"step-time speed-up over {runs[0].label} (log)")
        axis.set_title(mode_title(mode))
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()
