"""What samplers share: the target they sample and the Langevin proposal.

``Target`` carries the model's score s(x), and where the model has them, the noise-conditional
score s(x, σ), the energy E(x) (−log p up to a constant), the objective's own σ schedule, and
for continuous-time models the time-conditional score s(x, t), the forward SDE and the draws of
the distribution the reverse-time samplers start from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dsmcli.errors import UserError


@dataclass(frozen=True)
class Target:
    score: Callable
    score_at: Callable | None = None
    energy: Callable | None = None
    sigmas: tuple[float, ...] | None = None
    decode: Callable | None = None  # z -> x: a draw of p(x|z) (the decoder's mean for most models)
    latent_dim: int | None = None
    score_t: Callable | None = None
    sde: object | None = None
    prior_sample: Callable | None = None  # (key, n) -> (n, D)
    training_codes: Callable | None = None  # () -> enc(x) (N, K) of the training rows (models with codes)
    seed: int = 0  # the run's seed (what is fitted to the run, e.g. a prior over its codes)
    description: str = "this model"


def require_sde(target, kind: str) -> None:
    require(target.score_t is not None,
            f"sample.kind: '{kind}' integrates a reverse-time SDE or ODE and needs a time-conditional score "
            f"s(x, t), which {target.description} has not (use objective.kind sde, or oracle with objective.sde)")


def log_q(x_to, x_from, s_from, eps):
    """log N(x_to; x_from + (ε/2)s(x_from), εI) without the constant, row-wise."""
    import jax.numpy as jnp

    return -jnp.sum((x_to - x_from - 0.5 * eps * s_from) ** 2, -1) / (2 * eps)


class Trace:
    """A bounded trace of a chain of ``steps`` updates for MCMC diagnostics: the first
    ``trace_chains`` particles, projected on ``trace_projections`` fixed random orthonormal
    directions (the same for every chain), at ``trace_draws`` evenly thinned steps (the last of
    each block of ``thin`` steps; the first ``steps − draws·thin`` steps are not kept). Memory:
    draws × chains × projections floats, whatever ``steps`` and ``n`` are.

    ``record(buffer, t, x)`` inside the scan over steps t = 0 … steps − 1 (an O(chains × D ×
    projections) product per step; the chain itself is untouched), ``buffer`` the carry from
    ``init``; the result is (draws, chains, projections)."""

    def __init__(self, cfg, x0, key, steps: int | None = None):
        import jax
        import jax.numpy as jnp

        self.steps = cfg.steps if steps is None else steps
        self.draws = min(cfg.trace_draws, self.steps)
        self.thin = self.steps // self.draws
        self.start = self.steps - self.draws * self.thin
        self.chains = min(cfg.trace_chains, x0.shape[0])
        dim = x0.shape[1]
        k = min(cfg.trace_projections, dim)
        basis, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(20141231), (dim, k), x0.dtype))  # fixed directions
        self.basis = basis.astype(x0.dtype)

    def init(self, x0):
        import jax.numpy as jnp

        return jnp.zeros((self.draws, self.chains, self.basis.shape[1]), x0.dtype)

    def record(self, buffer, t, x):
        import jax
        import jax.numpy as jnp

        index = jnp.clip((t - self.start) // self.thin, 0, self.draws - 1)
        value = jnp.where(t >= self.start, x[: self.chains] @ self.basis, buffer[index])
        return jax.lax.dynamic_update_index_in_dim(buffer, value, index, 0)


def metropolised_langevin(target, x0, key, cfg, *, exact_energy: bool):
    """Metropolis–Hastings with the Langevin proposal x′ = x + (ε/2)s(x) + √ε z, accepted with
    probability min(1, exp(Δ + log q(x|x′) − log q(x′|x))), where Δ = log p(x′) − log p(x) is
    E(x) − E(x′) (``exact_energy``: MALA) or the trapezoid ½(x′ − x)·(s(x) + s(x′)) (Alain &
    Bengio). The score (and energy) of the current state is carried, so each step evaluates
    the model once, at the proposal.

    ``step_size: auto``: first ``adapt_steps`` warm-up steps adapt log ε by dual averaging
    (Nesterov 2009; Hoffman & Gelman 2014, §3.2.1, BlackJAX's implementation) toward
    ``target_accept`` for the particles' mean acceptance probability, starting from ε = 0.1 ·
    (the data's variance per coordinate is not known here, so a small start); the ``steps``
    that follow use the final ε. Warm-up steps use keys ``fold_in(key, steps + t)``, distinct
    from the sampling steps'.

    Returns (x, {"acceptance": mean over steps and particles, "step_size": ε used, "trace": a
    ``Trace`` of the sampling steps})."""
    import jax
    import jax.numpy as jnp

    from dsmcli import progress

    energy = target.energy if exact_energy else (lambda x: jnp.zeros(x.shape[0], x.dtype))
    adapt_steps = cfg.adapt_steps if cfg.step_size == "auto" else 0

    def propose(x, s_x, e_x, eps, t):
        k_prop, k_acc = jax.random.split(jax.random.fold_in(key, t))
        x_new = x + 0.5 * eps * s_x + jnp.sqrt(eps) * jax.random.normal(k_prop, x.shape, x.dtype)
        s_new, e_new = target.score(x_new), energy(x_new)
        log_p_diff = e_x - e_new if exact_energy else 0.5 * jnp.sum((x_new - x) * (s_x + s_new), -1)
        log_ratio = log_p_diff + log_q(x, x_new, s_new, eps) - log_q(x_new, x, s_x, eps)
        accept = jnp.log(jax.random.uniform(k_acc, log_ratio.shape)) < log_ratio
        keep = lambda new, old: jnp.where(accept.reshape(-1, *([1] * (new.ndim - 1))), new, old)  # noqa: E731
        prob = jnp.exp(jnp.minimum(jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf), 0.0))
        return keep(x_new, x), keep(s_new, s_x), keep(e_new, e_x), accept, prob

    state = (x0, target.score(x0), energy(x0))
    if cfg.step_size == "auto":
        from blackjax.adaptation.step_size import dual_averaging_adaptation

        da_init, da_update, da_final = dual_averaging_adaptation(cfg.target_accept)

        def adapt(carry, t):
            (x, s_x, e_x), da = carry
            x, s_x, e_x, _, prob = propose(x, s_x, e_x, jnp.exp(da.log_step_size), cfg.steps + t)
            return ((x, s_x, e_x), da_update(da, jnp.mean(prob))), None

        (state, da), _ = progress.scan(
            adapt, (state, da_init(jnp.asarray(0.1, x0.dtype))), jnp.arange(cfg.adapt_steps), total=adapt_steps + cfg.steps)
        eps = da_final(da)
    else:
        eps = jnp.asarray(cfg.step_size, x0.dtype)
    trace = Trace(cfg, x0, key)

    def step(carry, t):
        (x, s_x, e_x), accepted, buf = carry
        x, s_x, e_x, accept, _ = propose(x, s_x, e_x, eps, t)
        return ((x, s_x, e_x), accepted + accept, trace.record(buf, t, x)), None

    ((x, _, _), accepted, buf), _ = progress.scan(
        step, (state, jnp.zeros(x0.shape[0]), trace.init(x0)), jnp.arange(cfg.steps), before=adapt_steps)
    return x, {"acceptance": jnp.mean(accepted) / cfg.steps, "step_size": eps, "trace": buf}


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)
