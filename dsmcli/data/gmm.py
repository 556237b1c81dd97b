"""``gmm``: a Gaussian mixture in any dimension, with isotropic stds or full covariances.

Exact log-density and score, also of the σ-smoothed mixture (see ``mixture.GaussianMixture``),
and per-component log-probabilities for the ``mode_weights`` metric.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import field_validator, model_validator

from dsmcli.data.base import Dataset, plot_bounds
from dsmcli.data.mixture import GaussianMixture
from dsmcli.section import SyntheticData


class Config(SyntheticData):
    kind: Literal["gmm"] = "gmm"
    means: list[list[float]]
    stds: float | list[float] | None = None
    covs: list[list[list[float]]] | None = None
    weights: list[float] | None = None

    @field_validator("means")
    @classmethod
    def _means(cls, means):
        if not means or any(len(m) != len(means[0]) for m in means) or not means[0]:
            raise ValueError("must be a non-empty list of equal-length points, e.g. [[-5, -5], [5, 5]]")
        return means

    @model_validator(mode="after")
    def _shapes(self):
        k, d = len(self.means), len(self.means[0])
        if self.stds is not None and self.covs is not None:
            raise ValueError("give either 'stds' or 'covs', not both")
        if isinstance(self.stds, list):
            if len(self.stds) != k:
                raise ValueError(f"'stds' has {len(self.stds)} entries but there are {k} means")
        stds = self.stds if isinstance(self.stds, list) else [self.stds if self.stds is not None else 1.0]
        if any(s <= 0 for s in stds):
            raise ValueError("'stds' must be > 0")
        if self.covs is not None:
            c = np.asarray(self.covs, dtype=float)
            if c.shape != (k, d, d):
                raise ValueError(f"'covs' must have shape ({k}, {d}, {d}) to match 'means', got {c.shape}")
            if not np.allclose(c, np.swapaxes(c, 1, 2)) or np.any(np.linalg.eigvalsh(c) <= 0):
                raise ValueError("every matrix in 'covs' must be symmetric positive definite")
        if self.weights is not None:
            if len(self.weights) != k:
                raise ValueError(f"'weights' has {len(self.weights)} entries but there are {k} means")
            if any(w <= 0 for w in self.weights) or abs(sum(self.weights) - 1) > 1e-6:
                raise ValueError(f"'weights' must be positive and sum to 1 (they sum to {sum(self.weights):g})")
        return self


def density(cfg: Config) -> GaussianMixture:
    k = len(cfg.means)
    weights = cfg.weights or [1.0 / k] * k
    if cfg.covs is not None:
        return GaussianMixture(cfg.means, weights, covs=cfg.covs)
    stds = cfg.stds if isinstance(cfg.stds, list) else [1.0 if cfg.stds is None else cfg.stds] * k
    return GaussianMixture(cfg.means, weights, stds=stds)


def nbytes(cfg: Config) -> int:
    from dsmcli.data.base import synthetic_nbytes

    return synthetic_nbytes(cfg, len(cfg.means[0])) + 8 * len(cfg.means) * len(cfg.means[0]) ** 2


def build(cfg: Config) -> Dataset:
    dens = density(cfg)
    rng = np.random.default_rng(cfg.seed)
    x_train, x_test = dens.sample(cfg.n_train, rng), dens.sample(cfg.n_test, rng)
    return Dataset("gmm", x_train, x_test, density=dens, bounds=plot_bounds(x_train), report_modes=True)
