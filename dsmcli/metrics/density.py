"""KL(p ‖ p_θ) of a 2-D energy model, both densities normalised numerically on a grid."""

from __future__ import annotations

from dsmcli.metrics.base import Metric


def kl_grid(log_p, energy, bounds, n: int = 256) -> float:
    """KL(p ‖ p_θ) with p_θ = exp(−E)/Z, both normalised numerically on an n×n grid over
    ``bounds``: KL ≈ Σ_g p̂(g) (log p̂(g) − log p̂_θ(g)) with p̂ ∝ the density times the cell area,
    renormalised on the grid (so mass outside the window is ignored for both)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.scipy.special import logsumexp

    (x0, x1), (y0, y1) = bounds[:2]
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    pts = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], 1), jnp.float32)

    @jax.jit
    def kl(pts):
        lp = log_p(pts)
        lq = -energy(pts)
        lp, lq = lp - logsumexp(lp), lq - logsumexp(lq)
        p = jnp.exp(lp)
        return jnp.sum(jnp.where(p > 0, p * (lp - lq), 0.0))

    return float(kl(pts))


def _applies(view) -> str | None:
    exp = view.exp
    if not exp.objective.has_energy:
        return f"model.kind '{exp.cfg.model.kind}' has no energy (kl_grid needs exp(−E))"
    if exp.data.density is None or exp.data.dim != 2 or exp.data.bounds is None:
        return "the data set is not 2-D with a known density"
    return None


def _compute(view) -> dict:
    exp = view.exp
    return {"kl_grid": kl_grid(exp.data.density.log_prob, exp.energy_fn(view.params), exp.data.bounds)}


METRICS = [Metric("kl_grid", "model", ("kl_grid",), _applies, _compute,
                  "KL(p ‖ p_θ) of a 2-D energy model, normalised on a 256 × 256 grid")]
