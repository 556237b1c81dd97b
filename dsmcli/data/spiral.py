"""``spiral``: an Archimedean spiral r ∝ t with Gaussian noise, ``nodes`` uniform in t over
``turns`` turns, scaled so that the outer radius is ``radius``; exact density as in ``curve``."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import PositiveFloat, PositiveInt

from dsmcli.data.curve import curve_dataset
from dsmcli.section import SyntheticData


class Config(SyntheticData):
    kind: Literal["spiral"] = "spiral"
    noise: PositiveFloat = 0.15
    turns: PositiveFloat = 1.5
    radius: PositiveFloat = 4.0
    nodes: PositiveInt = 256


def build(cfg: Config):
    t = np.linspace(0.5 * np.pi, (0.5 + 2 * cfg.turns) * np.pi, cfg.nodes)
    nodes = cfg.radius * np.stack([t * np.cos(t), t * np.sin(t)], 1) / t[-1]
    return curve_dataset("spiral", nodes, cfg.noise, cfg.n_train, cfg.n_test, cfg.seed)
