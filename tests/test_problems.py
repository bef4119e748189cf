"""The problems of deep nets, each on a small fast configuration through the real engine: vanishing
gradients in deep sigmoid nets (and residual connections undoing it), the symmetry problem of
equal initial weights, dropout noise in training only, the L2 penalty's gradient, the PyTorch
default initialiser, the overfitting lesson's data and gap, and bad model settings."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_lab import workloads
from optax_lab.cli import main
from optax_lab.config import Config, ModelConfig
from optax_lab.data import Dataset, subset, synthetic
from optax_lab.engine import Arrays, make_program, program_settings, train
from optax_lab.errors import UsageError
from optax_lab.lessons import Lesson, RunSpec
from optax_lab.planning import distinct_jobs, plan
from optax_lab.presets import PRESETS
from optax_lab.schema import LessonKind
from optax_lab.workloads import build_model, layer_names

IMDB_MLP = workloads.get("imdb-mlp")  # the lesson's MLP on IMDB's multi-hot rows


def _deep(activation: str, depth: int, **model) -> RunSpec:
    return RunSpec(
        f"{activation} {depth}",
        "adam",
        {"learning_rate": 1e-3},
        500,
        {"widths": (32,) * depth, "activation": activation, **model},
    )


def test_deep_sigmoid_gradients_vanish_toward_the_input_and_residuals_restore_them(small_data):
    sigmoid = train(_deep("sigmoid", 8), small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=1)
    residual = train(_deep("sigmoid", 8, residual=True), small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=1)
    norms = sigmoid.history["init_grad_norms"]  # [seeds, 9 layers], input first
    assert norms.shape == (2, 9)
    # Each sigmoid layer multiplies the backpropagated gradient by at most 1/4 (σ' ≤ 1/4):
    # from the output back to the first hidden layer the norm must fall at every layer...
    assert np.all(np.diff(norms[:, :-1], axis=1) > 0)
    # ...and by orders of magnitude overall.
    assert np.all(norms[:, 0] < 1e-3 * norms[:, -1])
    # The identity path of residual connections carries the gradient past the sigmoids.
    residual_norms = residual.history["init_grad_norms"]
    assert np.all(residual_norms[:, 0] > 1e-2 * residual_norms[:, -1])
    # Across training, too: each epoch's mean step gradient, per layer.
    assert sigmoid.history["grad_norms"].shape == (2, 1, 9)
    assert np.all(sigmoid.history["grad_norms"][:, -1, 0] < 1e-3 * sigmoid.history["grad_norms"][:, -1, -1])


def test_the_recorded_init_gradient_is_the_full_training_set_gradient(small_data):
    spec = _deep("tanh", 3)
    result = train(spec, small_data, workload=IMDB_MLP, seeds=(4,), epochs=1)
    model = build_model(spec.model_config())
    init_key = jax.random.split(jax.random.key(4), 4)[0]  # the engine's init stream of seed 4
    params = model.init(init_key, small_data.x_train[:1])["params"]
    grads = jax.grad(
        lambda p: optax.sigmoid_binary_cross_entropy(
            model.apply({"params": p}, small_data.x_train), small_data.y_train
        ).mean()
    )(params)
    expected = [float(jnp.linalg.norm(grads[name]["kernel"])) for name in layer_names(spec.model_config())]
    np.testing.assert_allclose(result.history["init_grad_norms"][0], expected, rtol=1e-4)


@pytest.mark.parametrize(
    "kernel_init, distinct", [("zeros", 1), pytest.param("constant", 1, marks=pytest.mark.slow), ("glorot_uniform", 32)]
)
def test_equal_initial_weights_keep_hidden_units_identical(small_data, kernel_init, distinct):
    spec = RunSpec(kernel_init, "adam", {"learning_rate": 1e-2}, 500, {"kernel_init": kernel_init})
    result = train(spec, small_data, workload=IMDB_MLP, seeds=(0, 1), epochs=3)
    # Units that start equal get equal gradients, so they stay equal: the layer acts as one unit.
    np.testing.assert_array_equal(result.history["init_distinct_units"], distinct)
    np.testing.assert_array_equal(result.history["distinct_units"], distinct)
    if kernel_init == "constant":  # not frozen, just symmetric: it still learns something
        assert np.all(result.history["train_loss"][:, -1] < result.history["train_loss"][:, 0])


def test_dropout_changes_outputs_between_steps_and_not_at_evaluation(small_data):
    model = build_model(ModelConfig(dropout=0.5))
    x = small_data.x_train[:64]
    params = model.init(jax.random.key(0), x)["params"]
    evaluate = model.apply({"params": params}, x)
    step = lambda key: model.apply({"params": params}, x, train=True, rngs={"dropout": key})  # noqa: E731
    assert not np.allclose(step(jax.random.key(1)), step(jax.random.key(2)))
    np.testing.assert_array_equal(step(jax.random.key(1)), step(jax.random.key(1)))
    np.testing.assert_array_equal(model.apply({"params": params}, x), evaluate)
    # Through the engine: the noise comes from explicit per-seed keys, so a seed repeats exactly,
    # and the dropped units make the in-epoch training loss differ from a dropout-free run.
    spec = RunSpec("dropout", "sgd", {"learning_rate": 0.1}, 500, {"dropout": 0.5})
    first = train(spec, small_data, workload=IMDB_MLP, seeds=(0, 0, 1), epochs=2)
    np.testing.assert_array_equal(first.history["train_loss"][0], first.history["train_loss"][1])
    assert not np.array_equal(first.history["train_loss"][0], first.history["train_loss"][2])
    plain = train(dataclasses.replace(spec, model_changes={}), small_data, workload=IMDB_MLP, seeds=(0,), epochs=2)
    assert first.history["train_loss"][0, 0] != plain.history["train_loss"][0, 0]


@pytest.mark.slow  # CI time; the dropout test above checks masks at train vs evaluation
def test_every_step_draws_a_new_dropout_mask(small_data):
    """64 copies of one review, batch 1, lr 1e-30 (no weight moves): every step sees the same input and parameters, so
    an epoch's loss is the mean over its 64 steps' masks. Fresh masks per step average out (spread
    ~1/8 of one mask's); one mask reused for the whole epoch would not."""
    x, y = jnp.tile(small_data.x_train[:1], (64, 1)), jnp.tile(small_data.y_train[:1], 64)
    data = Arrays(x, y, small_data.x_test, small_data.y_test)
    spec = RunSpec("dropout", "sgd", {"learning_rate": 1e-30}, 1, {"dropout": 0.5})  # frozen; 0 is no rate
    epoch_losses = train(spec, data, workload=IMDB_MLP, seeds=(0,), epochs=12).history["train_loss"][0]
    model = build_model(spec.model_config())
    params = model.init(jax.random.split(jax.random.key(0), 4)[0], x[:1])["params"]  # seed 0's init
    one_mask_loss = jax.jit(
        jax.vmap(
            lambda key: optax.sigmoid_binary_cross_entropy(
                model.apply({"params": params}, x[:1], train=True, rngs={"dropout": key}), y[:1]
            )[0]
        )
    )
    one_mask_losses = np.asarray(one_mask_loss(jax.random.split(jax.random.key(7), 200)))  # 200 masks
    assert np.std(one_mask_losses) > 0
    assert np.std(epoch_losses) < np.std(one_mask_losses) / 3
    assert np.isclose(epoch_losses.mean(), np.mean(one_mask_losses), rtol=0.1)


def test_the_l2_penalty_adds_its_gradient_to_the_update(small_data):
    """Full batch, SGD with lr η: one step moves each kernel by -η(∇BCE + 2·l2·kernel)."""
    l2, lr = 0.05, 0.1
    spec = RunSpec("l2", "sgd", {"learning_rate": lr}, None, {"l2": l2})
    program = make_program(
        spec.model_config(), spec, program_settings(spec, small_data, epochs=1, num_seeds=1), IMDB_MLP
    )
    state, _ = jax.jit(program.init)(jnp.array([3]), {"learning_rate": jnp.array([lr])}, jnp.int32(3), small_data)
    params = jax.tree.map(lambda leaf: leaf[0, 0], state.points.params)  # seed 0, point 0
    new_state, _ = jax.jit(program.epoch)(state, jnp.int32(0), small_data)
    model = build_model(spec.model_config())
    grads = jax.grad(
        lambda p: optax.sigmoid_binary_cross_entropy(
            model.apply({"params": p}, small_data.x_train), small_data.y_train
        ).mean()
    )(params)
    for name in layer_names(spec.model_config()):
        expected = params[name]["kernel"] - lr * (grads[name]["kernel"] + 2 * l2 * params[name]["kernel"])
        np.testing.assert_allclose(new_state.points.params[name]["kernel"][0, 0], expected, rtol=1e-5, atol=1e-6)
        # Biases are not penalised (Keras' kernel_regularizer).
        np.testing.assert_allclose(
            new_state.points.params[name]["bias"][0, 0],
            params[name]["bias"] - lr * grads[name]["bias"],
            rtol=1e-5,
            atol=1e-6,
        )


def test_pytorch_default_initialiser_matches_torch_linear():
    model = build_model(ModelConfig(kernel_init="torch_default", bias_init="torch_default"))
    params = model.init(jax.random.key(0), jnp.zeros((1, 100)))["params"]
    for name, fan_in in (("hidden_0", 100), ("hidden_1", 32), ("output", 32)):
        bound = 1 / np.sqrt(fan_in)
        for leaf in ("kernel", "bias"):
            values = np.abs(np.asarray(params[name][leaf]))
            assert values.max() <= bound and values.min() > 0, (name, leaf)
            if values.size >= 32:  # the draws reach near the bound
                assert values.max() > 0.8 * bound, (name, leaf)
    # uniform on ±1/√fan_in: variance bound²/3
    assert np.isclose(np.asarray(params["hidden_0"]["kernel"]).var(), 1 / 300, rtol=0.1)


@pytest.mark.slow  # CI time; the vanishing-gradients test trains residual nets
def test_layer_norm_and_residual_shapes():
    model = build_model(ModelConfig(widths=(16, 16, 8), residual=True, normalization="layer"))
    params = model.init(jax.random.key(0), jnp.zeros((2, 10)))["params"]
    assert set(params) == {"hidden_0", "hidden_1", "hidden_2", "norm_0", "norm_1", "norm_2", "output"}
    assert model.apply({"params": params}, jnp.ones((5, 10))).shape == (5,)


def test_overfitting_lesson_measures_the_gap_on_a_balanced_subset():
    dataset = Dataset("synthetic-imdb", "test", *synthetic.generate(100, 0, 1000, 300), 100)
    small = subset(dataset, 200)
    assert small.x_train.shape == (200, 100) and small.y_train.sum() == 100
    np.testing.assert_array_equal(subset(dataset, 200).x_train, small.x_train)  # deterministic
    assert subset(dataset, None) is dataset
    with pytest.raises(UsageError, match="--train-examples 5000"):
        subset(dataset, 5000)
    data = Arrays.from_numpy(small.x_train, small.y_train, small.x_test, small.y_test)
    spec = RunSpec("big", "adam", {"learning_rate": 1e-2}, 100, {"widths": (64, 64)})
    result = train(spec, data, workload=IMDB_MLP, seeds=(0, 1), epochs=15, eval_train=True)
    train_eval, val = result.history["train_eval_loss"], result.history["val_loss"]
    assert train_eval.shape == val.shape == (2, 15)
    # 200 reviews, 4k+ parameters: it memorises them, and the val loss grows past its best.
    assert np.all(train_eval[:, -1] < 0.5 * val[:, -1])
    assert np.all(val[:, -1] > val.min(axis=1))


def test_lesson_settings_precedence():
    lesson = PRESETS["overfitting"][0]
    assert lesson.settings(Config()) == (1000, 2000, 40)
    assert lesson.settings(Config(epochs=3, num_words=50)) == (50, 2000, 3)
    assert PRESETS["momentum"][0].settings(Config()) == (100, None, 20)


def test_problem_presets_are_distinct_programs_under_unique_names():
    config = Config(preset="problems")
    lessons = plan(config)
    assert [lesson.kind for lesson in lessons] == [
        LessonKind.VANISHING_GRADIENTS,
        LessonKind.INITIALISATION,
        LessonKind.INITIALISATION,
        LessonKind.OVERFITTING,
    ]
    jobs = distinct_jobs(config, lessons)
    assert len(jobs) == 16 + 8 + 8 + 6
    assert len({job.spec.name for job in jobs}) == len(jobs)
    assert all(isinstance(job.spec.model_config(), ModelConfig) for job in jobs)  # each builds: valid
    with pytest.raises(ValueError, match="two different programs"):
        clash = Lesson("x", "x", "x", (RunSpec("A", "sgd"), RunSpec("A", "adam")))
        distinct_jobs(config, (clash,))


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--depth", "0"], "--depth 0"),
        (["--widths", "32,0"], "[32, 0]"),
        (["--widths", "32,x"], "'32,x'"),
        (["--dropout", "1.0"], "dropout rate 1.0"),
        (["--dropout", "-0.1"], "dropout rate -0.1"),
        (["--activation", "sigmoidd"], "'sigmoidd'"),
        (["--init", "xavier"], "'xavier'"),
        (["--bias-init", "ones"], "'ones'"),
        (["--norm", "batch"], "'batch'"),
        (["--l2", "-1"], "l2 penalty -1.0"),
        (["--train-examples", "0"], "--train-examples 0"),
    ],
)
def test_bad_model_settings_are_one_line_exit_2(tmp_path, error_line, argv, named):
    out = tmp_path / "out"
    assert main(["run", "--preset", "momentum", "--dataset", "synthetic-imdb", *argv, "--out", str(out)]) == 2
    assert named in error_line()
    assert not out.exists()


def test_unknown_choices_list_the_accepted_ones(capsys):
    assert main(["run", "--activation", "swish"]) == 2
    assert "relu, sigmoid, tanh" in capsys.readouterr().err
    assert main(["run", "--init", "xavier"]) == 2
    err = capsys.readouterr().err
    assert "glorot_uniform" in err and "torch_default" in err
