"""dsm's softplus against closed forms: the values of log(1 + eˣ) to float32 rounding, the derivative
σ(x) and the second derivative σ(x)(1 − σ(x)) computed in float64, forward and reverse mode."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmcli.models.activations import ACTIVATIONS, activation_fn, softplus

X = np.concatenate([np.linspace(-40, 40, 20001), [-1e30, -88.7, -1e-30, 0.0, 1e-30, 88.7, 1e30]]).astype(np.float32)


def sigmoid64(x):
    x = np.asarray(x, np.float64)
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


def test_values_are_log1p_exp_to_float32_rounding():
    ours = np.asarray(softplus(jnp.asarray(X)))
    exact = np.logaddexp(X.astype(np.float64), 0.0)
    np.testing.assert_allclose(ours, exact, rtol=2.5e-7, atol=1e-37)  # ≈ 2 ulp (float32 exp/log1p)
    np.testing.assert_allclose(ours, np.asarray(jax.nn.softplus(jnp.asarray(X))), rtol=2.5e-7, atol=0)


def test_special_values():
    out = np.asarray(softplus(jnp.array([np.inf, -np.inf, np.nan], jnp.float32)))
    assert out[0] == np.inf and out[1] == 0.0 and np.isnan(out[2])


def test_first_derivative_is_sigmoid_in_reverse_and_forward_mode():
    x = jnp.asarray(X)
    reverse = np.asarray(jax.vmap(jax.grad(softplus))(x))
    forward = np.asarray(jax.jvp(softplus, (x,), (jnp.ones_like(x),))[1])
    np.testing.assert_allclose(reverse, sigmoid64(X), rtol=2.5e-7, atol=1e-37)  # ≈ 2 ulp; logaddexp's derivative is 5e-7 off
    np.testing.assert_array_equal(reverse, forward)
    # relative accuracy in the left tail, where σ(x) ≈ eˣ is tiny
    tail = (X < -5) & (X > -80)  # beyond, σ is float32-subnormal and XLA:CPU flushes it to 0
    np.testing.assert_allclose(reverse[tail], sigmoid64(X[tail]), rtol=1e-6)


def test_second_derivative_is_sigmoid_times_one_minus_sigmoid():
    x = jnp.asarray(X[np.abs(X) <= 40])
    s = sigmoid64(np.asarray(x))
    second = np.asarray(jax.vmap(jax.grad(jax.grad(softplus)))(x))
    np.testing.assert_allclose(second, s * (1 - s), rtol=0, atol=1e-7)
    fwd_over_rev = np.asarray(jax.vmap(jax.jacfwd(jax.grad(softplus)))(x))
    np.testing.assert_allclose(fwd_over_rev, second, rtol=0, atol=1e-7)


def test_layer_jacobian_matches_closed_form():
    """J of x ↦ softplus(Wx + b) is diag(σ(Wx + b)) W, in jacfwd and jacrev alike."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    x = rng.standard_normal(3).astype(np.float32)

    def layer(v):
        return softplus(w @ v + b)

    expected = sigmoid64(w @ x + b)[:, None] * w
    np.testing.assert_allclose(np.asarray(jax.jacfwd(layer)(x)), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(jax.jacrev(layer)(x)), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_every_activation_name_resolves(name):
    f = activation_fn(name)
    assert np.asarray(f(jnp.array([0.5, -0.5]))).shape == (2,)
    assert activation_fn("softplus") is softplus
