"""``ncsn_conv``: a noise-conditional convolutional score network s(x, σ) for images.

A U-Net (``conv_blocks.unet``) whose residual blocks each add a per-channel projection of an
embedding of log σ (a two-layer MLP), with the NCSNv2 output scaling s(x, σ) = f(x, σ)/σ
(Song & Ermon 2020, technique 3), as ``ncsn_mlp`` does for vectors. The default network of
``objective.kind: ncsn`` on image data (``digits``, ``mnist``, ``images``, ``cifar10``; C
channels in and out).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from dsmcli.models.conv_blocks import require_image, to_images, to_rows, unet
from dsmcli.models.activations import ACTIVATIONS, activation_fn
from dsmcli.section import Section

NEEDS_IMAGES = True  # built with the data's ``image_shape`` (digits, mnist, images, cifar10)


class Config(Section):
    kind: Literal["ncsn_conv"] = "ncsn_conv"
    channels: list[PositiveInt] = Field(default_factory=lambda: [32, 64], min_length=1)
    activation: Literal[ACTIVATIONS] = "silu"
    embedding: PositiveInt = 64  # width of the log σ embedding


def build(cfg: Config, dim: int, rngs, image_shape=None, **options):
    import jax.numpy as jnp
    from flax import nnx

    from dsmcli.models import dense

    act = activation_fn(cfg.activation)
    hw = require_image("ncsn_conv", image_shape, len(cfg.channels) - 1)  # (H, W, C)

    class NoiseConditionalConv(nnx.Module):
        noise_conditional = True

        def __init__(self):
            self.embed = nnx.List([dense.Linear(1, cfg.embedding, rngs=rngs),
                                   dense.Linear(cfg.embedding, cfg.embedding, rngs=rngs)])
            self.unet = unet(cfg.channels, cfg.embedding, act, rngs, hw[2])

        def __call__(self, x, sigma):
            sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype).reshape(-1, 1), (x.shape[0], 1))
            emb = act(self.embed[1](act(self.embed[0](jnp.log(sigma)))))
            return to_rows(self.unet(to_images(x, hw), emb)) / sigma

    return NoiseConditionalConv()
