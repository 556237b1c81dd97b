"""Masked convolutions and a small conditional PixelCNN over one-channel images (van den Oord,
Kalchbrenner & Kavukcuoglu 2016, *Pixel Recurrent Neural Networks*, §3.4; van den Oord et al.
2016, *Conditional Image Generation with PixelCNN Decoders*, §2.3). Helpers of the
``pixelcnn_vae`` objective, not a model kind.

Order: raster order over the H×W pixels of an image, pixel i = (r, c) ↦ i = r·W + c (the row
order of the flattened images, ``conv_blocks.to_rows``). A masked k×k convolution multiplies its
kernel by a fixed 0/1 mask (``causal_mask``) that keeps the taps strictly above the centre row,
and those left of the centre in the centre row; type ``A`` (first layer) masks the centre tap,
type ``B`` (later layers) keeps it. Output i of a type-A layer then depends on input pixels
j < i only, and a stack A, B, B, … keeps that: the logits of pixel i are a function of x_<i (and
of the conditioning). One channel only (C = 1): with C > 1 the masks would also have to order
the channels within a pixel (R before G before B).

Known limitation (the paper's "blind spot", *Conditional Image Generation…* §2.2): a stack of
such masked convolutions does not see every j < i — the pixels up and to the right beyond the
kernel's reach grow a triangle that no depth fills. Gated PixelCNN's vertical/horizontal stacks
remove it; this small stack does not.

Conditioning on z (*Conditional Image Generation…* eq. 4, with h = z, and its spatial variant
with a map s = m(z)): each layer adds to its pre-activation a per-channel bias V_l z + b_l and a
pointwise projection u_l · s(z)[r, c] of a one-channel conditioning map s(z) (B, H, W) — neither
depends on x, so causality is unaffected.

Network (P = ``channels``, L = ``levels``, act = the model's activation):

    h₁ = act(conv_A(x̄) + V₁z + u₁s),   x̄ = 2x − 1 (x ∈ [0, 1]: level k ↦ k/(L − 1))
    h_l = h_{l−1} + act(conv_B,l(h_{l−1}) + V_l z + u_l s),   l = 2 … layers
    logits = W_out h_layers + b_out          (a 1×1 conv: L logits per pixel)

The convolutions are ``conv_blocks.patch_conv`` (im2col + one matmul, SAME padding) of the
masked kernel, computed over the unmasked taps only (``causal_conv``).
"""

from __future__ import annotations

import numpy as np


def causal_mask(kernel: int, mask_type: str) -> np.ndarray:
    """The (k, k) 0/1 mask of a k×k masked convolution (k odd): 1 on the rows above the centre,
    and left of the centre in the centre row; the centre itself 0 for type ``A``, 1 for ``B``."""
    if kernel % 2 != 1 or mask_type not in ("A", "B"):
        raise ValueError(f"causal_mask needs an odd kernel and type A or B, got {kernel}, {mask_type!r}")
    mask = np.zeros((kernel, kernel), np.float32)
    c = kernel // 2
    mask[:c, :] = 1.0
    mask[c, :c] = 1.0
    if mask_type == "B":
        mask[c, c] = 1.0
    return mask


def causal_conv(x, kernel, mask_type: str):
    """``patch_conv(x, kernel · mask, (1, 1), "SAME")`` for the mask of ``causal_mask`` — the
    same im2col and one matmul, over the unmasked taps only (about half of them: their columns
    are all the masked product would multiply by a non-zero weight). ``x`` (B, H, W, cin),
    ``kernel`` (k, k, cin, cout) → (B, H, W, cout)."""
    import jax.numpy as jnp

    k, _, cin, cout = kernel.shape
    c = k // 2
    taps = np.argwhere(causal_mask(k, mask_type) > 0)  # (n, 2) rows (i, j), raster order
    h, w = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (c, c), (c, c), (0, 0)))
    cols = [padded[:, i : i + h, j : j + w, :] for i, j in taps]
    patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]  # (B, H, W, n·cin)
    weights = kernel[taps[:, 0], taps[:, 1]]  # (n, cin, cout)
    return jnp.dot(patches, weights.reshape(len(taps) * cin, cout))


def masked_conv(cin: int, cout: int, kernel: int, mask_type: str, rngs):
    """A k×k convolution (SAME padding, stride 1, NHWC) whose kernel is multiplied by
    ``causal_mask(kernel, mask_type)`` at every call. Parameters ``kernel`` (k, k, cin, cout) —
    the masked taps are initialised to 0 and, multiplied by 0, get zero gradients, so they stay
    0 under the optimisers here — and ``bias`` (cout,). Initialisation: N(0, 1/fan-in) with the
    fan-in of the unmasked taps (LeCun normal)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    mask = causal_mask(kernel, mask_type)[:, :, None, None]
    fan_in = max(1.0, float(mask.sum()) * cin)

    class MaskedConv(nnx.Module):
        def __init__(self):
            w = jax.random.normal(rngs.params(), (kernel, kernel, cin, cout), jnp.float32) / np.sqrt(fan_in)
            self.kernel = nnx.Param(w * mask)
            self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32))
            self.size, self.mask_type = kernel, mask_type  # static (the mask is rebuilt from these)

        def __call__(self, x):
            return causal_conv(x, self.kernel[...], self.mask_type) + self.bias[...]

    return MaskedConv()


def pixel_network(image_hw: tuple[int, int], latent: int, levels: int, channels: int, layers: int, kernel: int,
                  act, rngs):
    """The conditional PixelCNN of the module docstring, for images of ``image_hw`` = (H, W)
    and codes of size ``latent``. ``net(x, z, s)``: canvas rows ``x`` (B, H·W) in [0, 1], codes
    (B, K), conditioning map rows ``s`` (B, H·W) → logits (B, H·W, L); ``condition(z, s)`` and
    ``logits(x, cond)`` split it so that a sampler computes the conditioning once."""
    from flax import nnx

    from dsmcli.models import dense

    h, w = image_hw

    class PixelCNN(nnx.Module):
        def __init__(self):
            self.convs = nnx.List([masked_conv(1, channels, kernel, "A", rngs)]
                                  + [masked_conv(channels, channels, kernel, "B", rngs) for _ in range(layers - 1)])
            self.from_z = nnx.List([dense.Linear(latent, channels, rngs=rngs) for _ in range(layers)])
            self.from_map = nnx.List([dense.Linear(1, channels, use_bias=False, rngs=rngs) for _ in range(layers)])
            self.out = dense.Linear(channels, levels, rngs=rngs)

        def condition(self, z, s):
            """Per layer, V_l z + b_l + u_l·s: (B, H, W, P) each (a function of z alone)."""
            smap = s.reshape(s.shape[0], h, w, 1)
            return [vz(z)[:, None, None, :] + us(smap) for vz, us in zip(self.from_z, self.from_map)]

        def logits(self, x, cond):
            """Logits (B, H·W, L) of every pixel given the canvas ``x`` (B, H·W); those of pixel
            i depend on x_<i only."""
            img = (2.0 * x - 1.0).reshape(x.shape[0], h, w, 1)
            hid = act(self.convs[0](img) + cond[0])
            for conv, c in zip(self.convs[1:], cond[1:]):
                hid = hid + act(conv(hid) + c)
            return self.out(hid).reshape(x.shape[0], h * w, -1)

        def __call__(self, x, z, s):
            return self.logits(x, self.condition(z, s))

    return PixelCNN()
