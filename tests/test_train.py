"""The engine: one compile per program for all seeds, determinism, shuffling, batching, Keras
matching, divergence."""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_lab import engine, optimizers, workloads
from optax_lab.config import FULL_BATCH, ModelConfig, Order
from optax_lab.engine import Arrays, seed_keys, shuffled_indices, train
from optax_lab.errors import UsageError
from optax_lab.lessons import RunSpec
from optax_lab.metrics import run_record
from optax_lab.schema import Status
from optax_lab.stats import ci95
from optax_lab.workloads import build_model

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows

ADAM = RunSpec("Adam", "adam", {"learning_rate": 0.01}, 500)


def test_a_program_compiles_once_for_all_seeds(small_data, count_compiles):
    # A program no other test built (nesterov is static; another learning rate would be the same program).
    spec = dataclasses.replace(ADAM, hyperparams={"learning_rate": 0.0123, "nesterov": True})
    first = train(spec, small_data, workload=IMDB_MLP, seeds=(0, 1, 2, 3), epochs=2)
    assert len(count_compiles) == 1, "the four seeds must share one compiled program"
    again = train(spec, small_data, workload=IMDB_MLP, seeds=(10, 11, 12, 13), epochs=2)
    assert len(count_compiles) == 1, "new seed values of the same count must not recompile"
    assert first.history["val_loss"].shape == (4, 2)
    assert not np.array_equal(first.history["val_loss"], again.history["val_loss"])
    assert again.compile_s == first.compile_s > 0


def test_same_seeds_give_identical_histories(small_data):
    a = train(ADAM, small_data, workload=IMDB_MLP, seeds=(5, 6), epochs=3)
    b = train(ADAM, small_data, workload=IMDB_MLP, seeds=(5, 6), epochs=3)
    for key in a.history:
        np.testing.assert_array_equal(a.history[key], b.history[key])
    assert not np.array_equal(a.history["val_loss"][0], a.history["val_loss"][1]), "seeds must differ"


def test_shared_order_shuffles_every_seed_like_the_first_seed(small_data):
    """In shared mode every seed sees seed 0's per-seed order, so only seed 0 trains the same."""
    per_seed = train(ADAM, small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=3, order=Order.PER_SEED)
    shared = train(ADAM, small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=3, order=Order.SHARED)
    np.testing.assert_allclose(shared.history["train_loss"][0], per_seed.history["train_loss"][0], rtol=1e-5)
    assert not np.allclose(shared.history["train_loss"][1], per_seed.history["train_loss"][1], rtol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 7, 500, 1050, 25_000, 2**15 + 3])
def test_shuffled_indices_is_a_permutation(n):
    order = np.asarray(jax.jit(shuffled_indices, static_argnums=1)(jax.random.key(n), n))
    assert sorted(order.tolist()) == list(range(n))


def test_shuffled_indices_is_uniform():
    """Where element 0 lands, over 4,000 keys, is uniform over 6 positions (chi-square test)."""
    keys = jax.random.split(jax.random.key(0), 4000)
    orders = np.asarray(jax.vmap(lambda k: shuffled_indices(k, 6))(keys))
    counts = np.bincount(np.argmax(orders == 0, axis=1), minlength=6)
    chi_square = ((counts - 4000 / 6) ** 2 / (4000 / 6)).sum()
    assert chi_square < 20.5  # p = 0.001 at 5 degrees of freedom
    assert len({tuple(o) for o in orders[:50]}) > 45


def _initial_loss(data: Arrays, seed: int) -> float:
    """The mean BCE over the whole training set at seed `seed`'s initial parameters."""
    model = build_model(ModelConfig())
    params = model.init(seed_keys(seed)[0], data.x_train[:1])["params"]
    logits = model.apply({"params": params}, data.x_train)
    return float(optax.sigmoid_binary_cross_entropy(logits, data.y_train).mean())


