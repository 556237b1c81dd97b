"""Shared by ``moons`` and ``spiral``: Gaussian noise around M nodes spaced along a curve.

The generating process picks one of the M nodes uniformly and adds N(0, s²I), so the density is
*exactly* the equal-weight isotropic mixture over the nodes (with M ≫ curve length / s it is
indistinguishable from noise around the continuous curve), and its score and its σ-smoothed
score are those of ``GaussianMixture``.
"""

from __future__ import annotations

import numpy as np

from dsmcli.data.base import Dataset, plot_bounds
from dsmcli.data.mixture import GaussianMixture


def curve_dataset(kind: str, nodes: np.ndarray, noise: float, n_train: int, n_test: int, seed: int) -> Dataset:
    m = len(nodes)
    dens = GaussianMixture(nodes, np.full(m, 1.0 / m), stds=np.full(m, noise))
    rng = np.random.default_rng(seed)
    x_train, x_test = dens.sample(n_train, rng), dens.sample(n_test, rng)
    return Dataset(kind, x_train, x_test, density=dens, bounds=plot_bounds(x_train))
