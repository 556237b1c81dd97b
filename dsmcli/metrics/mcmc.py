"""How well an MCMC sampler's chains mix, from their bounded trace (``samplers.base.Trace``:
a few fixed random projections of each of ``trace_chains`` particles at ``trace_draws`` thinned
steps), with ArviZ's estimators (``arviz_stats``; Vehtari, Gelman, Simpson, Carpenter &
Bürkner 2021, "Rank-normalization, folding, and localization: an improved R̂"):

* ``ess``: the bulk effective sample size of **one** chain (rank-normalised, computed per chain
  and projection), averaged over the chains and projections — out of ``trace_draws`` kept
  states; ``ess_per_s``: the same per chain × all ``sample.n`` chains ÷ the sampling wall time
  (``sample_s``, compilation excluded): effective draws per second of the whole sampler.
* ``rhat``: the rank-normalised split-R̂ across the chains, the largest over the projections.
  Near 1 when every chain explores the same law; far above 1 when chains stay where they
  started — e.g. Langevin on a mixture whose modes it cannot cross, however well it mixes
  within each mode (then ``ess`` can be high and ``rhat`` still says the chains disagree).

Independent draws (``ancestral``) have no trace: these metrics do not apply.
"""

from __future__ import annotations

import numpy as np

from dsmcli.metrics.base import Metric


def _trace(ctx):
    return ctx.info.get("trace")


def _applies(ctx) -> str | None:
    trace = _trace(ctx)
    if trace is None:
        return "the sampler keeps no chain trace (independent draws)"
    trace = np.asarray(trace)
    if trace.shape[0] < 4 or trace.shape[1] < 2:
        return f"the trace has {trace.shape[0]} draws of {trace.shape[1]} chains (needs ≥ 4 draws and ≥ 2 chains)"
    return None if np.isfinite(trace).all() else "the trace holds non-finite states (chains that diverged)"


def chains(trace) -> np.ndarray:
    """(draws, chains, projections) → (projections, chains, draws), ArviZ's chain/draw axes last."""
    return np.transpose(np.asarray(trace, np.float64), (2, 1, 0))


def ess_per_chain(trace) -> float:
    """Bulk ESS of single chains (each chain alone), averaged over chains and projections."""
    from arviz_stats.base import array_stats

    c = chains(trace)
    single = c[:, :, None, :]  # every chain its own one-chain sample
    return float(np.mean(array_stats.ess(single, chain_axis=-2, draw_axis=-1, method="bulk")))


def rhat(trace) -> float:
    """Rank-normalised split-R̂ across chains, the largest over the projections."""
    from arviz_stats.base import array_stats

    return float(np.max(array_stats.rhat(chains(trace), chain_axis=-2, draw_axis=-1, method="rank")))


def _ess(ctx) -> dict:
    ess = ess_per_chain(_trace(ctx))
    wall = ctx.info.get("sample_s")
    return {"ess": ess, "ess_per_s": ess * len(ctx.x) / wall if wall else None}


METRICS = [
    Metric("ess", "chains", ("ess", "ess_per_s"), _applies, _ess,
           "bulk effective sample size per chain (of trace_draws kept states), and effective draws per second"),
    Metric("rhat", "chains", ("rhat",), _applies, lambda ctx: {"rhat": rhat(_trace(ctx))},
           "rank-normalised split-R̂ across chains (largest over the projections)"),
]
