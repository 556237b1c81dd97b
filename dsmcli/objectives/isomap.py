"""``isomap``: Isomap at ``model.latent`` components (Tenenbaum, de Silva & Langford 2000; survey
§4.6), fitted once on the training rows (scikit-learn ``Isomap(n_components=K, n_neighbors=
n_neighbors)``), so it trains nothing: geodesic distances along the ``n_neighbors``-nearest-
neighbour graph, embedded by classical MDS (kernel PCA).

* codes: Isomap's ``transform`` of any rows (training rows included, which it maps to their
  fitted embedding but for rare rows whose geodesics it shortens), written out in JAX from the
  fitted graph, so it runs inside jit-compiled code (a ``pure_callback`` into scikit-learn
  deadlocked in compare's worker processes): the ``n_neighbors`` nearest training rows jᵢ of x,
  geodesics g(x, ·) = minᵢ (‖x − x_{jᵢ}‖ + G[jᵢ, ·]), the kernel −½g² centred as KernelCenterer
  does against the training kernel, projected on the kernel PCA's eigenvectors / √eigenvalues
  (equal to scikit-learn's ``transform`` to float32 precision, tested);
* reconstructions: Isomap has no decoder. As for ``lda``, ``reconstruct``/``decode_mean`` are
  the least-squares affine decoder from the codes, x̂ = z W + c fitted on the training rows'
  codes (``transform``'s), so
  ``recon_mse`` is what an affine read-out of the codes keeps (at least PCA's at the same K),
  ``anomaly_auroc`` scores with that error and ``ancestral`` decodes through it;
* memory and time: the geodesic distances are N × N for N training rows (refused where they
  cannot fit; digits' 1437 rows fit in about a second).

The ``mlp`` of ``model`` is built (``latent`` is K) but not used.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import PositiveInt

from dsmcli.errors import UserError
from dsmcli.objectives.autoencoder import AutoencoderObjective
from dsmcli.objectives.lda import affine_decoder
from dsmcli.section import Section


class Config(Section):
    kind: Literal["isomap"] = "isomap"
    n_neighbors: PositiveInt = 10


class Isomap(AutoencoderObjective):
    trains = False

    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        from sklearn.manifold import Isomap as SkIsomap

        from dsmcli import memory

        n = len(data.x_train)
        if cfg.n_neighbors >= n:
            raise UserError(f"objective.n_neighbors: {cfg.n_neighbors} neighbours need more training rows than the "
                            f"{n} there are; set it below {n}")
        memory.check(4 * 8.0 * n * n, f"objective.kind 'isomap' on {n} training rows (N × N geodesic distances)",
                     "use fewer training rows")
        x = np.asarray(data.x_train, np.float64)
        self.k = model_cfg.latent
        self.fitted = SkIsomap(n_components=self.k, n_neighbors=cfg.n_neighbors).fit(x)
        self._parts = self._embedding_parts()
        w, c = affine_decoder(self.transform(x), x)
        self.w, self.c = w.astype(np.float32), c.astype(np.float32)  # (K, D), (D,)

    def transform(self, x) -> np.ndarray:
        """Isomap's codes of rows ``x`` (NumPy, float32), by scikit-learn."""
        return self.fitted.transform(np.asarray(x, np.float64)).astype(np.float32)

    def _embedding_parts(self):
        fitted = self.fitted
        kpca = fitted.kernel_pca_
        nonzero = np.flatnonzero(kpca.eigenvalues_)
        alphas = np.zeros_like(kpca.eigenvectors_)
        alphas[:, nonzero] = kpca.eigenvectors_[:, nonzero] / np.sqrt(kpca.eigenvalues_[nonzero])
        centerer = kpca._centerer
        return (np.asarray(fitted.nbrs_._fit_X, np.float32), np.asarray(fitted.dist_matrix_, np.float32),
                np.asarray(centerer.K_fit_rows_, np.float32), float(centerer.K_fit_all_), alphas.astype(np.float32))

    def loss(self, model, x, key, train_set):
        raise RuntimeError("the isomap objective is fitted in closed form, not trained")

    def encode(self, model, x):
        import jax
        import jax.numpy as jnp

        fit_x, geodesic, fit_rows, fit_all, alphas = (jnp.asarray(a) if isinstance(a, np.ndarray) else a
                                                      for a in self._parts)
        x = x.astype(jnp.float32)
        d2 = jnp.sum(x**2, 1)[:, None] - 2 * x @ fit_x.T + jnp.sum(fit_x**2, 1)[None]
        neg, idx = jax.lax.top_k(-d2, self.cfg.n_neighbors)  # nearest training rows
        dist = jnp.sqrt(jnp.maximum(-neg, 0.0))
        g = jnp.min(geodesic[idx] + dist[:, :, None], axis=1)  # (B, N) geodesics through them
        kernel = -0.5 * g**2
        centred = kernel - fit_rows[None] - jnp.mean(kernel, 1, keepdims=True) + fit_all
        return centred @ alphas

    def reconstruct(self, model, x):
        return self.decode_mean(model, self.encode(model, x))

    def decode_mean(self, model, z):
        return z @ self.w + self.c


make = Isomap
