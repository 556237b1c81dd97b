"""Stream a row-wise computation over a large array in fixed-size blocks.

One jit-compiled function per block shape (the last block is padded and masked), partial sums
accumulated on the device and fetched once, so memory stays O(block) whatever the data size.
"""

from __future__ import annotations


def blockwise_sum(fn, x, block: int, key=None):
    """Σ over rows of ``fn(rows) -> dict of (B,) arrays``, streamed; returns dict of floats.

    With a PRNG ``key``, ``fn(rows, block_key)`` gets ``fold_in(key, first row index)``: the
    random draws of a row depend on the key and the row, not on how the rows were blocked
    beyond that (the same ``block`` gives the same numbers)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    n = len(x)
    block = min(block, n)

    @jax.jit
    def partial_sums(rows, mask, block_key):
        out = fn(rows) if key is None else fn(rows, block_key)
        return {k: jnp.sum(jnp.where(mask, v, 0.0)) for k, v in out.items()}

    total = None
    for start in range(0, n, block):
        rows = np.asarray(x[start : start + block])
        m = len(rows)
        if m < block:
            rows = np.concatenate([rows, np.repeat(rows[-1:], block - m, 0)])
        block_key = None if key is None else jax.random.fold_in(key, start)
        sums = partial_sums(rows, np.arange(block) < m, block_key)
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    return {k: float(v) for k, v in jax.device_get(total).items()}
