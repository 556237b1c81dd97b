"""Continuous-time score models against closed forms: the SDEs' marginals against the forward
SDE integrated, the training loss against its expectation for a linear score on Gaussian data,
the likelihood by the probability-flow ODE against the exact mixture density, the samplers'
mode weights and MMD, the network-evaluation count against a counting vector field, and
inpainting against the Gaussian conditional."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dsmcli import config, experiment, sampling
from dsmcli.sde import SDE

SDES = [SDE("ve", sigma_min=0.01, sigma_max=10.0), SDE("vp"), SDE("subvp")]
MIX2 = {"kind": "gmm", "means": [[-4.0, 0.0], [4.0, 2.0]], "stds": [0.6, 0.8], "weights": [0.3, 0.7],
        "n_train": 1500, "n_test": 3000}


def oracle(sde: str, data=MIX2, **sections):
    raw = {"name": "t", "data": data, "objective": {"kind": "oracle", "sde": sde}, **sections}
    cfg = config.validate(raw, "test")
    return cfg, experiment.build(cfg)


@pytest.mark.parametrize("sde", SDES, ids=lambda s: s.kind)
def test_marginals_solve_the_moment_equations(sde):
    """dm/dt = a m and dv/dt = 2a v + g² (the Fokker–Planck moments of a linear SDE), the time
    derivatives of the closed forms by forward-mode autodiff."""
    import jax
    import jax.numpy as jnp

    t = jnp.linspace(0.05, 0.95, 19)
    (m, s), (dm, ds) = jax.jvp(sde.marginal, (t,), (jnp.ones_like(t),))
    a, g2 = sde.drift_coef(t), sde.diffusion(t) ** 2
    np.testing.assert_allclose(dm, a * m, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(2 * s * ds, 2 * a * s**2 + g2, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("sde", [pytest.param(s, id=s.kind, marks=[] if s.kind == "vp" else [pytest.mark.slow])
                                 for s in SDES])
def test_forward_sde_integrated_has_the_closed_form_moments(sde):
    """Euler–Maruyama of dx = a x dt + g dw from x(0.1) = 1.5 to t = 0.6 (4 000 steps, 20 000
    paths): mean (m₁/m₀)·x₀ and variance s₁² − (m₁/m₀)² s₀², within 5 standard errors (plus the
    O(Δt) discretisation)."""
    import jax
    import jax.numpy as jnp

    t0, t1, steps, n = 0.1, 0.6, 4000, 20000
    dt = (t1 - t0) / steps

    def step(x, i):
        t = t0 + i * dt
        z = jax.random.normal(jax.random.fold_in(jax.random.key(0), i), x.shape)
        return x + sde.drift_coef(t) * x * dt + sde.diffusion(t) * jnp.sqrt(dt) * z, None

    x, _ = jax.lax.scan(step, jnp.full(n, 1.5), jnp.arange(steps))
    m0, s0 = (float(v) for v in sde.marginal(np.float64(t0)))
    m1, s1 = (float(v) for v in sde.marginal(np.float64(t1)))
    mean, var = 1.5 * m1 / m0, s1**2 - (m1 / m0) ** 2 * s0**2
    x = np.asarray(x, np.float64)
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / n) + 1e-3 * abs(mean)
    assert abs(x.var() - var) < 5 * var * math.sqrt(2 / n) + 2e-3 * var


@pytest.mark.parametrize("kind", ["ve", "vp", "subvp"])
@pytest.mark.parametrize("weighting", ["sigma2", "likelihood"])
def test_loss_is_its_closed_form_for_a_linear_score_on_gaussian_data(kind, weighting):
    """Data N(μ, c²I) in D dims, model s(x_t, t) = −α (x_t − m μ)/(m²c² + s²) (α = 1: the exact
    score of p_t). With x = μ + u: s + ε/s = A u + B ε, A = −α m/v, B = 1/s − α s/v (v = m²c² +
    s²), so the loss at t is λ(t) · ½ D (A²c² + B²); its mean over t ~ U(t_eps, 1) by quadrature
    against the mean over a large batch, within 5 standard errors."""
    import jax
    import jax.numpy as jnp
    from scipy.integrate import quad

    from dsmcli.objectives.sde import Config, ScoreSDE

    dim, c, alpha, mu = 3, 0.7, 0.6, np.array([1.0, -2.0, 0.5])
    cfg = Config(sde=kind, weighting=weighting, sigma_max=5.0, t_eps=1e-3)
    data = type("D", (), {"x_train": np.zeros((2, dim), np.float32), "kind": "gmm", "has_missing": False})()
    model_cfg = type("M", (), {"kind": "ncsn_mlp"})()
    obj = ScoreSDE(cfg, data, model_cfg)
    sde = obj.sde
    mean_of = {"ve": lambda s: 1.0 + 0 * s, "vp": lambda s: jnp.sqrt(1 - s**2), "subvp": lambda s: jnp.sqrt(1 - s)}[kind]

    def model(x_t, s):
        m = mean_of(s)[:, None]
        return -alpha * (x_t - m * jnp.asarray(mu, x_t.dtype)) / (m**2 * c**2 + s[:, None] ** 2)

    def at(t):
        m, s = (float(v) for v in sde.marginal(np.float64(t)))
        v = m**2 * c**2 + s**2
        a_coef, b_coef = -alpha * m / v, 1 / s - alpha * s / v
        lam = s**2 if weighting == "sigma2" else float(sde.diffusion(np.float64(t))) ** 2
        return lam * 0.5 * dim * (a_coef**2 * c**2 + b_coef**2)

    expected = quad(at, cfg.t_eps, 1.0, limit=200, points=[1e-2, 0.1])[0] / (1 - cfg.t_eps)
    n = 200_000
    x = jnp.asarray(mu + c * np.random.default_rng(0).standard_normal((n, dim)), jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    per_batch = [float(obj.loss(model, x[i::8], jax.random.key(i), None)[0]) for i in range(8)]
    se = np.std(per_batch, ddof=1) / math.sqrt(len(per_batch))
    assert abs(np.mean(per_batch) - expected) < 5 * se + 1e-4 * expected, (np.mean(per_batch), expected, se)


@pytest.mark.parametrize("sde", ["ve", "vp", "subvp"])
def test_oracle_nll_is_the_exact_log_density_2d(sde):
    from dsmcli import metrics

    _, exp = oracle(sde, eval={"nll_n": 200})
    got = metrics.evaluate_model(metrics.ModelView(exp, exp.params), ["nll"])
    exact = -float(np.mean(np.asarray(exp.data.density.log_prob(exp.data.x_test[:200]))))
    assert abs(got["nll"] - exact) < 0.01, (got, exact)
    assert "nll_se" not in got and got["nll_nfe"] > 10


FIVE_D = {"kind": "gmm", "means": (2 * np.random.default_rng(0).normal(size=(3, 5))).tolist(), "stds": [0.6, 0.8, 1.0],
          "weights": [0.3, 0.5, 0.2], "n_train": 500, "n_test": 200}


@pytest.mark.parametrize("sde", ["ve", "vp", "subvp"])
def test_oracle_nll_5d_exact_trace_and_hutchinson_within_three_standard_errors(sde):
    from dsmcli import metrics

    exact_cfg, exp = oracle(sde, FIVE_D, eval={"nll_n": 200})
    exact = metrics.evaluate_model(metrics.ModelView(exp, exp.params), ["nll"])
    truth = -float(np.mean(np.asarray(exp.data.density.log_prob(exp.data.x_test[:200]))))
    assert abs(exact["nll"] - truth) < 0.01, (exact, truth)
    _, hutch_exp = oracle(sde, FIVE_D, eval={"nll_n": 200, "exact_trace_max_dim": 4})
    hutch = metrics.evaluate_model(metrics.ModelView(hutch_exp, hutch_exp.params), ["nll"])
    assert hutch["nll_se"] > 0
    assert abs(hutch["nll"] - exact["nll"]) < 3 * hutch["nll_se"], (hutch, exact)


def test_bpd_of_finely_quantised_gaussian_is_minus_log2_of_the_bin_probability():
    """With bins of width a = 1e-3 the discrete probability is P(k) ≈ p(x)·a^D, so bpd ≈
    (−log p(x) − D log a)/(D ln 2): the protocol's Jacobian term, checked on exact densities."""
    import dataclasses

    from dsmcli import metrics

    _, exp = oracle("vp", {"kind": "gmm", "means": [[0.0, 0.0]], "stds": [1.0], "n_train": 100, "n_test": 100},
                    eval={"nll_n": 100})
    step = 1e-3
    exp.data = dataclasses.replace(exp.data, quantization=np.full(2, step, np.float32))
    got = metrics.evaluate_model(metrics.ModelView(exp, exp.params), ["nll"])
    nll = -float(np.mean(np.asarray(exp.data.density.log_prob(exp.data.x_test))))
    expected = (nll - 2 * math.log(step)) / (2 * math.log(2))
    assert got["bpd"] == pytest.approx(expected, abs=0.01)


