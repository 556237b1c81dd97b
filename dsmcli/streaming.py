"""Stream a row-wise computation over a large array in fixed-size blocks.

One jit-compiled function per block shape (the last block is padded and masked), partial sums
accumulated on the device and fetched once, so memory stays O(block) whatever the data size.
"""

from __future__ import annotations


def blockwise_sum(fn, x, block: int):
    """Σ over rows of ``fn(rows) -> dict of (B,) arrays``, streamed; returns dict of floats."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    n = len(x)
    block = min(block, n)

    @jax.jit
    def partial_sums(rows, mask):
        out = fn(rows)
        return {k: jnp.sum(jnp.where(mask, v, 0.0)) for k, v in out.items()}

    total = None
    for start in range(0, n, block):
        rows = np.asarray(x[start : start + block])
        m = len(rows)
        if m < block:
            rows = np.concatenate([rows, np.repeat(rows[-1:], block - m, 0)])
        sums = partial_sums(rows, np.arange(block) < m)
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    return {k: float(v) for k, v in jax.device_get(total).items()}


def score_error(score_fn, true_score_fn, x, block: int = 4096) -> float:
    """Relative Fisher divergence E‖s(x) − ∇log p(x)‖² / E‖∇log p(x)‖² over the rows of ``x``."""
    import jax.numpy as jnp

    def per_row(rows):
        s, t = score_fn(rows), true_score_fn(rows)
        return {"err": jnp.sum((s - t) ** 2, -1), "ref": jnp.sum(t**2, -1)}

    sums = blockwise_sum(per_row, x, block)
    return sums["err"] / sums["ref"]
