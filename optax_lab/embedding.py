"""The embedding bag: a dense layer on a multi-hot (or count) row, computed from the row's word
indices as a sum of embedding rows, never materialising the [batch, vocabulary] row.

`ids` [B, L] holds each example's word indices left-aligned, any value >= len(table) in the
empty slots after them (padding). Then `embedding_bag(table, ids)[i] = Σ_j table[ids[i, j]]`,
which is `multi_hot(ids) @ table` for distinct indices (a bag of words with counts for repeated
ones), and `mean=True` divides by the number of indices (fastText's average of word vectors).

Layout: each row is cut into chunks of `CHUNK` slots and only the chunks holding an index are
kept, one example after another (`chunk_layout`), in a static `budget` of chunks: for IMDB's
10,000-word rows (132 words a review on average, the longest 588) a batch of 512 holds ~4,600
chunks where B x L is 19,000. The budget must bound every batch the program will run
(`chunk_budget`); without one, every chunk of [B, L] is kept, which always does.

Speed on XLA:CPU, measured here (see README, Workloads):
- Every gather and scatter is `lax.gather` / `lax.scatter_add` on int32 indices known to be in
  bounds. NumPy-style indexing first maps negative indices, and XLA fuses that select into the
  gather's per-element loop: a 67,000-row gather took 8-10 ms instead of 0.7 ms.
- Replicas (seeds, points) run one after another (`sequential_vmap`), not as one batched gather:
  vmapped, the gather takes a 2-D index per element and the replicas' gathered rows, [S, slots, D],
  leave the cache (2.5-3x slower for 8 seeds). Replicas that share one layout (every seed on the
  test split, the points of a seed's batch) instead read their tables side by side, [V, S x D],
  one gather a slot (imdb-10k-mlp: ~10 % faster epochs). Large bags (evaluation on a whole split)
  loop over blocks of `BLOCK` chunks for the same reason.
- The gradient is a custom VJP doing the same in reverse (a scatter-add of the output cotangent's
  rows). JAX cannot run forward-mode through a custom VJP, so `native=True` computes the bag with
  plain JAX ops, differentiable every way: for forward-over-reverse (Sophia's Hessian probes) and
  per-example gradients (DP-SGD, where replicas one after another would mean examples one after
  another).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["BLOCK", "CHUNK", "WORD_PAD", "chunk_budget", "chunk_layout", "embedding_bag", "take_rows"]

WORD_PAD = 0xFFFF  # the empty slot of a uint16 word row (vocabularies below 65,535 words)
CHUNK = 16  # slots a chunk: a review wastes half a chunk on average (4k slots of a 512 batch's 68k)
BLOCK = 1024  # chunks a loop step: 16,384 rows of 16 floats (1 MB, a core's L2); 256-1,024 measured alike
_IN_BOUNDS = lax.GatherScatterMode.PROMISE_IN_BOUNDS
_ROWS = lax.GatherDimensionNumbers(offset_dims=(1,), collapsed_slice_dims=(0,), start_index_map=(0,))
_ADD_ROWS = lax.ScatterDimensionNumbers(
    update_window_dims=(1,), inserted_window_dims=(0,), scatter_dims_to_operand_dims=(0,)
)


def take_rows(table: jax.Array, ids: jax.Array) -> jax.Array:
    """table[ids] ([*ids.shape, D]) for int32 `ids` all in [0, len(table)): no index remapping."""
    rows = lax.gather(table, ids.reshape(-1, 1), _ROWS, (1, table.shape[1]), mode=_IN_BOUNDS)
    return rows.reshape(*ids.shape, table.shape[1])


def _add_rows(into: jax.Array, ids: jax.Array, rows: jax.Array, is_sorted: bool = False) -> jax.Array:
    """into.at[ids].add(rows) for in-bounds int32 `ids` [N] and `rows` [N, D]."""
    return lax.scatter_add(into, ids[:, None], rows, _ADD_ROWS, indices_are_sorted=is_sorted, mode=_IN_BOUNDS)


def chunk_layout(ids: jax.Array, vocabulary: int, budget: int | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(chunks [Q, CHUNK], segments [Q] int32, used int32): the chunks of `ids` [B, L] that hold
    an index, example after example, then padding chunks (example B); and how many are not
    padding. Q = `budget` (default: every chunk, B x ceil(L / CHUNK)); a budget below the batch's
    chunks drops the last. Chunks keep `ids`' dtype and padding values (any >= vocabulary)."""
    examples, length = ids.shape
    per_row = -(-length // CHUNK)
    budget = examples * per_row if budget is None else budget
    if length % CHUNK:  # word rows come a multiple of CHUNK wide (`workloads._imdb`): no copy then
        ids = jnp.pad(ids, ((0, 0), (0, per_row * CHUNK - length)), constant_values=vocabulary)
    # Rows are left-aligned: a chunk holds an index iff its first slot does (B x L / CHUNK reads).
    counts = (ids[:, ::CHUNK] < vocabulary).sum(axis=1, dtype=jnp.int32)
    ends = jnp.cumsum(counts)
    starts = ends - counts
    # Each slot gathers its chunk: its example is the last one starting at or before it (a count of
    # B marks, cumulated), the chunk its offset from that example's start. Scattering each of the
    # B x K chunks to its slot instead cost 2.5x as much (a 10,000-review split: 9.7 ms -> 3.9 ms).
    marks = jnp.zeros(budget + 1, jnp.int32).at[jnp.minimum(starts, budget)].add(1, mode="promise_in_bounds")
    example = jnp.cumsum(marks[:budget]) - 1
    slot = jnp.arange(budget, dtype=jnp.int32)
    used = jnp.minimum(ends[-1], budget)
    held = slot < used
    source = jnp.where(held, example * per_row + slot - take_rows(starts[:, None], example)[:, 0], 0)
    chunks = jnp.where(
        held[:, None], take_rows(ids.reshape(examples * per_row, CHUNK), source), jnp.asarray(vocabulary, ids.dtype)
    )
    return chunks, jnp.where(held, example, examples), used


def _indices(chunks: jax.Array, vocabulary: int) -> jax.Array:
    """int32 row indices of `chunks`, every padding value at `vocabulary` (the zero row)."""
    return jnp.minimum(chunks.astype(jnp.int32), vocabulary)


def chunk_budget(lengths: np.ndarray, batch: int, padded_with: int | None = None) -> int:
    """The most chunks any `batch` of distinct examples with these index counts can hold: the sum
    of the `batch` largest. With `padded_with` (an example), a batch may also be an epoch's ragged
    last one: len(lengths) % batch examples and copies of that one (the program's padding)."""
    chunks = -(-np.asarray(lengths, np.int64) // CHUNK)
    largest = np.sort(chunks)[::-1]
    budget = int(largest[:batch].sum())
    remainder = len(chunks) % batch
    if padded_with is not None and remainder:
        budget = max(budget, int(largest[:remainder].sum() + (batch - remainder) * chunks[padded_with]))
    return max(budget, 1)


def _blocks(budget: int) -> tuple[int, int]:
    """(blocks, chunks a block) of a bag of at least `budget` chunks: one block up to BLOCK."""
    blocks = -(-budget // BLOCK)
    return blocks, -(-budget // blocks)


def _over_used_blocks(used: jax.Array, chunks: jax.Array, block, out: jax.Array) -> jax.Array:
    """`block(i, out)` for the blocks of `chunks` that hold any of the `used` first. A replica
    runs alone here (sequential_vmap), so the loop's length is its own batch's, and the padding
    chunks of the static budget cost nothing."""
    blocks, size = _blocks(chunks.shape[0])
    assert blocks * size == chunks.shape[0], "a budget of whole blocks (embedding_bag rounds it up)"
    return lax.fori_loop(0, jnp.minimum((used + size - 1) // size, blocks), block, out)


def _sum_chunks_alone(
    table: jax.Array, chunks: jax.Array, segments: jax.Array, used: jax.Array, out: jax.Array
) -> jax.Array:
    """out [B, D] plus each chunk's rows summed into its example's row; padding indices (>= V)
    add nothing. Column by column: XLA fuses the CHUNK gathers and their sum into one loop, where
    a [size, CHUNK, D] gather and its reduction went through memory."""
    vocabulary = table.shape[0]
    _, size = _blocks(chunks.shape[0])

    def block(i, total):
        ids = lax.dynamic_slice_in_dim(chunks, i * size, size).astype(jnp.int32)
        rows = [
            jnp.where((ids[:, c] < vocabulary)[:, None], take_rows(table, jnp.minimum(ids[:, c], vocabulary - 1)), 0)
            for c in range(CHUNK)
        ]
        example = jnp.minimum(lax.dynamic_slice_in_dim(segments, i * size, size), total.shape[0] - 1)
        return _add_rows(total, example, functools.reduce(jnp.add, rows), is_sorted=True)

    return _over_used_blocks(used, chunks, block, out)


_sum_chunks = jax.custom_batching.custom_vmap(_sum_chunks_alone)


@_sum_chunks.def_vmap
def _sum_chunks_of_replicas(axis_size, in_batched, table, chunks, segments, used, out):
    """Replicas of one bag layout (the test split every seed evaluates; the points of a seed's
    batch) read their tables side by side, one [V, replicas x D] gather a slot, where replicas one
    after another each re-read the layout; other replicas run one after another."""
    table_batched, *layout_batched, out_batched = in_batched
    if any(layout_batched) or not table_batched:
        one_by_one = jax.custom_batching.sequential_vmap(_sum_chunks_alone)
        axes = [0 if is_batched else None for is_batched in in_batched]
        return jax.vmap(one_by_one, in_axes=axes)(table, chunks, segments, used, out), True
    vocabulary, width = table.shape[1:]
    examples = out.shape[-2]
    side_by_side = jnp.moveaxis(table, 0, 1).reshape(vocabulary, axis_size * width)
    out = jnp.moveaxis(out, 0, 1) if out_batched else jnp.broadcast_to(out[:, None], (examples, axis_size, width))
    total = _sum_chunks(side_by_side, chunks, segments, used, out.reshape(examples, axis_size * width))
    return jnp.moveaxis(total.reshape(examples, axis_size, width), 1, 0), True


@jax.custom_batching.sequential_vmap
def _spread_chunks(
    cotangent: jax.Array, chunks: jax.Array, segments: jax.Array, used: jax.Array, out: jax.Array
) -> jax.Array:
    """out [V, D] plus each example's cotangent row added at every index of its chunks (the
    transpose of `_sum_chunks`): a scatter per column, each of the block's cotangent rows, which
    are never copied CHUNK times; padding indices (>= V) are dropped."""
    _, size = _blocks(chunks.shape[0])

    def block(i, total):
        ids = lax.dynamic_slice_in_dim(chunks, i * size, size).astype(jnp.int32)
        example = jnp.minimum(lax.dynamic_slice_in_dim(segments, i * size, size), cotangent.shape[0] - 1)
        rows = take_rows(cotangent, example)
        for c in range(CHUNK):
            total = lax.scatter_add(total, ids[:, c : c + 1], rows, _ADD_ROWS, mode=lax.GatherScatterMode.FILL_OR_DROP)
        return total

    return _over_used_blocks(used, chunks, block, out)


@jax.custom_vjp
def _fast_bag(
    table: jax.Array, chunks: jax.Array, segments: jax.Array, used: jax.Array, examples: jax.Array
) -> jax.Array:
    return _sum_chunks(table, chunks, segments, used, jnp.zeros((examples.shape[0], table.shape[1]), table.dtype))


def _fast_bag_fwd(table, chunks, segments, used, examples):
    # The table's row count travels as an empty array's shape: residuals are arrays.
    return _fast_bag(table, chunks, segments, used, examples), (chunks, segments, used, table[:, :0])


def _fast_bag_bwd(residuals, cotangent):
    chunks, segments, used, rows = residuals
    out = jnp.zeros((rows.shape[0], cotangent.shape[1]), cotangent.dtype)
    return _spread_chunks(cotangent, chunks, segments, used, out), None, None, None, None


_fast_bag.defvjp(_fast_bag_fwd, _fast_bag_bwd)


def _with_zero_row(array: jax.Array) -> jax.Array:
    return jnp.concatenate([array, jnp.zeros((1, array.shape[1]), array.dtype)])


def _native_bag(table: jax.Array, chunks: jax.Array, segments: jax.Array, examples: int) -> jax.Array:
    """The same sums in plain JAX ops (batched gathers under vmap), differentiable every way."""
    sums = take_rows(_with_zero_row(table), _indices(chunks, table.shape[0])).sum(1)
    return _add_rows(jnp.zeros((examples + 1, table.shape[1]), table.dtype), segments, sums, is_sorted=True)[:-1]


def embedding_bag(
    table: jax.Array, ids: jax.Array, mean: bool = False, budget: int | None = None, native: bool = False
) -> jax.Array:
    """[B, D]: the sum (or mean) of `table`'s rows at each example's `ids` [B, L] (padding: any
    index >= len(table)). `budget`: the most chunks (`chunk_budget`) this batch can hold;
    `native`: plain JAX ops (forward-mode and per-example gradients)."""
    vocabulary, examples = table.shape[0], ids.shape[0]
    blocks, size = _blocks(budget or examples * -(-ids.shape[1] // CHUNK))
    layout = functools.partial(chunk_layout, vocabulary=vocabulary, budget=blocks * size)  # whole blocks
    if native:
        total = _native_bag(table, *layout(ids)[:2], examples)
    else:  # the layout replica by replica too (its scatter batched cost half the bag); the example
        # count travels as a shape: the custom VJP takes arrays only
        total = _fast_bag(table, *jax.custom_batching.sequential_vmap(layout)(ids), jnp.zeros(examples, jnp.int8))
    if not mean:
        return total
    count = (jnp.minimum(ids.astype(jnp.int32), vocabulary) < vocabulary).sum(axis=1, keepdims=True)
    return total / jnp.maximum(count, 1).astype(table.dtype)
