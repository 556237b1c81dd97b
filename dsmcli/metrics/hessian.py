"""How close the Jacobian of a model's score read-out is to the Hessian of log p, on held-out data
(the second half of Alain & Bengio 2014, Theorem 2: ∂r/∂x − I ≈ σ² ∇²log p(x)):

    hessian_error = E‖Ĥ(x) − ∇²log p(x)‖²_F / E‖∇²log p(x)‖²_F

with Ĥ = ∂s/∂x for the model's score read-out s — for reconstruction models s = (r(x) − x)/σ², so
Ĥ = (∂r/∂x − I)/σ²; for score networks Ĥ = ∂s/∂x; for energies Ĥ = −∇²E — wherever the data set
has a closed-form Hessian (``Density.hessian``). Ratio of sums over the test rows, streamed in
``train.eval_batch`` blocks.

* D ≤ ``EXACT_MAX_DIM``: exact, Ĥ from D forward-mode products (one per basis vector; rows are
  independent, so each product serves the whole block).
* D > ``EXACT_MAX_DIM``: a randomised estimate with ``PROBES`` Rademacher directions v per row,
  E_v‖Av‖² = ‖A‖²_F for E[vvᵀ] = I, numerator and denominator on the same directions (Ĥv by one
  jvp, ∇²log p·v by ``Density.hessian_vp``), and ``hessian_error_se``, the delta-method standard
  error of the ratio over rows: se² = Σᵢ(aᵢ − R bᵢ)² / (Σᵢ bᵢ)² (aᵢ, bᵢ the per-row numerator and
  denominator, R their ratio). Probes from the run's seed.

``hessian_error_floor`` (and ``score_error_floor``, same definition as ``score_error``) is the
same error of the exact σ-smoothed density q_σ = p ⊛ N(0, σ²I) at the objective's σ: the DAE
and DSM optimum at infinite capacity (Tweedie: E[x | x̃] = x̃ + σ²∇log q_σ(x̃)), hence the pure
bias of estimating ∇log p, ∇²log p by what they learn, for objectives with a ``sigma`` on data
sets whose smoothed density is closed-form. For the RCAE (whose σ² weighs a penalty) it is the
same reference at the same σ.
"""

from __future__ import annotations

from dsmcli.metrics.base import Metric
from dsmcli.metrics.score import score_error
from dsmcli.streaming import blockwise_sum

EXACT_MAX_DIM = 16
PROBES = 16


def _exact_sums(model_score, true_hessian, dim: int):
    import jax
    import jax.numpy as jnp

    def per_row(rows):
        basis = jnp.eye(dim, dtype=rows.dtype)
        cols = [jax.jvp(model_score, (rows,), (jnp.broadcast_to(basis[j], rows.shape),))[1] for j in range(dim)]
        est = jnp.stack(cols, axis=-1)  # (B, D, D), column j = Ĥ e_j
        exact = true_hessian(rows)
        return {"err": jnp.sum((est - exact) ** 2, (-2, -1)), "ref": jnp.sum(exact**2, (-2, -1))}

    return per_row


def _probe_sums(model_score, true_hvp, probes: int):
    import jax
    import jax.numpy as jnp

    def per_row(rows, key):
        a = b = 0.0
        for k in jax.random.split(key, probes):
            v = jax.random.rademacher(k, rows.shape, rows.dtype)
            hv = true_hvp(rows, v)
            diff = jax.jvp(model_score, (rows,), (v,))[1] - hv
            a, b = a + jnp.sum(diff**2, -1) / probes, b + jnp.sum(hv**2, -1) / probes
        return {"a": a, "b": b, "aa": a * a, "ab": a * b, "bb": b * b}

    return per_row


