"""``sparse_ae``: a sparse autoencoder, J = E‖r(x) − x‖² + λ·Ω(h) with h = enc(x) and

* ``penalty: l1``: Ω = E Σⱼ |hⱼ| (mean over the batch);
* ``penalty: kl``: Ω = Σⱼ KL(ρ ‖ ρ̂ⱼ), ρ̂ⱼ = mean over the batch of sigmoid(hⱼ), the target
  activation rate ρ (Ng's sparse autoencoder; the survey's §3.1).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat

from dsmcli.objectives.autoencoder import AutoencoderObjective, squared_error
from dsmcli.section import Section


class Config(Section):
    kind: Literal["sparse_ae"] = "sparse_ae"
    penalty: Literal["l1", "kl"] = "l1"
    lam: PositiveFloat = 1e-3
    rho: float = Field(0.05, gt=0.0, lt=1.0)


def kl_sparsity(h, rho):
    import jax
    import jax.numpy as jnp

    rate = jnp.clip(jnp.mean(jax.nn.sigmoid(h), axis=0), 1e-6, 1 - 1e-6)
    return jnp.sum(rho * jnp.log(rho / rate) + (1 - rho) * jnp.log((1 - rho) / (1 - rate)))


class SparseAE(AutoencoderObjective):
    def loss(self, model, x, key, train_set):
        import jax.numpy as jnp

        h = model.encode(x)
        recon = squared_error(model.decode(h), x).mean()
        penalty = jnp.mean(jnp.sum(jnp.abs(h), -1)) if self.cfg.penalty == "l1" else kl_sparsity(h, self.cfg.rho)
        return recon + self.cfg.lam * penalty, {"recon": recon, "sparsity": penalty}


make = SparseAE
