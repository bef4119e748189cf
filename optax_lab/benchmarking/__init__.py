"""The benchmark side: what `pytest bench/` measures and records, and what renders and compares it.

records         the benchmark record (pytest-benchmark JSON + our extra_info): its fields, rates, parsing
epoch           the producer: one optimizer × batch-mode epoch benchmark and its extra_info
roofline        FLOPs from XLA's cost analysis, the machine's fp32 matmul peak
program_flops   FLOPs of a whole training program, counted on its jaxpr (any workload)
table           the markdown timing table of a session
workload_table  the bench report's workloads section: speed, time limits, GFLOP/s beside the peak
compare         `optax-lab compare`: the same benchmarks on different machines

records, table, workload_table and compare are pure Python: reading and rendering need no JAX.
So the names below are imported from their module on first use, not when the package is.
"""

from __future__ import annotations

import importlib
from typing import Any

# `optax-lab compare` is `compare.compare`: not re-exported, the name is its module's.
__all__ = [
    "BENCH_KIND",
    "SCHEMA",
    "LIMIT_SEEDS",
    "EpochBench",
    "Flops",
    "MatmulPeak",
    "Row",
    "StepFlops",
    "benchmark_rows",
    "extra_info",
    "full_run_seconds",
    "limit_verdict",
    "matmul_peak",
    "read_benchmark_json",
    "report_path",
    "rounds_for",
    "run_flops",
    "step_flops",
    "throughput",
    "timing_markdown",
    "training_flops",
    "workload_markdown",
]

_MODULE_OF = {
    "BENCH_KIND": "records",
    "SCHEMA": "records",
    "Row": "records",
    "benchmark_rows": "records",
    "read_benchmark_json": "records",
    "throughput": "records",
    "EpochBench": "epoch",
    "extra_info": "epoch",
    "rounds_for": "epoch",
    "MatmulPeak": "roofline",
    "StepFlops": "roofline",
    "matmul_peak": "roofline",
    "step_flops": "roofline",
    "Flops": "program_flops",
    "run_flops": "program_flops",
    "training_flops": "program_flops",
    "report_path": "table",
    "timing_markdown": "table",
    "LIMIT_SEEDS": "workload_table",
    "full_run_seconds": "workload_table",
    "limit_verdict": "workload_table",
    "workload_markdown": "workload_table",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
