"""``conv``: a convolutional network for images (``digits`` 8×8, ``mnist`` 28×28, ``images`` and
``cifar10`` with 1 or 3 channels).

Without ``latent`` it is a U-Net ℝᴰ → ℝᴰ (see ``conv_blocks.unet``), read as a score s(x) by the
score-matching objectives or as a reconstruction r(x) by the denoising / contractive ones. With
``latent: K`` it is a convolutional autoencoder: the encoder halves the resolution once per
entry of ``channels`` (stride-2 3×3 convs) and maps the flattened features linearly to the
K-dimensional code (2K numbers — mean and log-variance — with ``stochastic_encoder``, for the
VAE family); the decoder mirrors it (linear, then per level nearest-neighbour 2× up-sampling and
a 3×3 conv) back to the images' C channels.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from dsmcli.models.conv_blocks import conv, require_image, to_images, to_rows, unet, upsample2
from dsmcli.models.activations import ACTIVATIONS, activation_fn
from dsmcli.section import Section

NEEDS_IMAGES = True  # built with the data's ``image_shape`` (digits, mnist, images, cifar10)


class Config(Section):
    kind: Literal["conv"] = "conv"
    channels: list[PositiveInt] = Field(default_factory=lambda: [32, 64], min_length=1)
    activation: Literal[ACTIVATIONS] = "silu"
    latent: PositiveInt | None = None


def build(cfg: Config, dim: int, rngs, stochastic_encoder: bool = False, image_shape=None, **options):
    from flax import nnx

    from dsmcli.models import dense

    k = cfg.latent
    act = activation_fn(cfg.activation)
    hw = require_image("conv", image_shape, len(cfg.channels) - (k is None))  # (H, W, C)
    chans = cfg.channels

    class ConvNet(nnx.Module):
        def __init__(self):
            if k is None:
                self.unet = unet(chans, None, act, rngs, hw[2])
                return
            widths = [hw[2], *chans]
            self.enc = nnx.List([conv(a, b, 3, rngs, strides=2) for a, b in zip(widths[:-1], widths[1:])])
            self.small = (hw[0] // 2 ** len(chans), hw[1] // 2 ** len(chans))
            flat = self.small[0] * self.small[1] * chans[-1]
            self.to_code = dense.Linear(flat, 2 * k if stochastic_encoder else k, rngs=rngs)
            self.from_code = dense.Linear(k, flat, rngs=rngs)
            up = list(reversed(widths))  # c_L … c_1, C
            self.dec = nnx.List([conv(a, b, 3, rngs) for a, b in zip(up[:-1], up[1:])])

        def _features(self, x):
            h = to_images(x, hw)
            for layer in self.enc:
                h = act(layer(h))
            return self.to_code(to_rows(h))

        def encode_stats(self, x):
            """(mean, log-variance) of q(z|x) (stochastic encoder only)."""
            out = self._features(x)
            return out[:, :k], out[:, k:]

        def encode(self, x):
            return self._features(x)[:, :k]

        def decode(self, z):
            h = act(self.from_code(z)).reshape(z.shape[0], *self.small, chans[-1])
            for i, layer in enumerate(self.dec):
                h = layer(upsample2(h))
                if i < len(self.dec) - 1:
                    h = act(h)
            return to_rows(h)

        def __call__(self, x):
            if k is None:
                return to_rows(self.unet(to_images(x, hw)))
            return self.decode(self.encode(x))

    return ConvNet()
