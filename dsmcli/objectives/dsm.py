"""``dsm``: denoising score matching at a single noise level σ (Vincent 2010).

J(θ) = ½ E_x E_ε ‖s_θ(x̃) + (x̃ − x)/σ²‖²,  x̃ = x + σε,  ε ~ N(0, I)

mean over the batch, sum over dimensions (``dsmcli.losses.dsm``). Its minimiser is the score of
the smoothed data density q_σ = p ⊛ N(0, σ²I), so small σ approximates ∇log p. Works with a score
network (``mlp``), an energy network (s = −∇E) and the tied DAE read as (r(x̃) − x̃)/σ², for which
J_DSM = J_DAE/(2σ⁴) exactly (Vincent 2010, §4).
"""

from __future__ import annotations

from typing import Literal

from dsmcli import losses
from dsmcli.objectives.base import SCORE_MODELS, Objective
from dsmcli.section import NoiseScale, Section


class Config(Section):
    kind: Literal["dsm"] = "dsm"
    sigma: NoiseScale = 0.1


class DSM(Objective):
    MODELS = (*SCORE_MODELS, "tied_dae")

    def loss(self, model, x, key, train_set):
        return losses.dsm(lambda y: self.score(model, y), x, key, self.cfg.sigma), {}


make = DSM