def hessian_error(model_score, density, x, block: int = 4096, sigma: float = 0.0, key=None,
                  exact_max_dim: int = EXACT_MAX_DIM, probes: int = PROBES) -> dict:
    """``{"hessian_error": R}`` (exact) or ``{"hessian_error": R, "hessian_error_se": se}``
    (randomised, D > ``exact_max_dim``), Ĥ the Jacobian of ``model_score`` against
    ``density.hessian(·, 0)``; ``sigma`` > 0 leaves the target at σ = 0 (the floor passes the
    smoothed score as ``model_score``)."""
    import jax

    dim = x.shape[1]
    if dim <= exact_max_dim:
        sums = blockwise_sum(_exact_sums(model_score, lambda r: density.hessian(r, 0.0), dim), x, block)
        return {"hessian_error": sums["err"] / sums["ref"]}
    key = jax.random.key(0) if key is None else key
    s = blockwise_sum(_probe_sums(model_score, lambda r, v: density.hessian_vp(r, v, 0.0), probes), x, block, key)
    ratio = s["a"] / s["b"]
    resid = s["aa"] - 2 * ratio * s["ab"] + ratio**2 * s["bb"]  # Σ (aᵢ − R bᵢ)²
    return {"hessian_error": ratio, "hessian_error_se": max(resid, 0.0) ** 0.5 / s["b"]}


def _has_hessian(view) -> str | None:
    density = view.data.density
    if density is None or not view.data.has_score or not density.has_hessian:
        return "the data set has no closed-form Hessian of log p"
    return None


def _applies(view) -> str | None:
    why = _has_hessian(view)
    if why:
        return why
    return None if view.exp.objective.has_score else f"objective.kind '{view.exp.cfg.objective.kind}' has no score read-out"


def _compute(view) -> dict:
    import jax

    exp = view.exp
    return hessian_error(exp.score_fn(view.params), exp.data.density, exp.data.x_test, view.block or exp.cfg.train.eval_batch,
                         key=jax.random.key(exp.cfg.seed))


def objective_sigma(view) -> float | None:
    """The σ of an objective with one (dae with Gaussian noise, rcae, dsm), on data whose
    smoothed density is closed-form; else None."""
    cfg = view.exp.cfg.objective
    sigma = getattr(cfg, "sigma", None)
    density = view.data.density
    if sigma is None or getattr(cfg, "noise", "gaussian") != "gaussian" or not view.exp.objective.has_score:
        return None
    if sigma <= 0:  # no smoothing (the oracle at σ = 0): no floor to report
        return None
    return float(sigma) if density is not None and density.smoothable and view.data.has_score else None


def _floor_applies(view) -> str | None:
    if objective_sigma(view) is None:
        return "the objective has no Gaussian σ, or the data set no closed-form smoothed score"
    return None


def _score_floor(view) -> dict:
    exp, sigma = view.exp, objective_sigma(view)
    density, block = exp.data.density, view.block or exp.cfg.train.eval_batch

    def compute():
        return {"score_error_floor": score_error(lambda r: density.score(r, sigma), density.score, exp.data.x_test, block)}

    return view.memo(("score_error_floor", block), compute)


def _hessian_floor(view) -> dict:
    import jax

    exp, sigma = view.exp, objective_sigma(view)
    density, block = exp.data.density, view.block or exp.cfg.train.eval_batch

    def compute():
        out = hessian_error(lambda r: density.score(r, sigma), density, exp.data.x_test, block,
                            key=jax.random.key(exp.cfg.seed))
        floor = {"hessian_error_floor": out["hessian_error"]}
        if "hessian_error_se" in out:
            floor["hessian_error_floor_se"] = out["hessian_error_se"]
        return floor

    return view.memo(("hessian_error_floor", block), compute)


def _both(*checks):
    def applies(view):
        for check in checks:
            why = check(view)
            if why:
                return why
        return None

    return applies


METRICS = [
    Metric("hessian_error", "model", ("hessian_error", "hessian_error_se"), _applies, _compute,
           "relative Frobenius error of the score read-out's Jacobian against ∇²log p on held-out data"),
    Metric("score_error_floor", "model", ("score_error_floor",), _floor_applies, _score_floor,
           "score_error of the exact σ-smoothed score: the bias floor of DAE/DSM at the objective's σ"),
    Metric("hessian_error_floor", "model", ("hessian_error_floor", "hessian_error_floor_se"),
           _both(_has_hessian, _floor_applies), _hessian_floor,
           "hessian_error of the exact σ-smoothed score: the bias floor at the objective's σ"),
]
