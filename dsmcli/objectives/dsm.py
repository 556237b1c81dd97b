"""``dsm``: denoising score matching at a single noise level σ (Vincent 2010).

J(θ) = ½ E_x E_ε ‖s_θ(x̃) + (x̃ − x)/σ²‖²,  x̃ = x + σε,  ε ~ N(0, I)

mean over the batch, sum over dimensions (``dsmcli.losses.dsm``). Its minimiser is the score of
the smoothed data density q_σ = p ⊛ N(0, σ²I), so small σ approximates ∇log p.
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat

from dsmcli import losses
from dsmcli.objectives.base import Objective
from dsmcli.section import Section


class Config(Section):
    kind: Literal["dsm"] = "dsm"
    sigma: PositiveFloat = 0.1


class DSM(Objective):
    def loss(self, net, x, key):
        return losses.dsm(net, x, key, self.cfg.sigma), {}

    def score(self, net, x):
        return net(x)


make = DSM
