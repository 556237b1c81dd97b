"""``ae``: the plain bottleneck autoencoder, J = E‖dec(enc(x)) − x‖² (mean over the batch, sum
over dimensions); the survey's baseline, comparable with PCA at the same latent size."""

from __future__ import annotations

from typing import Literal

from dsmcli.objectives.autoencoder import AutoencoderObjective, squared_error
from dsmcli.section import Section


class Config(Section):
    kind: Literal["ae"] = "ae"


class AE(AutoencoderObjective):
    def loss(self, model, x, key, train_set):
        return squared_error(model(x), x).mean(), {}


make = AE
