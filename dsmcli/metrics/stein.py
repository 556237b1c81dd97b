"""Kernel Stein discrepancy of a sample set with respect to a score (Liu, Lee & Jordan 2016;
Chwialkowski, Strathmann & Gretton 2016), with the inverse multiquadric kernel that Gorham &
Mackey (2017, "Measuring Sample Quality with Kernels") show detects non-convergence:

    k(x, y) = (c² + ‖x − y‖²)^β,   c = 1, β = −½.

For a score s = ∇log p the Stein kernel is

    u_p(x, y) = s(x)·s(y) k + s(x)·∇_y k + s(y)·∇_x k + tr ∇_x∇_y k
              = q^β s(x)·s(y) + 2β q^(β−1) (s(y) − s(x))·r − 2βD q^(β−1) − 4β(β−1) q^(β−2) ‖r‖²

with r = x − y, q = c² + ‖r‖², D the dimension; E_{x,y∼q}[u_p] is the squared KSD, which is 0
iff q = p (for this kernel, under the conditions of Gorham & Mackey). ``ksd`` returns the
unbiased U-statistic (1/(n(n−1))) Σ_{i≠j} u_p(x_i, x_j) of the **squared** KSD — an unbiased
estimate that can be slightly negative for samples of p, as the U-statistic MMD — streamed in
blocks (no n × n matrix), the per-row sums added in float64.

Registry entries: ``ksd`` (against the data's exact score, where it has one) and ``ksd_model``
(against the model's own score: does the sampler sample what the model learned?).
"""

from __future__ import annotations

import functools

import numpy as np

from dsmcli.metrics.base import Metric

DEFAULT_BLOCK_SIZE = 1024
C2, BETA = 1.0, -0.5


def _stein_kernel(dim: int, c2: float, beta: float):
    import jax.numpy as jnp

    from dsmcli.metrics.distances import _HIGHEST

    def kernel(a_blk, c_blk):
        (xa, sa, xa_sq, sa_xa), (xc, sc, xc_sq, sc_xc) = a_blk, c_blk
        dot = lambda u, v: jnp.matmul(u, v.T, precision=_HIGHEST)  # noqa: E731
        d2 = jnp.maximum(xa_sq[:, None] + xc_sq[None, :] - 2.0 * dot(xa, xc), 0.0)
        q = c2 + d2
        # (s(y) − s(x))·r with r = x − y, x from block a, y from block c
        sc_r = dot(xa, sc) - sc_xc[None, :]  # s(y)·x − s(y)·y
        sa_r = sa_xa[:, None] - dot(sa, xc)  # s(x)·x − s(x)·y
        return (q**beta * dot(sa, sc) + 2 * beta * q ** (beta - 1) * (sc_r - sa_r)
                - 2 * beta * dim * q ** (beta - 1) - 4 * beta * (beta - 1) * q ** (beta - 2) * d2)

    return kernel


@functools.lru_cache(maxsize=None)
def _row_sums_fn(block: int, dim: int, c2: float, beta: float):
    import jax
    import jax.numpy as jnp

    from dsmcli.metrics.distances import _to_blocks, block_pair_sums

    @jax.jit
    def row_sums(x, s):
        mu = jnp.mean(x, axis=0)  # translation changes nothing (r and s are unchanged): precision only
        x = x - mu
        xb, valid = _to_blocks(x, block)
        sb, _ = _to_blocks(s, block)
        blocks = (xb, sb, jnp.sum(xb * xb, -1), jnp.sum(sb * xb, -1))
        return block_pair_sums(blocks, valid, blocks, valid, _stein_kernel(dim, c2, beta), True)

    return row_sums


def ksd(x, scores, *, block_size: int = DEFAULT_BLOCK_SIZE, c2: float = C2, beta: float = BETA) -> float:
    """Squared IMQ kernel Stein discrepancy, U-statistic, of points ``x`` (n, D) whose score
    values are ``scores`` (n, D) = ∇log p(x)."""
    x = np.asarray(x, np.float32)
    scores = np.asarray(scores, np.float32)
    if x.ndim != 2 or x.shape != scores.shape or len(x) < 2:
        raise ValueError(f"ksd needs (n, D) points and scores with n >= 2, got {x.shape} and {scores.shape}")
    n, dim = x.shape
    block = min(int(block_size), -(-n // 8) * 8)
    sums = _row_sums_fn(block, dim, float(c2), float(beta))(x, scores)
    return float(np.sum(np.asarray(sums, np.float64)) / (n * (n - 1)))


def scores_of(score_fn, x, block: int = 4096) -> np.ndarray:
    """``score_fn`` applied to the rows of ``x`` in blocks of one compiled shape."""
    import jax

    fn = jax.jit(score_fn)
    n = len(x)
    block = min(block, n)
    out = []
    for start in range(0, n, block):
        rows = np.asarray(x[start:start + block], np.float32)
        m = len(rows)
        if m < block:
            rows = np.concatenate([rows, np.repeat(rows[-1:], block - m, 0)])
        out.append(np.asarray(fn(rows))[:m])
    return np.concatenate(out)


# ------------------------------------------------------------------ registry entries
def _exact_applies(ctx) -> str | None:
    if not ctx.data.has_score:
        return "the data set has no closed-form score"
    return None if len(ctx.kept) >= 2 else "fewer than 2 particles are finite"


def _model_applies(ctx) -> str | None:
    if ctx.exp is None or not ctx.exp.objective.has_score:
        return "the samples do not come from a model with a score read-out"
    return None if len(ctx.kept) >= 2 else "fewer than 2 particles are finite"


def _block(ctx) -> int:
    return getattr(ctx, "block", None) or DEFAULT_BLOCK_SIZE


METRICS = [
    Metric("ksd", "samples", ("ksd",), _exact_applies,
           lambda ctx: {"ksd": ksd(ctx.kept, scores_of(ctx.data.density.score, ctx.kept), block_size=_block(ctx))},
           "squared IMQ kernel Stein discrepancy (U-statistic) of the samples against the data's exact score"),
    Metric("ksd_model", "samples", ("ksd_model",), _model_applies,
           lambda ctx: {"ksd_model": ksd(ctx.kept, scores_of(ctx.exp.score_fn(ctx.params), ctx.kept),
                                         block_size=_block(ctx))},
           "the same against the model's own score (does the sampler sample what the model learned?)"),
]
