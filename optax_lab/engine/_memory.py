"""How much device memory a program needs, before it is compiled: what decides how many
replicas one call may hold, and what a request that cannot fit is told.

An estimate from shapes alone (`jax.eval_shape`, `jax.make_jaxpr`; nothing compiled): the data
every device holds, what each seed adds (its shuffled epoch of batches, and what its init's
full-set gradient holds beyond its first replica's step) and what each replica adds (parameters,
gradients, updates and optimizer state; the activations of a step's gradient or of an
evaluation, whichever is larger; DP-SGD's per-example gradients). Activations are counted per
example from the workload's own model (`_activations`: an MLP's layers, a conv net's image
patches, a transformer's attention weights), for a step's batch, and for the evaluation and the
init's gradient on the whole split, or on `workload.eval_batch` examples where the workload
takes its splits in chunks.

It errs high: tests check it against XLA's own figure for the compiled program (the MLP's
shapes, the words models' embedding bag, mnist-cnn and imdb-char-lm with one point and with four).
A seed's init runs before its points' steps and XLA reuses its memory for them, so a seed adds
only what its init holds beyond its points' step activations (`MemoryEstimate.bytes_for`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from optax_lab import optimizers
from optax_lab.config import ModelConfig, Order
from optax_lab.engine._activations import Activations, activations
from optax_lab.errors import UsageError
from optax_lab.lessons import RunSpec
from optax_lab.records import ProgramSettings, split_hyperparams
from optax_lab.workloads import Workload

__all__ = ["MemoryEstimate", "check_results_fit", "estimate_memory", "gigabytes", "replicas_per_call"]

FLOAT = 4  # bytes: every array the program holds is float32 or int32
STATE_COPIES = 3  # parameters + their gradient + the update, beside the optimizer's state
# An embedding bag's program holds more arrays the size of its table: measured with XLA's figure
# (imdb-10k-mlp's model on word rows), 6-9 beside the optimizer's state: the three above, the
# init's full-set gradient, the bag's scatter target, the states the seeds' `lax.map` carries in
# and out, the evaluation's tables side by side. Counted high, as the rest is.
BAG_STATE_COPIES = 10
# A history value on the host: a float in the metrics' lists (a Python float and its pointer).
HOST_BYTES_PER_VALUE = 32
HISTORY_VALUES = 9  # per replica and epoch besides one gradient norm per layer: losses, accuracies, probes
HEADROOM = 0.8  # of a device's free memory: XLA's scratch space and fragmentation take the rest


def gigabytes(count: float) -> str:
    return f"{count / 1e9:,.0f} GB" if count >= 1e11 else f"{count / 1e9:.3g} GB"


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes on each device: `fixed` (the data, and where every seed steps on the same batches,
    in shared order or full batch, that batch), plus `per_seed` for each seed, plus
    `per_replica` for each (seed, point) replica, of which `replica_activations` are a step's or
    an evaluation's activations. A seed's init runs before any step, on the activations of
    `init_activations`: its points' steps reuse that memory, so only what the init holds beyond
    them adds up."""

    fixed: int
    per_seed: int
    per_replica: int
    init_activations: int = 0
    replica_activations: int = 0

    def bytes_for(self, seeds: int, points: int) -> int:
        init_excess = max(0, self.init_activations - points * self.replica_activations)
        return self.fixed + seeds * (self.per_seed + init_excess) + seeds * points * self.per_replica

    def describe(self) -> str:
        return (
            f"{gigabytes(self.fixed)} of data + {gigabytes(self.per_seed)} a seed + "
            f"{gigabytes(self.per_replica)} a replica"
        )


