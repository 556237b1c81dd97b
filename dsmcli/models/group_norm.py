"""GroupNorm (Wu & He 2018) of NHWC feature maps, its statistics reduced in two stages when only
values are needed.

Per image b and group k of the C channels (G groups of C/G), over N = H·W·C/G entries:

    μ = (1/N) Σ x,   v = max(0, (1/N) Σ x² − μ²),   y = (x − μ) · γ / √(v + ε) + β

— ``flax.nnx.GroupNorm``'s formula (its fast variance, ε = 1e-6, the same parameters ``scale`` γ
and ``bias`` β). Evaluated without derivatives (the samplers' score calls), the sums are taken as
Σ_{c∈k} (Σ_{h,w} x_{bhwc}): first over each image's rows and columns per channel, a reduction
XLA:CPU vectorises along the contiguous channels, then over the channels of each group on the
small (B, C) array. flax reduces over (H, W, C/G) of a (B, H, W, G, C/G) view in one step, which
XLA:CPU emits as a strided loop per (b, k): alone, forward, batch 128, GroupNorm + SiLU of a
96-channel 28×28 map took 16 instead of 21 ms, of a 32-channel one 2.4 instead of 5.6 ms.

Differentiated, the moments are flax's one-stage reductions (a ``custom_jvp`` whose rule is
their JVP, so forward and reverse mode, and higher orders, work): in the training step the
two-stage form's backward pass let XLA fuse the GroupNorm gradients into the weight-gradient
transposes and made the 28×28 step 1.3× slower, so training computes what flax computes.
BENCHMARKS.md has the measurements; tests/test_group_norm.py checks values, gradients and JVPs
against flax's layer in float64.
"""

from __future__ import annotations

import functools


def groups(channels: int) -> int:
    """GroupNorm groups: 8 where they divide the channels (Wu & He 2018), else fewer."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


def _moments_one_stage(x, num_groups: int):
    """(B, G) means of x and x² over each image's groups, reduced as flax reduces them."""
    from jax import lax

    b, h, w, c = x.shape
    xg = x.reshape(b, h, w, num_groups, c // num_groups)
    return xg.mean((1, 2, 4)), lax.square(xg).mean((1, 2, 4))


def _moments_two_stage(x, num_groups: int):
    """The same means, summed per channel over rows and columns first, then over each group."""
    from jax import lax

    b, h, w, c = x.shape
    size = c // num_groups
    n = h * w * size

    def group_mean(per_channel):  # (B, C) sums → (B, G) means
        return per_channel.reshape(b, num_groups, size).sum(-1) / n

    return group_mean(x.sum((1, 2))), group_mean(lax.square(x).sum((1, 2)))


@functools.cache
def _moments():
    import jax

    moments = jax.custom_jvp(_moments_two_stage, nondiff_argnums=(1,))

    @moments.defjvp
    def _jvp(num_groups, primals, tangents):
        return jax.jvp(lambda x: _moments_one_stage(x, num_groups), primals, tangents)

    return moments


def group_norm_nhwc(x, scale, bias, num_groups: int, epsilon: float):
    """GroupNorm of (B, H, W, C) maps with per-channel ``scale`` γ and ``bias`` β, (C,) each."""
    import jax.numpy as jnp
    from jax import lax

    size = x.shape[-1] // num_groups
    mean, mean_sq = _moments()(x, int(num_groups))
    var = jnp.maximum(0.0, mean_sq - lax.square(mean))
    mean, var = jnp.repeat(mean, size, axis=1), jnp.repeat(var, size, axis=1)
    mul = lax.rsqrt(var + epsilon) * scale
    return (x - mean[:, None, None, :]) * mul[:, None, None, :] + bias


def group_norm(channels: int, rngs):
    """An ``nnx.GroupNorm`` over ``channels`` (``groups(channels)`` groups; parameters ``scale`` and
    ``bias``, as checkpoints and the benchmarks' PyTorch twins name them) that computes 4-D NHWC
    inputs by ``group_norm_nhwc``."""
    from flax import nnx

    class GroupNorm(nnx.GroupNorm):
        def __call__(self, x, *, mask=None):
            if x.ndim != 4 or mask is not None:
                return super().__call__(x, mask=mask)
            return group_norm_nhwc(x, self.scale[...], self.bias[...], self.num_groups, self.epsilon)

    return GroupNorm(channels, num_groups=groups(channels), rngs=rngs)
