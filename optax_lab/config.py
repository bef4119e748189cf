"""Configuration: what to run, as plain frozen data. The first stage; imports nothing of ours
but the error type.

`Config()` is the lesson as the suite runs it by default; a smaller run is
`dataclasses.replace(Config(), seeds=2, epochs=2)` (the Flax examples' `get_config()` habit).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from optax_lab.errors import UsageError

FULL_BATCH = None  # a RunSpec.batch_size of None means one batch of the whole training set
DATASETS = ("imdb", "synthetic-imdb")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu", "elu", "selu", "silu", "leaky_relu", "linear")
KERNEL_INITS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                "lecun_normal", "zeros")


def closest(value: str, choices: tuple[str, ...] | list[str]) -> str:
    """'did you mean' text for an unknown name: the nearest choices, else all of them."""
    near = difflib.get_close_matches(value, list(choices), n=3, cutoff=0.5)
    return ", ".join(near or choices)


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The MLP: hidden widths, activation, kernel initialiser (Keras' defaults: Glorot-uniform
    kernels, zero biases). The output is one logit; the loss is sigmoid binary cross-entropy."""

    widths: tuple[int, ...] = (32, 32)
    activation: str = "relu"
    kernel_init: str = "glorot_uniform"

    def validate(self) -> None:
        if not self.widths or any(w <= 0 for w in self.widths):
            raise UsageError(f"model widths {list(self.widths)} must be one or more positive integers, e.g. 32,32")
        if self.activation not in ACTIVATIONS:
            raise UsageError(f"unknown activation {self.activation!r}: choose one of {', '.join(ACTIVATIONS)}")
        if self.kernel_init not in KERNEL_INITS:
            raise UsageError(f"unknown kernel initialiser {self.kernel_init!r}: choose one of {', '.join(KERNEL_INITS)}")


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training program: an optimizer from the registry, its hyperparameters (overriding the
    registry's defaults) and a batch size (`FULL_BATCH` = the whole training set per step)."""

    name: str
    optimizer: str
    hyperparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    batch_size: int | None = 500

    def __post_init__(self):
        object.__setattr__(self, "hyperparams", _frozen(self.hyperparams))
        if self.batch_size is not None and self.batch_size <= 0:
            raise UsageError(f"batch size {self.batch_size} of run {self.name!r} must be positive, or 'full'")

    def __hash__(self):
        return hash((self.name, self.optimizer, tuple(sorted(self.hyperparams.items())), self.batch_size))

    @property
    def program_key(self) -> tuple:
        """Runs with equal keys are the same program on the same data: run once, reuse."""
        return (self.optimizer, tuple(sorted(self.hyperparams.items())), self.batch_size)


@dataclasses.dataclass(frozen=True)
class Lesson:
    """A question the lesson asks, answered by comparing a few runs."""

    name: str
    title: str
    question: str
    runs: tuple[RunSpec, ...]


# The lesson's runs. Hyperparameters follow the Keras code of the lesson; where Keras' defaults
# differ from Optax's, the Keras value is spelled out (see optimizers.py for the Keras variants).
_SGD = RunSpec("SGD", "sgd", {"learning_rate": 0.01}, 500)
PRESETS: dict[str, tuple[Lesson, ...]] = {}
PRESETS["gd-vs-sgd"] = (
    Lesson("gd-vs-sgd", "GD vs SGD",
           "Full-batch gradient descent takes one step per epoch; mini-batch SGD takes 50. Which learns faster per epoch?",
           (RunSpec("GD", "sgd", {"learning_rate": 0.01}, FULL_BATCH), _SGD)),
)
PRESETS["momentum"] = (
    Lesson("momentum", "SGD vs momentum",
           "Does a velocity term (momentum 0.7) speed up SGD at the same learning rate?",
           (_SGD, RunSpec("Momentum", "sgd", {"learning_rate": 0.01, "momentum": 0.7}, 500))),
)
PRESETS["adaptive"] = (
    Lesson("adaptive", "Adaptive learning rates: Adagrad, RMSprop, Adam",
           "Per-parameter step sizes: how do Adagrad (with Keras' inverse-time decay), RMSprop and Adam compare?",
           (RunSpec("Adagrad", "keras_adagrad", {"learning_rate": 0.01, "decay": 0.4, "eps": 1e-5}, 500),
            RunSpec("RMSprop", "rmsprop", {"learning_rate": 0.001, "decay": 0.9, "eps": 1e-7, "eps_in_sqrt": False}, 500),
            RunSpec("Adam", "adam", {"learning_rate": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-7}, 500))),
)
PRESETS["lesson"] = PRESETS["gd-vs-sgd"] + PRESETS["momentum"] + PRESETS["adaptive"]


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one `optax-lab run` needs.

    dataset: "imdb", "synthetic-imdb", or None for IMDB when an archive is available locally and
    the synthetic set otherwise. seeds: how many seeds, vmapped in one program; they are
    `seed, seed+1, ...`. shared_order: all seeds see one shuffling per epoch (faster: XLA fuses
    their first layer into one wide matmul) instead of each its own.
    """

    preset: str = "lesson"
    optimizers: tuple[str, ...] = ()  # registry names or ("all",): rank them instead of the preset
    batches: tuple[int | None, ...] = (500, FULL_BATCH)  # batch modes of an optimizer ranking
    overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # optimizer -> {hp: value}
    dataset: str | None = None
    imdb_archive: str | None = None
    num_words: int = 100
    seeds: int = 8
    seed: int = 0
    epochs: int = 20
    shared_order: bool = False
    model: ModelConfig = ModelConfig()
    out: str | None = None

    @property
    def name(self) -> str:
        """What this run is called in reports and the default output folder."""
        return "optimizers" if self.optimizers else self.preset

    def validate(self) -> "Config":
        if not self.optimizers and self.preset not in PRESETS:
            raise UsageError(f"unknown preset {self.preset!r}: choose one of {closest(self.preset, list(PRESETS))}")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise UsageError(f"unknown dataset {self.dataset!r}: choose one of {', '.join(DATASETS)}")
        for field in ("seeds", "epochs", "num_words"):
            value = getattr(self, field)
            if not isinstance(value, int) or value <= 0:
                raise UsageError(f"--{field.replace('_', '-')} {value!r} must be a positive integer")
        if self.num_words < 4:
            raise UsageError(f"--num-words {self.num_words} must be at least 4 (indices 0-3 are reserved, like Keras)")
        if self.seed < 0:
            raise UsageError(f"--seed {self.seed} must be a non-negative integer")
        for batch in self.batches:
            if batch is not None and batch <= 0:
                raise UsageError(f"--batch {batch} must be a positive integer or 'full'")
        self.model.validate()
        return self

