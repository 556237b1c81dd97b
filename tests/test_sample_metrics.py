"""Tests of the two-sample distances (dsmcli.metrics.distances) and mode weights (dsmcli.metrics.modes) against closed forms and hand-computed answers."""

from __future__ import annotations

import math

import jax.numpy as jnp
import jax.random
import numpy as np
import pytest
from scipy.spatial.distance import pdist

from dsmcli.metrics.distances import (
    DEFAULT_BANDWIDTHS,
    median_pairwise_distance,
    mmd,
    mmd_fixed,
    sliced_w2,
)
from dsmcli.metrics.modes import mode_weight_error, mode_weights


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------
# sliced W2
# --------------------------------------------------------------------------------------


def test_sliced_w2_identical_sets_is_zero():
    x = _rng(0).normal(size=(500, 3))
    assert sliced_w2(x, x) == 0.0
    assert sliced_w2(jnp.asarray(x), jnp.asarray(x)) == 0.0


def test_sliced_w2_1d_translation_is_exact():
    # In D = 1 the only directions are +-1, so SW2(X, X + c) = |c| exactly.
    x = np.array([[2.0], [-0.3], [1.1]])
    assert sliced_w2(x, x + 0.7) == pytest.approx(0.7, rel=1e-5)


def test_sliced_w2_translation_averages_over_sphere():
    # Y = X + v: every projection is shifted by theta.v, so W2^2 = (theta.v)^2 exactly per
    # direction and SW2 -> |v| / sqrt(D) (sphere average of (theta.v)^2 is |v|^2 / D).
    # Only the Monte Carlo over 2000 directions remains (spread ~0.8% in D = 2).
    x = _rng(13).normal(size=(200, 2))
    v = np.array([0.9, -1.2])
    got = sliced_w2(x, x + v, n_projections=2000, key=jax.random.PRNGKey(5))
    assert got == pytest.approx(np.linalg.norm(v) / math.sqrt(2), rel=0.03)


def test_sliced_w2_equal_sizes_1d_hand_computed():
    # Sorted pairing: (0,1), (1,3), (2,5) -> W2^2 = (1 + 4 + 9) / 3.
    x = np.array([[2.0], [0.0], [1.0]])
    y = np.array([[5.0], [1.0], [3.0]])
    assert sliced_w2(x, y) == pytest.approx(math.sqrt(14.0 / 3.0), rel=1e-6)


def test_sliced_w2_unequal_sizes_uses_documented_quantile_grid():
    # N = 3 levels t = 1/6, 1/2, 5/6. Q_x puts 0, 1 at levels 1/4, 3/4 -> Q_x(t) = 0, 0.5, 1
    # (constant extrapolation at 1/6, interpolation at 1/2). Q_y(t) = 0, 1, 2.
    # W2^2 = (0 + 0.25 + 1) / 3.
    x = np.array([[0.0], [1.0]])
    y = np.array([[0.0], [1.0], [2.0]])
    expected = math.sqrt(1.25 / 3.0)
    assert sliced_w2(x, y) == pytest.approx(expected, rel=1e-6)


def test_sliced_w2_shifted_gaussians_matches_closed_form():
    # X ~ N(0, I), Y ~ N(delta u, I) in D = 2: W2^2 along theta is delta^2 (theta.u)^2, whose
    # sphere average is delta^2 / D, so SW2 -> delta / sqrt(D). Unequal n, m on purpose.
    # Spread of the estimate here: ~1.6% from 500 directions, ~1.3% from the samples.
    d, delta = 2, 1.5
    r = _rng(2)
    u = np.array([0.6, 0.8])
    x = r.normal(size=(6000, d))
    y = r.normal(size=(5000, d)) + delta * u
    got = sliced_w2(x, y, n_projections=500, key=jax.random.PRNGKey(3))
    assert got == pytest.approx(delta / math.sqrt(d), rel=0.05)


