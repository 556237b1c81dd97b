"""Metrics between a sample set ``X`` (n, D) and a held-out reference set ``Y`` (m, D).

All public functions are pure, accept NumPy or JAX arrays, and return Python floats (or a
list of floats). The heavy parts run in jit-compiled JAX and are *streamed*: no function
ever materialises an n x m matrix, so e.g. n = 10^6 samples against m = 10^4 reference
points fits comfortably in memory.

Metrics
-------
``mmd`` / ``mmd_fixed``
    Squared maximum mean discrepancy, unbiased U-statistic (Gretton et al. 2012, JMLR 13,
    "A Kernel Two-Sample Test", Lemma 6 / eq. 3) with a sum of Gaussian kernels. ``mmd``
    sets the lengthscales from the median heuristic; ``mmd_fixed`` takes them absolute.
``sliced_w2``
    Sliced 2-Wasserstein distance SW2 = (E_theta W2^2(theta#X, theta#Y))^(1/2)
    (Rabin, Peyre, Delon & Bernot 2011, "Wasserstein Barycenter and its Application to
    Texture Mixing"; Bonneel, Rabin, Peyre & Pfister 2015, JMIV 51), Monte Carlo over
    directions uniform on the unit sphere.

Precision
---------
Computation happens in JAX's default float dtype (float32 unless ``jax_enable_x64`` is on).
To limit round-off, both sets are centred on their pooled mean before any distance is
computed (all metrics here are invariant to a common translation), matrix products use
``Precision.HIGHEST`` (no TF32 on GPUs), and the per-block partial sums of the kernel are
returned to the host and added in float64.

Compilation
-----------
Each jitted kernel compiles once per combination of input shapes (and static options such
as the block size or the number of projections); repeated evaluations on same-sized sets
reuse it. Padding to whole blocks and masking happen inside the kernels.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dsmcli.metrics.base import Metric

__all__ = [
    "DEFAULT_BANDWIDTHS",
    "median_pairwise_distance",
    "mmd",
    "mmd_fixed",
    "sliced_w2",
]

DEFAULT_BANDWIDTHS: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

#: Default side of the square kernel blocks used by the streamed MMD (block memory is
#: block_size^2 * len(lengthscales) floats, ~25 MB for 1024 and 6 lengthscales).
DEFAULT_BLOCK_SIZE = 1024

#: The sliced-W2 projections are processed in chunks of directions so that at most about
#: this many projected values (n * chunk) are held at once (64 MiB in float32).
_SW_MAX_CHUNK_ELEMENTS = 1 << 24

_HIGHEST = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------


def _as_float_array(a, name: str):
    """``a`` as a real float array: a NumPy array, or a JAX array left on its device."""
    if isinstance(a, jax.Array):
        arr = a
    else:
        try:
            arr = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{name} could not be converted to a numeric array: {exc}"
            ) from exc
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(jnp.result_type(float))
    return arr


@jax.jit
def _all_finite(a):
    return jnp.all(jnp.isfinite(a))


def _check_points(a, name: str, min_rows: int = 1):
    arr = _as_float_array(a, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n, D), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); it needs at least one point")
    if arr.shape[0] < min_rows:
        raise ValueError(
            f"{name} has {arr.shape[0]} point(s); this metric needs at least {min_rows}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has zero dimensions (shape {arr.shape})")
    finite = _all_finite(arr) if isinstance(arr, jax.Array) else np.all(np.isfinite(arr))
    if not bool(finite):
        raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    return arr


def _check_pair(x, y, min_rows: int = 1):
    """Validate both sets; returns them as NumPy or JAX float arrays (not yet on device)."""
    x = _check_points(x, "x", min_rows)
    y = _check_points(y, "y", min_rows)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x and y must have the same dimension D, got x: {x.shape[1]} and y: {y.shape[1]}"
        )
    return x, y


def _check_key(key):
    if key is None:
        return jax.random.PRNGKey(0)
    return key


def _numpy_rng(key) -> np.random.Generator:
    """A NumPy generator seeded deterministically by a JAX PRNG key (raw or typed)."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key).astype(np.uint32).ravel().tolist())


