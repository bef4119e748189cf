"""What a workload is: its data, model, loss, metrics and target, as one frozen record, and the
losses and metrics the registry's workloads share."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_lab.config import FULL_BATCH, ModelConfig
from optax_lab.data import Dataset, subset
from optax_lab.errors import UsageError

__all__ = [
    "BINARY_ACCURACY",
    "DataRequest",
    "Direction",
    "Target",
    "Workload",
    "arrays_data",
    "check_fits",
    "binary_accuracy",
    "binary_cross_entropy",
    "model_output",
]


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per example: sigmoid cross-entropy of one logit against a {0, 1} label."""
    return optax.sigmoid_binary_cross_entropy(logits, labels)


def binary_accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per example: 1 where the logit's sign gives the label."""
    return ((logits > 0) == (labels > 0.5)).astype(jnp.float32)


def model_output(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """The loss of a model that computes its own per-example loss (the test functions)."""
    del targets
    return outputs


BINARY_ACCURACY: Mapping[str, Callable] = MappingProxyType({"acc": binary_accuracy})


class Direction(enum.StrEnum):
    MIN = "min"  # reached when the metric is at or below the value (a loss)
    MAX = "max"  # at or above it (an accuracy)


@dataclasses.dataclass(frozen=True)
class Target:
    """The validation value a run should reach, as AlgoPerf sets it: once, from a tuned reference
    optimizer. `metric` is a history curve (`val_loss`, `val_acc`, ...); `source` says how the
    value was set (which optimizer, which command, what it measured)."""

    metric: str
    value: float
    direction: Direction
    source: str

    def __post_init__(self):
        object.__setattr__(self, "direction", Direction(self.direction))

    def reached(self, values: np.ndarray) -> np.ndarray:
        """Where `values` (NaN never) reach the target."""
        with np.errstate(invalid="ignore"):
            return values <= self.value if self.direction is Direction.MIN else values >= self.value

    def record(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "direction": self.direction, "source": self.source}


@dataclasses.dataclass(frozen=True)
class DataRequest:
    """What the run asks of a workload's data: the user's --dataset and --imdb-archive, the
    vocabulary (the user's --num-words, else the workload's), a training subset, and the seed."""

    workload: str
    dataset: str | None = None
    imdb_archive: str | None = None
    num_words: int | None = None
    train_examples: int | None = None
    seed: int = 0


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: compared and hashed by identity (it holds functions)
class Workload:
    """One benchmark problem: everything the engine needs, as data. The engine runs every
    workload the same way (replicas on vmap axes, scans, one compile) and reads nothing else.

    data: DataRequest -> (Dataset, warning or None): inputs and targets of both splits.
    module: (mlp, num_words) -> a Flax module, inputs [B, ...] -> outputs; or the module itself.
    loss: (outputs, targets) -> per-example losses [B]; metrics: name -> (outputs, targets) ->
      per-example values [B], recorded as train_<name> / val_<name> each epoch.
    mlp: the configurable MLP it trains (`--depth`, `--widths`... replace it), or None for a fixed
      model that `model_text` describes.
    optimizer_defaults: hyperparameters that differ here from the registry's, per optimizer, and
      `defaults_source` where they came from.
    probe_layers: the parameter subtrees whose gradient norms are recorded (None: every top-level
      one); symmetry_layer: the layer whose distinct units are counted (None: not recorded);
      trace_params: record the parameters after every step (the 2-D functions' trajectories);
      optimum: where the noise-free loss is least, when known (starred on the trajectories' plot).
    eval_batch: the most examples its model evaluates at once: the init's full-set gradient and
      each evaluation take the split in chunks of this many (None: whole), which bounds a conv
      net's or a transformer's activations.
    hidden_matrices: params -> a tree of bools, True for the hidden weight matrices (what Muon
      orthogonalises; embeddings, output heads, norms and biases go to its Adam), or None: every
      2-D parameter is one, optax.contrib.muon's default.
    dropout: the fixed net draws dropout while it trains: it takes `train=True` and a "dropout"
      PRNG stream then (the configurable MLP's `--dropout` does the same).
    l2: a fixed net's weight decay as a loss term, l2 * sum of its layers' squared kernels (the
      probed layers': every top-level one unless declared), as DeepOBS adds it to its losses.
    """

    name: str
    description: str
    data: Callable[[DataRequest], tuple[Dataset, str | None]]
    module: Callable[[ModelConfig | None, int | None], nn.Module] | nn.Module
    loss: Callable[[jax.Array, jax.Array], jax.Array]
    target: Target
    metrics: Mapping[str, Callable[[jax.Array, jax.Array], jax.Array]] = dataclasses.field(default_factory=dict)
    mlp: ModelConfig | None = None
    model_text: str = ""
    epochs: int = 20
    batches: tuple[int | None, ...] = (500,)
    num_words: int | None = None  # its vocabulary; None: no words (--num-words does not apply)
    reference: str = ""  # the optimizer its target and defaults were set with
    optimizer_defaults: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    defaults_source: str = ""
    probe_layers: Callable[[ModelConfig], tuple[str, ...]] | None = None
    symmetry_layer: str | None = None
    trace_params: bool = False
    optimum: tuple[float, ...] | None = None
    eval_batch: int | None = None
    l2: float = 0.0
    hidden_matrices: Callable[[Any], Any] | None = None
    dropout: bool = False

    def __post_init__(self):
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))
        object.__setattr__(
            self,
            "optimizer_defaults",
            MappingProxyType(
                {name: MappingProxyType(dict(values)) for name, values in self.optimizer_defaults.items()}
            ),
        )
        object.__setattr__(self, "batches", tuple(self.batches))

    @property
    def key(self) -> tuple:
        """What a compiled program of this workload is specialised on (stable across processes)."""
        return (self.name, self.num_words)

    def base_model(self, model: ModelConfig | None) -> ModelConfig:
        """The MLP the runs start from: the user's `model` when given, else the workload's own. A
        fixed model gets the default ModelConfig, which only sizes the memory estimate."""
        if self.mlp is None:
            if model is not None:
                raise UsageError(
                    f"workload {self.name} trains a fixed model ({self.model_text}): "
                    "drop the model options (--depth, --widths, --activation, ...)"
                )
            return ModelConfig()
        return self.mlp if model is None else model

    def build(self, model: ModelConfig) -> nn.Module:
        return (
            self.module
            if isinstance(self.module, nn.Module)
            else self.module(model if self.mlp is not None else None, self.num_words)
        )

    def layers(self, model: ModelConfig) -> tuple[str, ...] | None:
        return self.probe_layers(model) if self.probe_layers is not None else None

    def loss_and_metrics(
        self, outputs: jax.Array, targets: jax.Array, weights: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(mean loss, {metric: mean}) of a batch under this workload's per-example loss and
        metrics: the one place the engine and the report compute them.
        `weights` (or None) weigh the examples: a ragged batch's padding has weight 0."""
        losses = self.loss(outputs, targets)
        values = {name: metric(outputs, targets) for name, metric in self.metrics.items()}
        if weights is None:
            return losses.mean(), {name: value.mean() for name, value in values.items()}
        total = weights.sum()
        return (losses * weights).sum() / total, {
            name: (value * weights).sum() / total for name, value in values.items()
        }

    def defaults_for(self, optimizer: str) -> dict[str, Any]:
        return dict(self.optimizer_defaults.get(optimizer, {}))

    def with_num_words(self, num_words: int | None) -> Workload:
        """This workload at the user's vocabulary (a workload without words keeps None)."""
        if self.num_words is None or num_words is None:
            return self
        return dataclasses.replace(self, num_words=num_words)

    def record(self) -> dict[str, Any]:
        """The workload in results.json: enough to rank across workloads (the target) and to say
        what ran."""
        return {
            "name": self.name,
            "description": self.description,
            "target": self.target.record(),
            "epochs": self.epochs,
            "batches": ["full" if b is FULL_BATCH else b for b in self.batches],
            "num_words": self.num_words,
            "reference": self.reference,
            "optimizer_defaults": {k: dict(v) for k, v in self.optimizer_defaults.items()},
            "defaults_source": self.defaults_source,
            "metrics": list(self.metrics),
            "model": self.model_text if self.mlp is None else self.mlp.describe(),
            "optimum": None if self.optimum is None else list(self.optimum),
            "l2": self.l2,
            "dropout": self.dropout,
        }


def arrays_data(
    x_train, y_train, x_test, y_test, name: str = "arrays", source: str = "in memory"
) -> Callable[[DataRequest], tuple[Dataset, None]]:
    """A workload's `data` from NumPy arrays (bring your own): --train-examples takes a random
    subset; --dataset, --imdb-archive and --num-words do not apply."""
    arrays = [np.asarray(a) for a in (x_train, y_train, x_test, y_test)]

    def data(request: DataRequest) -> tuple[Dataset, None]:
        dataset = Dataset(name, source, *(a.copy() for a in arrays), num_words=0)
        return subset(dataset, request.train_examples, request.seed), None

    return data


def check_fits(workload: Workload, model: ModelConfig, x: np.ndarray, y: np.ndarray) -> None:
    """Before any compile: the model takes two training inputs, the loss turns its outputs and
    the targets into one value per example, and so does every metric; else one line saying which."""
    module, x, y = workload.build(model), jnp.asarray(x[:2]), jnp.asarray(y[:2])
    try:
        variables = jax.eval_shape(lambda: module.init(jax.random.key(0), x))
        outputs = jax.eval_shape(lambda v: module.apply(v, x), variables)
        shapes = {"loss": jax.eval_shape(workload.loss, outputs, y)}
        shapes.update({f"metric {name!r}": jax.eval_shape(fn, outputs, y) for name, fn in workload.metrics.items()})
    except Exception as error:  # the user's code: any failure becomes one line naming it
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UsageError(
            f"workload {workload.name}: its model, loss or metrics fail on 2 training examples of "
            f"shape {tuple(x.shape)} ({type(error).__name__}: {reason[:200]})"
        ) from None
    for what, shape in shapes.items():
        if getattr(shape, "shape", None) != (len(x),):
            raise UsageError(
                f"workload {workload.name}: the {what} gives shape {getattr(shape, 'shape', shape)} for "
                f"the model's output {jax.tree.map(lambda o: o.shape, outputs)} and targets "
                f"{tuple(y.shape)}: it must give one value per example, shape ({len(x)},)"
            )
