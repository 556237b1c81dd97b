"""``tied_dae``: Vincent's (2010) tied-weight sigmoid autoencoder.

    h(x) = sigmoid(W x + b),   r(x) = Wᵀ h(x) + c,   W ∈ ℝ^{H×D}

With σ the noise level of the objective it defines the energy (Vincent 2010, eq. 9)

    E(x) = −(⟨c, x⟩ − ½‖x‖² + Σⱼ softplus(⟨Wⱼ, x⟩ + bⱼ)) / σ²

whose score is exactly −∇E(x) = (r(x) − x)/σ², so denoising score matching on this energy and
the denoising autoencoder loss coincide: J_DSM = J_DAE / (2σ⁴).
"""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat, PositiveInt

from dsmcli.section import Section


class Config(Section):
    kind: Literal["tied_dae"] = "tied_dae"
    hidden: PositiveInt = 64
    init_scale: PositiveFloat = 1.0  # W ~ N(0, init_scale² / D)


def build(cfg: Config, dim: int, rngs, **options):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    class TiedDAE(nnx.Module):
        def __init__(self):
            self.W = nnx.Param(jax.random.normal(rngs.params(), (cfg.hidden, dim)) * cfg.init_scale / jnp.sqrt(dim))
            self.b = nnx.Param(jnp.zeros((cfg.hidden,)))
            self.c = nnx.Param(jnp.zeros((dim,)))

        def encode(self, x):
            return jax.nn.sigmoid(x @ self.W[...].T + self.b[...])

        def __call__(self, x):
            return self.encode(x) @ self.W[...] + self.c[...]

        def energy(self, x, sigma):
            pre = x @ self.W[...].T + self.b[...]
            inner = x @ self.c[...] - 0.5 * jnp.sum(x**2, -1) + jnp.sum(jax.nn.softplus(pre), -1)
            return -inner / sigma**2

    return TiedDAE()