@pytest.mark.parametrize("batch_size, steps", [pytest.param(500, 3, marks=pytest.mark.slow), (FULL_BATCH, 1), (7, 150)])
def test_every_example_counts_once_per_epoch_whatever_the_batch(small_data, batch_size, steps):
    """With a learning rate of 1e-30 (0 is outside a rate's domain; this one moves no float32
    weight) the epoch's train loss (the batch losses weighted by batch size,
    as Keras logs it) must equal the full training-set loss: the remainder batch is neither lost
    nor padded into the mean."""
    frozen = RunSpec("frozen", "sgd", {"learning_rate": 1e-30}, batch_size)
    result = train(frozen, small_data, workload=IMDB_MLP, seeds=(3,), epochs=1)
    assert result.settings.steps_per_epoch == steps
    np.testing.assert_allclose(result.history["train_loss"][0, 0], _initial_loss(small_data, 3), rtol=1e-5)


def test_batch_larger_than_the_training_set_is_refused(small_data):
    with pytest.raises(UsageError, match="batch size 2000 .* 1050 training examples"):
        train(dataclasses.replace(ADAM, batch_size=2000), small_data, workload=IMDB_MLP, seeds=(0,), epochs=1)


def test_a_diverging_seed_is_reported_not_raised(small_data):
    exploding = RunSpec("exploding", "sgd", {"learning_rate": 1e30}, 500)
    record = run_record(train(exploding, small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=2))
    assert record["status"] is Status.DIVERGED and record["diverged_seeds"] == 2
    assert np.isnan(record["final"]["val_loss_mean"])
    healthy = run_record(train(ADAM, small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=2))
    assert healthy["status"] is Status.OK and np.isfinite(healthy["final"]["val_loss_mean"])


@pytest.mark.slow  # CI's training tests learn too (the optimizers', the CLI's, the workloads')
def test_training_learns(small_data):
    result = train(ADAM, small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=12)
    assert (result.history["train_loss"][:, -1] < result.history["train_loss"][:, 0]).all()
    assert (result.history["val_loss"][:, -1] < result.history["val_loss"][:, 0]).all()
    assert result.history["val_acc"][:, -3:].mean() > 0.58  # chance is 0.5


def test_compile_time_is_measured_apart_from_run_time(small_data):
    """The model sleeps 0.5 s each time it is traced (Python runs only while tracing, inside the
    compile, never when the executable runs): that time must show in compile_s and not in run_s.
    A clock started before the compile, or a program compiled lazily on its first call, fails here."""
    import flax.linen as nn

    class SlowToTrace(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            time.sleep(0.5)
            return build_model(ModelConfig())(x, train=train)

    slow = dataclasses.replace(
        IMDB_MLP,
        name="slow-to-trace",
        module=SlowToTrace(),
        mlp=None,
        model_text="slow",
        probe_layers=None,
        symmetry_layer=None,
    )
    spec = dataclasses.replace(ADAM, batch_size=350)  # a program no other test built
    result = train(spec, small_data, workload=slow, seeds=(0, 1), epochs=1)
    assert result.compile_s >= 0.5, "the compile must include tracing"
    assert 0 < result.run_s < 0.5, f"run_s {result.run_s:.2f} s holds compile time"
    again = train(spec, small_data, workload=slow, seeds=(2, 3), epochs=1)  # in-process reuse: no second trace
    assert again.compile_s == result.compile_s and again.run_s < 0.5


# --- Keras matching ----------------------------------------------------------------------------


def _keras_reference(update, grads, steps):
    """Apply a numpy Keras-formula optimizer to a scalar parameter for a fixed gradient sequence."""
    w, state = 1.0, None
    for t, g in enumerate(grads[:steps]):
        w, state = update(w, g, t, state)
    return w


GRADS = [0.5, -1.2, 0.3, 2.0, -0.7]


def _run_optax(tx, steps):
    params = jnp.array(1.0)
    state = tx.init(params)
    for g in GRADS[:steps]:
        updates, state = tx.update(jnp.array(g), state, params)
        params = optax.apply_updates(params, updates)
    return float(params)


def test_keras_adagrad_matches_the_keras_formula():
    lr, decay, eps = 0.01, 0.4, 1e-5

    def keras(w, g, t, acc):  # tf.keras 2.x Adagrad with the legacy `decay`
        acc = (0.1 if acc is None else acc) + g * g
        return w - lr / (1 + decay * t) * g / (np.sqrt(acc) + eps), acc

    tx = optimizers.build("keras_adagrad", {"learning_rate": lr, "decay": decay, "eps": eps})
    assert _run_optax(tx, 5) == pytest.approx(_keras_reference(keras, GRADS, 5), rel=1e-6)


def test_rmsprop_preset_matches_the_keras_formula():
    lr, rho, eps = 0.001, 0.9, 1e-7

    def keras(w, g, t, ms):
        ms = rho * (0.0 if ms is None else ms) + (1 - rho) * g * g
        return w - lr * g / (np.sqrt(ms) + eps), ms

    tx = optimizers.build("rmsprop", {"learning_rate": lr, "decay": rho, "eps": eps, "eps_in_sqrt": False})
    assert _run_optax(tx, 5) == pytest.approx(_keras_reference(keras, GRADS, 5), rel=1e-6)


def test_ci95_is_the_student_t_interval():
    assert ci95(np.array([1.0, 2.0, 3.0])) == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)
    assert np.isnan(ci95(np.array([1.0])))


