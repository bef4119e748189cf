"""The records that flow downstream of planning: a job (one run to train, with its data and
length), what a compiled program is specialised on (`ProgramSettings`), a run's result, and every
identity the suite keys on, each defined once:

- `RunSpec.key` and `Job.key`: the same run (run once, reuse its result);
- `program_key(spec)` and `Job.program_key`: runs that share one compiled program (they differ
  only in traced hyperparameters);
- `Job.data_key`: jobs that train on the same arrays;
- `program_digest(jobs, seeds)`: one program's identity in the store of finished programs;
- `fingerprint(inputs)`: everything that changes a run's results, what `--resume` checks.

The engine, the store, metrics, the tuner and the report's writers import these; this module
imports no stage but the registries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from optax_lab import optimizers
from optax_lab.config import Config, ModelConfig, Order
from optax_lab.lessons import RunSpec

# The workload a job trains and a result records: an `optax_lab.workloads.Workload`. The records
# sit below the registries whose entries they carry, so they name its type without importing it.
Workload = Any

__all__ = [
    "Fingerprint",
    "Job",
    "ProgramSettings",
    "RunResult",
    "fingerprint",
    "program_digest",
    "program_key",
    "seed_epochs_per_second",
    "split_hyperparams",
]


def split_hyperparams(spec: RunSpec) -> tuple[dict[str, Any], dict[str, float]]:
    """(static, traced): the spec's hyperparameters (registry defaults + its own) that the program
    is compiled on, and those it takes as per-replica inputs."""
    return optimizers.split(spec.optimizer, optimizers.hyperparams(spec.optimizer, spec.hyperparams))


def program_key(spec: RunSpec) -> tuple:
    """Specs with equal keys (on equal data, model, workload and settings) share one compiled
    program: everything but the traced hyperparameters' values."""
    static, traced = split_hyperparams(spec)
    return (
        spec.optimizer,
        tuple(sorted(static.items(), key=lambda item: item[0])),
        tuple(sorted(traced)),
        spec.batch_size,
        tuple(sorted(spec.model_changes.items())),
    )


@dataclasses.dataclass(frozen=True)
class Job:
    """One run to train: a spec on its workload (at the run's vocabulary), with the data and
    length of the lesson(s) that use it."""

    spec: RunSpec
    workload: Workload
    num_words: int | None  # None: the workload has no words
    train_examples: int | None
    epochs: int
    eval_train: bool

    @property
    def key(self) -> tuple:
        return (self.spec.key, self.num_words, self.train_examples, self.epochs, self.eval_train, self.workload.key)

    @property
    def program_key(self) -> tuple:
        """Jobs with equal program keys are points of one compiled program."""
        return (
            program_key(self.spec),
            self.num_words,
            self.train_examples,
            self.epochs,
            self.eval_train,
            self.workload.key,
        )

    @property
    def data_key(self) -> tuple:
        """Jobs with equal data keys train on the same arrays."""
        return (self.workload.data, self.num_words, self.train_examples)

    def base_model(self, config: Config) -> ModelConfig:
        """The MLP the job's runs start from: its workload's, or the user's (`--depth`, ...)."""
        return self.workload.base_model(config.model)

    def model(self, config: Config) -> ModelConfig:
        """The model this job trains: its base model with the spec's changes."""
        return self.spec.model_config(self.base_model(config))


def program_digest(jobs: Iterable[Job], seeds: Sequence[int]) -> str:
    """One program's identity in the store: its runs (`Job.key`s, stable across processes) and
    seeds (a tuner's stage 2 reruns a point on other seeds)."""
    return hashlib.sha256(repr((tuple(job.key for job in jobs), tuple(seeds))).encode()).hexdigest()[:16]


class Fingerprint(NamedTuple):
    """Everything that changes a run's results, readable (label -> value, the labels a user
    knows: `--epochs`, `data imdb-mlp`, `jax`), and the hash of it."""

    digest: str
    inputs: dict[str, Any]


def fingerprint(inputs: Mapping[str, Any]) -> Fingerprint:
    readable = json.loads(json.dumps(inputs, sort_keys=False, default=str))  # what the store's header holds
    digest = hashlib.sha256(json.dumps(readable, sort_keys=True).encode()).hexdigest()[:16]
    return Fingerprint(digest, readable)


@dataclasses.dataclass(frozen=True)
class ProgramSettings:
    """Everything a compiled program is specialised on besides the optimizer, model and workload:
    the data's shapes, the batch size, the epochs, the replica count, and what it computes."""

    n_train: int
    n_test: int
    num_features: int
    batch_size: int
    epochs: int
    num_seeds: int
    num_points: int = 1  # hyperparameter points of one call: the replicas are seeds x points
    order: Order = Order.PER_SEED
    eval_train: bool = False  # also evaluate the whole training set after each epoch
    validate: bool = True  # evaluate the test split after each epoch (benchmarks time steps without it)
    # Word rows (uint16 inputs): the most embedding-bag chunks a batch of each size the program
    # runs can hold, so that the bag's static layout is a fraction of [B, L].
    bag_budgets: tuple[tuple[int, int], ...] = ()

    @property
    def num_replicas(self) -> int:
        return self.num_seeds * self.num_points

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch_size)

    @property
    def full_batch(self) -> bool:
        return self.batch_size == self.n_train

    @property
    def gathers_rows(self) -> bool:
        """Whether the program gathers and scatters table rows (an embedding bag): what its XLA
        options depend on."""
        return bool(self.bag_budgets)


@dataclasses.dataclass
class RunResult:
    """One hyperparameter point's runs (all seeds), and the program that computed them."""

    spec: RunSpec
    workload: Workload  # what it trained
    hyperparams: dict[str, Any]
    settings: ProgramSettings  # the compiled program's (its replicas may hold several points)
    seeds: tuple[int, ...]
    history: dict[str, np.ndarray]  # each [seeds, epochs, ...]
    compile_s: float  # the program's trace + lower + XLA compile (near zero on a compilation-cache hit)
    run_s: float  # this point's share of the program's execution, after block_until_ready
    model: ModelConfig  # the model it trained (the spec's changes applied)
    program: str = ""  # id of the compiled program: shared by every point it computed
    program_run_s: float = 0.0  # the whole program's execution, all its points and calls
    program_calls: int = 1  # how many times the compiled program ran for these points
    devices: int = 1  # devices the program's replicas were split over
    replicas_per_call: int = 1  # seeds x points one call held (padding included)
    memory_per_device: int = 0  # estimated bytes of one call on each device
    memory_bound: bool = False  # whether memory, not --max-replicas, set the replicas per call
    overlap_s: float = 0.0  # seconds of the program's calls during which another program compiled


def seed_epochs_per_second(result: RunResult) -> float:
    """Seed-epochs of this point per second of its share of the program."""
    return len(result.seeds) * result.settings.epochs / result.run_s
