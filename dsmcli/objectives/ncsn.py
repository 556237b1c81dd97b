"""``ncsn``: noise-conditional score network trained by multi-level denoising score matching
(Song & Ermon 2019, eq. 5–6):

    J(θ) = (1/L) Σᵢ σᵢ² · ½ E_x E_ε ‖s_θ(x̃, σᵢ) + (x̃ − x)/σᵢ²‖²,   x̃ = x + σᵢε

with σ₁ > … > σ_L geometric from ``sigma_max`` to ``sigma_min`` in ``n_sigmas`` levels. The σᵢ²
weighting makes every level contribute O(1). Each batch row draws its level uniformly (an
unbiased estimate of the mean over levels, as in the authors' code); mean over the batch, sum
over dimensions. ``sigma_max`` defaults to the largest pairwise distance in the training set
(Song & Ermon 2020, technique 1). The schedule is the default of ``annealed_langevin``; the
plain score read-out is s(x, σ_L).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from dsmcli.objectives.base import Objective
from dsmcli.section import NoiseScale, Section


class Config(Section):
    kind: Literal["ncsn"] = "ncsn"
    sigma_max: NoiseScale | None = None
    sigma_min: NoiseScale = 0.01
    n_sigmas: int = Field(10, ge=2)

    @model_validator(mode="after")
    def _order(self):
        if self.sigma_max is not None and self.sigma_max <= self.sigma_min:
            raise ValueError(f"'sigma_max' ({self.sigma_max}) must be > 'sigma_min' ({self.sigma_min})")
        return self


def max_pairwise_distance(x: np.ndarray, block: int = 2048) -> float:
    """Exact max‖xᵢ − xⱼ‖ over the rows of ``x`` in float64, streamed in row blocks."""
    x = np.asarray(x, np.float64)
    sq = np.sum(x**2, 1)
    best = 0.0
    for start in range(0, len(x), block):
        xb = x[start : start + block]
        d2 = np.sum(xb**2, 1)[:, None] - 2 * xb @ x.T + sq[None]
        best = max(best, float(d2.max()))
    return float(np.sqrt(max(best, 0.0)))


class NCSN(Objective):
    MODELS = ("ncsn_mlp", "ncsn_conv")
    DEFAULT_MODEL = "ncsn_mlp"
    DEFAULT_IMAGE_MODEL = "ncsn_conv"
    noise_conditional = True

    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        sigma_max = cfg.sigma_max or max_pairwise_distance(data.x_train)
        self._sigmas = np.geomspace(max(sigma_max, cfg.sigma_min * 1.0001), cfg.sigma_min, cfg.n_sigmas)

    def sigmas(self):
        return self._sigmas

    def loss(self, model, x, key, train_set):
        import jax
        import jax.numpy as jnp

        k_level, k_noise = jax.random.split(key)
        level = jax.random.randint(k_level, (x.shape[0],), 0, len(self._sigmas))
        sigma = jnp.asarray(self._sigmas, x.dtype)[level][:, None]
        eps = jax.random.normal(k_noise, x.shape, x.dtype)
        x_tilde = x + sigma * eps
        # σ² · ½‖s + (x̃ − x)/σ²‖² = ½‖σ s + ε‖²  (ε/σ is (x̃ − x)/σ², written without cancellation)
        per_row = 0.5 * jnp.sum((sigma * model(x_tilde, sigma[:, 0]) + eps) ** 2, -1)
        return jnp.mean(per_row), {}

    def score(self, model, x):
        return model(x, self._sigmas[-1])

    def score_at(self, model, x, sigma):
        return model(x, sigma)

    @property
    def has_energy(self) -> bool:
        return False


make = NCSN
