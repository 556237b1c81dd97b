"""The importance-weighted NLL of models with an encoder distribution (Burda, Grosse &
Salakhutdinov 2016, the IWAE bound), in nats per example on held-out rows:

    nll_iw = −(1/N) Σᵢ log (1/k) Σⱼ p(xᵢ|zⱼ) p(zⱼ) / q(zⱼ|xᵢ),   zⱼ ~ q(·|xᵢ),   k = ``eval.iw_samples``

on the first ``eval.nll_n`` held-out rows (the rows of ``nll``), with p(z) = N(0, I), q(z|x) =
N(μ(x), diag σ²(x)) the encoder's and p(x|z) the decoder's own likelihood with its normalising
constant (``VAE.decoder_log_prob``). E[log p̂_k] ≤ log p(x) and it increases with k: k = 1 is the
ELBO in expectation, so nll_iw is an upper bound on −log p(x), tighter than −ELBO and tighter
still as k grows. ``nll_iw_k`` is the k used.

Applies to every objective with a stochastic encoder — detected as ``elbo`` is in
``codes.code_tasks`` (an ``elbo`` method), with the likelihood hook ``decoder_log_prob``: the
VAE family (``vae``, ``beta_vae``).

Data: with the ``gaussian`` likelihood the rows are used as they are (a density in the model's
space: −½ log(2πs²) per dimension is part of log p(x|z)). The ``bernoulli`` likelihood is a
probability of *binary* images, and ``digits``/``mnist`` hold grey levels in [0, 1], on which
the training loss's cross-entropy is not a normalised likelihood; so the rows are binarised
deterministically first, **pixel = 1 where x > 0.5, else 0** (already binary rows are unchanged;
on digits' levels k/16 the level 8 = 0.5 maps to 0, on MNIST 128/255 and up map to 1). nll_iw is
then −log P(binarised image), and is not comparable with the ``elbo`` of ``codes``, which is
the cross-entropy of the grey levels; compare it with the ELBO of the same binarised rows
(k = 1 here).

Streaming and determinism: rows in blocks of min(``eval_batch``, 64) (``ModelView.block``
overrides), the k samples of a block in chunks of 100 (the last one smaller) combined by a
running logsumexp inside a ``lax.scan``, so memory is O(block × chunk × D). Row i's draws come
from ``fold_in(fold_in(key(seed), i), chunk index)``: they depend on the seed and the row, not
on the blocking, so the numbers are the same for any block size (up to float summation order).
"""

from __future__ import annotations

import math

from dsmcli.metrics.base import Metric

CHUNK = 100  # importance samples per step of the running logsumexp
BLOCK = 64  # rows per block (at most)
THRESHOLD = 0.5  # bernoulli: pixel = 1 where x > THRESHOLD


def iw_log_likelihood(x, keys, log_px_given_z, log_pz, sample_q, log_q, k: int, chunk: int = CHUNK):
    """log p̂_k(xᵢ) = log (1/k) Σⱼ p(xᵢ|zⱼ) p(zⱼ) / q(zⱼ|xᵢ), zⱼ ~ q(·|xᵢ), for each row of a block.

    ``x``: (B, D) rows; ``keys``: (B,) PRNG keys, one per row (row i's draws depend on its key
    alone); ``log_px_given_z(x, z)``: (N, D), (N, K) → (N,); ``log_pz(z)``: (N, K) → (N,);
    ``sample_q(keys, n)``: (B,) keys → (n, B, K), n draws from q(·|xᵢ) for each row i;
    ``log_q(z)``: (n, B, K) → (n, B), log q(zⱼᵢ|xᵢ). The k draws are taken in chunks of
    ``chunk`` (chunk j with the keys fold_in(keyᵢ, j)) and combined by a running logsumexp, so
    memory is O(B × chunk × D). Traceable (call it inside ``jax.jit``). Returns (B,).
    """
    import jax
    import jax.numpy as jnp

    b = x.shape[0]
    chunk = max(1, min(chunk, k))
    full, rest = divmod(k, chunk)
    dtype = jnp.result_type(x.dtype, jnp.float32)

    def log_weights(j, n):
        z = sample_q(jax.vmap(jax.random.fold_in, (0, None))(keys, j), n)  # (n, B, K)
        flat = z.reshape(n * b, z.shape[-1])
        rows = jnp.broadcast_to(x[None], (n, *x.shape)).reshape(n * b, x.shape[-1])
        return ((log_px_given_z(rows, flat) + log_pz(flat)).reshape(n, b) - log_q(z)).astype(dtype)

    def shift_of(m):
        return jnp.where(jnp.isfinite(m), m, 0.0)

    def add(carry, lw):  # (max so far, Σ exp(lw − shift)) with shift = the max where finite
        m, s = carry
        m_new = jnp.maximum(m, lw.max(0))
        shift = shift_of(m_new)
        return m_new, s * jnp.exp(m - shift) + jnp.exp(lw - shift).sum(0)

    carry = (jnp.full((b,), -jnp.inf, dtype), jnp.zeros((b,), dtype))
    if full:
        carry, _ = jax.lax.scan(lambda c, j: (add(c, log_weights(j, chunk)), None), carry, jnp.arange(full))
    if rest:
        carry = add(carry, log_weights(full, rest))
    m, s = carry
    return shift_of(m) + jnp.log(s) - math.log(k)