def _null_mmd(exp, n, repeats=5):
    """|MMD²| of exact samples of size ``n`` against the test set: the spread the sample size allows."""
    from dsmcli.metrics.distances import mmd

    vals = [mmd(exp.data.density.sample(n, np.random.default_rng(100 + r)), exp.data.x_test) for r in range(repeats)]
    return float(np.mean(np.abs(vals)) + 4 * np.std(vals))


SAMPLERS = {"P-only": {"kind": "pc", "steps": 300, "corrector": "none"}, "PC": {"kind": "pc", "steps": 300, "snr": 0.05},
            "ode-dopri5": {"kind": "ode"}, "ode-heun": {"kind": "ode", "solver": "heun", "steps": 50}}
FAST = {("ve", "P-only"), ("vp", "PC"), ("ve", "ode-dopri5"), ("vp", "ode-heun")}  # the rest: slow tests


@pytest.mark.parametrize("sde, sample", [
    pytest.param(sde, sample, id=f"{name}-{sde}", marks=[] if (sde, name) in FAST else [pytest.mark.slow])
    for name, sample in SAMPLERS.items() for sde in ("ve", "vp")])
def test_samplers_with_the_oracle_reproduce_mode_weights_and_mmd(sde, sample):
    n = 3000
    cfg, exp = oracle(sde, sample={"n": n, **sample})
    x, info = sampling.draw(exp, exp.params, cfg.sample, 0)
    got = sampling.sample_metrics(x, exp.data, 0, exp=exp, params=exp.params, info=info, names=["mmd", "mode_weights"])
    w = 0.3
    assert got["mode_weight_error"] < 4 * math.sqrt(w * (1 - w) / n), got
    assert abs(got["mmd"]) < _null_mmd(exp, n), got
    if sample["kind"] == "pc":
        assert info["nfe"] == sample["steps"] * (1 + (sample.get("corrector") != "none"))
    else:
        assert info["ode_failed"] == 0 and info["nfe"] > 1


