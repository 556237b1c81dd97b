"""Samplers against exact scores: the oracle objective gives ∇log p in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from dsmcli import experiment, sampling
from dsmcli.config import validate


def oracle_experiment(data, **sample):
    raw = {"name": "t", "data": data, "objective": {"kind": "oracle"}, "sample": sample}
    cfg = validate(raw, "t")
    return experiment.build(cfg), cfg


def test_langevin_reaches_the_exact_ula_stationary_law_of_a_1d_gaussian():
    """For p = N(μ, s²), ULA is x' − μ = a(x − μ) + √ε z with a = 1 − ε/(2s²): an AR(1) whose
    stationary law is N(μ, ε/(1 − a²)) = N(μ, s²/(1 − ε/(4s²))) — the O(ε) bias is exact."""
    mu, s, eps = 1.5, 0.8, 0.05
    exp, cfg = oracle_experiment(
        {"kind": "gmm", "means": [[mu]], "stds": [s], "n_train": 100, "n_test": 100},
        kind="langevin", n=20000, steps=600, step_size=eps, init={"kind": "gaussian", "std": 3.0},
    )
    x, _ = sampling.draw(exp, exp.params, cfg.sample, seed=0)
    var = s**2 / (1 - eps / (4 * s**2))
    n = len(x)
    assert abs(x.mean() - mu) < 4 * np.sqrt(var / n)
    assert abs(x.var() - var) < 4 * var * np.sqrt(2 / n)


def test_langevin_in_2d_matches_mean_and_covariance_of_a_correlated_gaussian():
    cov = np.array([[1.0, 0.6], [0.6, 0.5]])
    exp, cfg = oracle_experiment(
        {"kind": "gmm", "means": [[1.0, -1.0]], "covs": [cov.tolist()], "n_train": 100, "n_test": 100},
        kind="langevin", n=10000, steps=500, step_size=0.02, init={"kind": "uniform", "low": -3, "high": 3},
    )
    x, _ = sampling.draw(exp, exp.params, cfg.sample, seed=1)
    # ULA on a Gaussian: stationary covariance C solves C = A C Aᵀ + εI with A = I − (ε/2)Σ⁻¹.
    a = np.eye(2) - 0.01 * np.linalg.inv(cov)
    c = np.linalg.solve(np.eye(4) - np.kron(a, a), 0.02 * np.eye(2).ravel()).reshape(2, 2)
    np.testing.assert_allclose(x.mean(0), [1.0, -1.0], atol=0.03)
    np.testing.assert_allclose(np.cov(x.T), c, atol=0.03)


def test_sampling_is_deterministic_per_seed_and_batched_equals_unbatched():
    data = {"kind": "gmm", "means": [[0.0, 0.0]], "stds": [1.0], "n_train": 100, "n_test": 100}
    exp, cfg = oracle_experiment(data, n=300, steps=20, step_size=0.1)
    a, _ = sampling.draw(exp, exp.params, cfg.sample, seed=3)
    b, _ = sampling.draw(exp, exp.params, cfg.sample, seed=3)
    c, _ = sampling.draw(exp, exp.params, cfg.sample, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    batched = cfg.sample.model_copy(update={"batch": 128})
    d, _ = sampling.draw(exp, exp.params, batched, seed=3)
    assert d.shape == a.shape and np.isfinite(d).all()


@pytest.mark.parametrize("init,check", [
    ({"kind": "uniform", "low": 2.0, "high": 3.0}, lambda x: (x >= 2).all() and (x <= 3).all()),
    ({"kind": "gaussian", "std": 0.01}, lambda x: np.abs(x).max() < 0.1),
    ({"kind": "data"}, None),
])
def test_init_options(init, check):
    import jax

    exp, cfg = oracle_experiment({"kind": "gmm", "means": [[5.0, 5.0]], "stds": [1.0], "n_train": 50, "n_test": 50},
                                 init=init)
    x0 = np.asarray(sampling.init_particles(cfg.sample.init, jax.random.key(0), 1000, exp.data))
    assert x0.shape == (1000, 2)
    if check is None:
        assert set(map(tuple, x0)) <= set(map(tuple, exp.data.x_train))
    else:
        assert check(x0)


GAUSS_1D = {"kind": "gmm", "means": [[1.5]], "stds": [0.8], "n_train": 100, "n_test": 100}


@pytest.mark.parametrize("kind", ["mala", "ab_mh"])
def test_metropolis_samplers_remove_the_ula_bias_on_a_gaussian(kind):
    """At ε = 0.5 ULA's stationary variance is s²/(1 − ε/4s²) = 0.795 instead of s² = 0.64; MALA is
    exact, and so is AB-MH here because the trapezoid rule is exact for a linear score."""
    mu, s, eps = 1.5, 0.8, 0.5
    exp, cfg = oracle_experiment(GAUSS_1D, kind=kind, n=8000, steps=300, step_size=eps,
                                 init={"kind": "gaussian", "std": 2.0})
    x, info = sampling.draw(exp, exp.params, cfg.sample, seed=0)
    n, ula_var = len(x), s**2 / (1 - eps / (4 * s**2))
    tol = 4 * s**2 * np.sqrt(2 / n)
    assert abs(x.mean() - mu) < 4 * s / np.sqrt(n)
    assert abs(x.var() - s**2) < tol < abs(ula_var - s**2) - tol
    assert 0.5 < info["acceptance"] < 1.0


def test_ncsn_toy_langevin_keeps_the_split_and_annealed_langevin_recovers_the_weights():
    """Song & Ermon 2019, §3.2: 0.8·N((5,5), I) + 0.2·N((−5,−5), I) from uniform [−8, 8]²."""
    data = {"kind": "gmm", "means": [[5, 5], [-5, -5]], "stds": [1, 1], "weights": [0.8, 0.2], "n_train": 100,
            "n_test": 2000}
    init = {"kind": "uniform", "low": -8, "high": 8}
    exp, cfg = oracle_experiment(data, kind="langevin", n=2000, steps=1000, step_size=0.1, init=init)
    x, _ = sampling.draw(exp, exp.params, cfg.sample, seed=0)
    plain = sampling.sample_metrics(x, exp.data, 0)["mode_weights"]
    exp, cfg = oracle_experiment(data, kind="annealed_langevin", n=2000, steps=100, step_size=0.1, sigma_max=20,
                                 sigma_min=1, n_sigmas=10, init=init)
    x, _ = sampling.draw(exp, exp.params, cfg.sample, seed=0)
    annealed = sampling.sample_metrics(x, exp.data, 0)["mode_weights"]
    assert abs(plain[0] - 0.5) < 0.06
    assert abs(annealed[0] - 0.8) < 0.04


def test_samplers_that_the_model_cannot_serve_are_user_errors():
    from dsmcli.errors import UserError

    raw = {"name": "t", "data": GAUSS_1D, "objective": {"kind": "dsm"}}
    for sample, text in [({"kind": "mala"}, "'mala' needs an energy"),
                         ({"kind": "annealed_langevin", "sigma_max": 2, "sigma_min": 1, "n_sigmas": 2},
                          "needs a noise-conditional score"),
                         ]:
        cfg = validate({**raw, "sample": sample}, "t")
        exp = experiment.build(cfg)
        with pytest.raises(UserError, match=text):
            sampling.draw(exp, exp.params, cfg.sample, seed=0)
    cfg = validate({**raw, "objective": {"kind": "oracle"}, "sample": {"kind": "annealed_langevin"}}, "t")
    with pytest.raises(UserError, match="sample.sigma_max"):
        exp = experiment.build(cfg)
        sampling.draw(exp, exp.params, cfg.sample, seed=0)


def test_kl_grid_against_the_closed_form_for_shifted_gaussians():
    """KL(N(μ, I) ‖ N(μ + δ, I)) = ‖δ‖²/2."""
    import jax.numpy as jnp

    from dsmcli.metrics.density import kl_grid

    mu, delta = np.array([0.5, -0.5]), np.array([0.6, -0.3])
    log_p = lambda x: -0.5 * jnp.sum((x - mu) ** 2, -1)  # noqa: E731
    energy = lambda x: 0.5 * jnp.sum((x - mu - delta) ** 2, -1)  # noqa: E731
    bounds = ((-7.0, 7.0), (-7.0, 7.0))
    assert kl_grid(log_p, energy, bounds) == pytest.approx(0.5 * delta @ delta, rel=1e-3)
    assert kl_grid(log_p, lambda x: -log_p(x), bounds) == pytest.approx(0.0, abs=1e-7)


def test_sample_metrics_count_escaped_particles_and_keep_going():
    """Particles that diverged (inf, NaN, or far beyond the data) are reported, excluded from MMD
    and SW2, and count as mass on no mode in the mode-weight total variation."""
    exp, _ = oracle_experiment({"kind": "gmm", "means": [[-3.0, 0.0], [3.0, 0.0]], "weights": [0.5, 0.5],
                                "n_train": 100, "n_test": 400})
    rng = np.random.default_rng(0)
    good = exp.data.x_test[:300]
    x = np.concatenate([good, np.full((50, 2), np.inf), np.full((50, 2), 1e30, np.float32)])
    m = sampling.sample_metrics(x, exp.data, 0)
    assert m["escaped_fraction"] == 0.25
    assert sum(m["mode_weights"]) == pytest.approx(0.75)
    w = np.asarray(m["mode_weights"])
    assert m["mode_weight_error"] == pytest.approx(0.5 * (np.abs(w - 0.5).sum() + 0.25))
    assert np.isfinite(m["mmd"]) and np.isfinite(m["sliced_w2"])
    collapsed = np.concatenate([np.zeros((900, 2), np.float32), rng.normal(size=(10, 2)).astype(np.float32)])
    assert np.isfinite(sampling.sample_metrics(collapsed, exp.data, 0)["mmd"])  # pooled median 0: data median


def test_ancestral_decodes_prior_draws_and_needs_a_decoder():
    import jax

    from dsmcli.errors import UserError

    data = {"kind": "gmm", "means": [[0.0, 0.0, 0.0]], "n_train": 64, "n_test": 64}
    raw = {"name": "t", "data": data, "objective": {"kind": "dae"}, "model": {"kind": "mlp", "hidden": [8], "latent": 2},
           "sample": {"kind": "ancestral", "n": 50}}
    cfg = validate(raw, "t")
    exp = experiment.build(cfg)
    x, _ = sampling.draw(exp, exp.params, cfg.sample, seed=0)
    z = jax.random.normal(jax.random.fold_in(jax.random.split(jax.random.key(0))[1], 0), (50, 2))
    np.testing.assert_allclose(x, np.asarray(exp.net(exp.params).decode(z)), rtol=1e-6)
    cfg = validate({**raw, "model": {"kind": "mlp", "hidden": [8]}}, "t")
    exp = experiment.build(cfg)
    with pytest.raises(UserError, match="has no decoder"):
        sampling.draw(exp, exp.params, cfg.sample, seed=0)
