"""The embedding bag is the multi-hot Dense layer: values and gradients (the fast custom VJP and
the plain-JAX path that forward-mode and per-example gradients use), at and below its chunk
budget, replica by replica under vmap; and the budgets the host computes bound every batch the
program runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optax_lab import embedding
from optax_lab.config import ModelConfig
from optax_lab.embedding import CHUNK, WORD_PAD, chunk_budget, chunk_layout, embedding_bag
from optax_lab.engine import Arrays, program_settings, shuffled_indices, word_budgets
from optax_lab.lessons import RunSpec
from optax_lab.workloads import build_model

VOCABULARY, WIDTH = 60, 8


def _rows(rng, examples: int, longest: int = 45, pad: int = VOCABULARY) -> tuple[np.ndarray, np.ndarray]:
    """(ids [examples, longest] left-aligned distinct words padded with `pad`, their multi-hot rows)."""
    lengths = rng.integers(0, longest + 1, size=examples)
    lengths[0] = longest  # one full row: no padding in it
    ids = np.full((examples, longest), pad, np.int64)
    multi_hot = np.zeros((examples, VOCABULARY), np.float32)
    for i, length in enumerate(lengths):
        ids[i, :length] = np.sort(rng.choice(VOCABULARY, size=length, replace=False))
        multi_hot[i, ids[i, :length]] = 1
    return ids, multi_hot


def _chunks(ids: np.ndarray) -> int:
    return int((-(-(ids < VOCABULARY).sum(axis=1) // CHUNK)).sum())


@pytest.mark.parametrize(
    "native, mean",
    [
        pytest.param(False, False, id="sum-custom-vjp"),
        pytest.param(True, True, id="mean-native"),
        # CI checks each path and each reduction once; the other two pairs complete the square
        pytest.param(True, False, id="sum-native", marks=pytest.mark.slow),
        pytest.param(False, True, id="mean-custom-vjp", marks=pytest.mark.slow),
    ],
)
def test_the_bag_is_the_dense_layer_of_the_multi_hot_row(native, mean, monkeypatch):
    monkeypatch.setattr(embedding, "BLOCK", 3)  # several loop blocks, the last one partly padding
    rng = np.random.default_rng(0)
    seeds, examples = 3, 7
    data = [_rows(rng, examples, pad=WORD_PAD) for _ in range(seeds)]
    ids = jnp.asarray(np.stack([d[0] for d in data]).astype(np.uint16))
    multi_hot = np.stack([d[1] for d in data])
    tables = jax.random.normal(jax.random.key(0), (seeds, VOCABULARY, WIDTH))
    cotangent = jax.random.normal(jax.random.key(1), (seeds, examples, WIDTH))
    counts = np.maximum(multi_hot.sum(-1, keepdims=True), 1) if mean else 1.0
    dense = np.einsum("sbv,svd->sbd", multi_hot, tables) / counts
    dense_grad = np.einsum("sbv,sbd->svd", multi_hot / counts, cotangent)
    exact = max(_chunks(np.asarray(ids[s])) for s in range(seeds))  # the budget at the batch's own chunks
    for budget in (None, exact, exact + 5):

        def bag(table, rows, budget=budget):
            return embedding_bag(table, rows, mean, budget, native)

        values = jax.vmap(bag)(tables, ids)  # seeds on a vmap axis: the fast path runs them one by one
        grads = jax.vmap(jax.grad(lambda t, rows, c: (bag(t, rows) * c).sum()))(tables, ids, cotangent)
        np.testing.assert_allclose(values, dense, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(grads, dense_grad, rtol=1e-5, atol=1e-5)


def test_replicas_of_one_batch_read_their_tables_side_by_side(monkeypatch):
    """Replicas that share the rows (every seed on the test split, the points of one seed's
    batch) gather [V, replicas x D] rows at once; nested replica axes too; same sums and grads."""
    monkeypatch.setattr(embedding, "BLOCK", 3)
    ids, multi_hot = _rows(np.random.default_rng(2), 7, pad=WORD_PAD)
    ids = jnp.asarray(ids.astype(np.uint16))
    tables = jax.random.normal(jax.random.key(0), (2, 3, VOCABULARY, WIDTH))  # seeds x points

    def bag(table):
        return embedding_bag(table, ids, budget=_chunks(np.asarray(ids)))

    values = jax.vmap(jax.vmap(bag))(tables)
    grads = jax.vmap(jax.vmap(jax.grad(lambda t: jnp.tanh(bag(t)).sum())))(tables)
    dense = np.einsum("bv,spvd->spbd", multi_hot, tables)
    np.testing.assert_allclose(values, dense, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        grads, np.einsum("bv,spbd->spvd", multi_hot, 1 - np.tanh(dense) ** 2), rtol=1e-5, atol=1e-5
    )


def test_the_native_bag_has_forward_over_reverse_and_per_example_gradients():
    rng = np.random.default_rng(1)
    ids, multi_hot = _rows(rng, 5)
    table = jax.random.normal(jax.random.key(0), (VOCABULARY, WIDTH))
    probe = jax.random.normal(jax.random.key(1), (VOCABULARY, WIDTH))

    def loss(t, rows):  # not linear in the table: a Hessian-vector product that is not zero
        return jnp.sum(jnp.tanh(embedding_bag(t, rows, native=True)) ** 2)

    def dense_loss(t, rows):
        return jnp.sum(jnp.tanh(rows @ t) ** 2)

    hvp = jax.jvp(jax.grad(loss), (table, jnp.asarray(ids)), (probe, np.zeros(ids.shape, jax.dtypes.float0)))[1]
    dense_hvp = jax.jvp(lambda t: jax.grad(dense_loss)(t, multi_hot), (table,), (probe,))[1]
    np.testing.assert_allclose(hvp, dense_hvp, rtol=1e-4, atol=1e-4)
    per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0))(table, jnp.asarray(ids)[:, None])
    dense_per_example = jax.vmap(jax.grad(dense_loss), in_axes=(None, 0))(table, multi_hot[:, None])
    np.testing.assert_allclose(per_example, dense_per_example, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # the bag is checked against the dense layer above; this adds the whole MLP
def test_the_words_mlp_is_the_bits_mlp():
    """The model on word rows (budgets from the program) = the same parameters on packed bits."""
    rng = np.random.default_rng(2)
    ids, multi_hot = _rows(rng, 9)
    bits = np.packbits(multi_hot.astype(np.uint8), axis=1)
    words_model = build_model(ModelConfig(widths=(16, 16)), "words", VOCABULARY).clone(budgets=((9, _chunks(ids)),))
    bits_model = build_model(ModelConfig(widths=(16, 16)), "bits", VOCABULARY)
    params = bits_model.init(jax.random.key(0), bits[:1])
    rows = jnp.asarray(np.where(ids < VOCABULARY, ids, WORD_PAD).astype(np.uint16))

    def loss(model, x):
        return lambda p: jnp.mean(model.apply(p, x) ** 2)

    np.testing.assert_allclose(words_model.apply(params, rows), bits_model.apply(params, bits), rtol=1e-5, atol=1e-5)
    grads = jax.grad(loss(words_model, rows))(params), jax.grad(loss(bits_model, bits))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), *grads)


def test_chunk_layout_keeps_every_chunk_in_order_then_padding():
    rng = np.random.default_rng(3)
    ids, _ = _rows(rng, 6)
    budget = _chunks(ids) + 4
    chunks, segments, used = chunk_layout(jnp.asarray(ids), VOCABULARY, budget)
    assert int(used) == _chunks(ids)
    expected = [
        (i, row[k : k + CHUNK]) for i, row in enumerate(ids) for k in range(0, len(row), CHUNK) if row[k] < VOCABULARY
    ]
    for slot, (example, words) in enumerate(expected):
        assert segments[slot] == example
        np.testing.assert_array_equal(np.asarray(chunks[slot])[: len(words)], words)
    assert (np.asarray(segments[len(expected) :]) == len(ids)).all()
    assert (np.asarray(chunks[len(expected) :]) >= VOCABULARY).all()


_shuffled = jax.jit(shuffled_indices, static_argnums=1)


def _batches(n: int, batch: int, seed: int, epoch: int) -> np.ndarray:
    """The program's batches of one epoch (`program.batch_indices`): its shuffle, the last batch
    padded with example 0."""
    key = jax.random.fold_in(jax.random.split(jax.random.key(seed), 4)[1], epoch)
    order = np.asarray(_shuffled(key, n))
    steps = -(-n // batch)
    return np.concatenate([order, np.zeros(steps * batch - n, order.dtype)]).reshape(steps, batch)


@pytest.mark.parametrize("batch", [7, 16, 50])
def test_the_host_budgets_bound_every_batch_the_program_runs(batch):
    rng = np.random.default_rng(4)
    train, _ = _rows(rng, 50, longest=58)
    test, _ = _rows(rng, 20, longest=58)
    rows = [np.where(x < VOCABULARY, x, WORD_PAD).astype(np.uint16) for x in (train, test)]
    data = Arrays.from_numpy(rows[0], np.zeros(50), rows[1], np.zeros(20))
    budgets = dict(program_settings(RunSpec("adam", "adam", {}, batch), data, 1, 1).bag_budgets)
    assert budgets == dict(word_budgets(data, batch))
    chunks = -(-(train < VOCABULARY).sum(axis=1) // CHUNK)
    assert budgets[50] == chunks.sum() and budgets[20] == (-(-(test < VOCABULARY).sum(axis=1) // CHUNK)).sum()
    # Every batch of many seeds and epochs, the ragged last one included, fits; and the bound is
    # reached by the batch of the longest rows, so it is no looser than any order-free bound.
    worst = max(
        chunks[steps].sum() for seed in range(20) for epoch in range(3) for steps in _batches(50, batch, seed, epoch)
    )
    assert worst <= budgets[batch] == chunk_budget(chunks * CHUNK, batch, padded_with=0)
    assert budgets[batch] >= np.sort(chunks)[::-1][:batch].sum()
    assert Arrays.from_numpy(train.astype(np.int32), np.zeros(50), test, np.zeros(20)).x_train.dtype == np.int32
    assert word_budgets(Arrays.from_numpy(train.astype(np.int32), np.zeros(50), test, np.zeros(20)), batch) == ()
