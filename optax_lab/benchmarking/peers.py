"""The peers table: the lesson's runs timed several ways (Keras as the lesson writes it and with
XLA, PyTorch as a plain loop and as a `torch.func` ensemble, optax_lab) side by side, each row's
speed as a ratio over Keras', its final val loss checked against optax_lab's within seed noise,
and optax_lab's speed-up targets judged.

`bench/bench_peers.py` measures and fills `PeerRun` records; this module only renders and checks
them. Pure Python: no JAX, TensorFlow or PyTorch needed.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Sequence

from optax_lab.benchmarking.records import is_number
from optax_lab.benchmarking.table import DASH, markdown_table, rate_text, seconds_text

__all__ = [
    "AGREEMENT_SES",
    "BASELINE",
    "OPTIMIZER_ORDER",
    "PYTORCH_WAYS",
    "TARGETS",
    "WAYS",
    "Agreement",
    "PeerRun",
    "Target",
    "Verdict",
    "agreement",
    "disagreements",
    "judge_targets",
    "loss_agreement",
    "peers_markdown",
    "sorted_runs",
    "speedup",
    "targets_markdown",
    "workload_text",
]

# The ways a run is written, in table order, and how a row names them.
WAYS = {
    "keras": "Keras, the lesson's code",
    "keras_xla": "Keras, jit_compile=True",
    "pytorch": "PyTorch, a plain loop",
    "pytorch_vmap": "PyTorch, torch.func ensemble",
    "pytorch_vmap_compiled": "PyTorch, torch.func ensemble + torch.compile",
    "optax_lab": "optax_lab",
}
PYTORCH_WAYS = ("pytorch", "pytorch_vmap", "pytorch_vmap_compiled")
BASELINE = "keras"  # every row's speed-up is over this way's row of the same optimizer
OPTIMIZER_ORDER = ("adam", "sgd")  # the lesson's; any other follows, alphabetically
# A row agrees with optax_lab's when their mean final val losses differ by at most this many
# standard errors of the difference (see `loss_agreement`). Four: a full run makes about twenty such
# comparisons, some on 3 seeds against 8 (t with 9 degrees of freedom: |t| > 4 about 0.3 % of the
# time), so that a true agreement rarely fails the table by chance.
AGREEMENT_SES = 4.0


@dataclasses.dataclass(frozen=True)
class PeerRun:
    """One way of running one optimizer: its timed runs, or why it was skipped."""

    way: str  # a key of WAYS
    optimizer: str  # e.g. "adam"
    seeds: int = 1  # seeds trained by each timed run (Keras and the plain PyTorch loop: one at a time)
    devices: int = 1  # JAX devices the seeds were split over (Keras, PyTorch: one process)
    order: str = ""  # shuffling of a run of several seeds: "per-seed" (each its own, as separate runs) or "shared"
    epochs: int = 0
    run_seconds: tuple[float, ...] = ()  # each timed run's seconds, compile and warm-up excluded
    setup_s: float | None = None  # untimed: optax_lab's compile, torch.compile's, the peers' warm-up
    val_loss: float | None = None  # after the last epoch, mean over the seeds (default: of seed_val_losses)
    runs_on: str = ""  # e.g. "1 of 2 CPU devices", "CPU, 2 threads"
    host_load: float | None = None  # the 1-minute load average after the timed runs (a shared box's noise)
    version: str = ""  # e.g. "torch 2.13.0"
    skipped: str = ""  # why it did not run; a skipped run has no figures
    # The final val loss of each distinct seed trained (a seed that timed runs repeat counts once):
    # the samples of the agreement check.
    seed_val_losses: tuple[float, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "run_seconds", tuple(float(s) for s in self.run_seconds))
        object.__setattr__(self, "seed_val_losses", tuple(float(v) for v in self.seed_val_losses))
        if self.val_loss is None and self.seed_val_losses:
            object.__setattr__(self, "val_loss", statistics.fmean(self.seed_val_losses))
        if self.way not in WAYS:
            raise ValueError(f"unknown way {self.way!r}: choose one of {', '.join(WAYS)}")

    @property
    def label(self) -> str:
        devices = f", {self.devices} device{'s' if self.devices != 1 else ''}" if self.way == "optax_lab" else ""
        order = f", {self.order} shuffling" if self.order else ""
        return f"{WAYS[self.way]}{devices}{order}"

    @property
    def seconds(self) -> float | None:
        """The median timed run's seconds."""
        times = [s for s in self.run_seconds if is_number(s) and s > 0]
        return statistics.median(times) if times and not self.skipped else None

    @property
    def seed_epochs_per_s(self) -> float | None:
        seconds = self.seconds
        return self.seeds * self.epochs / seconds if seconds and self.epochs > 0 else None


def _optimizer_rank(name: str) -> tuple[int, str]:
    return (OPTIMIZER_ORDER.index(name) if name in OPTIMIZER_ORDER else len(OPTIMIZER_ORDER), name)


