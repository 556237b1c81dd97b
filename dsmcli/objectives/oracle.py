"""``oracle``: trains nothing; its score is the data set's exact score ∇log p (or, with
``sigma > 0``, the exact score of the smoothed density q_σ = p ⊛ N(0, σ²I)). It is the
reference row of every comparison and the way to test samplers against the truth."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat

from dsmcli.errors import UserError
from dsmcli.objectives.base import Objective
from dsmcli.section import Section


class Config(Section):
    kind: Literal["oracle"] = "oracle"
    sigma: NonNegativeFloat = 0.0


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
