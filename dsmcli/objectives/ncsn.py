"""``ncsn``: noise-conditional score network (Song & Ermon 2019), trained on σ₁ > … > σ_L
geometric from ``sigma_max`` to ``sigma_min`` in ``n_sigmas`` levels by one of the paper's two
estimators. ``estimator: dsm`` (default) is multi-level denoising score matching (eq. 5–6):

    J(θ) = (1/L) Σᵢ σᵢ² · ½ E_x E_ε ‖s_θ(x̃, σᵢ) + (x̃ − x)/σᵢ²‖²,   x̃ = x + σᵢε

``estimator: ssm`` is sliced score matching on the perturbed samples, with variance reduction
(SSM-VR) by default, the paper's second method:

    J(θ) = (1/L) Σᵢ σᵢ² · E_x E_ε E_v [ vᵀ∇ₓs_θ(x̃, σᵢ)v + ½‖s_θ(x̃, σᵢ)‖² ]

(``variance_reduction: false``: ½(vᵀs)² in place of ½‖s‖²), v ~ N(0, I) (``projection:
gaussian``) or ±1 (``rademacher``), ``n_projections`` directions per row averaged on the same x̃
(``dsmcli.losses.ssm_per_row``; one jvp each, x̃ held fixed).

Conventions, for both estimators and as in the authors' code (``losses/dsm.py``
``anneal_dsm_score_estimation`` with ``anneal_power: 2``, ``losses/sliced_sm.py``
``anneal_sliced_score_estimation_vr``): factor ½ on the squared norm; squared norms, the
quadratic form and the trace summed over dimensions; each batch row draws its level uniformly
and its own ε (an unbiased estimate of the mean over levels); the row's value is weighted by
σᵢ², so every level contributes O(1); mean over the batch. The noise carries no parameters, so
nothing needs detaching: gradients flow through s_θ and its Jacobian only. The ssm estimator
draws levels, noise and directions from ``jax.random.split(key, 3)`` in that order.

The two agree up to a constant: Gaussian integration by parts (Stein's lemma) gives
E_ε[s(x̃)ᵀε] = σ E_ε[tr ∇ₓs(x̃)] for any s, so at every level

    σ² · ½E‖s(x̃) + ε/σ‖² = σ² · E[tr ∇ₓs(x̃) + ½‖s(x̃)‖²] + σ² · ½E‖ε/σ‖² = SSM term + D/2,

the ISM = DSM − const identity of Vincent (2010) on the smoothed density q_σ, whose ISM the
SSM term estimates without bias. Hence J_dsm − J_ssm = D/2 in expectation (D: the data
dimension), whatever θ: same expected gradient, same minimiser. ``sigma_max`` defaults to the
largest pairwise distance in the training set (Song & Ermon 2020, technique 1). The schedule is
the default of ``annealed_langevin``; the plain score read-out is s(x, σ_L).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt, model_validator

from dsmcli.objectives.base import Objective
from dsmcli.section import NoiseScale, Section


class Config(Section):
    kind: Literal["ncsn"] = "ncsn"
    sigma_max: NoiseScale | None = None
    sigma_min: NoiseScale = 0.01
    n_sigmas: int = Field(10, ge=2)
    estimator: Literal["dsm", "ssm"] = "dsm"
    # ssm only, named as the ssm objective's; variance reduction is the paper's SSM-VR
    n_projections: PositiveInt = 1
    projection: Literal["gaussian", "rademacher"] = "gaussian"
    variance_reduction: bool = True

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
    @property
    def forward_mode(self) -> bool:
        return self.cfg.estimator == "ssm"  # sliced score matching: one jvp per projection

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

        if self.cfg.estimator == "ssm":
            return self._ssm_loss(model, x, key), {}
        k_level, k_noise = jax.random.split(key)
        level = jax.random.randint(k_level, (x.shape[0],), 0, len(self._sigmas))
        sigma = jnp.asarray(self._sigmas, x.dtype)[level][:, None]
        eps = jax.random.normal(k_noise, x.shape, x.dtype)
        x_tilde = x + sigma * eps
        # σ² · ½‖s + (x̃ − x)/σ²‖² = ½‖σ s + ε‖²  (ε/σ is (x̃ − x)/σ², written without cancellation)
        per_row = 0.5 * jnp.sum((sigma * model(x_tilde, sigma[:, 0]) + eps) ** 2, -1)
        return jnp.mean(per_row), {}

    def _ssm_loss(self, model, x, key):
        import jax
        import jax.numpy as jnp

        from dsmcli import losses

        cfg = self.cfg
        # Its own 3-way split: a key derived beside dsm's 2-way split could repeat one of them
        # (fold_in(key, 1) == split(key)[1] under JAX's partitionable threefry).
        k_level, k_noise, k_proj = jax.random.split(key, 3)
        level = jax.random.randint(k_level, (x.shape[0],), 0, len(self._sigmas))
        sigma = jnp.asarray(self._sigmas, x.dtype)[level]
        x_tilde, _ = losses.noisy(x, k_noise, sigma[:, None])
        per_row = losses.ssm_per_row(
            lambda y: model(y, sigma),
            x_tilde,
            k_proj,
            n_projections=cfg.n_projections,
            variance_reduction=cfg.variance_reduction,
            projection=cfg.projection,
        )
        return jnp.mean(sigma**2 * per_row)

    def score(self, model, x):
        return model(x, self._sigmas[-1])

    def score_at(self, model, x, sigma):
        return model(x, sigma)

    @property
    def has_energy(self) -> bool:
        return False


make = NCSN
