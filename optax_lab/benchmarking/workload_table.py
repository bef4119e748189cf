"""The bench report's workloads section (`bench/bench_workloads.py`): each workload's speed, the
time a full run takes at that speed against the workload's time limit, and its achieved GFLOP/s
beside the machine's fp32 matmul peak. Pure Python: rendering needs no JAX.

A row is the dict the benchmark records as its `extra_info` (the keys `workload_markdown` reads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from optax_lab.benchmarking.records import is_number

__all__ = ["LIMIT_SEEDS", "figure", "full_run_seconds", "limit_verdict", "workload_markdown"]

LIMIT_SEEDS = 8  # a time limit is for this many seeds x the workload's default epochs


def full_run_seconds(seed_epochs_per_s: float, epochs: int, seeds: int = LIMIT_SEEDS) -> float:
    """Seconds that `seeds` x `epochs` take at `seed_epochs_per_s` (compile apart)."""
    return seeds * epochs / seed_epochs_per_s


def limit_verdict(seconds: float, limit_s: float | None) -> str:
    """'within' or 'over' the limit; '' where the workload has none."""
    if limit_s is None:
        return ""
    return "within" if seconds <= limit_s else "over"


def figure(value: float) -> str:
    """A figure for the table: one decimal from 10 up, three significant digits below."""
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def _gflops(row: Mapping[str, Any]) -> tuple[str, str]:
    """(GFLOP/s, % of peak) cells; † marks a bound (a loop of unknown trips, or a cond)."""
    if not is_number(row.get("gflops_per_s")):
        return "", ""
    mark = "" if row.get("flops_exact", True) else " †"
    fraction = row.get("peak_fraction")
    return f"{figure(row['gflops_per_s'])}{mark}", f"{figure(100 * fraction)} %" if is_number(fraction) else ""


def _limit(row: Mapping[str, Any]) -> str:
    verdict = limit_verdict(row["full_run_s"], row.get("limit_s"))
    return f"{row['limit_s']:.0f} s: {'**over**' if verdict == 'over' else verdict}" if verdict else "none"


def workload_markdown(rows: Sequence[Mapping[str, Any]], peak: Mapping[str, Any] | None) -> str:
    """The section: how its figures were counted, the peak they are set beside, one row per workload."""
    peak_text = (
        f"{peak['gflops']:.1f} GFLOP/s ({peak['size']}×{peak['size']} fp32 matmul, best of {peak['repeats']})"
        if peak
        else "not measured"
    )
    lines = [
        f"Machine's fp32 matmul peak: {peak_text}. GFLOP/s: each run's FLOPs (its program counted on the "
        "jaxpr: init, training steps and validation every epoch) over its run seconds, median; † a bound. "
        f"Full run: {LIMIT_SEEDS} seeds × the workload's default epochs at the measured rate, compile apart.",
        "",
        "| workload | optimizer | batch | seeds × epochs | seed-epochs/s (median) | runs | compile s "
        f"| full run ({LIMIT_SEEDS} seeds) | limit | GFLOP/run | GFLOP/s | % of peak | load (1, 5, 15 min) |",
        "|---|---|---|---|---:|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for row in rows:
        gflops, fraction = _gflops(row)
        lines.append(
            f"| {row['workload']} | {row['optimizer']} | {row['batch']} | {row['seeds']} × {row['epochs']} | "
            f"{row['seed_epochs_per_s']:.2f} | {', '.join(map(str, row['runs']))} | {row['compile_s']:.1f} | "
            f"{figure(row['full_run_s'])} s ({row['default_epochs']} epochs) | {_limit(row)} | "
            f"{figure(row['gflop_per_run'])} | {gflops} | {fraction} | {', '.join(map(str, row['load']))} |"
        )
    return "\n".join(lines) + "\n"
