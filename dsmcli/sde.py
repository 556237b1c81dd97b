"""The forward SDEs of score-based generative modelling (Song et al. 2021, *Score-Based
Generative Modeling through Stochastic Differential Equations*, §3.4 and appendix B):

    dx = a(t) x dt + g(t) dw,   t ∈ [0, 1],

all linear in x, so the perturbation kernel is Gaussian, x_t | x₀ ~ N(m(t) x₀, s(t)² I):

* **VE** (variance exploding, the continuous NCSN): σ(t) = σ_min (σ_max/σ_min)^t, a = 0,
  g(t) = σ(t) √(2 log(σ_max/σ_min)), m = 1, s(t) = σ(t). As in the authors' code, x₀ is read as
  the data perturbed at σ_min (then g² = dσ²/dt carries it exactly to σ(t)), so the marginal
  p_t is the data smoothed by N(0, σ(t)²I); the prior is N(0, σ_max² I).
* **VP** (variance preserving, the continuous DDPM): β(t) = β_min + t(β_max − β_min),
  B(t) = ∫₀ᵗ β = β_min t + ½t²(β_max − β_min), a = −½β, g = √β, m = e^{−B/2},
  s² = 1 − e^{−B}; prior N(0, I).
* **sub-VP**: a = −½β, g = √(β(1 − e^{−2B})), m = e^{−B/2}, s = 1 − e^{−B}; prior N(0, I).

For every one of them the moments solve the linear Fokker–Planck (moment) equations
dm/dt = a m and dv/dt = 2a v + g² (v = s²); so from a state at t₀, x_t has mean
(m(t)/m(t₀))·x_{t₀} and the transition adds the variance s(t)² − (m(t)/m(t₀))² s(t₀)² (tested
by integrating the forward SDE).

``reverse_step`` is the discretisation of the reverse-time SDE used by the reverse-diffusion
predictor (the authors' ``SDE.discretize``): VE x ← x + (σ(t)² − σ(t − Δt)²) s + √(σ(t)² −
σ(t − Δt)²) z (the exact variance increments of NCSN); VP the DDPM form with
f = (√(1 − β(t)Δt) − 1) x and G = √(β(t)Δt) (their discrete βᵢ = β(tᵢ)/N); sub-VP the generic
Euler form f = a(t)x Δt, G = g(t)√Δt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from dsmcli.section import NoiseScale, Section

KINDS = ("ve", "vp", "subvp")


class SDEKeys(Section):
    """The keys that define an SDE (objective ``sde``, and ``oracle`` with ``sde`` set)."""

    sigma_min: NoiseScale = 0.01  # VE
    sigma_max: NoiseScale | None = None  # VE; default: the largest pairwise distance of the training set
    beta_min: float = Field(0.1, gt=0.0)  # VP and sub-VP
    beta_max: float = Field(20.0, gt=0.0)
    t_eps: float = Field(1e-5, gt=0.0, lt=0.5)  # the smallest time trained, sampled and integrated to

    @model_validator(mode="after")
    def _sde_order(self):
        if self.sigma_max is not None and self.sigma_max <= self.sigma_min:
            raise ValueError(f"'sigma_max' ({self.sigma_max}) must be > 'sigma_min' ({self.sigma_min})")
        if self.beta_max < self.beta_min:
            raise ValueError(f"'beta_max' ({self.beta_max}) must be >= 'beta_min' ({self.beta_min})")
        return self


@dataclass(frozen=True)
class SDE:
    kind: Literal["ve", "vp", "subvp"]
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    beta_min: float = 0.1
    beta_max: float = 20.0
    t_eps: float = 1e-5

    # ---------------------------------------------------------------- coefficients
    def _B(self, t):
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min)

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def sigma(self, t):
        """VE σ(t) = σ_min (σ_max/σ_min)^t."""
        import jax.numpy as jnp

        return self.sigma_min * jnp.exp(t * math.log(self.sigma_max / self.sigma_min))

    def drift_coef(self, t):
        """a(t) in f(x, t) = a(t) x."""
        import jax.numpy as jnp

        return jnp.zeros_like(t) if self.kind == "ve" else -0.5 * self.beta(t)

    def diffusion(self, t):
        """g(t)."""
        import jax.numpy as jnp

        if self.kind == "ve":
            return self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))
        if self.kind == "vp":
            return jnp.sqrt(self.beta(t))
        return jnp.sqrt(self.beta(t) * -jnp.expm1(-2 * self._B(t)))

    def marginal(self, t):
        """(m(t), s(t)): x_t = m(t) x₀ + s(t) ε."""
        import jax.numpy as jnp

        if self.kind == "ve":
            return jnp.ones_like(t), self.sigma(t)
        B = self._B(t)
        m = jnp.exp(-0.5 * B)
        return m, (jnp.sqrt(-jnp.expm1(-B)) if self.kind == "vp" else -jnp.expm1(-B))

    # ---------------------------------------------------------------- prior
    @property
    def prior_std(self) -> float:
        return self.sigma_max if self.kind == "ve" else 1.0

    def prior_log_prob(self, x):
        """log N(x; 0, prior_std² I) row-wise ``(B,)``."""
        import jax.numpy as jnp

        d = x.shape[-1]
        v = self.prior_std**2
        return -0.5 * (jnp.sum(x**2, -1) / v + d * math.log(2 * math.pi * v))

    # ---------------------------------------------------------------- discretisations
    def reverse_step(self, t, dt):
        """(f, G) of the reverse-diffusion predictor from t to t − Δt: x ← x − f(x) + G² s(x, t)
        + G z, with f(x) = ``f_coef`` · x (returned as the coefficient)."""
        import jax.numpy as jnp

        if self.kind == "ve":
            return jnp.zeros_like(t), jnp.sqrt(self.sigma(t) ** 2 - self.sigma(t - dt) ** 2)
        if self.kind == "vp":
            b = self.beta(t) * dt
            return jnp.sqrt(1 - b) - 1, jnp.sqrt(b)
        return self.drift_coef(t) * dt, self.diffusion(t) * jnp.sqrt(dt)

    def corrector_alpha(self, t, dt):
        """αᵢ of the Langevin corrector's step size (1 for VE, 1 − β(t)Δt for VP and sub-VP)."""
        import jax.numpy as jnp

        return jnp.ones_like(t) if self.kind == "ve" else 1 - self.beta(t) * dt


def build(cfg, x_train) -> SDE:
    """The SDE of a config section with ``SDEKeys`` and ``sde`` (σ_max defaulting from the data,
    as ``ncsn`` does)."""
    sigma_max = cfg.sigma_max
    if cfg.sde == "ve" and sigma_max is None:
        from dsmcli.objectives.ncsn import max_pairwise_distance

        sigma_max = max(max_pairwise_distance(x_train), cfg.sigma_min * 1.0001)
    return SDE(cfg.sde, cfg.sigma_min, float(sigma_max or 50.0), cfg.beta_min, cfg.beta_max, cfg.t_eps)
