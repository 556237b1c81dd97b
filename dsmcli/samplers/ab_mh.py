"""``ab_mh``: Alain & Bengio's (2014) approximate Metropolis–Hastings from a score alone.

A score or reconstruction model has no energy, but log p(x′) − log p(x) is the line integral of
∇log p from x to x′; the trapezoid rule gives

    log p(x′) − log p(x) ≈ ½ (x′ − x)·(s(x) + s(x′)).

Proposal: the Langevin step x′ = x + (ε/2)s(x) + √ε z (``sample.step_size`` = ε), accepted
with probability min(1, exp(½(x′ − x)·(s(x) + s(x′)) + log q(x|x′) − log q(x′|x))). Reports
``acceptance``. Works with every model that has a score.
"""

from __future__ import annotations


def check(target, cfg) -> None:
    return None


def run(target, x0, key, cfg):
    import jax
    import jax.numpy as jnp

    from dsmcli.samplers.base import langevin_proposal, log_q

    eps = cfg.step_size

    def step(carry, t):
        x, s_x, accepted = carry
        k_prop, k_acc = jax.random.split(jax.random.fold_in(key, t))
        x_new, _ = langevin_proposal(target, x, k_prop, eps)
        s_new = target.score(x_new)
        log_p_diff = 0.5 * jnp.sum((x_new - x) * (s_x + s_new), -1)
        log_ratio = log_p_diff + log_q(x, x_new, s_new, eps) - log_q(x_new, x, s_x, eps)
        accept = jnp.log(jax.random.uniform(k_acc, log_ratio.shape)) < log_ratio
        x = jnp.where(accept[:, None], x_new, x)
        s_x = jnp.where(accept[:, None], s_new, s_x)
        return (x, s_x, accepted + accept), None

    init = (x0, target.score(x0), jnp.zeros(x0.shape[0]))
    (x, _, accepted), _ = jax.lax.scan(step, init, jnp.arange(cfg.steps))
    return x, {"acceptance": jnp.mean(accepted) / cfg.steps}
