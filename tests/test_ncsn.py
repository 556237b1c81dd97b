"""NCSN: the multi-level DSM loss against its closed form, the default σ_max, the default
network and annealed sampling on the objective's own schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import pdist

from dsmcli import experiment
from dsmcli.config import validate
from dsmcli.objectives.ncsn import max_pairwise_distance

DATA = {"kind": "gmm", "means": [[0.0, 0.0, 0.0]], "stds": [1.0], "n_train": 300, "n_test": 100}


def build(objective, model=None):
    raw = {"name": "t", "data": DATA, "objective": objective}
    if model is not None:
        raw["model"] = model
    return experiment.build(validate(raw, "t"))


def test_default_sigma_max_is_the_largest_pairwise_distance_and_model_defaults_to_ncsn_mlp():
    exp = build({"kind": "ncsn", "sigma_min": 0.05, "n_sigmas": 6})
    assert exp.cfg.model.kind == "ncsn_mlp"
    sig = exp.objective.sigmas()
    assert sig[0] == pytest.approx(pdist(exp.data.x_train).max(), rel=1e-9)
    assert sig[-1] == pytest.approx(0.05) and np.allclose(sig[1:] / sig[:-1], sig[1] / sig[0])  # geometric
    x = np.random.default_rng(1).normal(size=(5000, 2))
    assert max_pairwise_distance(x, block=777) == pytest.approx(pdist(x).max(), rel=1e-12)


def test_loss_expectation_with_the_exact_smoothed_score_matches_the_closed_form():
    """x ~ N(0, I_D), s(y, σ) = −y/(1+σ²): per level σ²·½E‖s(x̃,σ) + (x̃−x)/σ²‖² = ½D/(1+σ²), so
    J = (1/L) Σᵢ ½D/(1+σᵢ²) — levels drawn per row, hence a Monte Carlo check."""
    exp = build({"kind": "ncsn", "sigma_max": 3.0, "sigma_min": 0.1, "n_sigmas": 5})
    sig, d = exp.objective.sigmas(), 3
    exact = np.mean(0.5 * d / (1 + sig**2))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4096, d)), jnp.float32)
    model = lambda y, s: -y / (1 + jnp.asarray(s).reshape(-1, 1) ** 2)  # noqa: E731
    values = jax.jit(jax.vmap(lambda k: exp.objective.loss(model, x, k, None)[0]))(jax.random.split(jax.random.key(0), 64))
    values = np.asarray(values)
    assert abs(values.mean() - exact) < 5 * values.std(ddof=1) / np.sqrt(len(values)) + 1e-3


def test_annealed_sampling_uses_the_objective_schedule_by_default():
    from dsmcli import sampling

    exp = build({"kind": "ncsn", "sigma_max": 2.0, "sigma_min": 0.5, "n_sigmas": 3}, {"kind": "ncsn_mlp", "hidden": [8]})
    cfg = exp.cfg.sample.model_copy(update={"kind": "annealed_langevin", "n": 16, "steps": 2})
    x, _ = sampling.draw(exp, exp.params, cfg, seed=0)
    assert x.shape == (16, 3) and np.isfinite(x).all()


def test_ncsn_rejects_networks_that_are_not_noise_conditional():
    from dsmcli.errors import UserError

    with pytest.raises(UserError, match="model.kind: 'mlp' cannot be used with objective.kind 'ncsn'"):
        build({"kind": "ncsn"}, {"kind": "mlp"})
