"""Process-wide JAX settings: the unrolled Threefry lowering on CPU computes the same hash
(Random123 known answers for threefry2x32 with 20 rounds) without a ``while`` loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from dsmcli import jaxsetup

# (key, counter) -> output, from Random123's kat_vectors for threefry2x32_20
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]
EXPECTED_BITS_KEY42 = [2098992034, 2919706841, 2646866425, 2409546199]


@pytest.fixture(scope="module", autouse=True)
def settings():
    jaxsetup.setup()


@pytest.mark.parametrize("key, count, expected", KNOWN_ANSWERS)
def test_threefry_known_answers_under_jit(key, count, expected):
    out = jax.jit(threefry_2x32)(jnp.array(key, jnp.uint32), jnp.array(count, jnp.uint32))
    assert [int(v) for v in np.asarray(out)] == list(expected)


def test_random_draws_compile_without_a_loop_on_cpu():
    if jax.default_backend() != "cpu":
        pytest.skip("the rolled lowering is CPU's")
    assert jaxsetup.unroll_threefry_on_cpu()
    hlo = jax.jit(lambda k: jax.random.normal(jax.random.fold_in(k, 3), (64,))).lower(jax.random.key(0)).compile().as_text()
    assert " while(" not in hlo


def test_draws_are_the_documented_values():
    """A fixed draw, recorded with JAX's own (rolled) CPU lowering before the change."""
    bits = np.asarray(jax.jit(lambda k: jax.random.bits(k, (4,)))(jax.random.key(42)))
    assert bits.tolist() == EXPECTED_BITS_KEY42