def sorted_runs(runs: Iterable[PeerRun]) -> list[PeerRun]:
    """By optimizer (the lesson's order), then way (WAYS' order), then shuffling (per-seed first: it
    matches separate runs) and device count."""
    return sorted(
        runs,
        key=lambda run: (
            _optimizer_rank(run.optimizer),
            list(WAYS).index(run.way),
            run.order != "per-seed",
            run.order,
            run.devices,
        ),
    )


def _fastest(runs: Iterable[PeerRun], ways: Iterable[str], optimizer: str) -> PeerRun | None:
    """The row with the most seed-epochs/s among `ways`' rows of `optimizer`; None when none has a figure."""
    timed = [run for run in runs if run.way in ways and run.optimizer == optimizer and run.seed_epochs_per_s]
    return max(timed, key=lambda run: run.seed_epochs_per_s, default=None)


def speedup(run: PeerRun, runs: Iterable[PeerRun]) -> float | None:
    """`run`'s seed-epochs/s over the Keras row's of the same optimizer; None when either has no
    figure (skipped, or no Keras row)."""
    mine, base = run.seed_epochs_per_s, _fastest(runs, (BASELINE,), run.optimizer)
    return mine / base.seed_epochs_per_s if mine and base else None


# ---------------------------------------------------------------------------------------------
# Do the ways train the same thing? Final val losses against optax_lab's, within seed noise


@dataclasses.dataclass(frozen=True)
class Agreement:
    """A row's mean final val loss minus the reference's, and how far apart seed noise allows."""

    difference: float
    limit: float  # AGREEMENT_SES standard errors of the difference

    @property
    def agrees(self) -> bool:
        return abs(self.difference) <= self.limit  # False when either is NaN (a diverged seed)


def loss_agreement(losses: Sequence[float], reference: Sequence[float], ses: float = AGREEMENT_SES) -> Agreement | None:
    """Whether two samples of per-seed final val losses have the same mean, within seed noise.

    The standard error of the difference of means comes from the pooled per-seed spread,
    s² = (Σ(a − ā)² + Σ(b − b̄)²) / (n + m − 2), as s·√(1/n + 1/m): the two-sample t statistic's
    denominator (equal spreads: the same model, loss and data, trained from independently drawn
    seeds). The means agree when they differ by at most `ses` of it. None when fewer than 3 seeds in
    all leave no spread to estimate. A non-finite loss (a diverged seed) never agrees."""
    n, m = len(losses), len(reference)
    if n < 1 or m < 1 or n + m < 3:
        return None
    mean_a, mean_b = statistics.fmean(losses), statistics.fmean(reference)
    squares = sum((a - mean_a) ** 2 for a in losses) + sum((b - mean_b) ** 2 for b in reference)
    standard_error = math.sqrt(squares / (n + m - 2) * (1 / n + 1 / m))
    return Agreement(mean_a - mean_b, ses * standard_error)


def _reference(runs: Iterable[PeerRun], optimizer: str) -> PeerRun | None:
    """optax_lab's first row of `optimizer` (per-seed shuffling, fewest devices first) with per-seed losses."""
    rows = [run for run in runs if run.way == "optax_lab" and run.optimizer == optimizer]
    return next((run for run in sorted_runs(rows) if run.seed_val_losses and not run.skipped), None)


def agreement(run: PeerRun, runs: Sequence[PeerRun]) -> Agreement | None:
    """`run`'s final val loss against optax_lab's reference row of the same optimizer; None for the
    reference itself, a skipped row, or when either side has no per-seed losses."""
    reference = _reference(runs, run.optimizer)
    if reference is None or run is reference or run.skipped or not run.seed_val_losses:
        return None
    return loss_agreement(run.seed_val_losses, reference.seed_val_losses)


def disagreements(runs: Sequence[PeerRun]) -> list[str]:
    """One line per row whose final val loss does not agree with optax_lab's; [] when all that can be
    checked agree."""
    lines = []
    for run in sorted_runs(runs):
        check = agreement(run, runs)
        if check is not None and not check.agrees:
            lines.append(f"{run.optimizer}, {run.label}: {_agreement_text(check, run, runs)}")
    return lines


def _agreement_text(check: Agreement | None, run: PeerRun, runs: Sequence[PeerRun]) -> str:
    if run is _reference(runs, run.optimizer):
        return "reference"
    if check is None:
        return DASH
    sign = "≤" if check.agrees else ">"
    return f"{check.difference:+.4f} {sign} {check.limit:.4f} {'✓' if check.agrees else '✗'}"


# ---------------------------------------------------------------------------------------------
# Targets: optax_lab's fastest row over the fastest row of a peer, the same optimizer, the same run


@dataclasses.dataclass(frozen=True)
class Target:
    factor: float  # optax_lab's seed-epochs/s must be at least this many times the baseline's
    over: str  # how the verdict names the baseline
    ways: tuple[str, ...]  # the baseline is the fastest row of these ways


TARGETS = (Target(40.0, "the lesson's Keras code", ("keras",)), Target(3.0, "the fastest PyTorch way", PYTORCH_WAYS))


