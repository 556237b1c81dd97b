"""``ism``: Hyvärinen's (2005) implicit score matching,

J(θ) = E[½‖s_θ(x)‖² + tr ∇ₓs_θ(x)]

(mean over the batch, sum over dimensions; ``dsmcli.losses.ism``) — equal to explicit score
matching up to a constant, without knowing ∇log p. ``estimator: exact`` computes the trace with
D forward-mode products (cost linear in D); ``hutchinson`` estimates it with ``n_probes``
Rademacher probes (unbiased).
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from dsmcli import losses
from dsmcli.objectives.base import Objective
from dsmcli.section import Section


class Config(Section):
    kind: Literal["ism"] = "ism"
    estimator: Literal["exact", "hutchinson"] = "exact"
    n_probes: PositiveInt = 1


class ISM(Objective):
    forward_mode = True  # differentiates the network in forward mode (jvp)
    def loss(self, model, x, key, train_set):
        cfg = self.cfg
        value = losses.ism(lambda y: self.score(model, y), x, key=key, estimator=cfg.estimator, n_probes=cfg.n_probes)
        return value, {}


make = ISM
