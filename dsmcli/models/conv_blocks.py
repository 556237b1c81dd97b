"""Convolutional building blocks shared by the image networks (Flax NNX, NHWC).

Rows of a batch ``(B, D)`` are flattened images of ``image_shape``: (H, W) for one channel or
(H, W, C), rows in H, W, C order (NHWC, as the image data kinds flatten them); every block acts
on each image separately (GroupNorm normalises within an image, never across the
batch), so the networks stay row-wise maps as the score-function contract requires.
"""

from __future__ import annotations

from contextlib import contextmanager

from dsmcli.errors import UserError
from dsmcli.models.group_norm import group_norm


IMAGE_KINDS = "digits, mnist, images or cifar10"  # the data kinds with an image_shape (for messages)


def image_channels(image_shape) -> int:
    """C of an ``image_shape``: (H, W) is one channel, (H, W, C) has C."""
    return 1 if len(image_shape) == 2 else int(image_shape[2])


def require_image(kind: str, image_shape, levels: int) -> tuple[int, int, int]:
    """(H, W, C) of the data's images, H and W checked divisible by 2**levels (each level halves
    them)."""
    if image_shape is None or len(image_shape) not in (2, 3):
        raise UserError(f"model.kind: '{kind}' needs image data (data.kind {IMAGE_KINDS}); "
                        f"use model.kind mlp for vectors")
    h, w = image_shape[:2]
    if h % 2**levels or w % 2**levels:
        raise UserError(f"model.channels: {levels} resolution halvings need image sides divisible by {2**levels}, "
                        f"the images are {h}×{w}; use fewer entries in model.channels")
    return int(h), int(w), image_channels(image_shape)


def patch_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
               dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """``lax.conv_general_dilated`` for NHWC inputs and HWIO kernels, computed as shifted
    slices (im2col) and one matmul — the same numbers, different kernels.

    Used for strided convolutions (``canonical_conv`` falls back to it) and by the PixelCNN's
    masked convolutions: XLA:CPU runs JAX's gradient convolutions many times slower inside a
    ``while`` loop (our ``lax.scan`` over training steps) than outside one, and as a matmul the
    gradient is a matmul everywhere. Plugged into ``nnx.Conv(conv_general_dilated=...)``, so the
    parameters keep flax's layout.
    """
    import jax
    import jax.numpy as jnp

    if feature_group_count != 1 or any(d not in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))):
        raise ValueError("patch_conv supports plain (ungrouped, undilated) convolutions only")
    kh, kw, cin, cout = rhs.shape
    sh, sw = window_strides
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), window_strides, padding)
    (pt, pb), (pl, pr) = padding
    x = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    ho = (x.shape[1] - kh) // sh + 1
    wo = (x.shape[2] - kw) // sw + 1
    cols = [x[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :] for i in range(kh) for j in range(kw)]
    patches = jnp.concatenate(cols, axis=-1) if len(cols) > 1 else cols[0]  # (B, Ho, Wo, kh·kw·cin), HWI order
    return jnp.dot(patches, rhs.reshape(kh * kw * cin, cout), precision=precision)


NHWC_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv_nhwc(x, w, padding):
    import jax

    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=NHWC_DIMS)


def _canonical_conv_fwd(x, w, padding):
    return _conv_nhwc(x, w, padding), (x, w)


