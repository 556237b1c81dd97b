"""Gaussian mixtures with exact log-density and score, also of their Gaussian-smoothed version.

p(x) = Σₖ wₖ N(x; μₖ, Cₖ) and, because convolving with N(0, σ²I) adds σ²I to every covariance,
q_σ(x) = Σₖ wₖ N(x; μₖ, Cₖ + σ²I). The score is ∇log q_σ(x) = −Σₖ rₖ(x) (Cₖ + σ²I)⁻¹(x − μₖ)
with responsibilities rₖ(x) = wₖNₖ(x)/q_σ(x); both are computed in log space (logsumexp).
Isotropic components (Cₖ = sₖ²I) take a fast path without Cholesky factors.
"""

from __future__ import annotations

import numpy as np

from dsmcli.data.base import Density


class GaussianMixture(Density):
    smoothable = True

    def __init__(self, means, weights, stds=None, covs=None):
        self.means = np.asarray(means, dtype=np.float64)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.dim = int(self.means.shape[1])
        if covs is not None:
            self.covs = np.asarray(covs, dtype=np.float64)
            self.stds = None
        else:
            self.stds = np.asarray(stds, dtype=np.float64)
            self.covs = None

    @property
    def component_weights(self):
        return self.weights

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.choice(len(self.weights), size=n, p=self.weights / self.weights.sum())
        eps = rng.standard_normal((n, self.dim))
        if self.covs is None:
            x = self.means[k] + self.stds[k, None] * eps
        else:
            chol = np.linalg.cholesky(self.covs)
            x = self.means[k] + np.einsum("nij,nj->ni", chol[k], eps)
        return x.astype(np.float32)

    def component_log_probs(self, x, sigma: float = 0.0):
        import jax.numpy as jnp
        from jax.scipy.linalg import solve_triangular

        x = jnp.asarray(x)
        dtype = x.dtype
        means = jnp.asarray(self.means, dtype)
        log_w = jnp.log(jnp.asarray(self.weights, dtype))
        diff = x[:, None, :] - means[None]  # (B, K, D)
        d = self.dim
        if self.covs is None:
            var = jnp.asarray(self.stds, dtype) ** 2 + sigma**2  # (K,)
            maha = jnp.sum(diff**2, -1) / var
            logdet = d * jnp.log(var)
        else:
            cov = jnp.asarray(self.covs, dtype) + sigma**2 * jnp.eye(d, dtype=dtype)
            chol = jnp.linalg.cholesky(cov)  # (K, D, D)
            z = jnp.stack(
                [solve_triangular(chol[k], diff[:, k].T, lower=True).T for k in range(len(self.weights))],
                axis=1,
            )
            maha = jnp.sum(z**2, -1)
            logdet = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), -1)
        return log_w - 0.5 * (maha + logdet + d * jnp.log(2 * jnp.pi))

    def log_prob(self, x, sigma: float = 0.0):
        from jax.scipy.special import logsumexp

        return logsumexp(self.component_log_probs(x, sigma), axis=-1)

    def score(self, x, sigma: float = 0.0):
        import jax
        import jax.numpy as jnp

        x = jnp.asarray(x)
        dtype = x.dtype
        resp = jax.nn.softmax(self.component_log_probs(x, sigma), axis=-1)  # (B, K)
        diff = x[:, None, :] - jnp.asarray(self.means, dtype)[None]
        if self.covs is None:
            var = jnp.asarray(self.stds, dtype) ** 2 + sigma**2
            per_comp = -diff / var[None, :, None]
        else:
            prec = jnp.linalg.inv(jnp.asarray(self.covs, dtype) + sigma**2 * jnp.eye(self.dim, dtype=dtype))
            per_comp = -jnp.einsum("kij,bkj->bki", prec, diff)
        return jnp.sum(resp[..., None] * per_comp, axis=1)