@dataclasses.dataclass(frozen=True)
class Verdict:
    optimizer: str
    target: Target
    ours: PeerRun | None  # optax_lab's fastest row
    baseline: PeerRun | None  # the fastest row of the target's ways

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.baseline is None:
            return None
        return self.ours.seed_epochs_per_s / self.baseline.seed_epochs_per_s

    @property
    def met(self) -> bool | None:
        """None when there is nothing to judge (either side has no timed row)."""
        return None if self.ratio is None else self.ratio >= self.target.factor


def judge_targets(runs: Sequence[PeerRun], targets: Sequence[Target] = TARGETS) -> list[Verdict]:
    """Each target for each optimizer that has rows, in table order."""
    optimizers = dict.fromkeys(run.optimizer for run in sorted_runs(runs))
    return [
        Verdict(name, target, _fastest(runs, ("optax_lab",), name), _fastest(runs, target.ways, name))
        for name in optimizers
        for target in targets
    ]


def targets_markdown(runs: Sequence[PeerRun], targets: Sequence[Target] = TARGETS) -> list[str]:
    """The targets' table: met, not met, or not judged (a side without a timed row)."""
    body = []
    for verdict in judge_targets(runs, targets):
        met = {True: "met", False: "not met", None: "not judged"}[verdict.met]
        body.append(
            [
                verdict.optimizer,
                f"≥ {verdict.target.factor:g}× {verdict.target.over}",
                verdict.ours.label if verdict.ours else DASH,
                verdict.baseline.label if verdict.baseline else DASH,
                _ratio_text(verdict.ratio),
                met,
            ]
        )
    head = ["Optimizer", "Target", "optax_lab's fastest row", "Over", "Ratio", "Verdict"]
    return markdown_table(head, body, aligns=["---", "---", "---", "---", "---:", "---"])


# ---------------------------------------------------------------------------------------------
# The section


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
    "Keras: one warm-up `fit` of one epoch per optimizer traces its train and test functions (with "
    "`jit_compile=True` it also compiles them with XLA, which the lesson's code does not do on a CPU); each timed "
    "run then loads a fresh seed's initial weights and optimizer state into that model and times `model.fit` "
    "alone. PyTorch, a plain loop: one warm-up epoch per optimizer, then each timed run is a fresh model and "
    "optimizer trained by the loop, with the clock around the epochs. PyTorch, torch.func ensemble: every seed "
    "of a run in one vmapped model (`stack_module_state`, `functional_call`, `vmap` of `grad_and_value`), "
    "stepped by one torch.optim optimizer over the stacked tensors; one warm-up epoch (with torch.compile: its "
    "compile) is the untimed column, and each timed run trains fresh seeds. optax_lab: every seed in one "
    "compiled program (`train_points`), timed by the engine around the compiled call after "
    "`block_until_ready`; its compile is the untimed column. Per-seed shuffling gives each seed its own batch "
    "order, as separate runs do; shared shuffling (`--shared-order`) gives all seeds one order per epoch. "
    "× Keras is each row's seed-epochs/s over the lesson's Keras row of the same optimizer. Final val loss is "
    "after the last epoch, mean over the seeds; every way starts from Glorot-uniform kernels and zero biases "
    "and uses Adam's eps 1e-7 (Keras'). Val loss − optax_lab's is that mean minus optax_lab's (its per-seed, "
    f"fewest-devices row), ✓ when within {AGREEMENT_SES:g} standard errors of the difference, computed from the "
    "two rows' pooled per-seed spread and seed counts (the limit is printed). Host load is the 1-minute load "
    "average after the timed runs: the run itself adds up to one per core it keeps busy, so a load above the "
    "core count means another process competed for the cores."
)


def _row(run: PeerRun, runs: Sequence[PeerRun], columns: int) -> list[str]:
    if run.skipped:
        return [run.optimizer, f"{run.label} (skipped)", *[DASH] * (columns - 2)]
    return [
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
        _agreement_text(agreement(run, runs), run, runs),
        f"{run.host_load:.1f}" if is_number(run.host_load) else DASH,
    ]


def peers_markdown(runs: Sequence[PeerRun], workload: str = "", targets: Sequence[Target] | None = None) -> str:
    """The peers section of a bench report: what ran and how it was timed, one table, then the
    `targets` judged (when given), the skipped ways with their reasons and the versions."""
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
        "Val loss − optax_lab's",
        "Host load",
    ]
    body = [_row(run, runs, len(head)) for run in ordered]
    aligns = ["---", "---", "---", *["---:"] * (len(head) - 3)]
    lines = [" ".join(text for text in (workload, NOTES) if text), "", *markdown_table(head, body, aligns=aligns)]
    if targets:
        lines += ["", "Targets, each judged on optax_lab's fastest row and the baseline's fastest, in this run:", ""]
        lines += targets_markdown(runs, targets)
    reasons = dict.fromkeys(f"{run.label}: {run.skipped.rstrip('.')}" for run in ordered if run.skipped)
    if reasons:
        lines += ["", "Skipped: " + "; ".join(reasons) + "."]
    versions = dict.fromkeys(run.version for run in ordered if run.version and not run.skipped)
    if versions:
        lines += ["", "Versions: " + ", ".join(versions) + "."]
    return "\n".join(lines) + "\n"
