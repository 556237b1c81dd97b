"""``dae``: the denoising autoencoder (Vincent et al. 2008; Vincent 2010),

J_DAE(θ) = E_x E_x̃ ‖r_θ(x̃) − x‖²   (no ½; mean over the batch, sum over dimensions)

with Gaussian corruption x̃ = x + σε (``noise: gaussian``) or the original masking corruption
that zeroes each coordinate independently with probability p (``noise: masking``). Score read-out
(Alain & Bengio 2014; Vincent 2010): s(x) = (r(x) − x)/σ² (for masking noise σ only sets the
scale of this read-out). With the tied DAE and Gaussian noise, J_DSM = J_DAE/(2σ⁴) on the same
noise.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dsmcli.objectives.base import RECONSTRUCTION_MODELS, Objective
from dsmcli.section import NoiseScale, Section


class Config(Section):
    kind: Literal["dae"] = "dae"
    sigma: NoiseScale = 0.1
    noise: Literal["gaussian", "masking"] = "gaussian"
    p: float = Field(0.25, gt=0.0, lt=1.0)  # masking probability


def corrupt(x, key, cfg):
    """x̃ = x + σε (gaussian) or x ⊙ m with mᵢ ~ Bernoulli(1 − p) (masking)."""
    import jax

    if cfg.noise == "gaussian":
        from dsmcli.losses import noisy

        return noisy(x, key, cfg.sigma)[0]
    return x * jax.random.bernoulli(key, 1.0 - cfg.p, x.shape).astype(x.dtype)


def reconstruction_error(model, x_in, x_target):
    """E‖r(x_in) − x_target‖² (mean over rows, sum over dimensions)."""
    import jax.numpy as jnp

    return jnp.mean(jnp.sum((model(x_in) - x_target) ** 2, axis=-1))


class DAE(Objective):
    MODELS = RECONSTRUCTION_MODELS
    READS_RECONSTRUCTION = True

    def loss(self, model, x, key, train_set):
        return reconstruction_error(model, corrupt(x, key, self.cfg), x), {}


make = DAE
