"""Score-matching losses checked against closed forms and the Hyvärinen / Vincent identities.

Expected values are derived by hand (see each test's docstring) and computed with NumPy in
float64; Monte-Carlo checks assert ``|estimate − exact| < 5·SE`` with the standard error taken
from the per-sample spread.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmcli.losses import divergence_exact, dsm, esm, ism, noisy, ssm

Z = 5.0


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def linear(A, b):
    A, b = jnp.asarray(A), jnp.asarray(b)
    return lambda x: x @ A.T + b


def random_linear(rng, d):
    A = rng.normal(size=(d, d))
    b = rng.normal(size=d)
    return A, b


def ism_linear_closed_form(A, b, x):
    s = x @ A.T + b
    return np.mean(0.5 * np.sum(s**2, axis=1)) + np.trace(A)


def tanh_map(W, c, alpha):
    """s(x) = tanh(x W + c) + alpha·x; tr ∇s(x) = Σ_j (1 − tanh²(xW + c)_j) W_jj + alpha·D."""
    W, c = jnp.asarray(W), jnp.asarray(c)
    return lambda x: jnp.tanh(x @ W + c) + alpha * x


def tanh_map_np(W, c, alpha, x):
    t = np.tanh(x @ W + c)
    return t + alpha * x, (1 - t**2) @ np.diag(W) + alpha * x.shape[1]


def mlp(params, x):
    h = jnp.tanh(x @ params["W1"] + params["b1"])
    return h @ params["W2"] + params["b2"]


def mlp_np(params, x):
    p = {k: np.asarray(v) for k, v in params.items()}
    return np.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]


def mlp_params(rng, d, h, dtype=np.float64):
    return {
        "W1": jnp.asarray(rng.normal(size=(d, h)) / np.sqrt(d), dtype),
        "b1": jnp.asarray(rng.normal(size=h), dtype),
        "W2": jnp.asarray(rng.normal(size=(h, d)) / np.sqrt(h), dtype),
        "b2": jnp.asarray(rng.normal(size=d), dtype),
    }


def assert_within_se(estimate, exact, per_sample_or_se):
    se = per_sample_or_se
    if np.ndim(se) > 0:
        se = np.std(se, ddof=1) / np.sqrt(len(se))
    assert se > 0
    assert abs(float(estimate) - float(exact)) < Z * se, (float(estimate), float(exact), se)


# 1. ISM exact for a linear score: ½ mean‖Ax + b‖² + tr A.
@pytest.mark.parametrize("d", [1, 2, 5])
def test_ism_exact_linear_closed_form(x64, d):
    rng = np.random.default_rng(d)
    A, b = random_linear(rng, d)
    x = rng.normal(size=(7, d)) * 2.0
    got = jax.jit(functools.partial(ism, linear(A, b)))(x)
    np.testing.assert_allclose(got, ism_linear_closed_form(A, b, x), rtol=1e-12)


# 2. Stochastic ISM estimators are unbiased for the exact value.
ESTIMATORS = {
    "ssm-gauss": functools.partial(ssm, projection="gaussian"),
    "ssm-rad": functools.partial(ssm, projection="rademacher"),
    "ssm-vr-gauss": functools.partial(ssm, projection="gaussian", variance_reduction=True),
    "ssm-vr-rad": functools.partial(ssm, projection="rademacher", variance_reduction=True),
    "ssm-gauss-4": functools.partial(ssm, projection="gaussian", n_projections=4),
    "hutch": lambda f, x, k: ism(f, x, key=k, estimator="hutchinson"),
    "hutch-3": lambda f, x, k: ism(f, x, key=k, estimator="hutchinson", n_probes=3),
}


def test_stochastic_estimators_unbiased(x64):
    """E_v[vᵀAv] = tr A and E_v[½(vᵀs)²] = ½‖s‖² whenever E[vvᵀ] = I (Gaussian or ±1), so every
    estimator's mean over keys must match ½ mean‖Ax + b‖² + tr A."""
    rng = np.random.default_rng(0)
    A, b = random_linear(rng, 3)
    x = rng.normal(size=(4, 3))
    f = linear(A, b)
    keys = jax.random.split(jax.random.PRNGKey(1), 2000)

    @jax.jit
    def all_estimates(x, keys):
        return {n: jax.vmap(lambda k: est(f, x, k))(keys) for n, est in ESTIMATORS.items()}

    values = {n: np.asarray(v) for n, v in all_estimates(x, keys).items()}
    exact = ism_linear_closed_form(A, b, x)
    for name, v in values.items():
        assert np.std(v) > 1e-3, name
        assert_within_se(v.mean(), exact, v)
    # Four i.i.d. directions per row: variance ≈ ¼ of one direction's.
    assert np.var(values["ssm-gauss-4"]) < np.var(values["ssm-gauss"]) / 2
    assert np.var(values["ssm-vr-gauss"]) < np.var(values["ssm-gauss"])
    assert np.var(values["hutch-3"]) < np.var(values["hutch"]) / 2


