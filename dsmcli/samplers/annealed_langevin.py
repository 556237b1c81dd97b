"""``annealed_langevin``: annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1).

For noise levels σ₁ > … > σ_L (geometric from ``sigma_max`` to ``sigma_min`` in ``n_sigmas``
levels, or the objective's own schedule), level i runs T = ``sample.steps`` ULA steps

    x ← x + (αᵢ/2) s(x, σᵢ) + √αᵢ z,   αᵢ = ε σᵢ²/σ_L²   (ε = ``sample.step_size``)

on the score of the σᵢ-smoothed density; ``denoise: true`` ends with the noise-free step
x ← x + σ_L² s(x, σ_L) (Tweedie's denoiser). The MCMC trace (``ess``, ``rhat``) is that of the
last level's T steps, where the chains target one law, the σ_L-smoothed density. Needs a noise-conditional score (the oracle, whose
smoothed score is exact, an NCSN, or a VE-SDE model).

Inpainting (``sample.inpaint``): after every step the known coordinates are set to the observed
values perturbed to the level, y + σᵢz (Song & Ermon 2019, §5 and their ``anneal_Langevin_
dynamics_inpainting``), and to y itself at the end; the unknown ones are drawn given them.
"""

from __future__ import annotations

import numpy as np

from dsmcli.samplers.base import require

INPAINTS = True


def schedule(target, cfg) -> np.ndarray:
    if cfg.sigma_max is not None:
        return np.geomspace(cfg.sigma_max, cfg.sigma_min, cfg.n_sigmas)
    return np.asarray(target.sigmas)


def check(target, cfg) -> None:
    require(target.score_at is not None,
            f"sample.kind: 'annealed_langevin' needs a noise-conditional score s(x, σ), and {target.description} "
            "has none (use objective.kind oracle on a data set with a smoothed density, or ncsn)")
    require(cfg.sigma_max is not None or target.sigmas is not None,
            f"sample.sigma_max: {target.description} has no noise schedule of its own; set sample.sigma_max, "
            "sample.sigma_min and sample.n_sigmas")


def run(target, x0, key, cfg, condition=None):
    import jax
    import jax.numpy as jnp

    from dsmcli import progress
    from dsmcli.samplers.base import Trace

    sigmas = schedule(target, cfg)
    alphas = cfg.step_size * sigmas**2 / sigmas[-1] ** 2
    levels = jnp.repeat(jnp.arange(len(sigmas)), cfg.steps)
    last = (len(sigmas) - 1) * cfg.steps  # the trace covers the last level: a chain with one stationary law
    trace = Trace(cfg, x0, key)

    def step(carry, inputs):
        x, buf = carry
        t, level = inputs
        sigma, alpha = jnp.asarray(sigmas)[level], jnp.asarray(alphas)[level]
        z = jax.random.normal(jax.random.fold_in(key, t), x.shape, x.dtype)
        x = x + 0.5 * alpha * target.score_at(x, sigma) + jnp.sqrt(alpha) * z
        if condition is not None:
            y, known = condition
            x = jnp.where(known, y + sigma * jax.random.normal(jax.random.fold_in(key, len(levels) + t), y.shape, y.dtype), x)
        return (x, trace.record(buf, t - last, x)), None

    (x, buf), _ = progress.scan(step, (x0, trace.init(x0)), (jnp.arange(len(levels)), levels))
    if cfg.denoise:
        x = x + sigmas[-1] ** 2 * target.score_at(x, sigmas[-1])
    if condition is not None:
        x = jnp.where(condition[1], condition[0], x)
    return x, {"trace": buf}
