"""The options `optax-lab run` and `tune` share: the optimizers, data, length, seeds, devices,
model and output, with their option types, each turning a bad value into one line (a UsageError)
naming it and the fix."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from optax_lab.compile_ahead import MAX_AUTO_WORKERS
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

__all__ = ["names", "training_options"]


def training_options(run) -> None:
    """What `run` and `tune` share: the optimizers, data, length, seeds, model and output, and --yes."""
    run.add_argument(
        "--optimizers",
        metavar="all|NAME[,NAME...]",
        type=names("adam,sgd"),
        default=(),
        help="rank these optimizers instead of a preset: registry names (see `optax-lab list`) or your own, "
        "module:function",
    )
    run.add_argument(
        "--workloads",
        metavar="all|NAME[,NAME...]",
        type=names("imdb-mlp,rosenbrock"),
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
    run.add_argument(
        "--yes",
        action="store_true",
        help="start without asking, however long the estimate (a request estimated at over 2 h asks "
        "on a terminal first, and stops without one)",
    )


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
        type=widths,
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
    run.add_argument(
        "--compile-workers",
        type=int,
        default=None,
        metavar="N",
        help=f"threads that compile the next programs while one runs (default: on a GPU a thread per 4 cores, up to "
        f"{MAX_AUTO_WORKERS}; on a CPU none, its cores run the program; the results are the same for any N)",
    )
    run.add_argument(
        "--no-compile-ahead",
        action="store_true",
        help="compile each program just before it runs, so that no compile shares the host with a timed run",
    )
    _cluster_options(run)


def _cluster_options(run) -> None:
    """`--launcher`: the programs as jobs through submitit (the cluster extra)."""
    cluster = run.add_argument_group(
        "cluster", "train the programs in jobs of their own (pip install 'optax_lab[cluster]'); --out is shared"
    )
    cluster.add_argument(
        "--launcher",
        default=None,
        help="local (processes on this machine) or slurm (a Slurm job array); default: this process trains",
    )
    cluster.add_argument("--jobs", type=int, default=2, metavar="N", help="jobs that share a round's programs (2)")
    cluster.add_argument("--partition", default=None, help="slurm: the partition (default: the cluster's)")
    cluster.add_argument("--time-limit", type=int, default=60, metavar="MINUTES", help="each job's time limit (60)")
    cluster.add_argument("--gpus-per-job", type=int, default=0, metavar="G", help="slurm: GPUs for each job (0)")
    cluster.add_argument("--cpus-per-job", type=int, default=None, metavar="C", help="slurm: CPUs for each job")


def names(example: str) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list of names; none at all is an error (argparse names the option)."""

    def names(text: str) -> tuple[str, ...]:
        found = tuple(name.strip() for name in text.split(",") if name.strip())
        if not found:
            raise argparse.ArgumentTypeError(f"{text!r} names none: give all or names, e.g. {example}")
        return found

    return names


def widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise UsageError(f"--widths {text!r} is not a list of integers, e.g. --widths 256,256") from None
