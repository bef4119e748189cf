"""The command line's options: the parser of every `optax-lab` command and the option types,
each turning a bad value into one line (a UsageError) naming it and the fix. `cli` builds the
configuration from what they parse."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from optax_lab.config import (
    ACTIVATIONS,
    BIAS_INITS,
    DEFAULT_EPOCHS,
    DEFAULT_NUM_WORDS,
    DEFAULT_WORKLOAD,
    KERNEL_INITS,
    NORMALIZATIONS,
    parse_batches,
)
from optax_lab.data import DATASETS
from optax_lab.devices import DISTRIBUTED_TIMEOUT_S, MAX_REPLICAS
from optax_lab.errors import UsageError
from optax_lab.presets import PRESETS
from optax_lab.sweep import Criterion, Protocol, parse_sweep

__all__ = ["parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage too; we promise one line
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="optax-lab", description="Which Optax optimizer trains your model best, and how fast.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="train the preset's runs and write report.md + results.json")
    run.add_argument("--preset", default=None, help=f"one of {', '.join(PRESETS)} (default: lesson, all three lessons)")
    _training_options(run)
    run.add_argument(
        "--sweep",
        metavar="[OPT.]HP=VALUES",
        action="append",
        default=[],
        type=parse_sweep,
        help="a grid of one hyperparameter for --optimizers: log:LOW:HIGH:N, lin:LOW:HIGH:N, "
        "around:DECADES:N (around each default) or V1,V2,...; `main` is each optimizer's main "
        "scale; several give their product, e.g. --sweep learning_rate=log:1e-4:1e-1:16",
    )
    run.add_argument(
        "--tuned",
        metavar="TUNED_JSON",
        action="append",
        default=None,
        help="rank --optimizers at the points of a tuned.json written by `optax-lab tune`; "
        "one per workload of --workloads (repeat it)",
    )
    _criterion_option(run, "how a sweep's best point is chosen")

    tune = commands.add_parser(
        "tune",
        help="tune every optimizer's main scale the same way, then rank them "
        "at their tuned points; writes report.md, results.json, tuned.json",
    )
    _training_options(tune)
    protocol = tune.add_argument_group(
        "protocol",
        "stage 1: a log grid of each optimizer's main scale around its "
        "default on the search seeds; stage 2: the best point on --seeds",
    )
    protocol.add_argument("--points", type=int, default=Protocol.points, help="stage-1 grid points (17)")
    protocol.add_argument("--decades", type=float, default=Protocol.decades, help="the grid's span in decades (4)")
    protocol.add_argument(
        "--search-seeds",
        type=int,
        default=Protocol.search_seeds,
        help="stage-1 seeds per point, disjoint from --seeds (2)",
    )
    protocol.add_argument(
        "--extend",
        type=int,
        default=Protocol.max_extensions,
        help="decades a grid may grow where its best point is on the edge (2)",
    )
    _criterion_option(protocol, "how stage 1 chooses")

    _reading_commands(commands)
    return parser


def _reading_commands(commands) -> None:
    """The commands that read what exists: a registry, a saved run, benchmark files."""
    listing = commands.add_parser(
        "list",
        help="a registry: the optimizers (names, default hyperparameters, tags) "
        "or the workloads (data, model, target, defaults)",
    )
    listing.add_argument(
        "what", nargs="?", choices=("optimizers", "workloads"), default="optimizers", help="which registry (optimizers)"
    )
    listing.add_argument(
        "--json",
        action="store_true",
        help="print it as JSON for scripts (hyperparameters with defaults and domains; targets...)",
    )

    report = commands.add_parser("report", help="re-render report.md and plots from a saved results.json")
    report.add_argument("results", metavar="RESULTS_JSON")
    report.add_argument("--out", metavar="DIR", default=None, help="output folder (default: beside RESULTS_JSON)")

    compare = commands.add_parser(
        "compare",
        help="step times of `pytest bench/ --benchmark-json` files from "
        "different machines, side by side, with speed-ups",
    )
    compare.add_argument("files", metavar="BENCHMARK_JSON", nargs="+", help="the first one is the baseline")
    compare.add_argument(
        "--out",
        metavar="FILE.md",
        default=None,
        help="the report (default: reports/bench/compare-<machines>.md; the chart goes beside it)",
    )


def _criterion_option(parser, what: str) -> None:
    parser.add_argument(
        "--criterion",
        type=_criterion,
        default=Criterion.FINAL_VAL_LOSS,
        help=f"{what}: one of {', '.join(Criterion)} (final-val-loss)",
    )


def _criterion(text: str) -> Criterion:
    try:
        return Criterion(text)
    except ValueError:
        raise UsageError(
            f"--criterion {text!r} is not a criterion: choose one of {', '.join(Criterion)}, "
            "e.g. --criterion best-val-loss"
        ) from None


def _training_options(run) -> None:
    """What `run` and `tune` share: the optimizers, data, length, seeds, model and output."""
    run.add_argument(
        "--optimizers",
        metavar="all|NAME[,NAME...]",
        type=_names("adam,sgd"),
        default=(),
        help="rank these registry optimizers (see `optax-lab list`) instead of a preset",
    )
    run.add_argument(
        "--workloads",
        metavar="all|NAME[,NAME...]",
        type=_names("imdb-mlp,rosenbrock"),
        default=None,
        help=f"what --optimizers trains on (see `optax-lab list workloads`; default {DEFAULT_WORKLOAD}); "
        "without --optimizers, each workload's reference optimizer",
    )
    run.add_argument(
        "--workload",
        metavar="MODULE:FUNCTION",
        action="append",
        default=[],
        help="a workload of your own: a function returning an optax_lab.workloads.Workload (repeatable)",
    )
    run.add_argument(
        "--batch",
        metavar="full|B[,...]",
        type=parse_batches,
        default=None,
        help="batch modes of a ranking (default: each workload's own, imdb-mlp's are 500,full; over "
        "several workloads, each one's first, the mode the performance profiles rank)",
    )
    run.add_argument(
        "--set",
        metavar="OPT.HP=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override a hyperparameter, e.g. --set adam.b1=0.95 (repeatable)",
    )
    _data_and_length_options(run)


def _data_and_length_options(run) -> None:
    """The data, the seeds and the length of `run` and `tune`, and where their replicas run."""
    run.add_argument(
        "--dataset",
        default=None,
        help=f"one of {', '.join(DATASETS)} (default: imdb when an archive is available locally, else synthetic-imdb)",
    )
    run.add_argument(
        "--imdb-archive",
        metavar="PATH",
        default=None,
        help="a local aclImdb_v1.tar.gz (else env OPTAX_LAB_IMDB_ARCHIVE, the cache, or a download)",
    )
    run.add_argument(
        "--num-words",
        type=int,
        default=None,
        help=f"multi-hot width, like Keras' num_words (default: the lesson's, else {DEFAULT_NUM_WORDS})",
    )
    run.add_argument(
        "--train-examples",
        type=int,
        default=None,
        help="train on a random class-balanced subset of this many reviews (default: the lesson's, else all)",
    )
    run.add_argument("--seeds", type=int, default=8, help="seeds vmapped in each program (8)")
    run.add_argument("--seed", type=int, default=0, help="first seed; seeds are seed, seed+1, ... (0)")
    run.add_argument("--epochs", type=int, default=None, help=f"epochs (default: the lesson's, else {DEFAULT_EPOCHS})")
    run.add_argument(
        "--devices",
        type=int,
        default=None,
        help="devices to split the replicas over: on a CPU, N CPU devices (default: one per core; "
        "XLA:CPU runs these small programs on about one core each); on a GPU host, the first N GPUs "
        "(default: all)",
    )
    run.add_argument(
        "--coordinator-timeout",
        type=float,
        default=DISTRIBUTED_TIMEOUT_S,
        metavar="SECONDS",
        help="in a multi-process run (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, or "
        f"a Slurm job), how long a process waits for process 0 ({DISTRIBUTED_TIMEOUT_S:g})",
    )
    run.add_argument(
        "--max-replicas",
        type=int,
        default=None,
        help=f"replicas (points x seeds) per call of a program; more run as further calls of the "
        f"same compiled program ({MAX_REPLICAS})",
    )
    _model_options(run)


def _model_options(run) -> None:
    """The base MLP (`ModelConfig`'s fields), for `run` and `tune`."""
    model = run.add_argument_group(
        "model",
        "the base MLP, replacing each MLP workload's own (unset options take "
        "the lesson MLP's values); a preset's runs change parts of it",
    )
    model.add_argument("--depth", type=int, default=None, help="hidden layers of --width units (default 2)")
    model.add_argument("--width", type=int, default=None, help="units per hidden layer (32)")
    model.add_argument(
        "--widths",
        metavar="W[,W...]",
        type=_widths,
        default=None,
        help="hidden widths, e.g. 256,256 (instead of --depth/--width)",
    )
    model.add_argument("--activation", default=None, help=f"one of {', '.join(ACTIVATIONS)} (relu)")
    model.add_argument(
        "--init",
        default=None,
        dest="kernel_init",
        help=f"kernel initialiser: one of {', '.join(KERNEL_INITS)} (glorot_uniform, Keras' default)",
    )
    model.add_argument("--bias-init", default=None, help=f"one of {', '.join(BIAS_INITS)} (zeros)")
    model.add_argument(
        "--dropout", type=float, default=None, help="dropout rate after each hidden layer, in [0, 1) (0)"
    )
    model.add_argument("--residual", action="store_true", help="x + f(x) around hidden layers that keep the width")
    model.add_argument(
        "--norm",
        default=None,
        dest="normalization",
        help=f"normalisation before each activation: one of {', '.join(NORMALIZATIONS)} (none)",
    )
    model.add_argument("--l2", type=float, default=None, help="L2 penalty l2·Σ‖kernel‖² added to the loss (0)")
    run.add_argument(
        "--shared-order",
        action="store_true",
        help="all seeds share one shuffling per epoch (faster on CPU; default: each seed its own)",
    )
    run.add_argument("--out", metavar="DIR", default=None, help="output folder (default: reports/<preset>/)")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the interrupted run in --out: the same options, only the programs not yet finished",
    )
    run.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (to measure cold compile times)",
    )


def _names(example: str) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list of names; none at all is an error (argparse names the option)."""

    def names(text: str) -> tuple[str, ...]:
        found = tuple(name.strip() for name in text.split(",") if name.strip())
        if not found:
            raise argparse.ArgumentTypeError(f"{text!r} names none: give all or names, e.g. {example}")
        return found

    return names


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise UsageError(f"--widths {text!r} is not a list of integers, e.g. --widths 256,256") from None