def std_normal_log_prob(z):
    """log N(z; 0, I) summed over the last axis."""
    import jax.numpy as jnp

    return -0.5 * jnp.sum(z**2 + math.log(2 * math.pi), -1)


def diag_normal_log_prob(z, mean, logvar):
    """log N(z; mean, diag exp(logvar)) summed over the last axis (broadcasting)."""
    import jax.numpy as jnp

    return -0.5 * jnp.sum((z - mean) ** 2 * jnp.exp(-logvar) + logvar + math.log(2 * math.pi), -1)


def _binarises(obj) -> bool:
    return getattr(obj.cfg, "likelihood", None) == "bernoulli"


def eval_rows(exp):
    """The held-out rows nll_iw is computed on: the first ``eval.nll_n``, binarised (x > 0.5)
    for a bernoulli likelihood."""
    import numpy as np

    x = np.asarray(exp.data.x_test[: exp.cfg.eval.nll_n])
    return (x > THRESHOLD).astype(x.dtype) if _binarises(exp.objective) else x


def nll_iw(view, k: int | None = None) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    exp = view.exp
    obj = exp.objective
    k = exp.cfg.eval.iw_samples if k is None else int(k)
    x = eval_rows(exp)
    n = len(x)
    block = max(1, min(view.block or exp.cfg.train.eval_batch, BLOCK, n))
    key = jax.random.key(exp.cfg.seed)

    @jax.jit
    def block_log_p(params, rows, start):
        net = exp.net(params)
        mean, logvar = net.encode_stats(rows)
        std = jnp.exp(0.5 * logvar)
        row_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, start + jnp.arange(rows.shape[0]))

        def sample_q(keys, m):
            eps = jax.vmap(lambda kk: jax.random.normal(kk, (m, mean.shape[-1]), mean.dtype), out_axes=1)(keys)
            return mean + std * eps

        return iw_log_likelihood(rows, row_keys, lambda xs, z: obj.decoder_log_prob(net, xs, z), std_normal_log_prob,
                                 sample_q, lambda z: diag_normal_log_prob(z, mean, logvar), k)

    total = 0.0
    for start in range(0, n, block):
        rows = x[start : start + block]
        m = len(rows)
        if m < block:  # pad with the last row (one compiled shape), drop the padding's values
            rows = np.concatenate([rows, np.repeat(rows[-1:], block - m, 0)])
        total += float(np.sum(np.asarray(block_log_p(view.params, rows, start), np.float64)[:m]))
    return {"nll_iw": -total / n, "nll_iw_k": k}


def _applies(view) -> str | None:
    obj = view.exp.objective
    kind = view.exp.cfg.objective.kind
    if not obj.model_options().get("stochastic_encoder"):
        return f"objective.kind '{kind}' has no encoder distribution q(z|x) (the VAE family: vae, beta_vae, pixelcnn_vae)"
    if not (hasattr(obj, "elbo") and hasattr(obj, "decoder_log_prob")):
        return f"objective.kind '{kind}' has no likelihood p(x|z) of the pixels to weight"
    return None


def _describe(view) -> dict:
    exp = view.exp
    return {"n": min(exp.cfg.eval.nll_n, len(exp.data.x_test)), "k": exp.cfg.eval.iw_samples,
            "chunk": min(CHUNK, exp.cfg.eval.iw_samples), "seed": exp.cfg.seed,
            "likelihood": getattr(exp.objective.cfg, "likelihood", None),
            "binarised": f"x > {THRESHOLD}" if _binarises(exp.objective) else None,
            **({"levels": exp.objective.levels} if hasattr(exp.objective, "levels") else {})}  # pixelcnn_vae's grey levels


METRICS = [Metric("nll_iw", "model", ("nll_iw", "nll_iw_k"), _applies, nll_iw,
                  "importance-weighted NLL, the IWAE bound with eval.iw_samples samples (nats per example)",
                  describe=_describe, periodic=False)]
