"""``vae``: the variational autoencoder (Kingma & Welling 2014) with a Gaussian encoder
q(z|x) = N(μ(x), diag σ²(x)) and prior N(0, I); the loss is the negative β-ELBO per example

    J = E_x[ −E_q log p(x|z) + β·KL(q(z|x) ‖ N(0, I)) ]   (one reparameterised z per row)

with a ``bernoulli`` decoder (logits; data in [0, 1]) or a ``gaussian`` one with fixed
``decoder_std`` s: −log p(x|z) = ‖x − dec(z)‖²/(2s²) + (D/2) log(2πs²). β = 1 is the VAE; β > 1
the disentangling β-VAE (Higgins et al. 2017). ``elbo`` (β = 1) is reported by ``dsm eval``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat

from dsmcli.objectives.autoencoder import AutoencoderObjective
from dsmcli.section import NoiseScale, Section


class Config(Section):
    kind: Literal["vae"] = "vae"
    beta: PositiveFloat = 1.0
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    decoder_std: NoiseScale = 0.1


class VAE(AutoencoderObjective):
    def model_options(self) -> dict:
        return {"stochastic_encoder": True}

    def _terms(self, model, x, key):
        """(−log p(x|z), KL) per row, z = μ + σ·ε."""
        import jax
        import jax.numpy as jnp

        mean, logvar = model.encode_stats(x)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
        nll = -self.decoder_log_prob(model, x, z)
        kl = 0.5 * jnp.sum(jnp.exp(logvar) + mean**2 - 1.0 - logvar, -1)
        return nll, kl

    def _nll(self, out, x):
        """−log p(x|z) per row from the decoder's output ``out`` (logits or mean)."""
        import jax.numpy as jnp

        if self.cfg.likelihood == "bernoulli":
            return jnp.sum(jnp.logaddexp(0.0, out) - x * out, -1)  # BCE with logits
        s = self.cfg.decoder_std
        return jnp.sum((x - out) ** 2, -1) / (2 * s**2) + 0.5 * x.shape[-1] * jnp.log(2 * jnp.pi * s**2)

    def decoder_log_prob(self, model, x, z):
        """log p(x|z) per row (nats, normalising constant included: a probability for binary x
        under ``bernoulli``), the hook of ``nll_iw`` (dsmcli/metrics/iwae.py)."""
        return -self._nll(model.decode(z), x)

    def loss(self, model, x, key, train_set):
        nll, kl = self._terms(model, x, key)
        return (nll + self.cfg.beta * kl).mean(), {"nll": nll.mean(), "kl": kl.mean()}

    def elbo(self, model, x, key):
        """ELBO per row (nats), one sample of z."""
        nll, kl = self._terms(model, x, key)
        return -(nll + kl)

    def reconstruct(self, model, x):
        import jax

        out = model.decode(model.encode(x))
        return jax.nn.sigmoid(out) if self.cfg.likelihood == "bernoulli" else out

    def decode_mean(self, model, z):
        """The decoder's mean, for ancestral samples."""
        import jax

        out = model.decode(z)
        return jax.nn.sigmoid(out) if self.cfg.likelihood == "bernoulli" else out


make = VAE
