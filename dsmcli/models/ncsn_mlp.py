"""``ncsn_mlp``: a noise-conditional score network s(x, σ) for vectors.

The MLP sees x and log σ (concatenated) and its output is divided by σ, the NCSNv2
parameterisation s(x, σ) = f(x, log σ)/σ (Song & Ermon 2020, technique 3): the score of the
σ-smoothed density scales like 1/σ, so f stays O(1) at every level.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from dsmcli.models.activations import ACTIVATIONS, activation_fn
from dsmcli.models.mlp import forward, stack
from dsmcli.section import Section


# dense layers only (models.dense): the gradients' bits do not depend on the thread count
THREAD_INDEPENDENT = True


class Config(Section):
    kind: Literal["ncsn_mlp"] = "ncsn_mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128, 128])
    activation: Literal[ACTIVATIONS] = "softplus"


def build(cfg: Config, dim: int, rngs, **options):
    import jax.numpy as jnp
    from flax import nnx

    class NoiseConditionalMLP(nnx.Module):
        noise_conditional = True

        def __init__(self):
            self.act = activation_fn(cfg.activation)
            self.layers = stack([dim + 1, *cfg.hidden, dim], rngs)

        def __call__(self, x, sigma):
            sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype).reshape(-1, 1), (x.shape[0], 1))
            return forward(self.layers, self.act, jnp.concatenate([x, jnp.log(sigma)], -1)) / sigma

    return NoiseConditionalMLP()
