"""Activation functions of the networks, by name (``model.activation``).

``softplus`` is dsm's own, not ``jax.nn.softplus``:

    softplus(x) = log(1 + eˣ) = max(x, 0) + log1p(e^{−|x|}),
    softplus′(x) = σ(x) = 1 / (1 + e^{−|x|})    (x ≥ 0),   e^{−|x|} / (1 + e^{−|x|})   (x < 0).

Its values are those of ``jax.nn.softplus`` (= logaddexp(x, 0)) to 2 ulp; the difference is
the derivative. A ``custom_jvp`` computes e^{−|x|} once and reuses it for σ(x), so the backward
pass of a layer stores σ(x) and multiplies (one exp and one log1p per element in all), where
logaddexp's derivative evaluates another exponential of the output. On XLA:CPU that made the
SMALL training step (2→128→128→2, batch 512) 1.4–1.6× faster (BENCHMARKS.md). The rule is
written as a JVP, so forward mode (``jax.jvp``, ``jacfwd``: exact ISM, contractive penalties)
and derivatives of any order work; the derivative is also closer to σ (relative error
≤ 1.7e-7, about 1.4 ulp, against 5.3e-7 for logaddexp's; float32 on [−80, 80]). Tested in
tests/test_activations.py.
"""

from __future__ import annotations

import functools

ACTIVATIONS = ("softplus", "relu", "silu", "swish", "tanh", "elu", "gelu", "sigmoid")


@functools.cache
def _softplus():
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def softplus(x):
        return jax.nn.relu(x) + jnp.log1p(jnp.exp(-jnp.abs(x)))

    @softplus.defjvp
    def _jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        e = jnp.exp(-jnp.abs(x))
        sigmoid = jnp.where(x >= 0, 1.0, e) / (1.0 + e)
        return jax.nn.relu(x) + jnp.log1p(e), sigmoid * t

    return softplus


def softplus(x):
    """log(1 + eˣ) with the derivative σ(x) sharing one exponential (see the module docstring)."""
    return _softplus()(x)


def activation_fn(name: str):
    """The elementwise function called ``name`` (one of ``ACTIVATIONS``)."""
    import jax

    if name == "softplus":
        return softplus
    return {"swish": jax.nn.silu}.get(name) or getattr(jax.nn, name)
