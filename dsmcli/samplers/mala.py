"""``mala``: Metropolis-adjusted Langevin (Roberts & Tweedie 1996) for models with an energy.

Proposal x′ = x + (ε/2)s(x) + √ε z (the ULA step, ``sample.step_size`` = ε), accepted with
probability min(1, exp(E(x) − E(x′) + log q(x|x′) − log q(x′|x))), q the Gaussian proposal
density. Exact for p ∝ exp(−E) at any ε; reports ``acceptance`` (mean over steps and particles).
Needs an energy: the oracle, ``model.kind: energy`` or ``tied_dae``.
"""

from __future__ import annotations

from dsmcli.samplers.base import langevin_proposal, log_q, require


def check(target, cfg) -> None:
    require(target.energy is not None,
            f"sample.kind: 'mala' needs an energy, and {target.description} has none; use model.kind energy "
            "or tied_dae, the oracle, or sample.kind ab_mh (approximate MH from the score alone)")


def run(target, x0, key, cfg):
    import jax
    import jax.numpy as jnp

    eps = cfg.step_size

    def step(carry, t):
        x, e_x, accepted = carry
        k_prop, k_acc = jax.random.split(jax.random.fold_in(key, t))
        x_new, s_x = langevin_proposal(target, x, k_prop, eps)
        s_new, e_new = target.score(x_new), target.energy(x_new)
        log_ratio = e_x - e_new + log_q(x, x_new, s_new, eps) - log_q(x_new, x, s_x, eps)
        accept = jnp.log(jax.random.uniform(k_acc, log_ratio.shape)) < log_ratio
        x = jnp.where(accept[:, None], x_new, x)
        e_x = jnp.where(accept, e_new, e_x)
        return (x, e_x, accepted + accept), None

    init = (x0, target.energy(x0), jnp.zeros(x0.shape[0]))
    (x, _, accepted), _ = jax.lax.scan(step, init, jnp.arange(cfg.steps))
    return x, {"acceptance": jnp.mean(accepted) / cfg.steps}
