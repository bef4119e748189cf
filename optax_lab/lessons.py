"""What a run asks: `RunSpec`, one optimizer at one hyperparameter point, and `Lesson`, a question
answered by comparing a few runs. Presets and planners are made of these; the engine trains
specs and the report discusses lessons (by their `LessonKind`, part of the results contract).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from optax_lab.config import DEFAULT_EPOCHS, DEFAULT_NUM_WORDS, DEFAULT_WORKLOAD, Config, ModelConfig
from optax_lab.errors import UsageError
from optax_lab.schema import LessonKind

__all__ = ["LESSON_ADAM", "Lesson", "RunSpec"]


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


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
            raise UsageError(
                f"run {self.name!r} changes unknown model fields {sorted(unknown)}: "
                f"choose from {', '.join(f.name for f in dataclasses.fields(ModelConfig))}"
            )

    def __hash__(self):
        return hash((self.name, self.key))

    def model_config(self, base: ModelConfig = ModelConfig()) -> ModelConfig:
        """The model this run trains: `base` with the run's changes (checked on construction)."""
        return dataclasses.replace(base, **self.model_changes)

    @property
    def key(self) -> tuple:
        """Runs with equal keys (and equal base model, data and epochs) are the same run: run once, reuse.
        (Which runs share a compiled program is `records.program_key`.)"""
        return (
            self.optimizer,
            tuple(sorted(self.hyperparams.items())),
            self.batch_size,
            tuple(sorted(self.model_changes.items())),
        )


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
    extra: Mapping[str, Any] = dataclasses.field(
        default_factory=dict
    )  # more for results.json, e.g. a sweep's criterion
    workload: str = DEFAULT_WORKLOAD  # what its runs train (`optax_lab.workloads`)

    def settings(self, config: Config) -> tuple[int, int | None, int]:
        """(num_words, train_examples or None for all, epochs): the user's explicit values, else
        this lesson's, else the suite's defaults."""

        def pick(mine, theirs, default):
            return mine if mine is not None else theirs if theirs is not None else default

        return (
            pick(config.num_words, self.num_words, DEFAULT_NUM_WORDS),
            pick(config.train_examples, self.train_examples, None),
            pick(config.epochs, self.epochs, DEFAULT_EPOCHS),
        )


# The lesson's Adam run (Keras' eps): a preset's run, and the one the engine, scaling and peer
# benchmarks time.
LESSON_ADAM = RunSpec("Adam", "adam", {"learning_rate": 0.01, "b1": 0.9, "b2": 0.999, "eps": 1e-7}, 500)
