"""``wae``: the Wasserstein autoencoder with an MMD penalty (Tolstikhin et al. 2018, WAE-MMD):

    J = E‖dec(enc(x)) − x‖² + λ·MMD²_k(q_Z, p_Z),   p_Z = N(0, I_K)

with the inverse multiquadratic kernel k(z, z′) = C/(C + ‖z − z′‖²), C = 2K (their choice for a
unit-variance prior), and the unbiased MMD² estimate between the batch's codes and as many prior
draws (diagonal terms excluded).
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat

from dsmcli.objectives.autoencoder import AutoencoderObjective, squared_error
from dsmcli.section import Section


class Config(Section):
    kind: Literal["wae"] = "wae"
    lam: PositiveFloat = 10.0


def imq_mmd(z, prior, c):
    """Unbiased MMD² with k(a, b) = c/(c + ‖a − b‖²) between two equal-size samples."""
    import jax.numpy as jnp

    n = z.shape[0]

    def k(a, b):
        return c / (c + jnp.sum((a[:, None] - b[None]) ** 2, -1))

    off = 1.0 - jnp.eye(n, dtype=z.dtype)
    return (jnp.sum(k(z, z) * off) + jnp.sum(k(prior, prior) * off)) / (n * (n - 1)) - 2 * jnp.mean(k(z, prior))


class WAE(AutoencoderObjective):
    def loss(self, model, x, key, train_set):
        import jax

        z = model.encode(x)
        recon = squared_error(model.decode(z), x).mean()
        prior = jax.random.normal(key, z.shape, z.dtype)
        mmd = imq_mmd(z, prior, 2.0 * z.shape[-1])
        return recon + self.cfg.lam * mmd, {"recon": recon, "mmd_z": mmd}


make = WAE