# 3. DSM for a linear score.
def test_dsm_linear_closed_form_monte_carlo(x64):
    """s(x + σε) + ε/σ = (Ax + b) + (σA + I/σ)ε; the cross term has mean zero, so
    E_ε dsm = mean_i ½‖Ax_i + b‖² + mean_i ½‖σ_i A + I/σ_i‖²_F (scalar σ and one σ per row)."""
    rng = np.random.default_rng(4)
    d, n = 3, 5
    A, b = random_linear(rng, d)
    x = rng.normal(size=(n, d))
    sigmas = {"scalar": np.full((n, 1), 0.7), "per-row": rng.uniform(0.3, 1.5, size=(n, 1))}
    f = linear(A, b)
    keys = jax.random.split(jax.random.PRNGKey(5), 4000)

    @jax.jit
    def estimates(x, per_row, keys):
        return {
            "scalar": jax.vmap(lambda k: dsm(f, x, k, 0.7))(keys),
            "per-row": jax.vmap(lambda k: dsm(f, x, k, per_row))(keys),
        }

    values = estimates(x, sigmas["per-row"], keys)
    s = x @ A.T + b
    for name, sigma in sigmas.items():
        frob = [np.sum((sg * A + np.eye(d) / sg) ** 2) for sg in sigma[:, 0]]
        exact = np.mean(0.5 * np.sum(s**2, axis=1)) + 0.5 * np.mean(frob)
        v = np.asarray(values[name])
        assert_within_se(v.mean(), exact, v)


def test_dsm_is_formula_on_noisy_output(x64):
    rng = np.random.default_rng(6)
    params = mlp_params(rng, 4, 8)
    x = rng.normal(size=(6, 4))
    key, sigma = jax.random.PRNGKey(7), 0.3
    f = functools.partial(mlp, params)
    run = jax.jit(lambda x, k: (noisy(x, k, sigma), dsm(f, x, k, sigma)))
    (x_tilde, eps), got = run(x, key)
    x_tilde, eps = np.asarray(x_tilde), np.asarray(eps)
    np.testing.assert_allclose(x_tilde, x + sigma * eps, rtol=1e-14)
    expected = 0.5 * np.mean(np.sum((mlp_np(params, x_tilde) + (x_tilde - x) / sigma**2) ** 2, 1))
    np.testing.assert_allclose(got, expected, rtol=1e-10)


# 4. Hyvärinen (2005): ISM − ESM = −½ E‖∇log p‖² = −½ tr Σ⁻¹ for p = N(μ, Σ).
def gaussian_problem(seed, n):
    rng = np.random.default_rng(seed)
    d = 3
    L = rng.normal(size=(d, d))
    cov = L @ L.T + 0.5 * np.eye(d)
    mu = rng.normal(size=d)
    x = mu + rng.normal(size=(n, d)) @ np.linalg.cholesky(cov).T
    prec = np.linalg.inv(cov)
    return rng, mu, cov, prec, x


