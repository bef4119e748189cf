"""Configuration: the user's options, as plain frozen data that cannot exist invalid (each record
checks itself when it is made). The first stage; imports only the error type and the sweep grammar.

`Config()` is the lesson as the suite runs it by default; a smaller run is
`dataclasses.replace(Config(), seeds=2, epochs=2)` (the Flax examples' `get_config()` habit).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

from optax_lab.errors import UsageError
from optax_lab.grids import Criterion, Sweep

__all__ = [
    "ACTIVATIONS",
    "BIAS_INITS",
    "DEFAULT_EPOCHS",
    "DEFAULT_NUM_WORDS",
    "DEFAULT_WORKLOAD",
    "FULL_BATCH",
    "KERNEL_INITS",
    "MAX_SEED",
    "NORMALIZATIONS",
    "Config",
    "ModelConfig",
    "Order",
    "Tuned",
    "batch_label",
    "check_seed_range",
    "parse_batches",
]

FULL_BATCH = None  # a RunSpec.batch_size of None means one batch of the whole training set
DEFAULT_WORKLOAD = "imdb-mlp"  # the lesson's MLP on IMDB: what the presets run on
DEFAULT_NUM_WORDS = 100  # the lesson's multi-hot width
DEFAULT_EPOCHS = 20
MAX_SEED = 2**31 - 1  # the engine passes each program its seeds as an int32 array
ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu", "elu", "selu", "silu", "leaky_relu", "linear")
# Kernel initialisers. "constant" is 0.01 everywhere; "normal_0.01" and "normal_1" are N(0, σ²);
# "torch_default" is PyTorch's nn.Linear default, Kaiming-uniform with a=√5 (U(±1/√fan_in)).
KERNEL_INITS = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "zeros",
    "constant",
    "normal_0.01",
    "normal_1",
    "torch_default",
)
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
        raise UsageError(
            f"--batch {item!r} is not a batch mode: use 'full' or a positive integer, e.g. --batch full,500"
        )

    return tuple(one(item.strip()) for item in text.split(","))


def check_seed_range(first: int, count: int, given: str = "") -> None:
    """Refuse seeds `first .. first + count - 1` that run past `MAX_SEED`, in one line naming
    `given` (the options that asked for them; default `--seed first --seeds count`) and the fix."""
    given = given or f"--seed {first} --seeds {count}"
    if count > MAX_SEED + 1:
        raise UsageError(
            f"{given} asks for {count} seeds, more than there are ({MAX_SEED + 1}: a program takes its "
            "seeds as int32): give fewer, e.g. --seeds 8"
        )
    if first + count - 1 > MAX_SEED:
        raise UsageError(
            f"{given} runs seeds up to {first + count - 1}, past {MAX_SEED}, the largest seed a program "
            f"takes (int32): give --seed at most {MAX_SEED - count + 1}"
        )


class Order(enum.StrEnum):
    """How the seeds of one program shuffle the training set each epoch."""

    PER_SEED = "per-seed"  # each seed its own shuffling
    SHARED = "shared"  # all seeds one (faster on CPU: XLA fuses their first layers)


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
        for field, choices in (
            ("activation", ACTIVATIONS),
            ("kernel_init", KERNEL_INITS),
            ("bias_init", BIAS_INITS),
            ("normalization", NORMALIZATIONS),
        ):
            value = getattr(self, field)
            if value not in choices:
                raise UsageError(f"unknown {field.replace('_', ' ')} {value!r}: choose one of {', '.join(choices)}")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(
                f"dropout rate {self.dropout!r} must be in [0, 1): the fraction of units dropped, e.g. 0.5"
            )
        if not 0.0 <= self.l2 < math.inf:  # nan and inf too: an infinite penalty makes every loss inf
            raise UsageError(f"l2 penalty {self.l2!r} must be a finite non-negative number, e.g. --l2 0.001")


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
    max_replicas: int | None = None  # replicas one call holds at most (None: `devices.MAX_REPLICAS`)
    devices: int | None = None  # devices the replicas are split over (None: every local device)

    @property
    def name(self) -> str:
        """What this run is called in reports and the default output folder."""
        return "optimizers" if self.optimizers else self.preset

    def __post_init__(self):
        self.validate()  # the one place the options are checked: a Config cannot exist invalid

    def validate(self) -> Config:
        if not self.workloads:
            raise UsageError("--workloads names none: give all or names, e.g. --workloads imdb-mlp,imdb-10k-mlp")
        if not self.optimizers and self.preset != "lesson" and self.workloads != (DEFAULT_WORKLOAD,):
            raise UsageError(
                f"preset {self.preset} runs on {DEFAULT_WORKLOAD}, not on --workloads "
                f"{','.join(self.workloads)}: drop one of them, or rank optimizers there with --optimizers"
            )
        for field in ("seeds", "epochs", "num_words", "train_examples"):
            value = getattr(self, field)
            if (value is not None or field == "seeds") and (not isinstance(value, int) or value <= 0):
                raise UsageError(f"--{field.replace('_', '-')} {value!r} must be a positive integer")
        if self.num_words is not None and self.num_words < 4:
            raise UsageError(f"--num-words {self.num_words} must be at least 4 (indices 0-3 are reserved, like Keras)")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"--seed {self.seed!r} must be a non-negative integer")
        check_seed_range(self.seed, self.seeds)
        for batch in self.batches or ():
            if batch is not None and batch <= 0:
                raise UsageError(f"--batch {batch} must be a positive integer or 'full'")
        if self.batches and len(set(self.batches)) < len(self.batches):  # else one lesson twice, and a report saying so
            given = ",".join(map(batch_label, self.batches))
            raise UsageError(
                f"--batch {given} names a batch mode twice: give each once, e.g. --batch "
                f"{','.join(map(batch_label, dict.fromkeys(self.batches)))}"
            )
        if (self.sweeps or self.tuned is not None) and not self.optimizers:
            flag = "--sweep" if self.sweeps else "--tuned"
            raise UsageError(f"{flag} works on an optimizer ranking: add --optimizers, e.g. --optimizers adam,sgd")
        if self.sweeps and self.tuned is not None:
            raise UsageError("--sweep and --tuned both choose the hyperparameters: give one of them")
        if self.devices is not None and self.devices < 1:
            raise UsageError(f"--devices {self.devices} must be a positive integer, e.g. --devices 2")
        if self.max_replicas is not None and self.max_replicas < 1:
            raise UsageError(f"--max-replicas {self.max_replicas} must be a positive integer, e.g. 64")
        return self