def test_default_model_is_the_lessons_mlp():
    model = build_model(ModelConfig())
    params = model.init(jax.random.key(0), jnp.zeros((1, 100)))["params"]
    shapes = {name: layer["kernel"].shape for name, layer in params.items()}
    assert shapes == {"hidden_0": (100, 32), "hidden_1": (32, 32), "output": (32, 1)}
    assert all(not layer["bias"].any() for layer in params.values())
    limit = np.sqrt(6 / (100 + 32))  # Glorot-uniform bound of the first layer
    kernel = np.asarray(params["hidden_0"]["kernel"])
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit


@pytest.mark.slow  # CI time: three compiles of the same model
def test_only_the_latest_executables_are_kept(small_data, count_compiles, monkeypatch):
    """A sweep compiles hundreds of programs in one process: old executables must be released."""
    monkeypatch.setattr(engine, "COMPILED_KEPT", 1)
    # Two programs: nesterov is compiled in (another learning rate would reuse the program).
    first, second = (dataclasses.replace(ADAM, hyperparams={"nesterov": flag}) for flag in (False, True))
    train(first, small_data, workload=IMDB_MLP, seeds=(0,), epochs=1)
    train(first, small_data, workload=IMDB_MLP, seeds=(0,), epochs=1)
    assert len(count_compiles) == 1
    train(second, small_data, workload=IMDB_MLP, seeds=(0,), epochs=1)
    assert len(engine.compiled_programs) == 1
    train(first, small_data, workload=IMDB_MLP, seeds=(0,), epochs=1)
    assert len(count_compiles) == 3, "the first program was evicted, so it compiles again"


def test_the_model_builds_every_name_the_config_accepts():
    from optax_lab import config

    x = jnp.ones((1, 5))
    for activation in config.ACTIVATIONS:
        build_model(ModelConfig(activation=activation)).init(jax.random.key(0), x)
    for kernel_init in config.KERNEL_INITS:
        build_model(ModelConfig(kernel_init=kernel_init)).init(jax.random.key(0), x)


def test_compile_options_yield_to_an_optimisation_level_in_xla_flags(monkeypatch):
    """-O1 on CPU, -O3 where the program gathers rows (an embedding bag); XLA_FLAGS' level wins."""
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=false")
    assert engine.compiler_options() == {"xla_backend_optimization_level": 1}
    assert engine.compiler_options(gathers_rows=True) == {"xla_backend_optimization_level": 3}
    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    assert engine.compiler_options() == engine.compiler_options(gathers_rows=True) == {}
