"""group_norm: the values and derivatives of flax's GroupNorm, statistics reduced in two stages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen, nnx

from dsmcli.models.group_norm import group_norm, group_norm_nhwc, groups

EPS = 1e-6  # flax's GroupNorm epsilon


def _flax(num_groups):
    """GroupNorm by flax (linen's functional form of the layer nnx.GroupNorm computes)."""
    norm = linen.GroupNorm(num_groups=num_groups, epsilon=EPS)
    return lambda x, scale, bias: norm.apply({"params": {"scale": scale, "bias": bias}}, x)


def _inputs(shape, dtype, seed=0):
    k = jax.random.split(jax.random.key(seed), 4)
    c = shape[-1]
    x = 2.0 + 3.0 * jax.random.normal(k[0], shape, dtype)  # off-centre: the mean and variance terms matter
    scale = 1.0 + 0.5 * jax.random.normal(k[1], (c,), dtype)
    bias = 0.3 * jax.random.normal(k[2], (c,), dtype)
    return x, scale, bias, jax.random.normal(k[3], shape, dtype)


@pytest.mark.parametrize("shape,num_groups", [((3, 5, 4, 8), 4), ((2, 6, 6, 6), 1), ((2, 3, 5, 16), 8), ((1, 4, 4, 4), 4)])
def test_values_gradients_and_jvp_equal_flax_in_float64(shape, num_groups):
    with jax.enable_x64():
        x, scale, bias, cot = _inputs(shape, jnp.float64)
        ref, ours = _flax(num_groups), lambda *a: group_norm_nhwc(*a, num_groups, EPS)
        want, want_vjp = jax.vjp(ref, x, scale, bias)
        got, got_vjp = jax.vjp(ours, x, scale, bias)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        for g, w, name in zip(got_vjp(cot), want_vjp(cot), ("x", "scale", "bias")):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-11, err_msg=name)
        tangents = (cot, 0.1 * scale, 0.2 * bias)  # forward mode too: ism, ssm and cae differentiate so
        _, want_t = jax.jvp(ref, (x, scale, bias), tangents)
        _, got_t = jax.jvp(ours, (x, scale, bias), tangents)
        np.testing.assert_allclose(got_t, want_t, rtol=1e-10, atol=1e-11)


def test_each_group_is_standardised():
    with jax.enable_x64():
        x, _, _, _ = _inputs((2, 5, 5, 12), jnp.float64, seed=3)
        y = group_norm_nhwc(x, jnp.ones(12), jnp.zeros(12), 3, 0.0).reshape(2, 25, 3, 4)
        np.testing.assert_allclose(y.mean((1, 3)), 0.0, atol=1e-12)
        np.testing.assert_allclose(y.var((1, 3)), 1.0, rtol=1e-12)


def test_layer_is_an_nnx_group_norm_with_flax_parameters_and_numbers():
    norm = group_norm(32, nnx.Rngs(0))
    assert isinstance(norm, nnx.GroupNorm) and norm.num_groups == groups(32) == 8 and norm.epsilon == EPS
    assert set(nnx.state(norm, nnx.Param).keys()) == {"scale", "bias"}
    x, scale, bias, _ = _inputs((4, 7, 7, 32), jnp.float32)
    norm.scale[...], norm.bias[...] = scale, bias
    reference = nnx.GroupNorm(32, num_groups=8, rngs=nnx.Rngs(0))
    reference.scale[...], reference.bias[...] = scale, bias
    np.testing.assert_allclose(norm(x), reference(x), rtol=0, atol=3e-6)
    flat = x.reshape(4, 49, 32)  # other ranks: flax's own computation
    np.testing.assert_array_equal(norm(flat), reference(flat))
