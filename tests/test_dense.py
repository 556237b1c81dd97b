"""dense: nnx.Linear's products with derivatives whose bits do not depend on the thread count."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from dsmcli.models import dense
from tests.conftest import pinned_to


def _mlp(dot_general):
    """A softplus perceptron whose products are ``dot_general``: f(params, x)."""
    def f(params, x):
        for i, p in enumerate(params):
            x = dot_general(x, p["kernel"], (((x.ndim - 1,), (0,)), ((), ()))) + p["bias"]
            if i < len(params) - 1:
                x = jax.nn.softplus(x)
        return x

    return f


def _params(widths, dtype, seed=0):
    rngs = nnx.Rngs(seed)
    layers = [nnx.Linear(a, b, param_dtype=dtype, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])]
    return [{"kernel": layer.kernel[...], "bias": layer.bias[...]} for layer in layers]


@pytest.mark.parametrize("lead", [(7,), (2, 3), ()])
def test_values_and_every_derivative_equal_lax_dot_general_in_float64(lead):
    """Values, reverse mode (parameters and input), forward mode, the input Hessian and the
    gradient of a forward-mode quantity (as ism and ssm train) equal the plain product's."""
    with jax.enable_x64():
        ref, ours, params = _mlp(lax.dot_general), _mlp(dense.dot_general), _params([3, 16, 16, 3], jnp.float64)
        x = jax.random.normal(jax.random.key(1), (*lead, 3), jnp.float64)
        close = lambda a, b: jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13), a, b)
        close(ours(params, x), ref(params, x))
        loss = lambda f: lambda p, x: jnp.sum(f(p, x) ** 2)
        close(jax.grad(loss(ours), argnums=(0, 1))(params, x), jax.grad(loss(ref), argnums=(0, 1))(params, x))
        v = jnp.ones_like(x)
        close(jax.jvp(lambda x: ours(params, x), (x,), (v,)), jax.jvp(lambda x: ref(params, x), (x,), (v,)))
        point = x.reshape(-1, 3)[0]
        score = lambda f: lambda x: jnp.sum(f(params, x))
        close(jax.hessian(score(ours))(point), jax.hessian(score(ref))(point))

        def trace_loss(f):  # ½‖s‖² + v·∂s/∂x v, differentiated in the parameters
            def g(p):
                s, ds = jax.jvp(lambda x: f(p, x), (x,), (v,))
                return jnp.sum(0.5 * s**2 + v * ds)
            return g

        close(jax.grad(trace_loss(ours))(params), jax.grad(trace_loss(ref))(params))


def test_other_dimension_numbers_are_lax_dot_general():
    a, b = jnp.ones((4, 5, 6)), jnp.ones((4, 6, 2))
    dims = (((2,), (1,)), ((0,), (0,)))  # a batched product: not nnx.Linear's case
    np.testing.assert_array_equal(dense.dot_general(a, b, dims), lax.dot_general(a, b, dims))


def test_linear_is_nnx_linear_with_the_same_initialisation():
    ours, theirs = dense.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(ours.kernel[...], theirs.kernel[...])
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-6)


GRADIENT_BITS = textwrap.dedent("""
    import hashlib, sys
    from dsmcli.jaxsetup import configure_xla_env
    configure_xla_env()  # as dsm runs: reductions by XLA's own emitter
    import jax, jax.numpy as jnp
    from jax import lax
    from dsmcli.models import dense
    fn = dense.dot_general if sys.argv[1] == "dense" else lax.dot_general
    k = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(k[0], (512, 128)); w1 = jax.random.normal(k[1], (128, 128)) / 11
    w2 = jax.random.normal(k[2], (128, 128)) / 11
    dims = (((1,), (0,)), ((), ()))
    loss = lambda w: jnp.sum(jnp.tanh(fn(jnp.tanh(fn(x, w[0], dims)), w[1], dims)) ** 2)
    g = jax.jit(jax.grad(loss))((w1, w2))
    print(hashlib.sha256(b"".join(bytes(memoryview(jax.device_get(a))) for a in g)).hexdigest())
""")


def _bits(kind: str, cpus=None) -> str:
    out = subprocess.run([sys.executable, "-c", GRADIENT_BITS, kind], capture_output=True, text=True, timeout=120,
                         preexec_fn=pinned_to(cpus), env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs at least two CPUs to compare one against several")
def test_gradient_bits_are_the_same_on_one_core_and_on_all_of_them():
    """The weight gradients of two 128-wide layers at batch 512 (a long contracted batch axis):
    pinned to one core and with every core, the same bits."""
    one = set(sorted(os.sched_getaffinity(0))[:1])
    assert _bits("dense", one) == _bits("dense")
