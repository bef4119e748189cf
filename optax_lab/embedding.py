"""The embedding bag: a dense layer on a multi-hot (or count) row, computed from the row's word
indices as a sum of embedding rows, never materialising the [batch, vocabulary] row.

`ids` [B, L] int holds each example's word indices, `pad = vocabulary` in the empty slots. Then
`embedding_bag(table, ids)[i] = Σ_j table[ids[i, j]]`, which is `multi_hot(ids) @ table` for
distinct indices (a bag of words with counts for repeated ones), and `mean=True` divides by the
number of indices (fastText's average of word vectors, padding masked).

Speed on XLA:CPU: a gather of embedding rows costs 5-15 ns a row and the gradient's scatter-add
25-35 ns, and the rows of one [B, L, D] gather do not fit in cache for L in the hundreds. So the
bag runs over column blocks of `BLOCK` slots in a loop: each block's [B, BLOCK, D] rows stay in
cache and are summed at once. Its gradient is JAX's own (a scatter-add per block), so
forward-over-reverse (Sophia's Hessian probes) and per-example gradients work as for any layer.
(Measured against the alternatives, a custom rule that stacks the vmapped replicas' tables into
one plain gather and scatter was slower here, not faster: the scatter's cost is per row.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["BLOCK", "embedding_bag"]

BLOCK = 32  # slots per loop step: 512 x 32 rows of 16 floats = 1 MB, within a core's L2


def embedding_bag(table: jax.Array, ids: jax.Array, mean: bool = False) -> jax.Array:
    """[B, D]: the sum (or mean) of `table`'s rows at each example's `ids` [B, L]; indices equal
    to len(table) are padding and add nothing."""
    vocabulary, width = table.shape
    rows = jnp.concatenate([table, jnp.zeros((1, width), table.dtype)])  # row `vocabulary`: padding
    blocks = -(-ids.shape[-1] // BLOCK)
    padded = jnp.pad(ids, ((0, 0), (0, blocks * BLOCK - ids.shape[-1])), constant_values=vocabulary)

    def add_block(block, total):
        columns = lax.dynamic_slice_in_dim(padded, block * BLOCK, BLOCK, axis=1)
        # Every index is in [0, vocabulary] by construction: skip the gather's clamping.
        return total + rows.at[columns].get(mode="promise_in_bounds").sum(axis=1)

    total = lax.fori_loop(0, blocks, add_block, jnp.zeros((ids.shape[0], width), table.dtype))
    if not mean:
        return total
    count = (ids < vocabulary).sum(axis=1, keepdims=True)
    return total / jnp.maximum(count, 1).astype(table.dtype)