def _center(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Common dtype, then subtract the pooled mean (translation-invariant metrics only).

    Called inside the jitted kernels.
    """
    dtype = jnp.promote_types(jnp.result_type(x), jnp.result_type(y))
    x, y = x.astype(dtype), y.astype(dtype)
    n, m = x.shape[0], y.shape[0]
    mu = (jnp.sum(x, axis=0) + jnp.sum(y, axis=0)) / (n + m)
    return x - mu, y - mu


def _round_up(a: int, b: int) -> int:
    return -(-a // b) * b


# --------------------------------------------------------------------------------------
# MMD
# --------------------------------------------------------------------------------------


def _to_blocks(a: jax.Array, block: int) -> tuple[jax.Array, jax.Array]:
    """Zero-pad ``a`` (n, D) to a multiple of ``block`` rows; return (nb, block, D) + mask.

    Called inside the jitted kernels (``block`` is static).
    """
    n, d = a.shape
    n_pad = _round_up(n, block)
    a = jnp.pad(a, ((0, n_pad - n), (0, 0)))
    valid = jnp.arange(n_pad) < n
    return a.reshape(n_pad // block, block, d), valid.reshape(n_pad // block, block)


def block_pair_sums(a, a_valid, c, c_valid, kernel, symmetric):
    """Per-row sums of a pair kernel over every valid pair, streamed over blocks.

    a, c: pytrees of per-row arrays blocked as (na, B, ...) and (nc, B, ...) (e.g. points and
    their squared norms or scores), with boolean masks a_valid (na, B), c_valid (nc, B);
    ``kernel(a_blk, c_blk)`` maps one block of each to the (B, B) matrix k(a_p, c_q).

    Returns R (na, B) with R[i, p] = sum over the valid c of k(a_ip, c) (padded rows are 0).
    With ``symmetric=True`` (``a`` and ``c`` are the same set, and k symmetric) the diagonal
    pairs (p, p) are excluded, only blocks j >= i are evaluated (``lax.cond`` skips the rest)
    and the off-diagonal blocks are counted twice, so ``R.sum()`` is sum_{p != q} k(a_p, a_q).

    Only one (B, B) kernel block is live at a time: the outer ``lax.map`` walks the row
    blocks, the inner ``lax.scan`` the column blocks. Per-row sums (n values, summed in
    float64 by the caller) rather than block totals: a float32 total of a whole block (~10⁶
    values) keeps 7 digits, and MMD and KSD are differences of such sums (n = 5000: 3e-4
    relative error in MMD from float32 block totals). Each row sum is a matrix-vector product
    (an accurate blocked dot, independent of the thread count: ``jaxsetup``).
    """
    leaves_a = jax.tree.leaves(a)
    block, dtype = leaves_a[0].shape[1], leaves_a[0].dtype
    eye = jnp.eye(block, dtype=bool)

    def block_sum(a_blk, a_v, c_blk, c_v, same_block):
        k = kernel(a_blk, c_blk)
        mask = a_v[:, None] & c_v[None, :]
        if symmetric:
            mask = mask & ~(eye & same_block)
        return jnp.matmul(jnp.where(mask, k, 0.0), jnp.ones((block,), k.dtype), precision=_HIGHEST)

    def row(args):
        i, a_blk, a_v = args

        def col(acc, cargs):
            j, c_blk, c_v = cargs
            if symmetric:
                s = jax.lax.cond(
                    j >= i,
                    lambda: block_sum(a_blk, a_v, c_blk, c_v, j == i) * jnp.where(j == i, 1.0, 2.0).astype(dtype),
                    lambda: jnp.zeros((block,), dtype),
                )
            else:
                s = block_sum(a_blk, a_v, c_blk, c_v, False)
            return acc + s, None

        nc = jax.tree.leaves(c)[0].shape[0]
        acc, _ = jax.lax.scan(col, jnp.zeros((block,), dtype), (jnp.arange(nc), c, c_valid))
        return acc

    return jax.lax.map(row, (jnp.arange(leaves_a[0].shape[0]), a, a_valid))


def _gaussian_kernel(inv_two_l2):
    """k(a, c) = sum_h exp(-|a - c|^2 / (2 l_h^2)) on blocks of (points, squared norms)."""

    def kernel(a_blk, c_blk):
        (a_pts, a_sq), (c_pts, c_sq) = a_blk, c_blk
        d2 = a_sq[:, None] + c_sq[None, :] - 2.0 * jnp.matmul(a_pts, c_pts.T, precision=_HIGHEST)
        d2 = jnp.maximum(d2, 0.0)
        return jnp.sum(jnp.exp(-d2[:, :, None] * inv_two_l2), axis=-1)

    return kernel


@functools.partial(jax.jit, static_argnames=("block",))
def _mmd_block_sums(x, y, inv_two_l2, block):
    """Block sums for the XX (off-diagonal), YY (off-diagonal) and XY kernel sums."""
    x, y = _center(x, y)
    kernel = _gaussian_kernel(inv_two_l2.astype(x.dtype))
    xb, xv = _to_blocks(x, block)
    yb, yv = _to_blocks(y, block)
    xs, ys = (xb, jnp.sum(xb * xb, axis=-1)), (yb, jnp.sum(yb * yb, axis=-1))
    return (
        block_pair_sums(xs, xv, xs, xv, kernel, True),
        block_pair_sums(ys, yv, ys, yv, kernel, True),
        block_pair_sums(xs, xv, ys, yv, kernel, False),
    )


def _check_lengthscales(lengthscales) -> np.ndarray:
    ls = np.atleast_1d(np.asarray(lengthscales, dtype=np.float64))
    if ls.ndim != 1 or ls.size == 0:
        raise ValueError(
            f"lengthscales must be a positive scalar or a non-empty 1-D sequence, got shape "
            f"{np.shape(lengthscales)}"
        )
    if not np.all(np.isfinite(ls)) or np.any(ls <= 0):
        raise ValueError(f"lengthscales must be finite and > 0, got {ls.tolist()}")
    return ls


def mmd_fixed(x, y, lengthscales, *, block_size: int = DEFAULT_BLOCK_SIZE) -> float:
    """Unbiased squared MMD with a sum of Gaussian kernels of *absolute* lengthscales.

    Kernel: k(a, b) = sum_l exp(-||a - b||^2 / (2 l^2)) over ``lengthscales`` (a sum of
    characteristic kernels is characteristic).

    Estimator (Gretton et al. 2012, JMLR 13:723-773, Lemma 6, the U-statistic MMD^2_u)::

        MMD^2_u = 1/(n(n-1)) sum_{i != j} k(x_i, x_j)
                + 1/(m(m-1)) sum_{i != j} k(y_i, y_j)
                - 2/(n m)    sum_{i, j}   k(x_i, y_j)

    It is unbiased for MMD^2 and can therefore be slightly negative (on identical sets
    it equals -(2/n) (k(0) - mean off-diagonal kernel) <= 0).

    The three sums are streamed in zero-padded ``block_size`` x ``block_size`` blocks
    (padding masked out; the XX and YY sums only evaluate the upper block triangle), so
    memory is O((n + m) D + block_size^2 * len(lengthscales)).

    Args:
        x: (n, D) samples, n >= 2.
        y: (m, D) reference points, m >= 2.
        lengthscales: positive scalar or 1-D sequence of absolute lengthscales l.
        block_size: block side for the streamed sums.

    Returns:
        MMD^2_u as a Python float.
    """
    x, y = _check_pair(x, y, min_rows=2)
    ls = _check_lengthscales(lengthscales)
    if int(block_size) < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size}")
    n, m = x.shape[0], y.shape[0]
    # Never pad beyond what the larger set needs (small inputs, one block).
    block = min(int(block_size), _round_up(max(n, m), 8))
    inv_two_l2 = 1.0 / (2.0 * ls**2)  # float64; the kernel casts it to the compute dtype
    s_xx, s_yy, s_xy = (
        float(np.sum(np.asarray(b, dtype=np.float64)))
        for b in _mmd_block_sums(x, y, inv_two_l2, block=block)
    )
    return float(s_xx / (n * (n - 1)) + s_yy / (m * (m - 1)) - 2.0 * s_xy / (n * m))


@jax.jit
def _pooled_sq_dists(x, y, idx):
    """Squared distances between pooled points ``concat(x, y)[idx]`` (all if idx is None)."""
    x, y = _center(x, y)
    if idx is None:
        p = jnp.concatenate([x, y], axis=0)
    else:
        n, m = x.shape[0], y.shape[0]
        p = jnp.where(
            (idx < n)[:, None], x[jnp.minimum(idx, n - 1)], y[jnp.clip(idx - n, 0, m - 1)]
        )
    sq = jnp.sum(p * p, axis=-1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * jnp.matmul(p, p.T, precision=_HIGHEST)
    return jnp.maximum(d2, 0.0)


def median_pairwise_distance(x, y, *, key=None, max_points: int = 2000) -> float:
    """Median Euclidean distance over distinct pairs of the pooled sample X u Y.

    If n + m <= ``max_points`` all pooled points are used; otherwise ``max_points`` pooled
    points are drawn uniformly without replacement (NumPy ``Generator.choice`` seeded with
    the bits of ``key``, default PRNGKey(0)), so the result is deterministic given
    ``key``. The median is over the P(P-1)/2 pairs i < j of the P points used (mean of the
    two middle values when that count is even).
    """
    x, y = _check_pair(x, y)
    if int(max_points) < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    key = _check_key(key)
    n, m = x.shape[0], y.shape[0]
    if n + m <= max_points:
        idx = None
    else:
        # Host-side draw (no per-shape compile), seeded by the key's bits.
        idx = _numpy_rng(key).choice(n + m, size=int(max_points), replace=False)
        idx = np.sort(idx).astype(np.int32)
    # At most max_points^2 distances: take the median on the host (linear-time selection).
    d2 = np.asarray(_pooled_sq_dists(x, y, idx))
    iu = np.triu_indices(d2.shape[0], k=1)
    return float(np.median(np.sqrt(d2[iu])))


def mmd(
    x,
    y,
    *,
    key=None,
    bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS,
    max_median_points: int = 2000,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> float:
    """Unbiased squared MMD with a multi-bandwidth Gaussian kernel and the median heuristic.

    k(a, b) = sum_h exp(-||a - b||^2 / (2 (h * med)^2)), summed over the multipliers h in
    ``bandwidths``, where ``med`` is the median pairwise Euclidean distance of the pooled
    sample X u Y (see :func:`median_pairwise_distance`; computed on at most
    ``max_median_points`` pooled points drawn with ``key``, default PRNGKey(0)).

    The estimate is the U-statistic MMD^2_u of Gretton, Borgwardt, Rasch, Schoelkopf &
    Smola (2012), "A Kernel Two-Sample Test", JMLR 13:723-773 (Lemma 6), with diagonal
    terms excluded from the XX and YY sums; see :func:`mmd_fixed` for the formula and the
    streaming. Returns a Python float (can be slightly negative).

    Raises:
        ValueError: bad inputs, or a zero median distance (the pooled sample is a single
            repeated point, so no lengthscale can be set).
    """
    x, y = _check_pair(x, y, min_rows=2)
    h = _check_lengthscales(bandwidths)
    med = median_pairwise_distance(x, y, key=key, max_points=max_median_points)
    if not med > 0.0:
        raise ValueError(
            "median pairwise distance of the pooled sample is zero (all points used for the "
            "median heuristic coincide); use mmd_fixed with explicit lengthscales"
        )
    return mmd_fixed(x, y, h * med, block_size=block_size)


# --------------------------------------------------------------------------------------
# sliced W2
# --------------------------------------------------------------------------------------


def _quantile_interp(size: int, n_levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices/weights that evaluate the sorted-sample quantile function on the grid.

    The sorted values s_(0..size-1) sit at levels (i + 1/2)/size; the grid levels are
    t_k = (k + 1/2)/n_levels. Position u = t_k * size - 1/2 is clamped to [0, size - 1]
    (constant extrapolation) and linearly interpolated between floor(u) and floor(u) + 1.
    """
    k = np.arange(n_levels, dtype=np.float64)
    u = (k + 0.5) * size / n_levels - 0.5
    u = np.clip(u, 0.0, size - 1)
    i0 = np.floor(u).astype(np.int32)
    i1 = np.minimum(i0 + 1, size - 1).astype(np.int32)
    w = u - i0
    return i0, i1, w


_FLOAT_TO_INT = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}


