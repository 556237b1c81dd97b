"""``rings``: concentric circles of radii rₖ, chosen with weights wₖ, radial Gaussian noise s.

Generating process: pick k, angle θ ~ U[0, 2π), radius ρ = |rₖ + s ε|. The radius density is
the folded normal fₖ(ρ) = [φ((ρ − rₖ)/s) + φ((ρ + rₖ)/s)]/s, so the exact 2-D density is
p(x) = Σₖ wₖ fₖ(‖x‖) / (2π‖x‖) and the score is its gradient (automatic differentiation of the
closed form; singular only at the origin). The smoothed density has no closed form.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import PositiveFloat, model_validator

from dsmcli.data.base import Dataset, Density, plot_bounds
from dsmcli.section import SyntheticData


class Config(SyntheticData):
    kind: Literal["rings"] = "rings"
    radii: list[PositiveFloat] = [1.0, 2.0, 3.0]
    weights: list[PositiveFloat] | None = None
    noise: PositiveFloat = 0.1

    @model_validator(mode="after")
    def _weights(self):
        if self.weights is not None and (len(self.weights) != len(self.radii) or abs(sum(self.weights) - 1) > 1e-6):
            raise ValueError("'weights' needs one positive entry per radius, summing to 1")
        return self


class RingsDensity(Density):
    dim = 2

    def __init__(self, radii, weights, noise):
        self.radii, self.weights, self.noise = np.asarray(radii), np.asarray(weights), float(noise)

    def log_prob(self, x, sigma: float = 0.0):
        import jax.numpy as jnp
        from jax.scipy.special import logsumexp

        if sigma:
            raise ValueError("rings has no closed-form smoothed density")
        rho = jnp.sqrt(jnp.sum(x**2, -1))[:, None]
        r, s = jnp.asarray(self.radii, x.dtype), self.noise
        log_phi = lambda z: -0.5 * z**2 - 0.5 * jnp.log(2 * jnp.pi)
        log_f = jnp.logaddexp(log_phi((rho - r) / s), log_phi((rho + r) / s)) - jnp.log(s)
        log_mix = logsumexp(jnp.log(jnp.asarray(self.weights, x.dtype)) + log_f, axis=-1)
        return log_mix - jnp.log(2 * jnp.pi * rho[:, 0])

    def sample(self, n, rng):
        k = rng.choice(len(self.radii), size=n, p=self.weights)
        rho = np.abs(self.radii[k] + self.noise * rng.standard_normal(n))
        theta = rng.uniform(0, 2 * np.pi, n)
        return np.stack([rho * np.cos(theta), rho * np.sin(theta)], 1).astype(np.float32)


def build(cfg: Config) -> Dataset:
    weights = cfg.weights or [1.0 / len(cfg.radii)] * len(cfg.radii)
    dens = RingsDensity(cfg.radii, weights, cfg.noise)
    rng = np.random.default_rng(cfg.seed)
    x_train, x_test = dens.sample(cfg.n_train, rng), dens.sample(cfg.n_test, rng)
    return Dataset("rings", x_train, x_test, density=dens, bounds=plot_bounds(x_train))
