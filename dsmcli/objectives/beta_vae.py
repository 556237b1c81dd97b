"""``beta_vae``: the β-VAE of Higgins et al. (2017), the VAE loss with β·KL, β = 4 by default
(see ``vae`` for the formula)."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat

from dsmcli.objectives import vae


class Config(vae.Config):
    kind: Literal["beta_vae"] = "beta_vae"
    beta: PositiveFloat = 4.0


make = vae.VAE
