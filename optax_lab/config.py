"""Configuration: what to run, as plain frozen data. The first stage; imports nothing of ours
but the error type.

`Config()` is the lesson as the suite runs it by default; a smaller run is
`dataclasses.replace(Config(), seeds=2, epochs=2)` (the Flax examples' `get_config()` habit).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from optax_lab.errors import UsageError, closest
from optax_lab.sweep import Criterion, Sweep

__all__ = ["ACTIVATIONS", "BIAS_INITS", "Config", "Criterion", "LESSON_ADAM", "DATASETS", "DEFAULT_EPOCHS", "DEFAULT_NUM_WORDS",
           "DEFAULT_WORKLOAD", "FULL_BATCH", "KERNEL_INITS", "Lesson", "MAX_REPLICAS", "LessonKind", "ModelConfig",
           "NORMALIZATIONS", "Order", "RunSpec", "Tuned",
           "batch_label", "parse_batches"]

FULL_BATCH = None  # a RunSpec.batch_size of None means one batch of the whole training set
DEFAULT_WORKLOAD = "imdb-mlp"  # the lesson's MLP on IMDB: what the presets run on
DEFAULT_NUM_WORDS = 100  # the lesson's multi-hot width
DEFAULT_EPOCHS = 20
# Replicas (points x seeds) one call of a program holds at most; more run as several calls of the
# same compiled program. Measured on a 2-core CPU: throughput saturates at 8-32 replicas.
MAX_REPLICAS = 64
DATASETS = ("imdb", "synthetic-imdb")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu", "elu", "selu", "silu", "leaky_relu", "linear")
# Kernel initialisers. "constant" is 0.01 everywhere; "normal_0.01" and "normal_1" are N(0, σ²);
# "torch_default" is PyTorch's nn.Linear default, Kaiming-uniform with a=√5 (U(±1/√fan_in)).
KERNEL_INITS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                "lecun_normal", "zeros", "constant", "normal_0.01", "normal_1", "torch_default")
# Bias initialisers: Keras' and Flax's zeros, or PyTorch's U(±1/√fan_in).
BIAS_INITS = ("zeros", "torch_default")
NORMALIZATIONS = ("none", "layer")


def batch_label(batch: int | None) -> str:
    """A batch mode as the CLI, ids and reports spell it: `full` or `500`."""
    return "full" if batch is None else str(batch)


def parse_batches(text: str) -> tuple[int | None, ...]:
    """`full,500` -> (FULL_BATCH, 500): the --batch option of `optax-lab run` and `pytest bench/`."""
    def one(item: str) -> int | None:
        if item == "full":
            return FULL_BATCH
        if item.isdigit() and int(item) > 0:
            return int(item)
        raise UsageError(f"--batch {item!r} is not a batch mode: use 'full' or a positive integer, e.g. --batch full,500")

    return tuple(one(item.strip()) for item in text.split(","))


class Order(enum.StrEnum):
    """How the seeds of one program shuffle the training set each epoch."""

    PER_SEED = "per-seed"  # each seed its own shuffling
    SHARED = "shared"  # all seeds one (faster on CPU: XLA fuses their first layers)


class LessonKind(enum.StrEnum):
    """How the report discusses a lesson: which section renders it."""

    COMPARE = "compare"  # a few runs side by side: table, generated summary, curves
    RANKING = "ranking"  # every registry optimizer at one batch mode, ranked (batch modes side by side)
    SWEEP = "sweep"  # optimizers at a grid of hyperparameter points: sensitivity and best points
    VANISHING_GRADIENTS = "vanishing-gradients"
    INITIALISATION = "initialisation"
    OVERFITTING = "overfitting"


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The MLP as data: hidden widths (depth = how many), activation, initialisers (Keras'
    defaults: Glorot-uniform kernels, zero biases), dropout after each hidden activation,
    residual connections (x + f(x) wherever a layer keeps the width), a normalisation layer
    before each activation, and an L2 penalty `l2 · Σ‖kernel‖²` added to the training loss
    (Keras' `kernel_regularizer=l2(l2)`). The output is one logit; the loss is sigmoid BCE.
    No hidden layer (`widths=()`) is a linear model, logistic regression."""

    widths: tuple[int, ...] = (32, 32)
    activation: str = "relu"
    kernel_init: str = "glorot_uniform"
    bias_init: str = "zeros"
    dropout: float = 0.0
    residual: bool = False
    normalization: str = "none"
    l2: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        self._validate()  # the one place a model configuration is checked: it cannot exist invalid

    @property
    def depth(self) -> int:
        return len(self.widths)

    def describe(self) -> str:
        """e.g. '100-32-32-1 relu, glorot_uniform' plus whatever differs from the defaults."""
        layers = f"{'-'.join(map(str, self.widths))} {self.activation}" if self.widths else "linear (no hidden layer)"
        parts = [layers, self.kernel_init]
        default = ModelConfig()
        for field in ("bias_init", "dropout", "residual", "normalization", "l2"):
            value = getattr(self, field)
            if value != getattr(default, field):
                parts.append(field if value is True else f"{field} {value}")
        return ", ".join(parts)

    def _validate(self) -> None:
        if any(not isinstance(w, int) or w <= 0 for w in self.widths):
            raise UsageError(f"model widths {list(self.widths)} must be positive integers, e.g. --widths 32,32")
        for field, choices in (("activation", ACTIVATIONS), ("kernel_init", KERNEL_INITS),
                               ("bias_init", BIAS_INITS), ("normalization", NORMALIZATIONS)):
            value = getattr(self, field)
            if value not in choices:
                raise UsageError(f"unknown {field.replace('_', ' ')} {value!r}: choose one of {', '.join(choices)}")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"dropout rate {self.dropout!r} must be in [0, 1): the fraction of units dropped, e.g. 0.5")
        if not 0.0 <= self.l2 < math.inf:  # nan and inf too: an infinite penalty makes every loss inf
            raise UsageError(f"l2 penalty {self.l2!r} must be a finite non-negative number, e.g. --l2 0.001")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training program: an optimizer from the registry, its hyperparameters (overriding the
    registry's defaults), a batch size (`FULL_BATCH` = the whole training set per step), and
    `model_changes` to the run's base `ModelConfig` (e.g. `{"widths": (32,) * 16}`)."""

    name: str
    optimizer: str
    hyperparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch_size: int | None = 500
    model_changes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    point: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the swept or tuned values among hyperparams

    def __post_init__(self):
        object.__setattr__(self, "hyperparams", _frozen(self.hyperparams))
        object.__setattr__(self, "model_changes", _frozen(self.model_changes))
        object.__setattr__(self, "point", _frozen(self.point))
        if self.batch_size is not None and self.batch_size <= 0:
            raise UsageError(f"batch size {self.batch_size} of run {self.name!r} must be positive, or 'full'")
        unknown = set(self.model_changes) - {f.name for f in dataclasses.fields(ModelConfig)}
        if unknown:
            raise UsageError(f"run {self.name!r} changes unknown model fields {sorted(unknown)}: "
                             f"choose from {', '.join(f.name for f in dataclasses.fields(ModelConfig))}")

    def __hash__(self):
        return hash((self.name, self.key))

    def model_config(self, base: ModelConfig = ModelConfig()) -> ModelConfig:
        """The model this run trains: `base` with the run's changes (checked on construction)."""
        return dataclasses.replace(base, **self.model_changes)

    @property
    def key(self) -> tuple:
        """Runs with equal keys (and equal base model, data and epochs) are the same run: run once, reuse.
        (Which runs share a compiled program is the engine's `program.program_key`.)"""
        return (self.optimizer, tuple(sorted(self.hyperparams.items())), self.batch_size,
                tuple(sorted(self.model_changes.items())))


@dataclasses.dataclass(frozen=True)
class Lesson:
    """A question the lesson asks, answered by comparing a few runs.

    A lesson may need its own data or length (overfitting needs more words, fewer reviews and
    more epochs): `num_words`, `train_examples` and `epochs` are its defaults, which the user's
    explicit --num-words/--train-examples/--epochs override. `eval_train` also measures the loss
    on the whole training set after each epoch with dropout off, for an honest train/val gap.
    """

    name: str
    title: str
    question: str
    runs: tuple[RunSpec, ...]
    num_words: int | None = None
    train_examples: int | None = None
    epochs: int | None = None
    eval_train: bool = False
    kind: LessonKind = LessonKind.COMPARE
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # more for results.json, e.g. a sweep's criterion
    workload: str = DEFAULT_WORKLOAD  # what its runs train (`optax_lab.workloads`)


# The lesson's Adam run (Keras' eps): a preset's run, and the one the engine, scaling and peer
# benchmarks time.
LESSON_ADAM = RunSpec("Adam", "adam", {"learning_rate": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-7}, 500)


class Tuned(NamedTuple):
    """One workload's tuned points, as `optax-lab tune` wrote them to a tuned.json, and where they
    came from (its file name and checksum)."""

    points: Mapping[str, Mapping[str, Mapping[str, Any]]]  # optimizer -> batch label -> point
    source: str


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one `optax-lab run` needs.

    dataset: "imdb", "synthetic-imdb", or None for IMDB when an archive is available locally and
    the synthetic set otherwise. workloads: what --optimizers runs on (without --optimizers, each
    workload's reference optimizer); the presets run on the default one. seeds: how many seeds,
    vmapped in one program; they are `seed, seed+1, ...`. order: each seed shuffles its own way,
    or all share one shuffling per epoch (faster: XLA fuses their first layer into one wide matmul).
    """

    preset: str = "lesson"
    optimizers: tuple[str, ...] = ()  # registry names or ("all",): rank them instead of the preset
    workloads: tuple[str, ...] = (DEFAULT_WORKLOAD,)  # workload names, ("all",), or module:function references
    batches: tuple[int | None, ...] | None = None  # batch modes of a ranking (None: each workload's own)
    overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # optimizer -> {hp: value}
    dataset: str | None = None
    imdb_archive: str | None = None
    num_words: int | None = None  # None: each lesson's own (DEFAULT_NUM_WORDS unless it says)
    train_examples: int | None = None  # None: each lesson's own (all unless it says)
    seeds: int = 8
    seed: int = 0
    epochs: int | None = None  # None: each lesson's own (DEFAULT_EPOCHS unless it says)
    order: Order = Order.PER_SEED
    model: ModelConfig | None = None  # replaces the MLP of every MLP workload (None: each workload's own)
    out: str | None = None
    sweeps: tuple[Sweep, ...] = ()  # hyperparameter grids of an --optimizers run
    tuned: Mapping[str, Tuned] | None = None  # workload name -> its tuned points (one tuned.json each)
    criterion: Criterion = Criterion.FINAL_VAL_LOSS  # how a sweep's best point is chosen
    max_replicas: int = MAX_REPLICAS
    devices: int | None = None  # devices the replicas are split over (None: every local device)

    @property
    def name(self) -> str:
        """What this run is called in reports and the default output folder."""
        return "optimizers" if self.optimizers else self.preset

    def lesson_settings(self, lesson: Lesson) -> tuple[int, int | None, int]:
        """(num_words, train_examples or None for all, epochs) for `lesson`: the user's explicit
        values, else the lesson's, else the suite's defaults."""
        def pick(mine, theirs, default):
            return mine if mine is not None else theirs if theirs is not None else default

        return (pick(self.num_words, lesson.num_words, DEFAULT_NUM_WORDS),
                pick(self.train_examples, lesson.train_examples, None),
                pick(self.epochs, lesson.epochs, DEFAULT_EPOCHS))

    def validate(self) -> "Config":
        if not self.optimizers and self.preset not in PRESETS:
            raise UsageError(f"unknown preset {self.preset!r}: choose one of {closest(self.preset, list(PRESETS))}")
        if not self.workloads:
            raise UsageError("--workloads names none: give all or names, e.g. --workloads imdb-mlp,imdb-10k-mlp")
        if not self.optimizers and self.preset != "lesson" and self.workloads != (DEFAULT_WORKLOAD,):
            raise UsageError(f"preset {self.preset} runs on {DEFAULT_WORKLOAD}, not on --workloads "
                             f"{','.join(self.workloads)}: drop one of them, or rank optimizers there with --optimizers")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise UsageError(f"unknown dataset {self.dataset!r}: choose one of {', '.join(DATASETS)}")
        for field in ("seeds", "epochs", "num_words", "train_examples"):
            value = getattr(self, field)
            if (value is not None or field == "seeds") and (not isinstance(value, int) or value <= 0):
                raise UsageError(f"--{field.replace('_', '-')} {value!r} must be a positive integer")
        if self.num_words is not None and self.num_words < 4:
            raise UsageError(f"--num-words {self.num_words} must be at least 4 (indices 0-3 are reserved, like Keras)")
        if self.seed < 0:
            raise UsageError(f"--seed {self.seed} must be a non-negative integer")
        for batch in self.batches or ():
            if batch is not None and batch <= 0:
                raise UsageError(f"--batch {batch} must be a positive integer or 'full'")
        if self.batches and len(set(self.batches)) < len(self.batches):  # else one lesson twice, and a report saying so
            given = ",".join(map(batch_label, self.batches))
            raise UsageError(f"--batch {given} names a batch mode twice: give each once, e.g. --batch "
                             f"{','.join(map(batch_label, dict.fromkeys(self.batches)))}")
        if (self.sweeps or self.tuned is not None) and not self.optimizers:
            flag = "--sweep" if self.sweeps else "--tuned"
            raise UsageError(f"{flag} works on an optimizer ranking: add --optimizers, e.g. --optimizers adam,sgd")
        if self.sweeps and self.tuned is not None:
            raise UsageError("--sweep and --tuned both choose the hyperparameters: give one of them")
        if self.devices is not None and self.devices < 1:
            raise UsageError(f"--devices {self.devices} must be a positive integer, e.g. --devices 2")
        if self.max_replicas < 1:
            raise UsageError(f"--max-replicas {self.max_replicas} must be a positive integer, e.g. 64")
        return self


from optax_lab.presets import PRESETS  # noqa: E402  (the presets are made of the types above)
