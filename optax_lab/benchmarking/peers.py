"""The peers table: the lesson's runs timed three ways (Keras as the lesson writes it, a plain
PyTorch loop, optax_lab) side by side, each row's speed as a ratio over Keras'.

`bench/bench_peers.py` measures and fills `PeerRun` records; this module only renders them.
Pure Python: no JAX, TensorFlow or PyTorch needed to render.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Sequence

from optax_lab.benchmarking.records import is_number
from optax_lab.benchmarking.table import DASH, markdown_table, rate_text, seconds_text

__all__ = [
    "BASELINE",
    "OPTIMIZER_ORDER",
    "WAYS",
    "PeerRun",
    "peers_markdown",
    "sorted_runs",
    "speedup",
    "target_text",
    "workload_text",
]

# The ways a run is written, in table order, and how a row names them.
WAYS = {"keras": "Keras, the lesson's code", "pytorch": "PyTorch, a plain loop", "optax_lab": "optax_lab"}
BASELINE = "keras"  # every row's speed-up is over this way's row of the same optimizer
OPTIMIZER_ORDER = ("adam", "sgd")  # the lesson's; any other follows, alphabetically


@dataclasses.dataclass(frozen=True)
class PeerRun:
    """One way of running one optimizer: its timed runs, or why it was skipped."""

    way: str  # a key of WAYS
    optimizer: str  # e.g. "adam"
    seeds: int = 1  # seeds trained by each timed run (Keras and PyTorch: one at a time)
    devices: int = 1  # JAX devices the seeds were split over (Keras, PyTorch: one process)
    order: str = ""  # optax_lab's shuffling: "per-seed" (each seed its own, as separate runs) or "shared"
    epochs: int = 0
    run_seconds: tuple[float, ...] = ()  # each timed run's seconds, compile and warm-up excluded
    setup_s: float | None = None  # untimed: optax_lab's compile, Keras' and PyTorch's warm-up
    val_loss: float | None = None  # after the last epoch, mean over every seed of every timed run
    runs_on: str = ""  # e.g. "1 of 2 CPU devices", "CPU, 2 threads"
    host_load: float | None = None  # the 1-minute load average after the timed runs (a shared box's noise)
    version: str = ""  # e.g. "torch 2.13.0"
    skipped: str = ""  # why it did not run; a skipped run has no figures

    def __post_init__(self):
        object.__setattr__(self, "run_seconds", tuple(float(s) for s in self.run_seconds))
        if self.way not in WAYS:
            raise ValueError(f"unknown way {self.way!r}: choose one of {', '.join(WAYS)}")

    @property
    def label(self) -> str:
        if self.way != "optax_lab":
            return WAYS[self.way]
        order = f", {self.order} shuffling" if self.order else ""
        return f"{WAYS[self.way]}, {self.devices} device{'s' if self.devices != 1 else ''}{order}"

    @property
    def seconds(self) -> float | None:
        """The median timed run's seconds."""
        times = [s for s in self.run_seconds if is_number(s) and s > 0]
        return statistics.median(times) if times and not self.skipped else None

    @property
    def seed_epochs_per_s(self) -> float | None:
        seconds = self.seconds
        return self.seeds * self.epochs / seconds if seconds and self.epochs > 0 else None


def _way_rank(way: str) -> int:
    return list(WAYS).index(way)


def _optimizer_rank(name: str) -> tuple[int, str]:
    return (OPTIMIZER_ORDER.index(name) if name in OPTIMIZER_ORDER else len(OPTIMIZER_ORDER), name)


def sorted_runs(runs: Iterable[PeerRun]) -> list[PeerRun]:
    """By optimizer (the lesson's order), then Keras, PyTorch, optax_lab by shuffling (per-seed
    first: it matches separate runs) and device count."""
    return sorted(
        runs,
        key=lambda run: (
            _optimizer_rank(run.optimizer),
            _way_rank(run.way),
            run.order != "per-seed",
            run.order,
            run.devices,
        ),
    )


def speedup(run: PeerRun, runs: Iterable[PeerRun]) -> float | None:
    """`run`'s seed-epochs/s over the Keras row's of the same optimizer; None when either has no
    figure (skipped, or no Keras row)."""
    mine = run.seed_epochs_per_s
    base = next(
        (
            r.seed_epochs_per_s
            for r in runs
            if r.way == BASELINE and r.optimizer == run.optimizer and r.seed_epochs_per_s
        ),
        None,
    )
    return mine / base if mine and base else None


def _ratio_text(ratio: float | None) -> str:
    if ratio is None:
        return DASH
    return f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.2g}×" if ratio < 1 else f"{ratio:.1f}×"


def _loss_text(value: float | None) -> str:
    return f"{value:.4f}" if is_number(value) else DASH


