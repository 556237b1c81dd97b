"""``rcae``: the reconstruction-contractive autoencoder of Alain & Bengio (2014),

J(θ) = E‖r_θ(x) − x‖² + σ² E‖∂r_θ(x)/∂x‖²_F

(mean over the batch, sum over dimensions). Its optimum satisfies r(x) − x = σ²∇log p(x) + o(σ²)
(their Theorem 1), hence the score read-out s(x) = (r(x) − x)/σ². The Jacobian norm is exact
(D forward-mode products) or a Hutchinson estimate (``jacobian: hutchinson``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from dsmcli import losses
from dsmcli.objectives.base import RECONSTRUCTION_MODELS, Objective
from dsmcli.objectives.dae import reconstruction_error
from dsmcli.section import NoiseScale, Section


class Config(Section):
    kind: Literal["rcae"] = "rcae"
    sigma: NoiseScale = 0.1
    jacobian: Literal["exact", "hutchinson"] = "exact"
    n_probes: PositiveInt = 1


def contractive_loss(model, mapping, x, key, weight, cfg):
    """E‖r(x) − x‖² + weight · E‖∂mapping/∂x‖²_F (the penalised map: r for the RCAE, the encoder
    h for the CAE), with the logged parts."""
    recon = reconstruction_error(model, x, x)
    penalty = losses.jacobian_frobenius_sq(mapping, x, key=key, estimator=cfg.jacobian, n_probes=cfg.n_probes).mean()
    return recon + weight * penalty, {"recon": recon, "contraction": penalty}


class RCAE(Objective):
    forward_mode = True  # differentiates the network in forward mode (jvp)
    MODELS = RECONSTRUCTION_MODELS
    READS_RECONSTRUCTION = True

    def loss(self, model, x, key, train_set):
        return contractive_loss(model, model, x, key, self.cfg.sigma**2, self.cfg)


make = RCAE