@jax.jit
def ism_minus_esm_linear(A, b, x, g):
    f = linear(A, b)
    return ism(f, x) - esm(f, x, g)


def test_hyvarinen_identity_linear_scores_exact_on_moment_matched_sample(x64):
    """For linear s on a sample whose mean is μ and (1/N) covariance is Σ exactly:
    mean tr∇s = tr A, mean sᵀ∇log p = −tr A and ½ mean‖∇log p‖² = ½ tr Σ⁻¹, so the identity
    holds exactly, not just in expectation."""
    rng, mu, cov, prec, x = gaussian_problem(10, 500)
    xc = x - x.mean(0)
    emp = xc.T @ xc / len(x)
    x = mu + xc @ np.linalg.inv(np.linalg.cholesky(emp)).T @ np.linalg.cholesky(cov).T
    np.testing.assert_allclose(np.cov(x.T, bias=True), cov, atol=1e-10)
    g = -(x - mu) @ prec
    for _ in range(3):
        A, b = random_linear(rng, 3)
        diff = ism_minus_esm_linear(A, b, x, g)
        np.testing.assert_allclose(diff, -0.5 * np.trace(prec), rtol=1e-10)


def test_hyvarinen_identity_monte_carlo(x64):
    """ISM − ESM per sample is h = tr∇s + sᵀg − ½‖g‖², g = ∇log p; E[tr∇s] = −E[sᵀg] by
    integration by parts, so E h = −½ tr Σ⁻¹ for any (linear or not) s of moderate growth."""
    rng, mu, cov, prec, x = gaussian_problem(11, 20000)
    g = -(x - mu) @ prec
    const = -0.5 * np.trace(prec)
    A, b = random_linear(rng, 3)
    W, c = rng.normal(size=(3, 3)), rng.normal(size=3)
    f_lin, f_tanh = linear(A, b), tanh_map(W, c, -0.3)

    @jax.jit
    def diffs(x, g):
        return [ism(f, x) - esm(f, x, g) for f in (f_lin, f_tanh)]

    s_tanh, div_tanh = tanh_map_np(W, c, -0.3, x)
    expected = [(x @ A.T + b, np.full(len(x), np.trace(A))), (s_tanh, div_tanh)]
    per_sample = []
    for diff, (s, div) in zip(diffs(x, g), expected):
        h = div + np.sum(s * g, axis=1) - 0.5 * np.sum(g**2, axis=1)
        np.testing.assert_allclose(diff, h.mean(), rtol=1e-9)
        assert_within_se(diff, const, h)
        per_sample.append(h)
    # Common random numbers: ½‖∇log p‖² cancels, leaving a mean-zero s-dependent term.
    h_lin, h_tanh = per_sample
    assert_within_se(h_lin.mean() - h_tanh.mean(), 0.0, h_lin - h_tanh)


# 5. Vincent (2010): ESM on q_σ − DSM = ½ E_q‖∇log q_σ‖² − D/(2σ²), independent of s.
def parzen_score(centers, sigma, xt):
    """∇ log (1/N) Σ_n N(x̃; x_n, σ²I) = Σ_n softmax_n(−‖x̃ − x_n‖²/2σ²) (x_n − x̃)/σ²."""
    logits = -np.sum((xt[:, None, :] - centers[None]) ** 2, axis=-1) / (2 * sigma**2)
    w = np.exp(logits - logsumexp(logits))
    return np.einsum("mn,mnd->md", w, centers[None] - xt[:, None, :]) / sigma**2


def logsumexp(a):
    m = a.max(axis=1, keepdims=True)
    return m + np.log(np.sum(np.exp(a - m), axis=1, keepdims=True))


