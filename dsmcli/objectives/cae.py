"""``cae``: the contractive autoencoder of Rifai et al. (2011),

J(θ) = E‖r_θ(x) − x‖² + λ E‖∂h_θ(x)/∂x‖²_F

with the penalty on the *encoder* h only (mean over the batch, sum over dimensions). Needs a
model with an encoder: ``mlp`` with ``latent``, or ``tied_dae``. By analogy with the RCAE
(Alain & Bengio 2014, where the penalty is on r and λ = σ²) the score read-out is
(r(x) − x)/λ; for the CAE this is a heuristic, not a theorem.
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat, PositiveInt

from dsmcli.errors import UserError
from dsmcli.objectives.base import RECONSTRUCTION_MODELS, Objective
from dsmcli.objectives.rcae import contractive_loss
from dsmcli.section import Section


class Config(Section):
    kind: Literal["cae"] = "cae"
    lam: PositiveFloat = 0.01
    jacobian: Literal["exact", "hutchinson"] = "exact"
    n_probes: PositiveInt = 1


class CAE(Objective):
    forward_mode = True  # differentiates the network in forward mode (jvp)
    MODELS = RECONSTRUCTION_MODELS
    READS_RECONSTRUCTION = True
    NEEDS_LATENT = True  # for the mlp: the penalty is on its encoder

    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        if getattr(model_cfg, "latent", "n/a") is None:
            raise UserError(f"model.latent: objective.kind 'cae' penalises the encoder, so the {model_cfg.kind} needs a "
                            "bottleneck: set model.latent (e.g. 8), or use model.kind tied_dae")

    def readout_scale(self):
        return self.cfg.lam

    def loss(self, model, x, key, train_set):
        return contractive_loss(model, model.encode, x, key, self.cfg.lam, self.cfg)


make = CAE