@pytest.mark.parametrize("solver", ["dopri5", "heun", "euler"])
def test_nfe_is_the_number_of_vector_field_evaluations(solver):
    import jax
    import jax.numpy as jnp

    from dsmcli import flow

    count = [0]

    def field(t, y):
        jax.debug.callback(lambda _: count.__setitem__(0, count[0] + 1), t)
        return -y * (1 + 3 * jnp.sin(5 * t))

    y, nfe, ok = flow.solve(field, jnp.ones(3), 1.0, 0.0, solver=solver, rtol=1e-5, atol=1e-5, steps=40)
    jax.block_until_ready(y)
    assert bool(ok) and int(nfe) == count[0]
    exact = math.exp(1 + 0.6 * (1 - math.cos(5.0)))  # y(0) when y(1) = 1
    assert np.allclose(np.asarray(y), exact, rtol={"dopri5": 1e-4, "heun": 1e-2, "euler": 0.2}[solver])


def _gaussian():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    return np.array([1.0, -1.0, 0.5, 2.0]), a @ a.T / 4 + 0.3 * np.eye(4)


@pytest.mark.parametrize("sample", [
    {"kind": "pc", "steps": 1000, "snr": 0.1, "corrector_steps": 2},
    # a schedule that ends where the chain still mixes (α_L·T = 5 ≫ the conditional variances)
    pytest.param({"kind": "annealed_langevin", "steps": 1000, "step_size": 0.005, "sigma_max": 1.0, "sigma_min": 0.05,
                  "n_sigmas": 5, "init": {"kind": "gaussian", "std": 1.0}}, marks=pytest.mark.slow),
], ids=["pc", "annealed_langevin"])
def test_inpainting_draws_the_gaussian_conditional(sample):
    """A correlated 4-D Gaussian with the last two coordinates missing: the inpainted ones have
    the conditional mean μ_u + C_uk C_kk⁻¹(y − μ_k) and covariance C_uu − C_uk C_kk⁻¹ C_ku (within
    4 standard errors of n = 2500 draws), the known ones are the observation."""
    mu, cov = _gaussian()
    n = 2500
    data = {"kind": "gmm", "means": [mu.tolist()], "covs": [cov.tolist()], "weights": [1.0], "n_train": 2000, "n_test": 1}
    cfg, exp = oracle("ve", data, sample={"n": n, **sample, "inpaint": {"mask": "right", "fraction": 0.5}})
    x, info = sampling.draw(exp, exp.params, cfg.sample, 0)
    y = exp.data.x_test[0].astype(np.float64)
    k, u = slice(0, 2), slice(2, 4)
    mean = mu[u] + cov[u, k] @ np.linalg.solve(cov[k, k], y[k] - mu[k])
    cond = cov[u, u] - cov[u, k] @ np.linalg.solve(cov[k, k], cov[k, u])
    xu = np.asarray(x, np.float64)[:, u]
    assert np.all(np.abs(xu.mean(0) - mean) < 4 * np.sqrt(np.diag(cond) / n)), (xu.mean(0), mean)
    se_cov = np.sqrt((np.outer(np.diag(cond), np.diag(cond)) + cond**2) / n)
    assert np.all(np.abs(np.cov(xu.T) - cond) < 4 * se_cov), (np.cov(xu.T), cond)
    np.testing.assert_array_equal(np.asarray(x)[:, k], np.broadcast_to(exp.data.x_test[0, k], (n, 2)))
    got = sampling.sample_metrics(x, exp.data, 0, exp=exp, params=exp.params, info=info, names=["inpaint_mse"])
    # the exact conditional's E‖x − y‖² per missing coordinate, y the one held-out truth
    assert got["inpaint_mse"] == pytest.approx(np.mean(np.diag(cond) + (mean - y[u]) ** 2), rel=0.1)


def test_masks():
    from dsmcli.config import InpaintConfig
    from dsmcli.errors import UserError
    from dsmcli.inpaint import known_mask

    grid = lambda mask, f=0.5: (~known_mask(InpaintConfig(mask=mask, fraction=f), (4, 6), 24, 0)).reshape(4, 6)  # noqa: E731
    assert grid("left")[:, :3].all() and not grid("left")[:, 3:].any()
    assert grid("right")[:, 3:].all() and not grid("right")[:, :3].any()
    assert grid("top")[:2].all() and not grid("top")[2:].any()
    assert grid("bottom")[2:].all() and not grid("bottom")[:2].any()
    centre = grid("centre", 0.25)
    assert centre.sum() == 2 * 3 and centre[1:3, 1:4].all()
    assert grid("random", 0.25).sum() == 6
    rgb = ~known_mask(InpaintConfig(mask="left"), (4, 6, 3), 72, 0)
    assert rgb.reshape(4, 6, 3)[:, :3].all() and not rgb.reshape(4, 6, 3)[:, 3:].any()
    with pytest.raises(UserError, match="needs image data"):
        known_mask(InpaintConfig(mask="top"), None, 5, 0)
