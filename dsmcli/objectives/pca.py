"""``pca``: the linear baseline of the autoencoder family: principal component analysis at
``model.latent`` components, fitted once on the training set (scikit-learn), so it trains
nothing. Codes are the projections, reconstructions the back-projections; the optimal linear
autoencoder under squared error (Baldi & Hornik 1989)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from dsmcli.objectives.autoencoder import AutoencoderObjective
from dsmcli.section import Section


class Config(Section):
    kind: Literal["pca"] = "pca"


class PCA(AutoencoderObjective):
    trains = False

    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        from sklearn.decomposition import PCA as SkPCA

        fitted = SkPCA(n_components=min(model_cfg.latent, data.dim)).fit(data.x_train)
        self.mean = fitted.mean_.astype(np.float32)
        self.components = fitted.components_.astype(np.float32)  # (K, D)

    def loss(self, model, x, key, train_set):
        raise RuntimeError("the pca objective is fitted in closed form, not trained")

    def encode(self, model, x):
        return (x - self.mean) @ self.components.T

    def reconstruct(self, model, x):
        return self.encode(model, x) @ self.components + self.mean

    def decode_mean(self, model, z):
        return z @ self.components + self.mean


make = PCA
