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


def langevin_proposal(target, x, key, eps):
    """x′ = x + (ε/2)s(x) + √ε z and the log proposal density log q(x′|x) up to a constant."""
    import jax
    import jax.numpy as jnp

    s = target.score(x)
    z = jax.random.normal(key, x.shape, x.dtype)
    return x + 0.5 * eps * s + jnp.sqrt(eps) * z, s


def log_q(x_to, x_from, s_from, eps):
    """log N(x_to; x_from + (ε/2)s(x_from), εI) without the constant, row-wise."""
    import jax.numpy as jnp

    return -jnp.sum((x_to - x_from - 0.5 * eps * s_from) ** 2, -1) / (2 * eps)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)