@pytest.mark.parametrize("s", [0.5, 2.0])
def test_sliced_w2_scaled_gaussians_matches_closed_form(s):
    # X ~ N(0, I), Y ~ N(0, s^2 I): every projection is N(0,1) vs N(0,s^2), W2^2 = (1-s)^2
    # for every direction, so only sampling noise remains (~1-2% at these sizes).
    r = _rng(4)
    x = r.normal(size=(6000, 2))
    y = s * r.normal(size=(5000, 2))
    assert sliced_w2(x, y, n_projections=500) == pytest.approx(abs(1.0 - s), rel=0.05)


def test_sliced_w2_deterministic_given_key():
    r = _rng(5)
    x, y = r.normal(size=(500, 3)), r.normal(size=(500, 3)) + 0.3
    a = sliced_w2(x, y, key=jax.random.PRNGKey(11))
    b = sliced_w2(x, y, key=jax.random.PRNGKey(11))
    c = sliced_w2(x, y, key=jax.random.PRNGKey(12))
    assert a == b
    assert a != c


# --------------------------------------------------------------------------------------
# MMD
# --------------------------------------------------------------------------------------


def _closed_form_mmd2(lengthscale: float, d: int, delta_sq: float) -> float:
    """MMD^2 between N(0, I_D) and N(delta, I_D) for k = exp(-|a-b|^2 / (2 l^2))."""
    l2 = lengthscale**2
    c = (l2 / (l2 + 2.0)) ** (d / 2.0)
    return 2.0 * c - 2.0 * c * math.exp(-delta_sq / (2.0 * (l2 + 2.0)))


def _dense_mmd2(x, y, lengthscales) -> float:
    """Naive float64 U-statistic with full kernel matrices (reference implementation)."""

    def gram(a, b):
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(np.exp(-d2 / (2.0 * ell**2)) for ell in lengthscales)

    n, m = len(x), len(y)
    kxx, kyy, kxy = gram(x, x), gram(y, y), gram(x, y)
    return (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2.0 * kxy.mean()
    )


def test_mmd_fixed_matches_gaussian_closed_form():
    # Average of 16 independent U-statistics (each unbiased) at n = m = 1000; the spread of
    # one estimate is ~0.008 here, of the average ~0.002 (null: ~0.0006 and ~0.00015).
    d, ell, delta = 2, 1.0, np.array([1.0, 0.0])
    expected = _closed_form_mmd2(ell, d, float(delta @ delta))  # 0.10235
    alt, null = [], []
    for seed in range(16):
        r = _rng(100 + seed)
        x = r.normal(size=(1000, d))
        y0 = r.normal(size=(1000, d))
        alt.append(mmd_fixed(x, y0 + delta, ell))
        null.append(mmd_fixed(x, y0, ell))
    assert np.mean(alt) == pytest.approx(expected, abs=0.012)
    assert abs(np.mean(null)) < 1e-3


def test_mmd_fixed_multi_lengthscale_is_sum_of_closed_forms():
    d, delta = 3, np.array([0.8, 0.0, 0.6])
    lengthscales = [0.5, 1.0, 2.0]
    expected = sum(_closed_form_mmd2(ell, d, float(delta @ delta)) for ell in lengthscales)
    # 16 independent estimates: spread of one ~10% of the value here, of the mean ~2.5%.
    r = _rng(7)
    vals = [
        mmd_fixed(r.normal(size=(1000, d)), r.normal(size=(1000, d)) + delta, lengthscales)
        for _ in range(16)
    ]
    assert np.mean(vals) == pytest.approx(expected, rel=0.1)


def test_mmd_streaming_matches_dense_on_ragged_sizes():
    # 1000 = 3*256 + 232 and 777 = 3*256 + 9: padding in both the symmetric and cross sums.
    r = _rng(8)
    x = r.normal(size=(1000, 3))
    y = 1.3 * r.normal(size=(777, 3)) + 0.2
    ls = [0.3, 1.0, 2.5]
    dense = _dense_mmd2(x, y, ls)
    streamed = mmd_fixed(x, y, ls, block_size=256)
    assert streamed == pytest.approx(dense, rel=1e-4, abs=1e-6)