def estimate_memory(
    model_config: ModelConfig,
    spec: RunSpec,
    settings: ProgramSettings,
    workload: Workload,
    example: jax.Array | None = None,
) -> MemoryEstimate:
    """The program's memory per device for `settings` (its shapes; the replica counts are the
    estimate's variables), training `workload`'s model on inputs like
    `example` (its rows' shape and dtype; default float features). The workload's own model
    counts: a words model reads rows of L word ids into a [vocabulary, width] table, where the
    MLP on L features would hold a few thousand parameters (DP-SGD's per-example gradients on
    imdb-10k-mlp: 1 % of XLA's figure), and its activations are traced from it, not taken as an
    MLP's (which on mnist-cnn would be 4 % of XLA's figure)."""
    model = workload.build(model_config)
    features = settings.num_features
    row = (
        jax.ShapeDtypeStruct((features,), jnp.float32)
        if example is None
        else jax.ShapeDtypeStruct(example.shape[1:], example.dtype)
    )
    sample = jax.ShapeDtypeStruct((1, *row.shape), row.dtype)
    params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x)["params"], sample)
    static, traced = split_hyperparams(spec)
    state = jax.eval_shape(
        lambda p: optimizers.build(
            spec.optimizer, {**static, **traced}, key=jax.random.key(0), hidden_matrices=workload.hidden_matrices
        ).init(p),
        params,
    )
    param_count = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
    state_bytes = sum(_bytes(leaf) for leaf in jax.tree.leaves(state))
    data = (settings.n_train + settings.n_test) * (features + 1) * FLOAT
    # A step's gathered batch (each step gathers its own; a full batch reads the data), and the
    # transposed copy XLA makes of it for the backward pass.
    epoch_batches = (1 if settings.full_batch else 2) * settings.batch_size * (features + 1) * FLOAT
    shared = settings.order is Order.SHARED or settings.full_batch
    seed_batches = 0 if shared else epoch_batches
    # Traced as a step runs the model, with the dropout masks it draws: the init's gradient and
    # the evaluation, which draw none, are counted with them too.
    per_example = activations(model, params, row, dropout=model_config.dropout > 0 or workload.dropout)
    init_activations, replica_activations = _activation_bytes(per_example, settings, workload.eval_batch, seed_batches)
    per_seed = seed_batches
    # DP-SGD: each example's gradient, and its clipped copy.
    per_example_grads = (
        2 * settings.batch_size * param_count * FLOAT
        if "per_example_grads" in optimizers.get(spec.optimizer).needs
        else 0
    )
    # A line search (lbfgs) runs the model inside a loop of its own: XLA keeps a copy of the batch.
    line_search = settings.batch_size * features * FLOAT if "value_fn" in optimizers.get(spec.optimizer).needs else 0
    copies = BAG_STATE_COPIES if settings.gathers_rows else STATE_COPIES
    per_replica = (
        copies * param_count * FLOAT
        + state_bytes
        + replica_activations
        + per_example_grads
        + line_search
        + settings.epochs * (16 + model_config.depth + 1) * FLOAT
    )  # the history
    return MemoryEstimate(
        data + (epoch_batches if shared else 0), per_seed, per_replica, init_activations, replica_activations
    )


def _activation_bytes(
    per_example: Activations, settings: ProgramSettings, eval_batch: int | None, seed_batches: int
) -> tuple[int, int]:
    """(a seed's init's, a replica's) activations. A replica's step holds a gradient's on its
    batch, and its evaluation a forward pass's on a chunk of the split (the whole split when the
    workload does not chunk; the training split's too with eval_train, one after the other).
    A seed's init holds a gradient's on a chunk of the training set before any step runs, in
    memory its seed's own batches take later too."""

    def chunk(n: int) -> int:
        return n if eval_batch is None else min(eval_batch, n)

    step = settings.batch_size * per_example.gradient
    evaluated = max(chunk(settings.n_test), chunk(settings.n_train) if settings.eval_train else 0)
    replica = max(step, evaluated * per_example.forward)
    init = chunk(settings.n_train) * per_example.gradient
    return max(0, init - seed_batches), replica


def _bytes(leaf) -> int:
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return math.prod(leaf.shape) * 8  # a threefry key is two uint32
    return math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize


def replicas_per_call(
    memory: MemoryEstimate, num_seeds: int, num_points: int, free_bytes: int, devices: int = 1
) -> tuple[int, int]:
    """(seeds, points) one call of the program holds so that each device's share fits
    HEADROOM of `free_bytes` (one device's): all of them when they fit, else the largest count
    that does (whole seeds first, then points of one seed). A single replica that cannot fit is
    a UsageError with the estimate and the fix."""
    budget = HEADROOM * free_bytes

    def fits(seeds: int, points: int) -> bool:
        # Sharded over the devices: each holds 1/devices of the replicas, and all of the data.
        return (
            memory.bytes_for(math.ceil(seeds / devices), points) <= budget
            if seeds >= devices
            else memory.bytes_for(1, math.ceil(seeds * points / devices)) <= budget
        )

    if not fits(1, 1):
        need = memory.bytes_for(1, 1)
        fix = (
            "lower --num-words or --train-examples, or use a smaller --batch"
            if memory.fixed > budget / 2
            else "use a smaller --batch, model or --train-examples"
        )
        raise UsageError(
            f"one replica needs about {gigabytes(need)} ({memory.describe()}) but a device has "
            f"{gigabytes(budget)} to give: {fix}"
        )
    if fits(num_seeds, num_points):
        return num_seeds, num_points
    if fits(num_seeds, 1):
        low, high = 1, num_points  # points of all seeds: the largest count that fits
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(num_seeds, middle) else (low, middle - 1)
        return num_seeds, low
    low, high = 1, num_seeds
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle, 1) else (low, middle - 1)
    return low, 1


def check_results_fit(replicas: int, epochs: int, depth: int, available: int, seeds: int) -> None:
    """Refuse, before anything is built, a run whose histories alone cannot fit the host:
    `replicas` (seeds x points of every run) x `epochs` x the values of an epoch."""
    per_replica = epochs * (HISTORY_VALUES + depth + 1) * HOST_BYTES_PER_VALUE
    need = replicas * per_replica
    if need > HEADROOM * available:
        most = max(1, int(HEADROOM * available // (per_replica * max(1, replicas // seeds))))
        raise UsageError(
            f"--seeds {seeds}: the histories of {replicas} replicas x {epochs} epochs would need about "
            f"{gigabytes(need)} on the host, which has {gigabytes(available)} available: "
            f"use at most --seeds {most}"
        )
