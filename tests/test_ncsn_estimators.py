"""NCSN's two estimators (``objective.estimator: dsm|ssm``) against closed forms on a linear score.

Model s(x, σ) = c_σ(Ax + b), c_σ = 1/(1 + σ²) (σ-dependent, so each row must see its own level),
data x ~ N(μ, Σ), hence x̃ = x + σε ~ N(μ, S_σ) with S_σ = Σ + σ²I. With A_σ = c_σA, b_σ = c_σb:

    SSM level term  σ²E[vᵀ∇s v + ½‖s(x̃)‖²] = σ²[tr A_σ + ½(tr(A_σ S_σ A_σᵀ) + ‖A_σμ + b_σ‖²)]
    its A-gradient  σ²[c_σ I + c_σ²(A S_σ + (Aμ + b)μᵀ)]
    DSM level term  σ²·½E‖s(x̃) + ε/σ‖² = SSM level term + D/2   (E[s(x̃)ᵀε] = σ tr A_σ)

and J is the mean over the L levels. Expected values are computed with NumPy in float64; Monte
Carlo checks assert |estimate − exact| < 5·SE, SE from the spread over independent batches.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from dsmcli import experiment
from dsmcli.cli import app
from dsmcli.config import validate
from tests.conftest import write_config

Z = 5.0
D = 3
MU = np.array([1.0, -0.5, 2.0])
L_CHOL = np.array([[1.0, 0.0, 0.0], [0.4, 0.8, 0.0], [-0.3, 0.2, 0.6]])
SIGMA_DATA = L_CHOL @ L_CHOL.T
A0 = np.array([[-0.9, 0.3, 0.1], [0.2, -1.2, 0.4], [0.0, -0.3, -0.7]])
B0 = np.array([0.3, -0.2, 0.5])
NCSN = {"kind": "ncsn", "sigma_max": 2.0, "sigma_min": 0.2, "n_sigmas": 4}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def objective(**changes):
    data = {"kind": "gmm", "means": [MU.tolist()], "covs": [SIGMA_DATA.tolist()], "n_train": 64, "n_test": 32}
    raw = {"name": "t", "data": data, "objective": {**NCSN, **changes}, "model": {"kind": "ncsn_mlp", "hidden": [8]}}
    return experiment.build(validate(raw, "t")).objective


def c_of(sigma):
    return 1.0 / (1.0 + sigma**2)


def linear_model(A, b):
    def model(y, sigma):
        c = jnp.reshape(1.0 / (1.0 + jnp.asarray(sigma, y.dtype) ** 2), (-1, 1))
        return c * (y @ A.T + b)

    return model


def ssm_closed_form(A, b, sigmas):
    terms = []
    for sg in sigmas:
        c, S = c_of(sg), SIGMA_DATA + sg**2 * np.eye(D)
        As, bs = c * A, c * b
        terms.append(sg**2 * (np.trace(As) + 0.5 * (np.trace(As @ S @ As.T) + np.sum((As @ MU + bs) ** 2))))
    return float(np.mean(terms))


def ssm_grad_closed_form(A, b, sigmas):
    grads = []
    for sg in sigmas:
        c, S = c_of(sg), SIGMA_DATA + sg**2 * np.eye(D)
        grads.append(sg**2 * (c * np.eye(D) + c**2 * (A @ S + np.outer(A @ MU + b, MU))))
    return np.mean(grads, axis=0)


def batches(n_batches, batch, seed=0):
    z = np.random.default_rng(seed).normal(size=(n_batches, batch, D))
    return jnp.asarray(MU + z @ L_CHOL.T)


def assert_within_se(values, exact):
    values = np.asarray(values)
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert se > 0
    assert abs(values.mean() - exact) < Z * se, (values.mean(), exact, se)


def loss_over_batches(obj, A, b, xs, seed=1):
    keys = jax.random.split(jax.random.key(seed), len(xs))
    return np.asarray(jax.jit(jax.vmap(lambda x, k: obj.loss(linear_model(A, b), x, k, None)[0]))(xs, keys))


@pytest.mark.parametrize("options", [
    {},                                                                 # SSM-VR, Gaussian v (default)
    {"variance_reduction": False, "projection": "rademacher"},
    {"variance_reduction": False, "n_projections": 3},
])
def test_ssm_loss_on_a_linear_score_matches_the_closed_form_in_expectation(x64, options):
    obj = objective(estimator="ssm", **options)
    values = loss_over_batches(obj, jnp.asarray(A0), jnp.asarray(B0), batches(400, 256))
    assert_within_se(values, ssm_closed_form(A0, B0, obj.sigmas()))


@pytest.mark.parametrize("options", [{}, {"variance_reduction": False, "projection": "rademacher", "n_projections": 2}])
def test_ssm_loss_and_its_gradient_equal_the_hand_formula_on_the_same_draws(x64, options):
    """Draws as documented: levels, noise, directions from ``jax.random.split(key, 3)``."""
    obj = objective(estimator="ssm", **options)
    vr, proj, n_proj = obj.cfg.variance_reduction, obj.cfg.projection, obj.cfg.n_projections
    sigmas, x, key = obj.sigmas(), np.asarray(batches(1, 64, seed=3)[0]), jax.random.key(7)

    k_level, k_noise, k_proj = jax.random.split(key, 3)
    sg = sigmas[np.asarray(jax.random.randint(k_level, (64,), 0, len(sigmas)))]
    x_t = x + sg[:, None] * np.asarray(jax.random.normal(k_noise, x.shape, jnp.float64))
    draw = jax.random.normal if proj == "gaussian" else jax.random.rademacher
    v = np.asarray(draw(k_proj, (n_proj, *x.shape), jnp.float64))
    c = c_of(sg)[:, None]
    s = c * (x_t @ A0.T + B0)
    quad = np.einsum("pbi,ij,pbj->pb", v, A0, v) * c[:, 0]
    if vr:
        per_row = quad.mean(0) + 0.5 * np.sum(s**2, 1)
        grad_rows = c[:, :, None] * np.einsum("pbi,pbj->bij", v, v) / n_proj \
            + (c**2)[:, :, None] * np.einsum("bi,bj->bij", x_t @ A0.T + B0, x_t)
    else:
        vs = np.sum(v * s, -1)  # (P, B)
        per_row = (quad + 0.5 * vs**2).mean(0)
        grad_rows = c[:, :, None] * np.einsum("pbi,pbj->bij", v, v) / n_proj \
            + np.einsum("pb,pbi,bj->bij", vs * c[:, 0], v, x_t) / n_proj
    exact = np.mean(sg**2 * per_row)
    exact_grad = np.mean(sg[:, None, None] ** 2 * grad_rows, 0)

    value, grad = jax.value_and_grad(lambda A: obj.loss(linear_model(A, jnp.asarray(B0)), jnp.asarray(x), key, None)[0])(
        jnp.asarray(A0))
    np.testing.assert_allclose(float(value), exact, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grad), exact_grad, rtol=1e-10, atol=1e-12)


def test_ssm_gradient_matches_the_closed_form_gradient_in_expectation(x64):
    obj = objective(estimator="ssm")
    xs = batches(400, 256, seed=5)
    keys = jax.random.split(jax.random.key(2), len(xs))
    grad = jax.grad(lambda A, x, k: obj.loss(linear_model(A, jnp.asarray(B0)), x, k, None)[0])
    grads = np.asarray(jax.jit(jax.vmap(grad, in_axes=(None, 0, 0)))(jnp.asarray(A0), xs, keys))
    exact = ssm_grad_closed_form(A0, B0, obj.sigmas())
    se = grads.std(0, ddof=1) / np.sqrt(len(grads))
    assert np.all(np.abs(grads.mean(0) - exact) < Z * se), (grads.mean(0), exact, se)


def test_dsm_minus_ssm_is_half_the_dimension_in_expectation(x64):
    """σ²·½E‖s + ε/σ‖² − σ²E[vᵀ∇s v + ½‖s‖²] = σ²·½E‖ε/σ‖² = D/2 at every level, so also for J."""
    dsm_obj, ssm_obj = objective(), objective(estimator="ssm")
    A, b, xs = jnp.asarray(A0), jnp.asarray(B0), batches(400, 256, seed=11)
    dsm_values = loss_over_batches(dsm_obj, A, b, xs, seed=12)
    ssm_values = loss_over_batches(ssm_obj, A, b, xs, seed=13)
    exact_ssm = ssm_closed_form(A0, B0, ssm_obj.sigmas())
    assert_within_se(dsm_values, exact_ssm + D / 2)
    diff = dsm_values.mean() - ssm_values.mean()
    se = np.hypot(dsm_values.std(ddof=1), ssm_values.std(ddof=1)) / np.sqrt(len(xs))
    assert abs(diff - D / 2) < Z * se, (diff, se)
    assert Z * se < 0.05 * D / 2  # the check resolves the constant


def test_the_dsm_estimator_is_the_default_and_ignores_the_ssm_keys():
    base, explicit = objective(), objective(estimator="dsm", n_projections=4, projection="rademacher")
    assert base.cfg.estimator == "dsm" and base.cfg.variance_reduction is True
    x, key = batches(1, 32)[0].astype(jnp.float32), jax.random.key(0)
    model = linear_model(jnp.asarray(A0, jnp.float32), jnp.asarray(B0, jnp.float32))
    assert float(base.loss(model, x, key, None)[0]) == float(explicit.loss(model, x, key, None)[0])


def test_ncsn_ssm_trains_end_to_end_and_records_score_error(tmp_path):
    cfg = write_config(
        tmp_path / "ncsn_ssm.yaml",
        objective={"kind": "ncsn", "estimator": "ssm", "sigma_min": 0.1, "n_sigmas": 3},
        model={"kind": "ncsn_mlp", "hidden": [16, 16], "activation": "softplus"},
    )
    out = CliRunner().invoke(app, ["train", "--config", cfg, "--runs-dir", str(tmp_path / "runs")])
    assert out.exit_code == 0, out.output
    run_dir = Path(out.stdout.strip().splitlines()[-1])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in records)
    scored = [r["score_error"] for r in records if "score_error" in r]
    assert scored and all(np.isfinite(scored))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and np.isfinite(summary["score_error"])


def test_an_unknown_estimator_exits_2_naming_the_field_and_the_allowed_values(tmp_path):
    cfg = write_config(tmp_path / "bad.yaml", objective={"kind": "ncsn", "estimator": "foo"},
                       model={"kind": "ncsn_mlp", "hidden": [8]})
    out = CliRunner().invoke(app, ["train", "--config", cfg, "--runs-dir", str(tmp_path / "runs")])
    assert out.exit_code == 2, out.output
    assert "objective.estimator: 'foo' is not allowed (allowed: dsm, ssm)" in out.stderr
    assert "Traceback" not in out.output and not (tmp_path / "runs").exists()
