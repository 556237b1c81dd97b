"""What the autoencoder family (Bank, Koenigstein & Giryes, *Autoencoders*) shares: an ``mlp``
with a ``latent`` bottleneck, codes for downstream tasks, and no score read-out (these models
are judged by reconstruction, generation and their codes; sample them with ``ancestral``)."""

from __future__ import annotations

from dsmcli.errors import UserError
from dsmcli.objectives.base import Objective


class AutoencoderObjective(Objective):
    MODELS = ("mlp", "conv")
    NEEDS_LATENT = True
    has_score = False

    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        if model_cfg.latent is None:
            raise UserError(f"model.latent: objective.kind '{cfg.kind}' needs a bottleneck; set model.latent (e.g. 8)")

    def score(self, model, x):
        raise UserError(f"objective.kind '{self.cfg.kind}' has no score read-out; sample it with sample.kind ancestral")

    @property
    def has_energy(self) -> bool:
        return False


def extended(autoencoder, **parts):
    """``autoencoder`` (encode, decode and reconstruction delegated to it) with further named
    sub-networks of an objective beside it (a discriminator, a classifier head), as one module
    whose parameters are ``autoencoder`` and ``parts``' names."""
    from flax import nnx

    class Extended(nnx.Module):
        def __init__(self):
            self.autoencoder = autoencoder
            for name, part in parts.items():
                setattr(self, name, part)

        def encode(self, x):
            return self.autoencoder.encode(x)

        def encode_stats(self, x):
            """(mean, log-variance) of q(z|x), for autoencoders with a stochastic encoder."""
            return self.autoencoder.encode_stats(x)

        def decode(self, z):
            return self.autoencoder.decode(z)

        def __call__(self, x):
            return self.autoencoder(x)

    return Extended()


def squared_error(recon, x):
    """‖r − x‖² per row (sum over dimensions)."""
    import jax.numpy as jnp

    return jnp.sum((recon - x) ** 2, axis=-1)