def workload_text(dataset: str, n_train: int, n_test: int, num_words: int, batch_size: int, epochs: int) -> str:
    """The sentence that says what every row trained."""
    return (
        f"The lesson's MLP ({num_words} → 32 → 32 → 1, ReLU, sigmoid, binary cross-entropy) on {dataset}: "
        f"{n_train} training reviews, batch {batch_size}, {epochs} epochs, the loss on all {n_test} test "
        "reviews after every epoch (the lesson's `validation_data`). Adam 1e-3 and SGD 1e-2, the rates "
        "Keras' `'adam'` and `'sgd'` use."
    )


NOTES = (
    "Seed-epochs/s is seeds × epochs over a timed run's median seconds (timed runs in the Runs column). "
    "Keras: one warm-up `fit` of one epoch per optimizer traces its train and test functions; each timed run "
    "then loads a fresh seed's initial weights and optimizer state into that model and times `model.fit` alone. "
    "PyTorch: one warm-up epoch per optimizer, then each timed run is a fresh model and optimizer (PyTorch's "
    "default init) trained by the loop, with the clock around the epochs. optax_lab: every seed in one compiled "
    "program (`train_points`), timed by the engine around the compiled call after `block_until_ready`; its "
    "compile is the untimed column. Per-seed shuffling gives each seed its own batch order, as separate runs "
    "do; shared shuffling (`--shared-order`) gives all seeds one order per epoch. × Keras is each row's "
    "seed-epochs/s over the Keras row's of the same optimizer. Final val loss is after the last epoch, mean over "
    "the seeds; Keras and optax_lab start from Glorot-uniform kernels, PyTorch from its own default, so its loss "
    "differs. Host load is the 1-minute load average after the timed runs: the run itself adds up to one per "
    "core it keeps busy, so a load above the core count means another process competed for the cores."
)


def target_text(runs: Sequence[PeerRun], target: float) -> str:
    """One line: each optax_lab row's speed-up over Keras, ✓ where it reaches `target` (× Keras);
    "" when there is no ratio to judge."""
    parts: dict[str, list[str]] = {}
    for run in sorted_runs(runs):
        ratio = speedup(run, runs) if run.way == "optax_lab" else None
        if ratio is not None:
            detail = run.label.removeprefix(f"{WAYS['optax_lab']}, ")
            parts.setdefault(run.optimizer, []).append(
                f"{_ratio_text(ratio)}{' ✓' if ratio >= target else ''} ({detail})"
            )
    if not parts:
        return ""
    return (
        f"optax_lab over Keras, ✓ where at least {target:g}×: "
        + "; ".join(f"{name} {', '.join(texts)}" for name, texts in parts.items())
        + "."
    )


def peers_markdown(runs: Sequence[PeerRun], workload: str = "", target: float | None = None) -> str:
    """The peers section of a bench report: what ran and how it was timed, one table, then
    optax_lab's speed-ups against `target` (when given), the skipped ways with their reasons and
    the versions."""
    if not runs:
        return "No peer benchmark ran.\n"
    ordered = sorted_runs(runs)
    head = [
        "Optimizer",
        "Code",
        "Runs on",
        "Seeds per run",
        "Runs",
        "Run s: median",
        "Seed-epochs/s",
        "× Keras",
        "Compile / warm-up s",
        "Final val loss",
        "Host load",
    ]
    body = []
    for run in ordered:
        if run.skipped:
            body.append([run.optimizer, f"{run.label} (skipped)", *[DASH] * (len(head) - 2)])
            continue
        body.append(
            [
                run.optimizer,
                run.label,
                run.runs_on or DASH,
                str(run.seeds),
                str(len(run.run_seconds)),
                seconds_text(run.seconds),
                rate_text(run.seed_epochs_per_s),
                _ratio_text(speedup(run, runs)),
                f"{run.setup_s:.2f}" if is_number(run.setup_s) else DASH,
                _loss_text(run.val_loss),
                f"{run.host_load:.1f}" if is_number(run.host_load) else DASH,
            ]
        )
    lines = [text for text in (workload, NOTES) if text]
    lines = [" ".join(lines), "", *markdown_table(head, body, aligns=["---", "---", "---", *["---:"] * 8])]
    verdict = target_text(runs, target) if target is not None else ""
    if verdict:
        lines += ["", verdict]
    reasons = dict.fromkeys(f"{run.label}: {run.skipped.rstrip('.')}" for run in ordered if run.skipped)
    if reasons:
        lines += ["", "Skipped: " + "; ".join(reasons) + "."]
    versions = dict.fromkeys(run.version for run in ordered if run.version and not run.skipped)
    if versions:
        lines += ["", "Versions: " + ", ".join(versions) + "."]
    return "\n".join(lines) + "\n"
