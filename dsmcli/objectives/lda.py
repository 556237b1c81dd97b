"""``lda``: linear discriminant analysis at ``model.latent`` components (survey §4.6), fitted once
on the labelled training rows (scikit-learn ``LinearDiscriminantAnalysis(n_components=K)``), so
it trains nothing. The supervised linear baseline of the family, next to ``pca``.

* codes: LDA's ``transform``, an affine map z = x A + b (read off the fitted model, so any
  solver's projection is reproduced exactly), for the downstream tasks (``probe_acc``,
  ``kmeans_nmi``, ``trustworthiness``) on any rows;
* K ≤ min(classes − 1, D): LDA has at most classes − 1 discriminant directions; a larger
  ``model.latent`` is a user error (no silent capping); the data set must be labelled;
* reconstructions: LDA has no decoder. ``reconstruct``/``decode_mean`` are the least-squares
  affine decoder from the codes, x̂ = z W + c fitted on the training rows (closed form), so
  ``recon_mse`` says how much of x an affine read-out of the K discriminant codes keeps (never
  less than PCA's at the same K, the optimal affine one), ``anomaly_auroc`` scores with that
  error and ``ancestral`` sampling decodes through it. It is not a property of LDA itself.

The ``mlp`` of ``model`` is built (``latent`` is K) but not used.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dsmcli.errors import UserError
from dsmcli.objectives.autoencoder import AutoencoderObjective
from dsmcli.section import Section


class Config(Section):
    kind: Literal["lda"] = "lda"


def affine_map(transform, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with transform(x) = x A + b, for an affine ``transform`` of rows of ``dim``."""
    b = np.asarray(transform(np.zeros((1, dim))), np.float64)
    a = np.asarray(transform(np.eye(dim)), np.float64) - b
    return a, b[0]


def affine_decoder(codes: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(W, c) minimising Σₙ ‖zₙ W + c − xₙ‖² over the rows (least squares, minimum norm)."""
    z1 = np.hstack([np.asarray(codes, np.float64), np.ones((len(codes), 1))])
    solution, *_ = np.linalg.lstsq(z1, np.asarray(x, np.float64), rcond=None)
    return solution[:-1], solution[-1]


class LDA(AutoencoderObjective):
    trains = False
    NEEDS_LABELS = True

    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        if data.y_train is None:
            raise UserError(f"data.kind: objective.kind 'lda' is fitted on labelled training rows, and data.kind "
                            f"'{data.kind}' has no labels (use digits, mnist, or npz with y)")
        classes = np.unique(data.y_train[data.labelled_rows])
        most = min(len(classes) - 1, data.dim)
        if most < 1:
            raise UserError(f"data: objective.kind 'lda' needs at least 2 classes in the training rows, got {len(classes)}")
        k = model_cfg.latent
        if k > most:
            raise UserError(f"model.latent: objective.kind 'lda' has at most min(classes − 1, D) = {most} discriminant "
                            f"directions ({len(classes)} classes in the training rows), got {k}; set model.latent ≤ {most}")
        x = np.asarray(data.x_train, np.float64)
        rows = data.labelled_rows  # data.labels_per_class: fitted on the labels the model may see
        self.fitted = LinearDiscriminantAnalysis(n_components=k).fit(x[rows], data.y_train[rows])
        a, b = affine_map(self.fitted.transform, data.dim)
        w, c = affine_decoder(x @ a + b, x)
        self.a, self.b = a.astype(np.float32), b.astype(np.float32)  # (D, K), (K,)
        self.w, self.c = w.astype(np.float32), c.astype(np.float32)  # (K, D), (D,)

    def loss(self, model, x, key, train_set):
        raise RuntimeError("the lda objective is fitted in closed form, not trained")

    def encode(self, model, x):
        return x @ self.a + self.b

    def reconstruct(self, model, x):
        return self.decode_mean(model, self.encode(model, x))

    def decode_mean(self, model, z):
        return z @ self.w + self.c


make = LDA
