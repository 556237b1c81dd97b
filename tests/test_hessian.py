"""The Hessian of log p in the data interface, ``hessian_error`` and the σ-smoothing floors,
against closed forms; and the residual reconstruction network, whose DAE is DSM up to 2σ⁴."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmcli import config, experiment, losses
from dsmcli.data.base import Density
from dsmcli.data.mixture import GaussianMixture
from dsmcli.metrics import ModelView
from dsmcli.metrics.hessian import hessian_error


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def test_gaussian_hessian_is_minus_the_precision(x64):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    cov = a @ a.T + 0.5 * np.eye(3)
    g = GaussianMixture([[0.3, -1.0, 2.0]], [1.0], covs=[cov])
    x = jnp.asarray(rng.normal(size=(5, 3)))
    for sigma in (0.0, 0.7):
        expect = -np.linalg.inv(cov + sigma**2 * np.eye(3))
        np.testing.assert_allclose(g.hessian(x, sigma), np.broadcast_to(expect, (5, 3, 3)), rtol=1e-12)
        v = jnp.asarray(rng.normal(size=(5, 3)))
        np.testing.assert_allclose(g.hessian_vp(x, v, sigma), np.asarray(v) @ expect.T, rtol=1e-12)


@pytest.mark.parametrize("full", [False, True])
def test_mixture_hessian_equals_second_derivative_of_log_density(x64, full):
    rng = np.random.default_rng(1)
    means, w = rng.normal(size=(3, 4)), [0.2, 0.3, 0.5]
    if full:
        a = rng.normal(size=(3, 4, 4))
        g = GaussianMixture(means, w, covs=a @ a.transpose(0, 2, 1) + 0.3 * np.eye(4))
    else:
        g = GaussianMixture(means, w, stds=[0.5, 0.8, 1.1])
    x, v = jnp.asarray(rng.normal(size=(6, 4))), jnp.asarray(rng.normal(size=(6, 4)))
    for sigma in (0.0, 0.3):
        second = jax.vmap(jax.hessian(lambda row: g.log_prob(row[None], sigma)[0]))(x)
        np.testing.assert_allclose(g.hessian(x, sigma), second, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(g.hessian_vp(x, v, sigma), jnp.einsum("bij,bj->bi", second, v), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(Density.hessian(g, x, sigma), second, rtol=1e-10, atol=1e-12)  # the generic path


def _gaussian(dim, std=0.7, n=400):
    g = GaussianMixture(np.zeros((1, dim)), [1.0], stds=[std])
    return g, jnp.asarray(g.sample(n, np.random.default_rng(2)), jnp.float64)


@pytest.mark.parametrize("dim", [2, 40])  # exact Jacobian, randomised estimate
def test_hessian_error_of_a_known_perturbation(x64, dim):
    g, x = _gaussian(dim)
    b = 0.3 * np.random.default_rng(3).normal(size=(dim, dim))
    exact = g.hessian(x)
    expect = len(x) * np.sum(b**2) / float(jnp.sum(exact**2))  # Ĥ − H = B at every row
    model = lambda r: g.score(r) + r @ jnp.asarray(b).T  # noqa: E731
    out = hessian_error(model, g, x, block=64, key=jax.random.key(0))
    if dim == 2:
        assert out == {"hessian_error": pytest.approx(expect, rel=1e-10)}
        assert hessian_error(g.score, g, x)["hessian_error"] == 0.0
    else:
        assert out["hessian_error_se"] > 0
        assert abs(out["hessian_error"] - expect) < 4 * out["hessian_error_se"], (out, expect)
        assert out == hessian_error(model, g, x, block=64, key=jax.random.key(0))  # deterministic per key
        zero = hessian_error(g.score, g, x, key=jax.random.key(0))
        assert zero["hessian_error"] == 0.0 and zero["hessian_error_se"] == 0.0


def test_randomised_estimate_agrees_with_exact_on_a_mixture(x64):
    rng = np.random.default_rng(4)
    g = GaussianMixture(rng.normal(size=(3, 6)), [0.3, 0.3, 0.4], stds=[0.6, 0.9, 1.2])
    x = jnp.asarray(g.sample(500, rng), jnp.float64)
    smoothed = lambda r: g.score(r, 0.4)  # noqa: E731
    exact = hessian_error(smoothed, g, x)["hessian_error"]
    est = hessian_error(smoothed, g, x, key=jax.random.key(1), exact_max_dim=2)
    assert abs(est["hessian_error"] - exact) < 4 * est["hessian_error_se"] and est["hessian_error_se"] < 0.1 * exact


def _dae(sigma, residual=True, dim=3, std=0.7, objective="dae"):
    raw = {"name": "t", "seed": 0,
           "data": {"kind": "gmm", "means": [[0.0] * dim], "stds": [std], "weights": [1.0], "n_train": 200, "n_test": 300},
           "model": {"kind": "mlp", "hidden": [8], "residual": residual}, "objective": {"kind": objective, "sigma": sigma}}
    if objective == "dsm":
        raw["model"].pop("residual")
    return experiment.build(config.validate(raw, "test"))


@pytest.mark.parametrize("sigma", [0.05, 0.5])
def test_smoothing_floors_of_a_gaussian(sigma):
    """p = N(0, s²I): q_σ = N(0, (s² + σ²)I), so ∇log q_σ − ∇log p = x σ²/(s²(s² + σ²)) and
    ∇²log q_σ − ∇²log p = σ²/(s²(s² + σ²)) I: both relative errors are (σ²/(s² + σ²))²."""
    from dsmcli import metrics

    exp = _dae(sigma)
    out = metrics.evaluate_model(ModelView(exp, exp.params), ["score_error_floor", "hessian_error_floor"])
    expect = (sigma**2 / (0.49 + sigma**2)) ** 2
    assert out["score_error_floor"] == pytest.approx(expect, rel=1e-4)
    assert out["hessian_error_floor"] == pytest.approx(expect, rel=1e-4)


def test_residual_network_adds_its_input():
    exp, plain = _dae(0.1, residual=True), _dae(0.1, residual=False)
    x = jnp.asarray(exp.data.x_test[:5])
    f = plain.net(plain.params)(x)  # same seed, same weights: the plain network is f
    np.testing.assert_allclose(exp.net(exp.params)(x), x + f, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.5])
def test_residual_dae_is_dsm_up_to_two_sigma_to_the_fourth(x64, sigma):
    """r = x + f: ‖r(x̃) − x‖² = ‖f(x̃) + σε‖² = σ⁴‖f(x̃)/σ² + ε/σ‖², so J_DAE = 2σ⁴ J_DSM with the
    read-out s = (r − x)/σ² = f/σ² on the same noise; the gradients too."""
    from flax import nnx

    exp = _dae(sigma)
    params = jax.tree.map(lambda p: p.astype(jnp.float64), exp.params)
    x = jnp.asarray(exp.data.x_train[:64], jnp.float64)
    key = jax.random.key(7)

    def dae(p):
        return exp.objective.loss(nnx.merge(exp.graphdef, p), x, key, None)[0]

    def dsm(p):
        return losses.dsm(exp.score_fn(p), x, key, sigma)

    (l_dae, g_dae), (l_dsm, g_dsm) = jax.value_and_grad(dae)(params), jax.value_and_grad(dsm)(params)
    assert float(l_dae) == pytest.approx(2 * sigma**4 * float(l_dsm), rel=1e-12)
    for a, b in zip(jax.tree.leaves(g_dae), jax.tree.leaves(g_dsm)):
        np.testing.assert_allclose(a, 2 * sigma**4 * b, rtol=1e-9, atol=1e-14)


def test_residual_is_refused_where_it_means_nothing(tmp_path):
    from dsmcli.errors import UserError

    with pytest.raises(UserError, match="model.residual: objective.kind 'dsm' does not read the network as a reconstruction"):
        experiment.build(config.validate({"name": "t", "data": {"kind": "moons", "n_train": 64, "n_test": 64},
                                          "model": {"kind": "mlp", "residual": True},
                                          "objective": {"kind": "dsm", "sigma": 0.1}}, "test"))
    with pytest.raises(UserError, match="residual"):
        config.validate({"name": "t", "data": {"kind": "moons"}, "model": {"kind": "mlp", "residual": True, "latent": 2},
                         "objective": {"kind": "ae"}}, "test")