def _canonical_conv_bwd(padding, residuals, g):
    """Both gradients as forward NHWC/HWIO convolutions (y = x ⋆ W, stride 1, pads (p₀, p₁) per
    axis, k×k kernel):

        ∂x = g ⋆ flip(W)ᵀ   (kernel flipped in space, in/out swapped; pads k − 1 − p₀, k − 1 − p₁)
        ∂W = xᵀ ⋆ gᵀ        (x as a (C, H, W, B) batch of C "images" with B features, g as a
                             (H, W, B, O) kernel; pads p₀, p₁; the (C, k, k, O) result → HWIO)
        or ∂W = flip(gᵀ ⋆ xᵀ)  (g as an (O, H, W, B) batch, x as an (H, W, B, C) kernel; pads
                             k − 1 − p₀, k − 1 − p₁; the (O, k, k, C) result flipped in space → HWIO)

    Each form moves one operand's channels in front of its batch — a transpose of every entry,
    the slow part — and the other's batch behind its rows (blocks of channels stay whole). The
    second form transposes g, the first x: whichever has fewer channels (O ≤ C: g), measured
    1.1–1.25× faster for the U-Net's 96 → 32 and 128 → 64 layers' ∂W (BENCHMARKS.md).
    """
    import jax.numpy as jnp

    x, w = residuals
    kh, kw, cin, cout = w.shape
    (pt, pb), (pl, pr) = padding
    flipped_pads = ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr))
    w_t = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)
    dx = _conv_nhwc(g, w_t, flipped_pads)
    if cout <= cin:
        dw_t = _conv_nhwc(g.transpose(3, 1, 2, 0), x.transpose(1, 2, 0, 3), flipped_pads)  # (O, k, k, C)
        return dx, jnp.flip(dw_t, (1, 2)).transpose(1, 2, 3, 0)
    dw = _conv_nhwc(x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), padding)  # (C, k, k, O)
    return dx, dw.transpose(1, 2, 0, 3)


def _canonical_conv():
    import jax

    f = jax.custom_vjp(_conv_nhwc, nondiff_argnums=(2,))
    f.defvjp(_canonical_conv_fwd, _canonical_conv_bwd)
    return f


_CANONICAL = None


def canonical_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                   dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """``lax.conv_general_dilated`` for NHWC inputs and HWIO kernels whose backward pass is written
    as two more *forward* NHWC/HWIO convolutions (``_canonical_conv_bwd``) — the same numbers.

    Why: JAX's own transpose rules give the input- and weight-gradient convolutions other
    dimension layouts (``b01f_01oi``, ``f01b_i01o->01bf``). Outside a loop XLA:CPU rewrites them to
    its canonical layout with transposes and runs its fast convolution; inside a ``while`` loop
    (our ``lax.scan`` over training steps) it does not, and they run 50–100× slower (seen in
    the optimised HLO; BENCHMARKS.md). Written in the canonical layout, every convolution of
    the step takes the fast path inside the scan too. Strided convolutions (the encoders' 2×
    down-sampling) fall back to ``patch_conv``, and 1×1 convolutions (the skip projections) are
    one matmul ``patch_conv`` computes, whose gradients are matmuls too (forward + backward
    1.0–1.8× faster than the convolution form, BENCHMARKS.md). Plugged into ``nnx.Conv(conv_general_dilated=...)``.
    """
    global _CANONICAL
    import jax

    if tuple(window_strides) != (1, 1) or feature_group_count != 1 or any(
            d not in (None, 1) for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))):
        return patch_conv(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                          feature_group_count, precision)
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
    padding = tuple((int(a), int(b)) for a, b in padding)
    if rhs.shape[:2] == (1, 1) and padding == ((0, 0), (0, 0)):
        return patch_conv(lhs, rhs, window_strides, padding, precision=precision)  # a 1×1 convolution is a matmul
    if _CANONICAL is None:
        _CANONICAL = _canonical_conv()
    return _CANONICAL(lhs, rhs, padding)


CONVOLUTION = {"fn": canonical_conv}  # what ``conv`` layers compute with (benchmarks swap it: bench_conv.py)


@contextmanager
def convolutions(forward_mode: bool):
    """While networks are built: their ``conv`` layers use ``canonical_conv``, or ``patch_conv``
    for objectives that differentiate the network in forward mode (``forward_mode``: ssm, ism,
    cae, rcae, ncsn with ``estimator: ssm``) — a ``custom_vjp`` has no forward-mode derivative."""
    previous = CONVOLUTION["fn"]
    if forward_mode and previous is canonical_conv:
        CONVOLUTION["fn"] = patch_conv
    try:
        yield
    finally:
        CONVOLUTION["fn"] = previous


