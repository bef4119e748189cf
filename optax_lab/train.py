"""The training engine: one jitted program per (optimizer config, batch size).

Inside a program the seeds sit on a `jax.vmap` axis (each seed its own init, shuffling and
optimizer noise), the epochs run in a `lax.scan`, and each epoch's mini-batch steps in an inner
`lax.scan`; the test split is evaluated after every epoch, as the lesson's `validation_data`
does. No Python loop ever wraps a step.

Batches: with N training examples and batch B there are ceil(N / B) steps per epoch; when B does
not divide N the last batch is the smaller remainder, as in Keras (it is padded to B and masked,
so every step has one static shape). Full batch (B = N) is one step on the unshuffled set.
The epoch's train loss/accuracy is the mean over its batches weighted by batch size (what Keras
logs as `loss`), i.e. measured on the moving parameters during the epoch.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_lab import optimizers
from optax_lab.config import ModelConfig, RunSpec
from optax_lab.errors import UsageError
from optax_lab.model import build_model

HISTORY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")


class Arrays(NamedTuple):
    """The dataset on the device: float32 features and {0, 1} labels."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array

    @classmethod
    def from_numpy(cls, x_train, y_train, x_test, y_test) -> "Arrays":
        return cls(*(jax.device_put(np.asarray(a, np.float32)) for a in (x_train, y_train, x_test, y_test)))


@dataclasses.dataclass(frozen=True)
class ProgramShape:
    """Everything a compiled program is specialised on (besides the optimizer)."""

    n_train: int
    n_test: int
    num_features: int
    batch_size: int
    epochs: int
    num_seeds: int
    shared_order: bool

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch_size)

    @property
    def full_batch(self) -> bool:
        return self.batch_size == self.n_train


@dataclasses.dataclass
class RunResult:
    spec: RunSpec
    hyperparams: dict[str, Any]
    shape: ProgramShape
    seeds: tuple[int, ...]
    history: dict[str, np.ndarray]  # each [seeds, epochs]
    compile_s: float  # trace + lower + XLA compile (near zero on a compilation-cache hit)
    run_s: float  # execution only, after block_until_ready


def _loss_and_correct(model, params, x, y, weights):
    logits = model.apply({"params": params}, x)
    losses = optax.sigmoid_binary_cross_entropy(logits, y)
    correct = ((logits > 0) == (y > 0.5)).astype(jnp.float32)
    if weights is None:
        return losses.mean(), correct.mean()
    total = weights.sum()
    return (losses * weights).sum() / total, (correct * weights).sum() / total


def _per_example_grads(model, params, x, y, weights):
    """Each example's loss gradient, stacked on a leading [B] axis; masked (padding) examples' are zero."""

    def example_loss(p, xi, yi):
        return _loss_and_correct(model, p, xi[None], yi[None], None)[0]

    grads = jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0))(params, x, y)
    if weights is None:
        return grads
    return jax.tree.map(lambda g: g * weights.reshape((-1,) + (1,) * (g.ndim - 1)), grads)


def shuffled_indices(key: jax.Array, n: int) -> jax.Array:
    """A uniformly random permutation of range(n), like `jax.random.permutation` but ~5x faster
    on CPU, where XLA's two-operand sort is slow.

    Each round packs random high bits and the element's position into one uint32 and sorts that
    single operand; the low bits then read back the permutation. Ties in the random bits keep the
    previous order, so rounds are repeated with fresh bits until the total random bits reach
    3·log2(n), the same safety margin `jax.random.permutation` uses.
    """
    index_bits = max(1, (n - 1).bit_length())
    random_bits = 32 - index_bits
    if random_bits < 8:  # n > 2**24: not enough room in a word; take the exact, slower path
        return jax.random.permutation(key, n)
    rounds = max(1, math.ceil(3 * math.log2(max(n, 2)) / random_bits))
    low = jnp.uint32((1 << index_bits) - 1)
    positions = jnp.arange(n, dtype=jnp.uint32)
    round_keys = jax.random.split(key, rounds)

    def shuffle_round(i, order):
        packed = (jax.random.bits(round_keys[i], (n,), jnp.uint32) & ~low) | positions
        return order[(jnp.sort(packed) & low).astype(jnp.int32)]

    # A loop, not unrolled: one sort to compile instead of `rounds`.
    return jax.lax.fori_loop(0, rounds, shuffle_round, jnp.arange(n, dtype=jnp.int32))


