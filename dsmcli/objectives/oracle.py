"""``oracle``: trains nothing; its score is the data set's exact score ∇log p (or, with
``sigma > 0``, the exact score of the smoothed density q_σ = p ⊛ N(0, σ²I)). It is the
reference row of every comparison and the way to test samplers against the truth.

With ``sde: ve | vp | subvp`` (and that SDE's keys, as ``objective.kind: sde`` takes them) it is
also exact for the SDE's marginals: x_t = m(t)x + s(t)ε makes p_t(x) = m⁻ᴰ q_{s/m}(x/m), so

    log p_t(x) = log q_{s(t)/m(t)}(x/m(t)) − D log m(t),   ∇log p_t(x) = ∇log q_{s/m}(x/m) / m

for any data set with a closed-form smoothed density (for ``gmm``, p_t is again a Gaussian
mixture, means m(t)μₖ and covariances m(t)²Cₖ + s(t)²I). Its reverse-time samplers start from,
and its likelihood ends at, that exact p_T (drawn as m(1)x + s(1)ε with x from the data's
generating process), so they are tested without the prior's mismatch, which a trained model
has and reports as part of its error."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat

from dsmcli.errors import UserError
from dsmcli.objectives.base import Objective
from dsmcli.sde import SDEKeys


class Config(SDEKeys):
    kind: Literal["oracle"] = "oracle"
    sigma: NonNegativeFloat = 0.0
    sde: Literal["none", "ve", "vp", "subvp"] = "none"


class Oracle(Objective):
    trains = False
    MODELS = ("mlp", "energy", "tied_dae")  # the network is ignored

    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        dens = data.density
        if dens is None:
            raise UserError(
                f"objective.kind: 'oracle' needs a data set with a known density; data.kind "
                f"'{data.kind}' has none (use gmm, rings, moons, spiral or checkerboard)"
            )
        if cfg.sigma == 0 and not dens.has_score:
            raise UserError(
                f"objective.sigma: data.kind '{data.kind}' has no score at σ = 0 (its density is piecewise "
                f"constant); set objective.sigma > 0 to use the exact smoothed score"
            )
        if cfg.sigma > 0 and not dens.smoothable:
            raise UserError(
                f"objective.sigma: data.kind '{data.kind}' has no closed-form smoothed density; use objective.sigma: 0"
            )

        if cfg.sde != "none":
            if not dens.smoothable or not hasattr(dens, "sample"):
                raise UserError(f"objective.sde: the oracle is exact for an SDE's marginals only on data with a closed-form "
                                f"smoothed density it can draw from (gmm, moons, spiral, checkerboard), not data.kind '{data.kind}'")
            from dsmcli.sde import build

            self.sde = build(cfg, data.x_train)

    def _scaled(self, t, x):
        import jax.numpy as jnp

        m, s = self.sde.marginal(jnp.asarray(t, x.dtype))
        return m, s / m

    def score_t(self, model, x, t):
        m, sigma = self._scaled(t, x)
        return self.data.density.score(x / m, sigma) / m

    def marginal_log_prob(self, x, t):
        """log p_t(x) row-wise, exact."""
        import jax.numpy as jnp

        m, sigma = self._scaled(t, x)
        return self.data.density.log_prob(x / m, sigma) - x.shape[-1] * jnp.log(m)

    def sigmas(self):
        """For a VE SDE, the σ schedule of its network's annealed sampling (10 levels), as ``sde``."""
        if self.sde is None or self.sde.kind != "ve":
            return None
        import numpy as np

        return np.geomspace(self.sde.sigma_max, self.sde.sigma_min, 10)

    def prior_log_prob(self, x):
        return self.marginal_log_prob(x, 1.0)

    def prior_sample(self, key, n: int, dim: int):
        import jax
        import numpy as np

        k_data, k_noise = jax.random.split(key)
        rng = np.random.default_rng(np.asarray(jax.random.key_data(k_data)).astype(np.uint64))
        m, s = (float(v) for v in self.sde.marginal(np.float64(1.0)))
        return m * self.data.density.sample(n, rng) + s * jax.random.normal(k_noise, (n, dim))

    def loss(self, model, x, key, train_set):
        raise RuntimeError("the oracle objective has no loss: it is not trained")

    def score(self, model, x):
        return self.data.density.score(x, self.cfg.sigma)

    @property
    def noise_conditional(self) -> bool:
        return self.data.density.smoothable

    def score_at(self, model, x, sigma):
        return self.data.density.score(x, sigma)

    has_energy = True

    def energy(self, model, x):
        return -self.data.density.log_prob(x, self.cfg.sigma)


make = Oracle