def test_vincent_identity(x64):
    """ESM(s) − DSM(s) = ½‖g‖² − ½‖ε‖²/σ² − sᵀ(g + ε/σ) per sample, g = ∇log q_σ(x̃).
    E[ε/σ | x̃] = −g, so the last term has mean zero and the difference is the constant
    C = ½ E_q‖g‖² − D/(2σ²)."""
    rng = np.random.default_rng(20)
    n_train, d, sigma, m = 6, 2, 0.6, 2000
    centers = rng.normal(size=(n_train, d)) * 1.5
    x_rep = np.repeat(centers, m, axis=0)
    key = jax.random.PRNGKey(21)

    ref = centers[rng.integers(n_train, size=200_000)] + sigma * rng.normal(size=(200_000, d))
    g_ref2 = np.sum(parzen_score(centers, sigma, ref) ** 2, axis=1)
    const = 0.5 * g_ref2.mean() - d / (2 * sigma**2)
    se_const = 0.5 * g_ref2.std(ddof=1) / np.sqrt(len(g_ref2))

    A, b = random_linear(rng, d)
    W, c = rng.normal(size=(d, d)) * 2, rng.normal(size=d)
    score_fns = [linear(A, b), tanh_map(W, c, 0.5), jnp.zeros_like]

    x_tilde, eps = (np.asarray(a) for a in jax.jit(noisy)(x_rep, key, sigma))
    g = parzen_score(centers, sigma, x_tilde)

    @jax.jit
    def losses(x_rep, x_tilde, g, key):
        return [(esm(f, x_tilde, g), dsm(f, x_rep, key, sigma)) for f in score_fns]

    scores = [x_tilde @ A.T + b, tanh_map_np(W, c, 0.5, x_tilde)[0], np.zeros_like(x_tilde)]
    diffs, dsm_values, per_sample = [], [], []
    for (esm_value, dsm_value), s in zip(losses(x_rep, x_tilde, g, key), scores):
        diff = float(esm_value - dsm_value)
        h = 0.5 * np.sum((s - g) ** 2, 1) - 0.5 * np.sum((s + eps / sigma) ** 2, 1)
        np.testing.assert_allclose(diff, h.mean(), rtol=1e-9)
        se_h = h.std(ddof=1) / np.sqrt(len(h))
        assert_within_se(diff, const, np.hypot(se_h, se_const))
        diffs.append(diff)
        dsm_values.append(float(dsm_value))
        per_sample.append(h)
    for i in range(1, len(scores)):
        assert_within_se(diffs[0] - diffs[i], 0.0, per_sample[0] - per_sample[i])
        assert abs(diffs[0] - diffs[i]) < 0.05 * abs(dsm_values[0] - dsm_values[i])


