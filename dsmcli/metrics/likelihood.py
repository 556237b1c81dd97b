"""Exact likelihoods of continuous-time score models by the probability-flow ODE
(Song et al. 2021, §4.3 and appendix D.2), on the first ``eval.nll_n`` held-out rows.

``nll`` = −(1/N) Σᵢ log p(xᵢ) in nats per example, with log p(x) = log p₁(x(1)) + ∫ ∇·f̃ dt from
``dsmcli.flow.log_likelihood`` (p₁: the SDE's prior; for the oracle its exact marginal at t = 1).
The divergence is exact for D ≤ ``eval.exact_trace_max_dim``; above, ``eval.n_probes`` Rademacher
probes estimate it on the same trajectory, and ``nll_se`` is the standard error of ``nll`` due to
that estimator: √(Σᵢ v̂ᵢ / P) / N with v̂ᵢ the probes' sample variance for row i (P probes, the row
estimate their mean). ``nll_nfe``: network evaluations per row (each also costs a Jacobian or
P vector–Jacobian products).

For image data with quantised pixels (``Dataset.quantization``: pixel j's level k ↦ a_j k + b_j)
also ``bpd``, with uniform dequantisation into bins centred on the levels: one draw
x̃ = x + a ⊙ (u − ½), u ~ U[0, 1)ᴰ per image, one ODE solve per image, and

    bpd = (−log p(x̃) − Σⱼ log aⱼ) / (D ln 2)

(the Jacobian of the scaling from levels to the model's space written out: Σⱼ log aⱼ). By Jensen,
E_u[bpd] bounds −log₂ P(k)/D of the discrete model P(k) = ∫_bin p; for image data ``nll`` is
then −log p(x̃) of the dequantised images (nats, in the model's space).
"""

from __future__ import annotations

import math

from dsmcli.metrics.base import Metric


def _applies(view) -> str | None:
    if view.exp.objective.sde is None:
        return (f"objective.kind '{view.exp.cfg.objective.kind}' has no SDE (use objective.kind sde, "
                f"or oracle with objective.sde)")
    return None


def likelihood(view, key=None) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dsmcli import flow
    from dsmcli.streaming import blockwise_sum

    exp, ev = view.exp, view.exp.cfg.eval
    obj = exp.objective
    net = exp.net(view.params)
    x = np.asarray(exp.data.x_test[: ev.nll_n])
    dim = x.shape[1]
    exact = dim <= ev.exact_trace_max_dim
    quant = exp.data.quantization
    key = jax.random.key(exp.cfg.seed) if key is None else key

    def per_row(rows, block_key):
        k_deq, k_probe = jax.random.split(block_key)
        if quant is not None:
            rows = rows + jnp.asarray(quant, rows.dtype) * (jax.random.uniform(k_deq, rows.shape, rows.dtype) - 0.5)
        logp, nfe, ok = flow.log_likelihood(
            obj.sde, lambda y, t: obj.score_t(net, y, t), obj.prior_log_prob, rows, k_probe, exact=exact,
            n_probes=ev.n_probes, solver=ev.solver, rtol=ev.rtol, atol=ev.atol, steps=ev.steps)
        out = {"nll": -jnp.mean(logp, -1), "nfe": nfe.astype(rows.dtype), "failed": 1.0 - ok.astype(rows.dtype)}
        if not exact:
            out["var"] = jnp.var(logp, -1, ddof=1) / ev.n_probes
        return out

    sums = blockwise_sum(per_row, x, min(view.block or exp.cfg.train.eval_batch, 256), key)
    n = len(x)
    out = {"nll": sums["nll"] / n, "nll_nfe": sums["nfe"] / n}
    if sums["failed"]:
        out["nll_failed"] = sums["failed"] / n
    if not exact:
        out["nll_se"] = math.sqrt(max(sums["var"], 0.0)) / n
    if quant is not None:
        log_jac = float(np.sum(np.log(np.asarray(quant, np.float64))))
        out["bpd"] = (out["nll"] - log_jac) / (dim * math.log(2))
        if "nll_se" in out:
            out["bpd_se"] = out["nll_se"] / (dim * math.log(2))
    return out


def _describe(view) -> dict:
    ev, data = view.exp.cfg.eval, view.exp.data
    n = min(ev.nll_n, len(data.x_test))
    return {"n": n, "trace": "exact" if data.dim <= ev.exact_trace_max_dim else f"hutchinson ({ev.n_probes} probes)",
            "solver": ev.solver, **({"rtol": ev.rtol, "atol": ev.atol} if ev.solver == "dopri5" else {"steps": ev.steps}),
            "dequantization": "uniform, bins centred on the levels, 1 draw per image" if data.quantization is not None else None,
            "ode_solves_per_example": 1}


METRICS = [Metric("nll", "model", ("nll", "nll_se", "nll_nfe", "nll_failed", "bpd", "bpd_se"), _applies, likelihood,
                  "negative log-likelihood by the probability-flow ODE (nats per example; bpd for images)",
                  describe=_describe)]
