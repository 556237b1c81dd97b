"""``pixelcnn_vae``: a VAE whose decoder is a conditional PixelCNN (van den Oord et al. 2016,
*Pixel Recurrent Neural Networks* and *Conditional Image Generation with PixelCNN Decoders*;
Gulrajani et al. 2017, *PixelVAE*; Bank, Koenigstein & Giryes, *Autoencoders*, §5.5).

Encoder: the model's stochastic encoder q(z|x) = N(μ(x), diag σ²(x)) (``mlp`` or ``conv`` with
``latent: K``), prior N(0, I). Decoder: an autoregressive categorical over L grey levels per
pixel, in raster order (``dsmcli.models.pixelcnn``: masked convolutions, type A then B),

    log p(x|z) = Σᵢ log softmax(fᵢ(x_<i, z))[kᵢ],   kᵢ = level(xᵢ),

exact and normalised (a probability of the quantised image, nats). The PixelCNN is conditioned
on z by per-layer channel biases V_l z and on a spatial map s(z) = dec(z), the model's own
decoder output (one value per pixel): the autoencoder's decoder is the PixelVAE's "upsampling
network" from z to the PixelCNN's conditioning map, trained only through the PixelCNN.

Loss (negative β-ELBO, one reparameterised z = μ + σ·ε per row, ε = normal(key), batch mean):

    J = E_x[ −log p(x|z) + β·KL(q(z|x) ‖ N(0, I)) ],   KL = ½ Σ (σ² + μ² − 1 − log σ²)

Logged: ``nll`` and ``kl`` (batch means). ``elbo`` is the β = 1 ELBO per row. The loss, ``elbo`` and the
stochastic encoder are ``vae``'s (this class extends it), through this ``decoder_log_prob``.

Levels: pixel values x ∈ [0, 1] with L levels k/(L − 1), k = 0 … L − 1;
level(x) = clip(⌈x(L − 1) − ½⌉, 0, L − 1) — the nearest level, ties to the lower one (so
``levels: 2`` binarises exactly as the VAE's ``nll_iw`` does: 1 where x > 0.5). ``levels``
defaults to the data's own quantisation, L = 1/a + 1 for a bin width a (``Dataset.quantization``;
digits: a = 1/16, L = 17; MNIST IDX files: 256); data without one need ``levels`` set. Data
outside [0, 1] (digits with ``scale: standard``) and images of C > 1 channels are refused.

Which data the numbers are likelihoods of: ``loss``, ``elbo`` and ``nll_iw`` (the IWAE bound
through ``decoder_log_prob``; ``nll_iw`` passes the held-out rows unchanged, since this
objective has no ``likelihood: bernoulli``) are all −log P of the held-out images *quantised to
the L levels* — a discrete probability, nats per image. At the default L = 17 on digits that
is the data itself, losslessly, and it is **not** comparable with the ``vae`` row's ``nll_iw``
(a probability of the binarised images, a coarser event, so a smaller number); with
``levels: 2`` it is the probability of the same binarised rows, and comparable with it.
(At the data's own L, a continuous density on the uniformly dequantised data — ``sde``'s
``nll``, bins of width a centred on the levels — bounds it: −log P ≤ nll + D·log(1/a), by
Jensen; on digits D·log 16 ≈ 177.4 nats.)

Read-outs:

* ``decode_sample(z, key)`` — ancestral sampling x ~ p(x|z), pixel by pixel in one
  ``lax.scan`` over the H·W positions: step i runs the network on the canvas (pixels < i
  drawn, the rest 0; the masks make them irrelevant) and draws kᵢ from pixel i's categorical with
  key fold_in(key, i). Returns the levels' values k/(L − 1) (the data's space).
* ``decode_mean(z)`` (latent interpolations) — the greedy decode, the same scan with
  kᵢ = argmax of pixel i's logits: a deterministic image on the levels, the sequence of the
  most probable next pixels (not the mean of p(x|z), which has no closed form, nor its mode).
* ``reconstruct(x)`` (``recon_mse``) — teacher forcing at z = μ(x): each pixel's predictive
  mean E[xᵢ | x_<i, z = μ(x)] = Σ_k softmax(fᵢ)_k · k/(L − 1), given the true preceding pixels.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from dsmcli.errors import UserError
from dsmcli.objectives.autoencoder import extended
from dsmcli.objectives.vae import VAE
from dsmcli.section import Section

TOLERANCE = 1e-6  # data in [0, 1] up to float rounding


class Config(Section):
    kind: Literal["pixelcnn_vae"] = "pixelcnn_vae"
    beta: PositiveFloat = 1.0
    levels: int | None = Field(None, ge=2, le=256)  # grey levels per pixel; default: the data's quantisation
    pixel_channels: PositiveInt = 32  # feature maps of every masked conv layer
    pixel_layers: PositiveInt = 6  # one type-A layer, then pixel_layers − 1 type-B residual layers
    kernel: int = Field(3, ge=3)  # k×k masked kernels, k odd (each layer reaches (k − 1)/2 rows further up)

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 != 1:
            raise ValueError("must be odd (a centre tap splits the causal half of the kernel)")
        return v


def data_levels(cfg_levels: int | None, data) -> int:
    """L: ``objective.levels`` if set, else 1/a + 1 for the data's bin width a; the checks of the
    module docstring (images of one channel, values in [0, 1], a known quantisation)."""
    shape = data.image_shape
    if shape is None or len(shape) not in (2, 3):
        raise UserError(f"data.kind: objective.kind 'pixelcnn_vae' models images pixel by pixel, and data.kind "
                        f"'{data.kind}' has none (use digits, mnist or one-channel images)")
    if len(shape) == 3 and shape[2] != 1:
        raise UserError(f"data.kind: objective.kind 'pixelcnn_vae' models one-channel images, and data.kind "
                        f"'{data.kind}' has {shape[2]} channels (use digits, mnist or grey-scale images)")
    lo, hi = float(np.min(data.x_train)), float(np.max(data.x_train))
    if lo < -TOLERANCE or hi > 1 + TOLERANCE:
        raise UserError(f"data: objective.kind 'pixelcnn_vae' models pixels in [0, 1], and the {data.kind} rows "
                        f"span [{lo:.3g}, {hi:.3g}] (digits: use data.scale unit)")
    if cfg_levels is not None:
        return int(cfg_levels)
    quant = getattr(data, "quantization", None)
    if quant is None:
        raise UserError(f"objective.levels: data.kind '{data.kind}' does not say how its pixels are quantised; "
                        f"set objective.levels (e.g. 256 for 8-bit images, 2 to binarise at 0.5)")
    widths = np.unique(np.asarray(quant, np.float64))
    n = int(round(1.0 / widths[0])) + 1 if len(widths) == 1 and widths[0] > 0 else 0
    if n < 2 or n > 256 or abs((n - 1) * widths[0] - 1.0) > 1e-3:
        raise UserError(f"objective.levels: the pixels of data.kind '{data.kind}' are not on a grid k/(L − 1) of "
                        f"[0, 1] with 2 ≤ L ≤ 256; set objective.levels")
    return n


class PixelCNNVAE(VAE):
    NEEDS_IMAGES = True  # defined on image data only, whichever encoder (the registry contract test reads it)

    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        self.levels = data_levels(cfg.levels, data)
        self.image_hw = (int(data.image_shape[0]), int(data.image_shape[1]))

    def extend_model(self, model, rngs):
        from dsmcli.models.activations import activation_fn
        from dsmcli.models.pixelcnn import pixel_network

        c = self.cfg
        net = pixel_network(self.image_hw, self.model_cfg.latent, self.levels, c.pixel_channels, c.pixel_layers,
                            c.kernel, activation_fn(self.model_cfg.activation), rngs)
        return extended(model, pixelcnn=net)  # model.decode(z) is the conditioning map s(z)

    # ------------------------------------------------------------------ levels
    def level_of(self, x):
        """kᵢ = clip(⌈xᵢ(L − 1) − ½⌉, 0, L − 1), int32 (nearest level, ties down)."""
        import jax.numpy as jnp

        n = self.levels - 1
        return jnp.clip(jnp.ceil(x * n - 0.5), 0, n).astype(jnp.int32)

    def value_of(self, k, dtype=None):
        """The level's value k/(L − 1) in [0, 1]."""
        import jax.numpy as jnp

        return k.astype(dtype or jnp.float32) / (self.levels - 1)

    # ------------------------------------------------------------------ likelihood
    def logits(self, model, x, z):
        """Logits (B, H·W, L) of every pixel given the (quantised) canvas ``x`` and codes ``z``."""
        return model.pixelcnn(self.value_of(self.level_of(x), x.dtype), z, model.decode(z))

    def decoder_log_prob(self, model, x, z):
        """log p(x|z) per row: Σᵢ log softmax(fᵢ)[level(xᵢ)], nats, exact and normalised over the
        L^D quantised images (the hook of ``nll_iw``, dsmcli/metrics/iwae.py)."""
        import jax
        import jax.numpy as jnp

        logp = jax.nn.log_softmax(self.logits(model, x, z), -1)
        return jnp.take_along_axis(logp, self.level_of(x)[..., None], -1)[..., 0].sum(-1)

    # ------------------------------------------------------------------ read-outs
    def reconstruct(self, model, x):
        """E[xᵢ | x_<i, z = μ(x)] per pixel (teacher forcing on x's levels)."""
        import jax

        probs = jax.nn.softmax(self.logits(model, x, model.encode(x)), -1)
        return probs @ self.value_of(np.arange(self.levels), probs.dtype)

    def _autoregress(self, model, z, pick):
        """The canvas filled in raster order by one ``lax.scan`` over the H·W pixels, pixel i's
        level ``pick(i, logits_i)`` (B,) from its logits (B, L) given the pixels before it."""
        import jax
        import jax.numpy as jnp

        net = model.pixelcnn
        cond = net.condition(z, model.decode(z))
        d = self.image_hw[0] * self.image_hw[1]

        def step(canvas, i):
            logits_i = jax.lax.dynamic_index_in_dim(net.logits(canvas, cond), i, axis=1, keepdims=False)
            canvas = jax.lax.dynamic_update_index_in_dim(canvas, self.value_of(pick(i, logits_i), canvas.dtype), i, 1)
            return canvas, None

        canvas, _ = jax.lax.scan(step, jnp.zeros((z.shape[0], d), z.dtype), jnp.arange(d))
        return canvas

    def decode_sample(self, model, z, key):
        """x ~ p(x|z): pixel i from its categorical with key fold_in(key, i)."""
        import jax

        return self._autoregress(model, z, lambda i, li: jax.random.categorical(jax.random.fold_in(key, i), li, -1))

    def decode_mean(self, model, z):
        """The greedy decode: pixel i = the argmax level given the pixels chosen before it."""
        import jax.numpy as jnp

        return self._autoregress(model, z, lambda i, li: jnp.argmax(li, -1))


make = PixelCNNVAE
