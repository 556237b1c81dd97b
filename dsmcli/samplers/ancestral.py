"""``ancestral``: decode draws from a latent prior, x = dec(z).

For models with a decoder (``mlp`` with ``latent: K``; the VAE family). No Markov chain:
``sample.steps`` and ``sample.step_size`` are ignored, ``init`` only fixes the particle count.

``sample.prior``:

* ``normal`` (default): z ~ N(0, I_K), the prior the VAE family is trained towards;
* ``gmm``: z from a Gaussian mixture fitted to the training codes, scikit-learn
  ``GaussianMixture(n_components=sample.n_components, covariance_type="full",
  random_state=<the run's seed>)`` on enc(x) of every training row (encoded in blocks of
  ``train.eval_batch``), fitted once per ``dsm sample`` before the dispatches. The ex-post
  density estimate of Ghosh et al. 2020 (RAE) and pythae's ``GaussianMixtureSampler``: a
  deterministic autoencoder (``ae``, ``sparse_ae``, ``dae`` and ``cae`` with ``latent``) has no
  prior of its own, and its codes need not look like N(0, I). Draws: a component k with
  probability wₖ, then z = μₖ + Lₖ ε, Lₖ the Cholesky factor of Σₖ, ε ~ N(0, I) (in JAX, from
  the sampling key: the fitted mixture depends on the run only, the draws on ``--seed``).

x = ``objective.decode_sample(z, key)``: the decoder's mean dec(z) for every model but those whose
decoder draws (the autoregressive ``pixelcnn_vae``), which use ``fold_in(key, DECODER_STREAM)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsmcli.errors import UserError
from dsmcli.samplers.base import require


DECODER_STREAM = 1_000_003  # fold_in(key, ·) of the decoder's draws (decode_sample), apart from the prior's splits


@dataclass(frozen=True)
class Mixture:
    """A fitted Gaussian mixture over codes: weights (M,), means (M, K), Cholesky factors of
    the covariances (M, K, K)."""

    weights: np.ndarray
    means: np.ndarray
    chols: np.ndarray

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """The mixture's mean and covariance: m = Σ wₖ μₖ, Σ wₖ (Σₖ + μₖμₖᵀ) − m mᵀ."""
        w, mu = self.weights.astype(np.float64), self.means.astype(np.float64)
        cov = np.einsum("mij,mkj->mik", self.chols.astype(np.float64), self.chols.astype(np.float64))
        mean = w @ mu
        second = np.einsum("m,mij->ij", w, cov + mu[:, :, None] * mu[:, None, :])
        return mean, second - np.outer(mean, mean)


def fit_mixture(codes, n_components: int, seed: int) -> Mixture:
    """``GaussianMixture(n_components, covariance_type="full", random_state=seed)`` on ``codes``."""
    from sklearn.mixture import GaussianMixture

    codes = np.asarray(codes, np.float64)
    if n_components > len(codes):
        raise UserError(f"sample.n_components: {n_components} mixture components need at least as many training "
                        f"codes, and there are {len(codes)}; lower it")
    if not np.isfinite(codes).all():
        raise UserError("sample.prior: 'gmm' is fitted to the training codes, and some are not finite; use prior: normal")
    fitted = GaussianMixture(n_components=n_components, covariance_type="full", random_state=seed).fit(codes)
    chols = np.linalg.cholesky(fitted.covariances_)
    return Mixture(fitted.weights_.astype(np.float32), fitted.means_.astype(np.float32), chols.astype(np.float32))


def sample_mixture(mixture: Mixture, key, n: int, dtype=None):
    """``n`` draws (n, K) of ``mixture`` (jit-compatible)."""
    import jax
    import jax.numpy as jnp

    dtype = jnp.float32 if dtype is None else dtype
    k_comp, k_eps = jax.random.split(key)
    comp = jax.random.categorical(k_comp, jnp.log(jnp.asarray(mixture.weights, dtype)), shape=(n,))
    eps = jax.random.normal(k_eps, (n, mixture.means.shape[1]), dtype)
    means, chols = jnp.asarray(mixture.means, dtype), jnp.asarray(mixture.chols, dtype)
    return means[comp] + jnp.einsum("nij,nj->ni", chols[comp], eps)


def training_codes(target) -> np.ndarray:
    """enc(x) (N, K) of every training row (``Target.training_codes``); callable while the
    sampler is traced (computed at once, on the concrete parameters)."""
    import jax

    if target.training_codes is None:
        raise UserError(f"sample.prior: 'gmm' is fitted to the training codes, and {target.description} gives no "
                        f"encoder for them; use prior: normal")
    with jax.ensure_compile_time_eval():
        return np.asarray(target.training_codes())


def prior_draws(target, key, n: int, cfg, dtype=None):
    """``n`` latent draws (n, K) of ``sample.prior`` (for ``gmm``: the mixture is fitted here,
    once per trace of the sampler, i.e. once per ``dsm sample``)."""
    import jax
    import jax.numpy as jnp

    dtype = jnp.float32 if dtype is None else dtype
    if cfg.prior == "gmm":
        mixture = fit_mixture(training_codes(target), cfg.n_components, target.seed)
        return sample_mixture(mixture, key, n, dtype)
    return jax.random.normal(key, (n, target.latent_dim), dtype)


def check(target, cfg) -> None:
    require(target.decode is not None,
            f"sample.kind: 'ancestral' decodes prior samples, and {target.description} has no decoder "
            "(use model.kind mlp or conv with model.latent set)")


def run(target, x0, key, cfg):
    import jax

    z = prior_draws(target, key, x0.shape[0], cfg, x0.dtype)
    return target.decode(z, jax.random.fold_in(key, DECODER_STREAM)), {}
