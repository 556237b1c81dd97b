"""``nll_iw`` (dsmcli/metrics/iwae.py), the IWAE bound: the library function on a hand-built
linear-Gaussian model whose log p(x) is closed-form, then the registered metric on a tiny VAE
trained on digits (bernoulli and gaussian likelihoods) and on local MNIST files.

Model: p(z) = N(0, I_K), p(x|z) = N(Wz + b, σ²I_D), so p(x) = N(b, WWᵀ + σ²I); the exact
posterior is N(Σ Wᵀ(x − b)/σ², Σ), Σ = (I + WᵀW/σ²)⁻¹."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmcli import experiment
from dsmcli.config import validate
from dsmcli.metrics import REGISTRY, ModelView, iwae

D, K, SIGMA, N = 3, 2, 0.6, 400


def linear_gaussian(seed=0):
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(D, K)), rng.normal(size=D)
    cov = w @ w.T + SIGMA**2 * np.eye(D)
    x = rng.multivariate_normal(b, cov, size=N)
    diff = x - b
    log_px = -0.5 * (np.einsum("nd,de,ne->n", diff, np.linalg.inv(cov), diff) + np.linalg.slogdet(2 * np.pi * cov)[1])
    post_cov = np.linalg.inv(np.eye(K) + w.T @ w / SIGMA**2)
    return w, b, x, log_px, post_cov


def log_lik(w, b):
    return lambda x, z: -0.5 * jnp.sum((x - z @ w.T - b) ** 2 / SIGMA**2 + math.log(2 * math.pi * SIGMA**2), -1)


def gaussian_q(mean, chol):
    """q(·|xᵢ) = N(meanᵢ, chol cholᵀ), sampler and log-density as ``iw_log_likelihood`` takes them."""
    cov = chol @ chol.T
    prec, logdet = jnp.linalg.inv(cov), jnp.linalg.slogdet(2 * jnp.pi * cov)[1]

    def sample(keys, n):
        eps = jax.vmap(lambda k: jax.random.normal(k, (n, mean.shape[-1]), mean.dtype), out_axes=1)(keys)
        return mean + eps @ chol.T

    def log_q(z):
        d = z - mean
        return -0.5 * (jnp.einsum("...i,ij,...j->...", d, prec, d) + logdet)

    return sample, log_q


def row_keys(seed, n=N):
    return jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(seed), jnp.arange(n))


def iw(x, q, w, b, k, seed=0, chunk=iwae.CHUNK):
    sample, log_q = q
    fn = jax.jit(lambda x, keys: iwae.iw_log_likelihood(x, keys, log_lik(w, b), iwae.std_normal_log_prob, sample, log_q, k,
                                                        chunk))
    return np.asarray(fn(jnp.asarray(x), row_keys(seed, len(x))))


def poor_q(x, w, b, post_cov, shift=0.5, shrink=0.4):
    """A Gaussian q(z|x) = N(Ax + c, diag s²) that is not the posterior: the posterior mean
    shifted by ``shift``, standard deviations ``shrink`` × the posterior's (overconfident, so
    the bound stays loose up to k = 1000). Returns (sampler, log-density), the means, s."""
    mu = (x - b) @ w @ post_cov.T / SIGMA**2 + shift
    s = shrink * np.sqrt(np.diag(post_cov))
    return gaussian_q(jnp.asarray(mu), jnp.diag(jnp.asarray(s))), mu, s


def test_exact_posterior_gives_log_p_exactly_for_every_k():
    with jax.enable_x64(True):
        w, b, x, log_px, post_cov = linear_gaussian()
        mean = (x - b) @ w @ post_cov.T / SIGMA**2  # Σ Wᵀ(x − b)/σ², row-wise
        q = gaussian_q(jnp.asarray(mean), jnp.linalg.cholesky(jnp.asarray(post_cov)))
        for k in (1, 10, 100, 1000):
            np.testing.assert_allclose(iw(x, q, w, b, k), log_px, rtol=1e-10, atol=1e-10)


def test_bound_is_below_log_p_tightens_with_k_and_is_the_elbo_at_k_1():
    with jax.enable_x64(True):
        w, b, x, log_px, post_cov = linear_gaussian()
        q, mu, s = poor_q(x, w, b, post_cov)
        gaps = {}
        for k in (1, 10, 100, 1000):
            diff = iw(x, q, w, b, k) - log_px  # log p̂_k − log p per row: ≤ 0 in expectation
            se = diff.std(ddof=1) / math.sqrt(N)
            assert diff.mean() < 3 * se, (k, diff.mean(), se)
            gaps[k] = -diff.mean()  # nll_iw − exact nll
        assert gaps[1] > gaps[10] > gaps[100] > gaps[1000] > 0, gaps
        # k = 1: the ELBO, closed form for this q: E_q log p(x|z) + E_q log p(z) + H(q)
        resid = x - mu @ w.T - b
        e_lik = -0.5 * ((resid**2).sum(1) + np.trace(w @ np.diag(s**2) @ w.T)) / SIGMA**2 - 0.5 * D * math.log(2 * math.pi * SIGMA**2)
        e_prior = -0.5 * ((mu**2).sum(1) + (s**2).sum()) - 0.5 * K * math.log(2 * math.pi)
        entropy = 0.5 * np.sum(np.log(2 * math.pi * math.e * s**2))
        elbo = e_lik + e_prior + entropy
        one = iw(x, q, w, b, 1)
        assert abs(one.mean() - elbo.mean()) < 4 * (one - elbo).std(ddof=1) / math.sqrt(N)
        assert np.all(elbo <= log_px + 1e-12)


def test_chunks_are_one_logsumexp_over_all_k_samples():
    """k = 250 in chunks of 100: chunks 0, 1 (100 each) and 2 (the last 50), with the keys
    fold_in(key_i, j) — the same as one logsumexp over the 250 weights drawn that way."""
    w, b, x, _, post_cov = linear_gaussian()
    x = x[:20].astype(np.float32)
    (sample, log_q), _, _ = poor_q(x, w, b, post_cov)
    keys = row_keys(5, len(x))
    weights = []
    for j, n in ((0, 100), (1, 100), (2, 50)):
        z = sample(jax.vmap(jax.random.fold_in, (0, None))(keys, j), n)
        flat = z.reshape(-1, K)
        rows = jnp.broadcast_to(jnp.asarray(x)[None], (n, *x.shape)).reshape(-1, D)
        weights.append((log_lik(w, b)(rows, flat) + iwae.std_normal_log_prob(flat)).reshape(n, -1) - log_q(z))
    want = jax.scipy.special.logsumexp(jnp.concatenate(weights), axis=0) - math.log(250)
    np.testing.assert_allclose(iw(x, (sample, log_q), w, b, 250, seed=5, chunk=100), np.asarray(want), rtol=1e-5)


# --- the registered metric on a tiny VAE -------------------------------------------------------

MODEL = {"kind": "mlp", "hidden": [32], "latent": 4}


def train(objective, data=None, steps=400):
    import optax

    exp = experiment.build(validate({"name": "t", "seed": 0, "data": data or {"kind": "digits"}, "objective": objective,
                                     "model": MODEL}, "t"))
    x_train = jnp.asarray(exp.data.x_train)
    opt = optax.adam(3e-3)

    def step(carry, key):
        params, state = carry
        k_rows, k_loss = jax.random.split(key)
        rows = x_train[jax.random.randint(k_rows, (128,), 0, len(x_train))]
        loss, grads = jax.value_and_grad(lambda p: exp.objective.loss(exp.net(p), rows, k_loss, x_train)[0])(params)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    (params, _), losses = jax.jit(lambda p, keys: jax.lax.scan(step, (p, opt.init(p)), keys))(
        exp.params, jax.random.split(jax.random.key(1), steps))
    assert float(losses[-20:].mean()) < float(losses[:20].mean())
    return exp, params


def elbo_draws(exp, params, x, draws=20):
    """Single-sample ELBOs of rows x (nats) with ``draws`` keys: their mean over draws and rows,
    and the Monte-Carlo standard error of a one-draw mean over the rows (the spread over the
    draws of each row; the rows themselves are the same in every estimate compared)."""
    f = jax.jit(lambda x, key: exp.objective.elbo(exp.net(params), x, key))
    e = np.stack([np.asarray(f(x, jax.random.key(100 + i)), np.float64) for i in range(draws)])
    return e.mean(), math.sqrt(e.var(0, ddof=1).mean() / e.shape[1])


def test_bernoulli_vae_on_digits_binarised_tighter_than_its_elbo():
    exp, params = train({"kind": "vae"})
    view = ModelView(exp, params)
    metric = REGISTRY["nll_iw"]
    assert metric.applies(view) is None
    result = metric.compute(view)
    assert result["nll_iw_k"] == 1000 and math.isfinite(result["nll_iw"]) and result["nll_iw"] > 0
    x = iwae.eval_rows(exp)  # binarised: the rows log P(x) is of
    assert set(np.unique(x)) == {0.0, 1.0} and len(x) == len(exp.data.x_test)
    np.testing.assert_array_equal(x, (exp.data.x_test > 0.5).astype(np.float32))
    elbo, se1 = elbo_draws(exp, params, x)
    neg_elbo = -elbo
    by_k = {k: iwae.nll_iw(view, k)["nll_iw"] for k in (1, 10, 100, 1000)}
    print(f"\nbernoulli VAE on binarised digits: -elbo {neg_elbo:.3f}, nll_iw by k {by_k}")
    assert by_k[1000] == pytest.approx(result["nll_iw"], rel=1e-6)
    assert abs(by_k[1] - neg_elbo) < 4 * se1  # k = 1 is the ELBO in expectation
    assert by_k[1] > by_k[10] > by_k[100] > by_k[1000]
    assert by_k[1000] < neg_elbo - 4 * se1 / math.sqrt(20)  # tighter than the ELBO (its 20-draw mean)
    # the reported elbo of codes is the cross-entropy of the grey levels, another quantity
    assert REGISTRY["codes"].applies(view) is None


def test_gaussian_vae_on_digits_is_below_the_reported_elbo():
    """Gaussian likelihood: the rows are used as they are, so codes' ``elbo`` (mean over the
    held-out rows, one draw, nats per example) and nll_iw are of the same rows: nll_iw ≤ −elbo."""
    exp, params = train({"kind": "vae", "likelihood": "gaussian", "decoder_std": 0.2})
    view = ModelView(exp, params)
    assert len(exp.data.x_test) <= exp.cfg.eval.nll_n  # the same rows as elbo
    np.testing.assert_array_equal(iwae.eval_rows(exp), exp.data.x_test)
    elbo = REGISTRY["codes"].compute(view)["elbo"]
    mean_elbo, se1 = elbo_draws(exp, params, exp.data.x_test)
    result = REGISTRY["nll_iw"].compute(view)
    print(f"\ngaussian VAE on digits: -elbo {-elbo:.3f} (20 draws: {-mean_elbo:.3f} ± {se1:.3f}), nll_iw {result['nll_iw']:.3f}")
    assert math.isfinite(result["nll_iw"]) and result["nll_iw"] < -elbo - 4 * se1
    assert result["nll_iw"] < -mean_elbo - 4 * se1 / math.sqrt(20)


def test_beta_vae_applies_and_others_do_not():
    beta = experiment.build(validate({"name": "t", "data": {"kind": "digits"}, "objective": {"kind": "beta_vae"},
                                      "model": MODEL, "eval": {"iw_samples": 7}}, "t"))
    r = REGISTRY["nll_iw"].compute(ModelView(beta, beta.params))
    assert r["nll_iw_k"] == 7 and math.isfinite(r["nll_iw"])
    ae = experiment.build(validate({"name": "t", "data": {"kind": "digits"}, "objective": {"kind": "ae"}, "model": MODEL}, "t"))
    assert "no encoder distribution" in REGISTRY["nll_iw"].applies(ModelView(ae, ae.params))
    with pytest.raises(Exception, match="iw_samples"):
        validate({"name": "t", "data": {"kind": "digits"}, "objective": {"kind": "vae"}, "model": MODEL,
                  "eval": {"iw_samples": 0}}, "t")


def write_idx(path, array):
    import struct

    path.write_bytes(bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes())


def test_the_same_config_works_on_local_mnist_files(tmp_path):
    rng = np.random.default_rng(0)
    for stem, arr in {"train-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28)),
                      "train-labels-idx1-ubyte": rng.integers(0, 10, 30),
                      "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
                      "t10k-labels-idx1-ubyte": rng.integers(0, 10, 10)}.items():
        write_idx(tmp_path / stem, arr)
    exp = experiment.build(validate({"name": "t", "data": {"kind": "mnist", "path": str(tmp_path)}, "objective": {"kind": "vae"},
                                     "model": MODEL, "eval": {"iw_samples": 150}}, "t"))
    x = iwae.eval_rows(exp)
    assert x.shape == (10, 784) and set(np.unique(x)) == {0.0, 1.0}
    view = ModelView(exp, exp.params)
    r = REGISTRY["nll_iw"].compute(view)
    assert r["nll_iw_k"] == 150 and math.isfinite(r["nll_iw"]) and r["nll_iw"] > 0
    view.block = 3  # rows in blocks of 3 (the last padded): the same draws per row
    assert REGISTRY["nll_iw"].compute(view)["nll_iw"] == pytest.approx(r["nll_iw"], rel=1e-6)
