"""The IMQ kernel Stein discrepancy against a float64 brute force and its defining properties."""

from __future__ import annotations

import numpy as np
import pytest

from dsmcli.metrics.stein import BETA, C2, ksd


def brute_force(x, s, c2=C2, beta=BETA) -> float:
    """(1/(n(n−1))) Σ_{i≠j} u_p(x_i, x_j) in float64, from the four terms of the Stein kernel."""
    x, s = np.asarray(x, np.float64), np.asarray(s, np.float64)
    n, d = x.shape
    total = 0.0
    for i in range(n):
        r = x[i] - x  # (n, D)
        q = c2 + np.sum(r * r, 1)
        k = q**beta
        grad_x = 2 * beta * q[:, None] ** (beta - 1) * r  # ∇_x k(x_i, x_j)
        grad_y = -grad_x
        trace = -2 * beta * (d * q ** (beta - 1) + 2 * (beta - 1) * q ** (beta - 2) * np.sum(r * r, 1))
        u = k * (s @ s[i]) + grad_y @ s[i] + np.sum(s * grad_x, 1) + trace
        u[i] = 0.0
        total += u.sum()
    return total / (n * (n - 1))


def gaussian(n, d, seed, mean=0.0, std=1.0):
    return np.random.default_rng(seed).normal(mean, std, size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("d", [1, 3])
def test_equals_a_float64_brute_force(d):
    x = gaussian(150, d, 0, mean=0.3, std=1.2)
    s = -x  # the score of N(0, I), evaluated at samples that are not from it
    for block in (16, 64, 1024):  # several blocks, one block: the same number
        np.testing.assert_allclose(ksd(x, s, block_size=block), brute_force(x, s), rtol=2e-5, atol=1e-7)


def test_tends_to_zero_for_exact_samples_and_is_clearly_positive_for_wrong_ones():
    exact = [abs(ksd(x, -x)) for x in (gaussian(n, 2, n) for n in (200, 2000, 8000))]
    assert exact[2] < exact[0] and exact[2] < 2e-3  # O(1/n) for samples of p
    shifted = gaussian(2000, 2, 1, mean=0.5)
    wider = gaussian(2000, 2, 2, std=1.5)
    for x in (shifted, wider):
        assert ksd(x, -x) > 20 * exact[1]


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        ksd(np.zeros((5, 2)), np.zeros((5, 3)))
