"""What samplers share: the target they sample and the Langevin proposal.

``Target`` carries the model's score s(x), and where the model has them, the noise-conditional
score s(x, σ), the energy E(x) (−log p up to a constant) and the objective's own σ schedule.
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
    decode: Callable | None = None
    latent_dim: int | None = None
    description: str = "this model"


def log_q(x_to, x_from, s_from, eps):
    """log N(x_to; x_from + (ε/2)s(x_from), εI) without the constant, row-wise."""
    import jax.numpy as jnp

    return -jnp.sum((x_to - x_from - 0.5 * eps * s_from) ** 2, -1) / (2 * eps)


def metropolised_langevin(target, x0, key, cfg, *, exact_energy: bool):
    """Metropolis–Hastings with the Langevin proposal x′ = x + (ε/2)s(x) + √ε z, accepted with
    probability min(1, exp(Δ + log q(x|x′) − log q(x′|x))), where Δ = log p(x′) − log p(x) is
    E(x) − E(x′) (``exact_energy``: MALA) or the trapezoid ½(x′ − x)·(s(x) + s(x′)) (Alain &
    Bengio). The score (and energy) of the current state is carried, so each step evaluates
    the model once, at the proposal. Returns (x, {"acceptance": mean over steps and particles})."""
    import jax
    import jax.numpy as jnp

    eps = cfg.step_size
    energy = target.energy if exact_energy else (lambda x: jnp.zeros(x.shape[0], x.dtype))

    def step(carry, t):
        x, s_x, e_x, accepted = carry
        k_prop, k_acc = jax.random.split(jax.random.fold_in(key, t))
        x_new = x + 0.5 * eps * s_x + jnp.sqrt(eps) * jax.random.normal(k_prop, x.shape, x.dtype)
        s_new, e_new = target.score(x_new), energy(x_new)
        log_p_diff = e_x - e_new if exact_energy else 0.5 * jnp.sum((x_new - x) * (s_x + s_new), -1)
        log_ratio = log_p_diff + log_q(x, x_new, s_new, eps) - log_q(x_new, x, s_x, eps)
        accept = jnp.log(jax.random.uniform(k_acc, log_ratio.shape)) < log_ratio
        keep = lambda new, old: jnp.where(accept.reshape(-1, *([1] * (new.ndim - 1))), new, old)  # noqa: E731
        return (keep(x_new, x), keep(s_new, s_x), keep(e_new, e_x), accepted + accept), None

    init = (x0, target.score(x0), energy(x0), jnp.zeros(x0.shape[0]))
    (x, _, _, accepted), _ = jax.lax.scan(step, init, jnp.arange(cfg.steps))
    return x, {"acceptance": jnp.mean(accepted) / cfg.steps}


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)
