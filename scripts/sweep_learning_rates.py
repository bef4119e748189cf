"""Sweep each registered optimizer's learning rate; the evidence for the registry's defaults.

For every optimizer: 5 log-spaced rates around its registry default (x 0.1, 0.32, 1, 3.2, 10),
each trained for all seeds in one vmapped program (shared shuffling, for speed); the best rate is
the one with the lowest final validation loss, averaged over seeds (a diverged run counts as
infinitely bad). Writes a markdown table to reports/lr-sweep.md and prints it.

The full sweep (~30 min on 2 CPU cores, synthetic-imdb, 8 seeds, 20 epochs):

    python scripts/sweep_learning_rates.py

A quick check of the script itself:

    python scripts/sweep_learning_rates.py --optimizers adam,lion --epochs 3 --seeds 2
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from optax_lab import optimizers, train
from optax_lab.config import Order, RunSpec
from optax_lab.data import load_dataset
from optax_lab.errors import closest
from optax_lab.files import write_files
from optax_lab.program import Arrays

REPORT = Path(__file__).resolve().parents[1] / "reports" / "lr-sweep.md"
FACTORS = tuple(10 ** (k / 2) for k in range(-2, 3))  # 0.1 ... 10, half a decade apart
RATE_NAMES = ("learning_rate", "max_learning_rate")  # polyak_sgd's rate is a cap


def rate_name(entry: optimizers.OptimizerEntry) -> str | None:
    """The hyperparameter to sweep: the entry's numeric learning rate, if it has one."""
    return next((n for n in RATE_NAMES if isinstance(entry.defaults.get(n), (int, float))), None)


def sweep_one(entry: optimizers.OptimizerEntry, data: Arrays, seeds: tuple[int, ...], epochs: int,
              batch: int) -> dict[float, float]:
    """Rate -> final validation loss averaged over seeds (inf where any seed diverged)."""
    name = rate_name(entry)
    results = {}
    for factor in FACTORS:
        rate = float(f"{entry.defaults[name] * factor:.3g}")
        spec = RunSpec(f"{entry.name}@{rate:g}", entry.name, {name: rate}, batch)
        final = train.train(spec, data, seeds=seeds, epochs=epochs, order=Order.SHARED).history["val_loss"][:, -1]
        results[rate] = float(final.mean()) if np.all(np.isfinite(final)) else math.inf
    return results


def table(rows: list[tuple[optimizers.OptimizerEntry, dict[float, float]]], header: str) -> str:
    lines = [header, "",
             "| optimizer | rate | default | best | best val loss | val loss per rate |",
             "|---|---|---|---|---|---|"]
    for entry, results in rows:
        name = rate_name(entry)
        if not results:
            lines.append(f"| {entry.name} | - | - | - | - | no learning rate to sweep |")
            continue
        best = min(results, key=results.get)
        mark = "" if math.isclose(best, entry.defaults[name], rel_tol=1e-3) else " ←"
        tried = ", ".join(f"{rate:g}: {loss:.4f}" for rate, loss in results.items())
        lines.append(f"| {entry.name} | {name} | {entry.defaults[name]:g} | {best:g}{mark} | "
                     f"{results[best]:.4f} | {tried} |")
    lines += ["", "← marks a default that the sweep would change."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizers", help="comma-separated registry names (default: all)")
    parser.add_argument("--dataset", default="synthetic-imdb", choices=("synthetic-imdb", "imdb"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)

    names = args.optimizers.split(",") if args.optimizers else list(optimizers.REGISTRY)
    unknown = [n for n in names if n not in optimizers.REGISTRY]
    if unknown:
        near = closest(unknown[0], sorted(optimizers.REGISTRY))
        parser.error(f"unknown optimizer {unknown[0]!r}: did you mean {near}?")
    dataset, warning = load_dataset(args.dataset)
    if warning:
        print(warning, file=sys.stderr)
    data = Arrays.from_numpy(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
    seeds = tuple(range(args.seeds))

    command = "python scripts/sweep_learning_rates.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"# Learning-rate sweep\n\n{dataset.name} ({dataset.source}), batch {args.batch}, "
              f"{args.seeds} seeds, {args.epochs} epochs, shared order; the best rate has the lowest final "
              f"validation loss averaged over seeds.\n\nMade by `{command.strip()}`.")
    rows = []
    for name in names:
        entry = optimizers.get(name)
        start = time.perf_counter()
        results = sweep_one(entry, data, seeds, args.epochs, args.batch) if rate_name(entry) else {}
        rows.append((entry, results))
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        write_files({args.out: table(rows, header)})  # after each optimizer: a crash keeps the rest
    print(table(rows, header))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
