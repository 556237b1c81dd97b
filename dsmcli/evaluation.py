"""``dsm eval``: metrics of a run's newest checkpoint (``eval.json``) and its figures."""

from __future__ import annotations

from pathlib import Path


def evaluate(exp, params) -> dict:
    """Metrics that need no sampling: ``score_error`` where the data set has an exact score;
    ``kl_grid`` for 2-D models with an energy on data with a known density."""
    from dsmcli.streaming import score_error

    out = {}
    dens = exp.data.density
    if exp.data.has_score:
        out["score_error"] = score_error(exp.score_fn(params), dens.score, exp.data.x_test, exp.cfg.train.eval_batch)
    energy = exp.energy_fn(params)
    if energy is not None and dens is not None and exp.data.dim == 2 and exp.data.bounds is not None:
        out["kl_grid"] = kl_grid(dens.log_prob, energy, exp.data.bounds)
    return out


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


def figures(exp, params, run_dir: Path, records: list[dict]) -> list[Path]:
    from dsmcli import plots

    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    if records:
        plots.loss_plot(out_dir / "loss.png", records, f"{exp.cfg.name}: {exp.cfg.objective.kind}")
        written.append(out_dir / "loss.png")
    if exp.data.dim == 2:
        fields = {f"learned ({exp.cfg.objective.kind})": exp.score_fn(params)}
        if exp.data.has_score:
            fields["true ∇log p"] = exp.data.density.score
        plots.score_field_plot(out_dir / "score_field.png", fields, exp.data)
        written.append(out_dir / "score_field.png")
        energy = exp.energy_fn(params)
        if energy is not None:
            panels = {f"learned exp(−E) ({exp.cfg.model.kind})": lambda x: -energy(x)}
            if exp.data.density is not None:
                sigma = 0.0 if exp.data.has_score else 0.05
                panels["true density"] = lambda x: exp.data.density.log_prob(x, sigma)
            plots.density_plot(out_dir / "density.png", panels, exp.data)
            written.append(out_dir / "density.png")
    return written