def test_mmd_identical_sets_is_near_zero():
    # On identical sets MMD^2_u = -(2/n)(H - mean off-diagonal kernel), in [-2H/n, 0].
    x = _rng(9).normal(size=(300, 2))
    h = len(DEFAULT_BANDWIDTHS)
    same = mmd(x, x)
    shifted = mmd(x, x + 1.0)
    assert -2.0 * h / len(x) <= same <= 1e-6
    assert abs(same) < 0.05 * shifted


def test_mmd_uses_median_heuristic_on_pooled_sample():
    r = _rng(10)
    x = r.normal(size=(300, 2))
    y = 2.0 * r.normal(size=(300, 2)) + 1.0
    med = float(np.median(pdist(np.concatenate([x, y]))))
    assert median_pairwise_distance(x, y) == pytest.approx(med, rel=1e-5)
    expected = _dense_mmd2(x, y, [h * med for h in DEFAULT_BANDWIDTHS])
    assert mmd(x, y) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    bw = (0.3, 0.6, 1.0, 1.5, 4.0, 8.0)
    assert mmd(x, y, bandwidths=bw) == pytest.approx(
        _dense_mmd2(x, y, [h * med for h in bw]), rel=1e-4, abs=1e-6
    )


def test_median_subsample_is_deterministic_and_close():
    r = _rng(11)
    x, y = r.normal(size=(300, 2)), r.normal(size=(300, 2))
    full = float(np.median(pdist(np.concatenate([x, y]))))
    a = median_pairwise_distance(x, y, key=jax.random.PRNGKey(1), max_points=400)
    b = median_pairwise_distance(x, y, key=jax.random.PRNGKey(1), max_points=400)
    c = median_pairwise_distance(x, y, key=jax.random.PRNGKey(2), max_points=400)
    assert a == b
    assert a != c  # a subsample was used
    assert a == pytest.approx(full, rel=0.15)
    # mmd is deterministic given key when subsampling, and uses that subsample's median
    m1 = mmd(x, y, key=jax.random.PRNGKey(1), max_median_points=400)
    m2 = mmd(x, y, key=jax.random.PRNGKey(1), max_median_points=400)
    assert m1 == m2
    assert m1 == pytest.approx(
        _dense_mmd2(x, y, [h * a for h in DEFAULT_BANDWIDTHS]), rel=1e-4, abs=1e-6
    )


# --------------------------------------------------------------------------------------
# mode weights
# --------------------------------------------------------------------------------------


def test_mode_weights_hand_built():
    lp = np.array([[0.0, -1.0], [-3.0, 2.0], [1.0, 0.0], [-np.inf, 0.0], [0.5, 0.5]])
    # argmax: 0, 1, 0, 1, 0 (tie -> lowest index)
    assert mode_weights(lp) == pytest.approx([0.6, 0.4])


def test_mode_weights_two_component_mixture_threshold():
    # w = (0.3, 0.7), N(-4, 1) and N(4, 1): log 0.3 - (x+4)^2/2 = log 0.7 - (x-4)^2/2
    # at x* = log(3/7) / 8, so component 0 wins exactly for x < x*.
    r = _rng(12)
    x = np.concatenate([r.normal(-4.0, 1.0, 300), r.normal(4.0, 1.0, 700)])
    w, mu = np.array([0.3, 0.7]), np.array([-4.0, 4.0])
    lp = np.log(w) - 0.5 * (x[:, None] - mu) ** 2 - 0.5 * np.log(2 * np.pi)
    x_star = math.log(3.0 / 7.0) / 8.0
    frac0 = float(np.mean(x < x_star))
    got = mode_weights(jnp.asarray(lp))
    assert len(got) == 2
    assert got == pytest.approx([frac0, 1.0 - frac0])
    assert mode_weight_error(got, w) == pytest.approx(abs(frac0 - 0.3))


