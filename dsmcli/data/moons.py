"""``moons``: two interleaving half circles (the scikit-learn layout) with Gaussian noise.

Upper moon (cos t, sin t), lower moon (1 − cos t, 0.5 − sin t), t ∈ [0, π], ``nodes`` per moon;
exact density as explained in ``curve``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import PositiveFloat, PositiveInt

from dsmcli.data.curve import curve_dataset
from dsmcli.section import SyntheticData


class Config(SyntheticData):
    kind: Literal["moons"] = "moons"
    noise: PositiveFloat = 0.1
    nodes: PositiveInt = 128


def build(cfg: Config):
    t = np.linspace(0.0, np.pi, cfg.nodes)
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], 1)
    return curve_dataset("moons", np.concatenate([upper, lower]), cfg.noise, cfg.n_train, cfg.n_test, cfg.seed)