# 6. divergence_exact.
@pytest.mark.parametrize("d", [3, 20])
def test_divergence_exact_matches_finite_differences(x64, d):
    rng = np.random.default_rng(d)
    params = mlp_params(rng, d, 16)
    x = rng.normal(size=(5, d))
    got = jax.jit(functools.partial(divergence_exact, functools.partial(mlp, params)))(x)
    h = 1e-5
    fd = sum(
        (mlp_np(params, x + h * e)[:, k] - mlp_np(params, x - h * e)[:, k]) / (2 * h)
        for k, e in enumerate(np.eye(d))
    )
    np.testing.assert_allclose(got, fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("d", [1, 3, 20])
def test_divergence_exact_linear(x64, d):
    rng = np.random.default_rng(d)
    A, b = random_linear(rng, d)
    x = rng.normal(size=(4, d))
    got = jax.jit(lambda A, b, x: divergence_exact(linear(A, b), x))(A, b, x)
    np.testing.assert_allclose(got, np.full(4, np.trace(A)), rtol=1e-12)


# 7. jit, grad and argument checks.
LOSSES = {
    "esm": lambda f, x, k, sigma: esm(f, x, -x),
    "ism-exact": lambda f, x, k, sigma: ism(f, x),
    "ism-hutch": lambda f, x, k, sigma: ism(f, x, key=k, estimator="hutchinson", n_probes=2),
    "ssm": lambda f, x, k, sigma: ssm(f, x, k, n_projections=2),
    "ssm-vr-rad": lambda f, x, k, sigma: ssm(
        f, x, k, variance_reduction=True, projection="rademacher"
    ),
    "dsm": lambda f, x, k, sigma: dsm(f, x, k, sigma),
}


def test_jit_and_grad():
    """float32 (the default): every loss is a scalar, jit agrees with eager (checked for one loss
    per code path, eager dispatch being slow), grads w.r.t. closed-over parameters are finite.
    Uses a typed "rbg" key: it compiles several times faster than threefry on CPU and checks
    that new-style keys are accepted."""
    rng = np.random.default_rng(30)
    params = mlp_params(rng, 3, 8, dtype=np.float32)
    x = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
    key = jax.random.key(31, impl="rbg")

    def loss_of(name):
        return lambda p, x, k, sigma: LOSSES[name](functools.partial(mlp, p), x, k, sigma)

    @jax.jit
    def values_and_grads(p, x, k, sigma):
        return {n: jax.value_and_grad(loss_of(n))(p, x, k, sigma) for n in LOSSES}

    jitted = values_and_grads(params, x, key, 0.5)
    for name in LOSSES:
        value, grads = jitted[name]
        assert value.shape == () and value.dtype == jnp.float32, name
        leaves = [np.asarray(g) for g in jax.tree_util.tree_leaves(grads)]
        assert all(np.all(np.isfinite(g)) for g in leaves), name
        assert any(np.max(np.abs(g)) > 0 for g in leaves), name
    for name in ("esm", "ism-exact", "ssm-vr-rad", "dsm"):
        eager = loss_of(name)(params, x, key, 0.5)
        np.testing.assert_allclose(jitted[name][0], eager, rtol=1e-5, err_msg=name)


def test_grad_of_ism_matches_closed_form(x64):
    """∂/∂A [½ mean‖Ax + b‖² + tr A] = mean (Ax + b)xᵀ + I, ∂/∂b = mean (Ax + b)."""
    rng = np.random.default_rng(32)
    A, b = random_linear(rng, 3)
    x = rng.normal(size=(5, 3))
    grad = jax.jit(jax.grad(lambda A, b, x: ism(linear(A, b), x), argnums=(0, 1)))
    gA, gb = grad(A, b, x)
    s = x @ A.T + b
    np.testing.assert_allclose(gA, s.T @ x / len(x) + np.eye(3), rtol=1e-12)
    np.testing.assert_allclose(gb, s.mean(0), rtol=1e-12)


def test_bad_arguments():
    def f(v):
        return -v

    x = np.ones((3, 2))
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="2-D"):
        ism(f, np.ones(3))
    with pytest.raises(ValueError, match="'exact'.*'hutchinson'"):
        ism(f, x, estimator="approx")
    with pytest.raises(ValueError, match="key"):
        ism(f, x, estimator="hutchinson")
    with pytest.raises(ValueError, match="n_probes"):
        ism(f, x, key=key, estimator="hutchinson", n_probes=0)
    with pytest.raises(ValueError, match="'gaussian'.*'rademacher'"):
        ssm(f, x, key, projection="sphere")
    with pytest.raises(ValueError, match="n_projections"):
        ssm(f, x, key, n_projections=0)
    with pytest.raises(ValueError, match="sigma"):
        dsm(f, x, key, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        noisy(x, key, -1.0)
    with pytest.raises(ValueError, match="sigma"):
        dsm(f, x, key, np.ones(3))
    with pytest.raises(ValueError, match="target_score"):
        esm(f, x, np.ones((3, 3)))
    with pytest.raises(ValueError, match="shape"):
        divergence_exact(lambda v: v[:, :1], x)