def _seed_keys(seed):
    """A seed's independent streams: init, shuffling, optimizer noise."""
    return jax.random.split(jax.random.key(seed), 3)


def make_program(model_config: ModelConfig, spec: RunSpec, shape: ProgramShape) -> Callable:
    """The pure training program: (seeds [S] int32, order_seed int32, Arrays) -> history [S, E] each."""
    model = build_model(model_config)
    entry = optimizers.get(spec.optimizer)
    hyperparams = optimizers.hyperparams(spec.optimizer, spec.hyperparams)
    n, batch, steps = shape.n_train, shape.batch_size, shape.steps_per_epoch
    ragged = n % batch != 0

    def batch_indices(key):
        """[steps, B] example indices of one shuffled epoch, and a [steps, B] mask (or None)."""
        order = shuffled_indices(key, n)
        if not ragged:
            return order.reshape(steps, batch), None
        padded = jnp.concatenate([order, jnp.zeros(steps * batch - n, order.dtype)])
        mask = (jnp.arange(steps * batch) < n).astype(jnp.float32)
        return padded.reshape(steps, batch), mask.reshape(steps, batch)

    def seed_program(seed, order_seed, data: Arrays):
        init_key, shuffle_key, optimizer_key = _seed_keys(seed)
        # Shared order: every seed shuffles like the first seed does in per-seed mode.
        order_key = _seed_keys(order_seed)[1] if shape.shared_order else shuffle_key
        params = model.init(init_key, data.x_train[:1])["params"]
        tx = optimizers.build(spec.optimizer, hyperparams, key=optimizer_key)
        opt_state = tx.init(params)

        def step(carry, batch_data):
            params, opt_state = carry
            x, y, weights = batch_data

            def loss_fn(p):
                return _loss_and_correct(model, p, x, y, weights)

            def value_fn(p):
                return loss_fn(p)[0]

            (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            extra = {"value": loss, "grad": grads, "value_fn": value_fn, "obj_fn": value_fn,
                     "grad_fn": lambda p, _: jax.grad(value_fn)(p)}
            if "per_example_grads" in entry.needs:  # DP-SGD clips each example's gradient itself
                grads = _per_example_grads(model, params, x, y, weights)
            updates, opt_state = tx.update(grads, opt_state, params,
                                           **{k: extra[k] for k in entry.needs if k in extra})
            size = jnp.float32(batch) if weights is None else weights.sum()
            return (optax.apply_updates(params, updates), opt_state), (loss * size, accuracy * size)

        def epoch(carry, epoch_index):
            if shape.full_batch:
                # One step on the whole set: its order cannot matter, so skip shuffle and gather.
                batches = (data.x_train[None], data.y_train[None], None)
            else:
                indices, mask = batch_indices(jax.random.fold_in(order_key, epoch_index))
                batches = (data.x_train[indices], data.y_train[indices], mask)
            carry, (loss_sums, correct_sums) = jax.lax.scan(step, carry, batches)
            params, opt_state = carry
            # Where the optimizer's answer is: its params, or e.g. schedule-free's averaged iterate.
            val_loss, val_acc = _loss_and_correct(model, entry.eval_params(opt_state, params),
                                                  data.x_test, data.y_test, None)
            return carry, (loss_sums.sum() / n, correct_sums.sum() / n, val_loss, val_acc)

        _, history = jax.lax.scan(epoch, (params, opt_state), jnp.arange(shape.epochs))
        return history

    # Seeds on a vmap axis; the data and (in shared-order mode) the order seed are shared, so
    # XLA sees one [B, features] batch for all seeds and fuses their first layers.
    return jax.vmap(seed_program, in_axes=(0, None, None))


# The most recent executables, by configuration. Bounded: each one holds JIT-compiled machine code
# in its own memory mappings, and a sweep of a few hundred programs in one process otherwise runs
# into the kernel's mapping limit ("LLVM compilation error: Cannot allocate memory").
_COMPILED: collections.OrderedDict[tuple, tuple[Any, float]] = collections.OrderedDict()
COMPILED_KEPT = 8


def compiler_options() -> dict[str, Any]:
    """XLA options for our programs. On CPU, LLVM at -O1 instead of the default: this engine's
    kernels are small, and measured here it halves compile time with no loss of speed."""
    return {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else {}


def compile_program(model_config: ModelConfig, spec: RunSpec, shape: ProgramShape, data: Arrays):
    """The compiled program for this configuration and its compile seconds; compiled once per
    process while it is among the last COMPILED_KEPT used (a repeat returns the cached executable
    and its original compile time)."""
    cache_key = (model_config, spec.program_key, shape)
    if cache_key in _COMPILED:
        _COMPILED.move_to_end(cache_key)
    else:
        start = time.perf_counter()
        seeds = jax.ShapeDtypeStruct((shape.num_seeds,), jnp.int32)
        order_seed = jax.ShapeDtypeStruct((), jnp.int32)
        compiled = jax.jit(make_program(model_config, spec, shape)).lower(seeds, order_seed, data).compile(compiler_options())
        _COMPILED[cache_key] = (compiled, time.perf_counter() - start)
        while len(_COMPILED) > COMPILED_KEPT:
            _COMPILED.popitem(last=False)
    return _COMPILED[cache_key]


def program_shape(spec: RunSpec, data: Arrays, epochs: int, num_seeds: int, shared_order: bool) -> ProgramShape:
    n_train = data.x_train.shape[0]
    batch = n_train if spec.batch_size is None else spec.batch_size
    if not 0 < batch <= n_train:
        raise UsageError(f"batch size {batch} of run {spec.name!r} must be between 1 and the "
                         f"{n_train} training examples: lower it or use 'full'")
    return ProgramShape(n_train, data.x_test.shape[0], data.x_train.shape[1], batch, epochs, num_seeds, shared_order)


def train(spec: RunSpec, data: Arrays, *, seeds: tuple[int, ...], epochs: int, shared_order: bool = False,
          model_config: ModelConfig = ModelConfig(),
          on_compiled: Callable[[float], None] | None = None) -> RunResult:
    """Train `spec` for every seed at once; histories come back as [seeds, epochs] numpy arrays."""
    shape = program_shape(spec, data, epochs, len(seeds), shared_order)
    hyperparams = optimizers.hyperparams(spec.optimizer, spec.hyperparams)
    compiled, compile_s = compile_program(model_config, spec, shape, data)
    if on_compiled is not None:
        on_compiled(compile_s)
    # device_put, not jnp.asarray: building arrays from Python ints would compile tiny programs.
    seed_array = jax.device_put(np.asarray(seeds, np.int32))
    order_seed = jax.device_put(np.int32(seeds[0]))
    jax.block_until_ready((seed_array, order_seed, data))
    start = time.perf_counter()
    history = jax.block_until_ready(compiled(seed_array, order_seed, data))
    run_s = time.perf_counter() - start
    # scan stacks epochs first under the vmap: [S, E] already.
    return RunResult(spec, hyperparams, shape, tuple(seeds),
                     dict(zip(HISTORY_KEYS, (np.asarray(h) for h in history))), compile_s, run_s)


def seed_epochs_per_second(result: RunResult) -> float:
    return len(result.seeds) * result.shape.epochs / result.run_s
