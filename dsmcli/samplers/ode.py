"""``ode``: samples by solving the probability-flow ODE dx/dt = a(t)x − ½g(t)² s(x, t) from t = 1
to t_eps (Song et al. 2021, §4.3), a deterministic map of the prior's draws, with diffrax
(``dsmcli.flow``: ``solver: dopri5`` adaptive with ``rtol``/``atol``, ``heun`` or ``euler`` with
``steps`` fixed steps). Starts from the SDE's prior (the oracle: its exact p₁). Reports ``nfe``,
the mean number of score evaluations per particle, and ``ode_failed``, the fraction of particles
whose adaptive solve did not finish within the step limit (their values are kept, as the
solver left them, and the metrics judge them).
"""

from __future__ import annotations

from dsmcli.samplers.base import require_sde


def check(target, cfg) -> None:
    require_sde(target, "ode")


def initial(target, key, n):
    return target.prior_sample(key, n)


def run(target, x0, key, cfg):
    import jax.numpy as jnp

    from dsmcli import flow

    x, nfe, ok = flow.sample(target.sde, target.score_t, x0, cfg)
    return x, {"nfe": jnp.mean(nfe.astype(jnp.float32)), "ode_failed": 1.0 - jnp.mean(ok.astype(jnp.float32))}
