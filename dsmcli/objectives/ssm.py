"""``ssm``: sliced score matching (Song, Garg, Shi & Ermon 2019),

J(θ) = E_x E_v[vᵀ∇ₓs_θ(x)v + ½(vᵀs_θ(x))²],  v ~ N(0, I) or Rademacher

and with ``variance_reduction: true`` (SSM-VR) the second term is replaced by its expectation
½‖s_θ(x)‖². Mean over the batch and the ``n_projections`` directions; one forward-mode product
per direction, so the cost does not grow with D (``dsmcli.losses.ssm``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from dsmcli import losses
from dsmcli.objectives.base import Objective
from dsmcli.section import Section


class Config(Section):
    kind: Literal["ssm"] = "ssm"
    n_projections: PositiveInt = 1
    projection: Literal["gaussian", "rademacher"] = "gaussian"
    variance_reduction: bool = False


class SSM(Objective):
    forward_mode = True  # differentiates the network in forward mode (jvp)
    def loss(self, model, x, key, train_set):
        cfg = self.cfg
        value = losses.ssm(
            lambda y: self.score(model, y),
            x,
            key,
            n_projections=cfg.n_projections,
            variance_reduction=cfg.variance_reduction,
            projection=cfg.projection,
        )
        return value, {}


make = SSM
