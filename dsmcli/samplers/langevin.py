"""``langevin``: the unadjusted Langevin algorithm (ULA), Euler–Maruyama discretisation of the
overdamped Langevin diffusion dx = ½∇log p(x) dt + dW with step ε:

    x ← x + (ε/2) s(x) + √ε z,   z ~ N(0, I)

(``sample.step_size`` is ε; the stationary law tends to p as ε → 0). All ``sample.steps``
updates run inside one ``lax.scan``; the key of step t is ``fold_in(key, t)``. Reference:
Roberts & Tweedie 1996; Song & Ermon 2019, eq. (4).
"""

from __future__ import annotations


def check(target, cfg) -> None:
    return None


def run(target, x0, key, cfg):
    """Run ULA from ``x0`` (B, D) for ``cfg.steps`` steps; returns (x, {"trace": the bounded
    trace of the chains, ``samplers.base.Trace``})."""
    import jax
    import jax.numpy as jnp

    from dsmcli import progress
    from dsmcli.samplers.base import Trace

    eps = cfg.step_size
    trace = Trace(cfg, x0, key)

    def step(carry, t):
        x, buf = carry
        z = jax.random.normal(jax.random.fold_in(key, t), x.shape, x.dtype)
        x = x + 0.5 * eps * target.score(x) + jnp.sqrt(eps) * z
        return (x, trace.record(buf, t, x)), None

    (x, buf), _ = progress.scan(step, (x0, trace.init(x0)), jnp.arange(cfg.steps))
    return x, {"trace": buf}
