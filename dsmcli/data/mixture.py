"""Gaussian mixtures with exact log-density and score, also of their Gaussian-smoothed version.

p(x) = Σₖ wₖ N(x; μₖ, Cₖ) and, because convolving with N(0, σ²I) adds σ²I to every covariance,
q_σ(x) = Σₖ wₖ N(x; μₖ, Cₖ + σ²I). The score is ∇log q_σ(x) = −Σₖ rₖ(x) (Cₖ + σ²I)⁻¹(x − μₖ)
with responsibilities rₖ(x) = wₖNₖ(x)/q_σ(x); both are computed in log space (logsumexp). With
Pₖ = (Cₖ + σ²I)⁻¹ and gₖ = −Pₖ(x − μₖ) (so s = Σₖ rₖgₖ), the Hessian is

    ∇²log q_σ(x) = Σₖ rₖ (gₖgₖᵀ − Pₖ) − s sᵀ

(differentiate s = Σₖ rₖgₖ with ∇rₖ = rₖ(gₖ − s)), in closed form in any D.
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

    def _parts(self, x, sigma):
        """Responsibilities rₖ ``(B, K)``, component scores gₖ ``(B, K, D)`` and, for full
        covariances, the precisions Pₖ ``(K, D, D)`` (isotropic: the variances ``(K,)``)."""
        import jax
        import jax.numpy as jnp

        x = jnp.asarray(x)
        dtype = x.dtype
        resp = jax.nn.softmax(self.component_log_probs(x, sigma), axis=-1)  # (B, K)
        diff = x[:, None, :] - jnp.asarray(self.means, dtype)[None]
        if self.covs is None:
            var = jnp.asarray(self.stds, dtype) ** 2 + sigma**2
            return resp, -diff / var[None, :, None], var
        prec = jnp.linalg.inv(jnp.asarray(self.covs, dtype) + sigma**2 * jnp.eye(self.dim, dtype=dtype))
        return resp, -jnp.einsum("kij,bkj->bki", prec, diff), prec

    def score(self, x, sigma: float = 0.0):
        import jax.numpy as jnp

        resp, g, _ = self._parts(x, sigma)
        return jnp.sum(resp[..., None] * g, axis=1)

    def hessian(self, x, sigma: float = 0.0):
        """Σₖ rₖ(gₖgₖᵀ − Pₖ) − s sᵀ ``(B, D, D)``."""
        import jax.numpy as jnp

        resp, g, prec = self._parts(x, sigma)
        s = jnp.sum(resp[..., None] * g, axis=1)
        outer = jnp.einsum("bk,bki,bkj->bij", resp, g, g) - s[:, :, None] * s[:, None, :]
        if self.covs is None:
            eye = jnp.eye(self.dim, dtype=s.dtype)
            return outer - jnp.sum(resp / prec[None], axis=1)[:, None, None] * eye
        return outer - jnp.einsum("bk,kij->bij", resp, prec)

    def hessian_vp(self, x, v, sigma: float = 0.0):
        """Σₖ rₖ(gₖ(gₖ·v) − Pₖv) − s(s·v) ``(B, D)``, without forming a D × D matrix."""
        import jax.numpy as jnp

        resp, g, prec = self._parts(x, sigma)
        s = jnp.sum(resp[..., None] * g, axis=1)
        gv = jnp.einsum("bki,bi->bk", g, v)
        out = jnp.einsum("bk,bki->bi", resp * gv, g) - s * jnp.sum(s * v, -1, keepdims=True)
        if self.covs is None:
            return out - jnp.sum(resp / prec[None], axis=1)[:, None] * v
        return out - jnp.einsum("bk,kij,bj->bi", resp, prec, v)