def conv(cin: int, cout: int, kernel: int, rngs, strides: int = 1):
    """An ``nnx.Conv`` (SAME padding) computed by ``CONVOLUTION["fn"]``."""
    from flax import nnx

    return nnx.Conv(cin, cout, (kernel, kernel), strides=strides, conv_general_dilated=CONVOLUTION["fn"], rngs=rngs)


def res_block(cin: int, cout: int, emb_dim: int | None, act, rngs):
    """GroupNorm → act → conv3×3 (+ a per-channel bias from the conditioning embedding) →
    GroupNorm → act → conv3×3, plus a (1×1-projected) skip connection (He et al. 2016)."""
    from flax import nnx

    from dsmcli.models import dense

    class ResBlock(nnx.Module):
        def __init__(self):
            self.norm1 = group_norm(cin, rngs)
            self.conv1 = conv(cin, cout, 3, rngs)
            self.cond = dense.Linear(emb_dim, cout, rngs=rngs) if emb_dim else None
            self.norm2 = group_norm(cout, rngs)
            self.conv2 = conv(cout, cout, 3, rngs)
            self.skip = conv(cin, cout, 1, rngs) if cin != cout else None

        def __call__(self, x, emb=None):
            h = self.conv1(act(self.norm1(x)))
            if self.cond is not None:
                h = h + self.cond(emb)[:, None, None, :]
            h = self.conv2(act(self.norm2(h)))
            return h + (x if self.skip is None else self.skip(x))

    return ResBlock()


def unet(channels: list[int], emb_dim: int | None, act, rngs, pixel_channels: int = 1):
    """A small U-Net (Ronneberger et al. 2015) on images of ``pixel_channels`` channels (C in, C
    out): a stem conv, one residual block per entry of ``channels`` with 2× average-pool
    down-sampling between them, a residual middle block, the mirrored path up (nearest-neighbour
    up-sampling, concatenated skips), and a 3×3 output conv. With ``emb_dim`` each block adds a
    projection of a conditioning embedding (the noise level, for score networks)."""
    from flax import nnx

    class UNet(nnx.Module):
        def __init__(self):
            c0 = channels[0]
            self.stem = conv(pixel_channels, c0, 3, rngs)
            widths = [c0, *channels]
            self.down = nnx.List([res_block(a, b, emb_dim, act, rngs) for a, b in zip(widths[:-1], widths[1:])])
            self.mid = res_block(channels[-1], channels[-1], emb_dim, act, rngs)
            ups, cin = [], channels[-1]
            for c in reversed(channels):
                ups.append(res_block(cin + c, c, emb_dim, act, rngs))
                cin = c
            self.up = nnx.List(ups)
            self.norm_out = group_norm(c0, rngs)
            self.out = conv(c0, pixel_channels, 3, rngs)

        def __call__(self, img, emb=None):
            import jax.numpy as jnp

            h, skips = self.stem(img), []
            for i, block in enumerate(self.down):
                if i:
                    h = nnx.avg_pool(h, (2, 2), strides=(2, 2))
                h = block(h, emb)
                skips.append(h)
            h = self.mid(h, emb)
            for i, block in enumerate(self.up):
                if i:
                    h = upsample2(h)
                h = block(jnp.concatenate([h, skips.pop()], -1), emb)
            return self.out(act(self.norm_out(h)))

    return UNet()


def upsample2(h):
    """Nearest-neighbour 2× up-sampling of (B, H, W, C) feature maps."""
    import jax.numpy as jnp

    return jnp.repeat(jnp.repeat(h, 2, axis=1), 2, axis=2)


def to_images(x, shape: tuple[int, ...]):
    """(B, H·W·C) rows → (B, H, W, C) images; ``shape`` is (H, W) (C = 1) or (H, W, C)."""
    return x.reshape(x.shape[0], shape[0], shape[1], image_channels(shape))


def to_rows(img):
    """(B, H, W, C) images → (B, H·W·C) rows (H, W, C order)."""
    return img.reshape(img.shape[0], -1)