def _sort_last(a: jax.Array) -> jax.Array:
    """Sort along the last axis (values only; inputs are finite).

    XLA's CPU float comparator is slow, so floats are sorted as integers: reinterpret the
    IEEE bits as a signed integer and flip the magnitude bits of negative values, which is
    an order-preserving bijection (-0.0 lands just below +0.0); the map is its own inverse.
    """
    int_dtype = _FLOAT_TO_INT.get(jnp.dtype(a.dtype).itemsize)
    if int_dtype is None:
        return jnp.sort(a, axis=-1)
    flip = jnp.array(jnp.iinfo(int_dtype).max, dtype=int_dtype)
    i = jax.lax.bitcast_convert_type(a, int_dtype)
    i = jnp.where(i < 0, i ^ flip, i)
    i = jax.lax.sort(i, dimension=a.ndim - 1, is_stable=False)
    i = jnp.where(i < 0, i ^ flip, i)
    return jax.lax.bitcast_convert_type(i, a.dtype)


@functools.partial(jax.jit, static_argnames=("n_proj", "chunk"))
def _sw2_sq(x, y, key, xi0, xi1, xw, yi0, yi1, yw, n_proj, chunk):
    """W2^2 of the projections on each of the ``n_proj`` random directions -> (n_proj,)."""
    x, y = _center(x, y)
    d = x.shape[1]
    # Drawn in float32 whatever the compute dtype, so the directions for a given key do not
    # depend on jax_enable_x64.
    theta = jax.random.normal(key, (n_proj, d), dtype=jnp.float32).astype(x.dtype)
    theta = theta / jnp.linalg.norm(theta, axis=1, keepdims=True)
    n_chunks = -(-n_proj // chunk)
    theta = jnp.pad(theta, ((0, n_chunks * chunk - n_proj), (0, 0)))
    theta = theta.reshape(n_chunks, chunk, d)

    def quantiles(s, i0, i1, w):  # s: (c, size) sorted along axis 1
        if i0 is None:
            return s
        w = w.astype(s.dtype)[None, :]
        return (1.0 - w) * s[:, i0] + w * s[:, i1]

    def one_chunk(th):
        px = _sort_last(jnp.matmul(th, x.T, precision=_HIGHEST))  # (c, n)
        py = _sort_last(jnp.matmul(th, y.T, precision=_HIGHEST))  # (c, m)
        qx = quantiles(px, xi0, xi1, xw)
        qy = quantiles(py, yi0, yi1, yw)
        return jnp.mean((qx - qy) ** 2, axis=1)

    if n_chunks == 1:
        out = one_chunk(theta[0])
    else:
        out = jax.lax.map(one_chunk, theta).reshape(-1)
    return out[:n_proj]


def sliced_w2(x, y, *, key=None, n_projections: int = 128) -> float:
    """Sliced 2-Wasserstein distance, SW2 = (E_theta W2^2(theta#X, theta#Y))^(1/2).

    Directions theta_1..theta_P (P = ``n_projections``) are uniform on the unit sphere
    S^{D-1}: ``jax.random.normal(key, (P, D), float32)`` rows (key default PRNGKey(0)),
    normalised to unit length; so the result is deterministic given ``key``.
    The estimate is ``sqrt(mean_p W2^2(theta_p . X, theta_p . Y))`` -- the square root of
    the averaged squared 1-D distances, not the average of the 1-D distances.

    1-D W2^2 between the empirical distributions of the projections: with N = max(n, m)
    and quantile levels t_k = (k + 1/2)/N, k = 0..N-1,

        W2^2 ~= (1/N) sum_k (Q_x(t_k) - Q_y(t_k))^2,

    where Q_x is the quantile function of the n sorted projections x_(0) <= ... <= x_(n-1)
    obtained by placing x_(i) at level (i + 1/2)/n and interpolating linearly between
    neighbouring levels (constant below 1/(2n) and above 1 - 1/(2n)); Q_y likewise. When
    n == m the grid levels coincide with the sample levels, so this is exactly the
    empirical W2^2 = (1/n) sum_i (x_(i) - y_(i))^2 (and sliced_w2(X, X) == 0 exactly).

    References: Rabin, Peyre, Delon & Bernot (2011), "Wasserstein Barycenter and its
    Application to Texture Mixing", SSVM; Bonneel, Rabin, Peyre & Pfister (2015), "Sliced
    and Radon Wasserstein Barycenters of Measures", JMIV 51:22-45.

    Directions are processed in chunks so at most ~2^24 projected values per set are held
    at once. Returns a Python float.
    """
    x, y = _check_pair(x, y)
    if int(n_projections) < 1:
        raise ValueError(f"n_projections must be a positive integer, got {n_projections}")
    key = _check_key(key)
    n_proj = int(n_projections)
    n, m = x.shape[0], y.shape[0]
    n_levels = max(n, m)
    chunk = max(1, min(n_proj, _SW_MAX_CHUNK_ELEMENTS // n_levels))

    def interp_args(size):
        if size == n_levels:
            return None, None, None
        return _quantile_interp(size, n_levels)

    w2_sq = _sw2_sq(
        x, y, key, *interp_args(n), *interp_args(m), n_proj=n_proj, chunk=chunk
    )
    w2_sq = np.asarray(w2_sq, dtype=np.float64)
    return float(math.sqrt(max(float(np.mean(w2_sq)), 0.0)))


# --------------------------------------------------------------------------------------
# registry entries (``dsmcli.metrics``): the particles a sampler kept against held-out data
# --------------------------------------------------------------------------------------


def _two_or_more(ctx) -> str | None:
    return None if len(ctx.kept) >= 2 else "fewer than 2 particles are finite and on the data's scale"


def _mmd_metric(ctx) -> dict:
    test = ctx.data.x_test
    block = ctx.block or DEFAULT_BLOCK_SIZE
    try:
        return {"mmd": mmd(ctx.kept, test, key=ctx.key, block_size=block)}
    except ValueError:  # the particles collapsed onto one point: bandwidths from the data alone
        half = len(test) // 2
        med = median_pairwise_distance(test[:half], test[half:], key=ctx.key)
        return {"mmd": mmd_fixed(ctx.kept, test, np.asarray(DEFAULT_BANDWIDTHS) * med, block_size=block)}


def _escaped(ctx) -> dict:
    return {"escaped_fraction": ctx.escaped_fraction}



METRICS = [
    Metric("escaped_fraction", "samples", ("escaped_fraction",), lambda ctx: None, _escaped,
           "particles that are non-finite or beyond 100× the data's extent (excluded from the others)"),
    Metric("mmd", "samples", ("mmd",), _two_or_more, _mmd_metric,
           "unbiased squared MMD against held-out data, Gaussian kernels at {0.1,…,5} × the median distance"),
    Metric("sliced_w2", "samples", ("sliced_w2",), _two_or_more,
           lambda ctx: {"sliced_w2": sliced_w2(ctx.kept, ctx.data.x_test, key=ctx.key)},
           "sliced 2-Wasserstein distance to held-out data, 128 random directions"),
]
