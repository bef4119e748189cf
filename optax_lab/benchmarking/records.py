"""The benchmark record, once: what an optimizer benchmark writes into pytest-benchmark's JSON
and how a reader checks and parses it.

A record is pytest-benchmark's own shape (what `--benchmark-json` writes, or what
`benchmark.stats.as_dict()` gives during a session): `machine_info` plus a list of benchmarks,
each with `stats` (seconds per round; a round is one epoch call) and our `extra_info` (written by
`optax_lab.benchmarking.epoch.extra_info`). The producer writes by these rules and the table and
`optax-lab compare` read by the same ones. Pure Python: no JAX needed to read a record.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from optax_lab.errors import UsageError

__all__ = [
    "BENCH_KIND",
    "FIX_JSON",
    "NEEDED_INFO",
    "SCHEMA",
    "Row",
    "benchmark_rows",
    "check_benchmark_json",
    "is_number",
    "read_benchmark_json",
    "throughput",
]

BENCH_KIND = "optimizer-epoch"  # extra_info["bench"] of an optimizer benchmark; others are ignored
SCHEMA = 1  # extra_info["schema"]
FIX_JSON = "pass a file written by `pytest bench/ --benchmark-json FILE`"
# The extra_info fields a row cannot do without (its key and its rates); the others are optional.
NEEDED_INFO = ("optimizer", "batch", "batch_size", "steps_per_epoch", "seeds", "n_train")


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): a value a table can print as a number."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def throughput(
    epoch_median: float,
    epoch_iqr: float,
    steps: int,
    seeds: int,
    n_train: int,
    flops_per_epoch: float | None,
    peak_gflops: float | None,
) -> dict[str, float | None]:
    """Rates from an epoch call's median time (seconds): per step, samples (training examples
    of all seeds) and seed-epochs per second, achieved GFLOP/s and its fraction of the peak."""
    gflops = flops_per_epoch / epoch_median / 1e9 if is_number(flops_per_epoch) else None
    return {
        "epoch_s_median": epoch_median,
        "step_s_median": epoch_median / steps,
        "step_s_iqr": epoch_iqr / steps,
        "samples_per_s": seeds * n_train / epoch_median,
        "seed_epochs_per_s": seeds / epoch_median,
        "gflops_per_s": gflops,
        "peak_fraction": gflops / peak_gflops if gflops is not None and is_number(peak_gflops) else None,
    }


@dataclasses.dataclass(frozen=True)
class Row:
    """One optimizer × batch-mode benchmark: its extra_info and the rates from its stats."""

    name: str
    info: Mapping[str, Any]
    rates: Mapping[str, float | None]
    rounds: int

    @property
    def key(self) -> tuple[str, str]:
        return self.info["optimizer"], self.info["batch"]


def benchmark_rows(output: Mapping[str, Any], source: str = "the benchmark data") -> list[Row]:
    """The optimizer benchmarks of a pytest-benchmark JSON object (others, e.g. the engine's, are
    skipped); bad shapes become one-line UsageErrors naming `source`."""
    check_benchmark_json(output, source)
    rows = []
    for entry in output["benchmarks"]:
        info = entry.get("extra_info") if isinstance(entry, Mapping) else None
        if not isinstance(info, Mapping) or info.get("bench") != BENCH_KIND:
            continue
        name = entry.get("name", "?")
        missing = [key for key in NEEDED_INFO if key not in info]
        if missing:
            raise UsageError(f"{source}: benchmark {name!r} lacks extra_info {', '.join(missing)}: {FIX_JSON}")
        stats = entry.get("stats")
        if not isinstance(stats, Mapping) or not all(is_number(stats.get(key)) for key in ("median", "iqr")):
            raise UsageError(f"{source}: benchmark {name!r} has no stats median/iqr: {FIX_JSON}")
        rates = throughput(
            stats["median"],
            stats["iqr"],
            info["steps_per_epoch"],
            info["seeds"],
            info["n_train"],
            info.get("flops_per_epoch"),
            info.get("matmul_peak_gflops"),
        )
        rows.append(Row(name, info, rates, int(stats.get("rounds") or 0)))
    return rows


def check_benchmark_json(output: Any, source: str) -> None:
    if (
        not isinstance(output, Mapping)
        or not isinstance(output.get("benchmarks"), list)
        or not isinstance(output.get("machine_info"), Mapping)
    ):
        raise UsageError(f"{source} is not pytest-benchmark JSON (no 'machine_info' and 'benchmarks'): {FIX_JSON}")


def read_benchmark_json(path: str | Path) -> dict[str, Any]:
    """A `--benchmark-json` file, checked; an unreadable or malformed one is a one-line UsageError."""
    try:
        output = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"cannot read {path} ({error.strerror or error}): {FIX_JSON}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"{path} is not JSON ({getattr(error, 'msg', error)}): {FIX_JSON}") from None
    check_benchmark_json(output, str(path))
    return output