def test_mode_weights_empty_component_gets_zero():
    lp = np.array([[0.0, -5.0, -1.0], [2.0, 0.0, 1.0]])
    assert mode_weights(lp) == [1.0, 0.0, 0.0]


def test_mode_weight_error_closed_forms():
    assert mode_weight_error([0.5, 0.5], [0.3, 0.7]) == pytest.approx(0.2)
    assert mode_weight_error([1.0, 0.0, 0.0], [0.0, 0.0, 1.0]) == pytest.approx(1.0)
    assert mode_weight_error([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


# --------------------------------------------------------------------------------------
# input validation
# --------------------------------------------------------------------------------------

_GOOD = np.zeros((4, 2)) + np.arange(4)[:, None]


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.zeros(4), _GOOD, "2-D"),
        (np.zeros((2, 2, 2)), _GOOD, "2-D"),
        (np.zeros((0, 2)), _GOOD, "empty"),
        (_GOOD, np.zeros((4, 0)), "zero dimensions"),
        (_GOOD, np.zeros((4, 3)), "same dimension"),
        (np.array([[np.nan, 0.0], [1.0, 1.0]]), _GOOD, "non-finite"),
        (_GOOD, np.array([[np.inf, 0.0], [1.0, 1.0]]), "non-finite"),
        (np.array([["a", "b"]]), _GOOD, "numeric"),
    ],
)
@pytest.mark.parametrize("metric", ["mmd", "mmd_fixed", "sliced_w2"])
def test_bad_point_sets_raise(metric, x, y, match):
    fn = {
        "mmd": lambda a, b: mmd(a, b),
        "mmd_fixed": lambda a, b: mmd_fixed(a, b, 1.0),
        "sliced_w2": lambda a, b: sliced_w2(a, b),
    }[metric]
    with pytest.raises(ValueError, match=match):
        fn(x, y)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="at least 2"):
        mmd(_GOOD[:1], _GOOD)
    with pytest.raises(ValueError, match="lengthscales"):
        mmd_fixed(_GOOD, _GOOD, [1.0, -1.0])
    with pytest.raises(ValueError, match="lengthscales"):
        mmd_fixed(_GOOD, _GOOD, [])
    with pytest.raises(ValueError, match="block_size"):
        mmd_fixed(_GOOD, _GOOD, 1.0, block_size=0)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_w2(_GOOD, _GOOD, n_projections=0)
    with pytest.raises(ValueError, match="median pairwise distance"):
        mmd(np.ones((3, 2)), np.ones((3, 2)))


def test_bad_mode_inputs_raise():
    with pytest.raises(ValueError, match="2-D"):
        mode_weights(np.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        mode_weights(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="NaN"):
        mode_weights(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="-inf for every component"):
        mode_weights(np.array([[0.0, 1.0], [-np.inf, -np.inf]]))
    with pytest.raises(ValueError, match="same length"):
        mode_weight_error([0.5, 0.5], [1.0 / 3] * 3)
    with pytest.raises(ValueError, match="negative"):
        mode_weight_error([1.5, -0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="1-D"):
        mode_weight_error([[0.5, 0.5]], [0.5, 0.5])
    with pytest.raises(ValueError, match="non-finite"):
        mode_weight_error([np.nan, 1.0], [0.5, 0.5])


def test_mmd_of_thousands_of_points_matches_float64():
    """MMD is a difference of O(1) kernel sums: per-row sums added in float64 keep it accurate
    (float32 block totals were 4e-4 off at this size)."""
    r = _rng(5)
    x, y = r.normal(size=(3000, 2)).astype(np.float32), r.normal(size=(3000, 2)).astype(np.float32) + 0.05
    lengthscales = [0.3, 1.0, 3.0]
    np.testing.assert_allclose(mmd_fixed(x, y, lengthscales), _dense_mmd2(x.astype(np.float64), y.astype(np.float64),
                                                                          lengthscales), rtol=1e-4)
