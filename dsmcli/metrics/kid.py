"""``kid``: kernel distance of Bińkowski et al. 2018 (*Demystifying MMD GANs*; "KID") between
samples and held-out images, in the same features as ``fd`` (``dsmcli.metrics.fd.FeatureNet``).

Kernel: the cubic polynomial k(a, b) = (aᵀb / d + 1)³, d the feature dimension (128).

Estimator: for X = {xᵢ} (sample features) and Y = {yⱼ} (reference features), both of size m,
the unbiased U-statistic of the squared MMD

    MMD²ᵤ(X, Y) = 1/(m(m−1)) Σ_{i≠j} k(xᵢ, xⱼ) + 1/(m(m−1)) Σ_{i≠j} k(yᵢ, yⱼ) − 2/m² Σ_{i,j} k(xᵢ, yⱼ)

(the diagonal is dropped from the within-set sums; the cross sum keeps every pair, since X and Y
are independent). E[MMD²ᵤ] = MMD²(P, Q) exactly, at any m: it is 0 for two samples of the same
distribution — a single value may be slightly negative — where FD's expectation is > 0 and grows
as n shrinks. This is why KID can be compared across sample sizes and FD cannot.

Subsets (the reference implementations' convention: torchmetrics ``KernelInceptionDistance``
and torch-fidelity, 100 subsets of 1000; the original ``compute_scores.py`` used 50): for each
of ``N_SUBSETS`` = 100 subsets, m rows of X and m rows of Y are drawn without replacement, with
m = min(1000, n_samples, n_reference); ``kid`` is the mean of MMD²ᵤ over the subsets and
``kid_std`` their standard deviation (population, ddof 0, as torchmetrics and the original).
``kid_std`` is the spread over subsets, not a standard error of ``kid``: when m equals the
number of samples every subset holds all of them, and only the reference rows vary (with
m = n_samples = n_reference, ``kid_std`` is 0).

``kid_floor``: the same KID for the floor's n training rows (``fd``'s ``floor_rows``: n kept
samples capped at the training set's size, a deterministic subset from the seed) against the
same reference; each subset uses the same reference rows for ``kid`` and ``kid_floor`` (a paired
comparison). Its expectation is 0 where train and test come from one distribution and > 0 where
they do not (e.g. ``data.holdout_class``: a class only the test split has; at small n the gap can
be smaller than the noise).

Subsets are drawn from ``numpy.random.default_rng([seed, 2])`` (the sample's seed): the same
particles and seed give the same numbers. Vectorised in float64; nothing larger than m × m.
"""

from __future__ import annotations

import numpy as np

from dsmcli.metrics import fd
from dsmcli.metrics.base import Metric

N_SUBSETS = 100
SUBSET_SIZE = 1000
SUBSET_STREAM = 2  # default_rng([seed, SUBSET_STREAM]) draws the subsets
KERNEL = "k(a, b) = (a·b / d + 1)^3"


def _kernel_sum(a: np.ndarray, b: np.ndarray, *, within: bool = False) -> float:
    """Σᵢⱼ k(aᵢ, bⱼ) with k(a, b) = (aᵀb/d + 1)³ (float64, one m × m buffer), less the diagonal
    where ``within`` (a is b)."""
    t = a @ b.T
    t /= a.shape[1]
    t += 1.0
    total = float(np.vdot(t * t, t))  # Σ t³ without a third m × m array
    return total - float(np.sum(np.diagonal(t) ** 3)) if within else total


def _within(x: np.ndarray) -> float:
    """1/(m(m−1)) Σ_{i≠j} k(xᵢ, xⱼ)."""
    m = len(x)
    return _kernel_sum(x, x, within=True) / (m * (m - 1))


def _mmd2(x: np.ndarray, y: np.ndarray, kyy: float) -> float:
    m = len(x)
    return _within(x) + kyy - 2.0 * _kernel_sum(x, y) / (m * m)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """MMD²ᵤ of two equal-size feature sets with the cubic kernel (see the module docstring)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"mmd2_unbiased: needs two sets of the same size ≥ 2, got {len(x)} and {len(y)}")
    return _mmd2(x, y, _within(y))


def subset_size(*sizes: int, cap: int = SUBSET_SIZE) -> int:
    return int(min(cap, *sizes))


def kid_subsets(xs: list[np.ndarray], y: np.ndarray, seed: int, n_subsets: int = N_SUBSETS,
                size: int = SUBSET_SIZE) -> np.ndarray:
    """(len(xs), n_subsets) MMD²ᵤ of each feature set in ``xs`` against ``y`` on random subsets of
    m = min(size, every set's size) rows. Per subset: m reference rows, then m rows of each set
    in turn, each without replacement, from ``default_rng([seed, 2])``; the reference rows (and
    their within-set term) are shared by every set."""
    y = np.asarray(y, np.float64)
    xs = [np.asarray(x, np.float64) for x in xs]
    m = subset_size(len(y), *map(len, xs), cap=size)
    if m < 2:
        raise ValueError(f"kid: needs at least 2 rows in every set, got {[len(y), *map(len, xs)]}")
    rng = np.random.default_rng([seed, SUBSET_STREAM])
    out = np.empty((len(xs), n_subsets))
    for s in range(n_subsets):
        ys = y[rng.choice(len(y), m, replace=False)]
        kyy = _within(ys)
        for k, x in enumerate(xs):
            xk = x[rng.choice(len(x), m, replace=False)]
            out[k, s] = _mmd2(xk, ys, kyy)
    return out


def kid(x: np.ndarray, y: np.ndarray, seed: int = 0, n_subsets: int = N_SUBSETS, size: int = SUBSET_SIZE) -> tuple[float, float]:
    """(mean, population std) of MMD²ᵤ over ``n_subsets`` random subsets (see ``kid_subsets``)."""
    v = kid_subsets([x], y, seed, n_subsets, size)[0]
    return float(v.mean()), float(v.std())


def kid_of(f: fd.ImageFeatures, seed: int) -> dict:
    v = kid_subsets([f.samples, f.floor], f.reference, seed)
    return {"kid": float(v[0].mean()), "kid_std": float(v[0].std()), "kid_floor": float(v[1].mean())}


def kid_metrics(samples: np.ndarray, data, seed: int = 0) -> dict:
    return kid_of(fd.image_features(samples, data, seed), seed)


applies = fd.image_metric_applies("kid")


def protocol(ctx) -> dict:
    data = ctx.data
    m = subset_size(len(ctx.kept), min(len(ctx.kept), len(data.x_train)), len(data.x_test))
    return fd.protocol(ctx, kernel=KERNEL, estimator="unbiased MMD² U-statistic (Bińkowski et al. 2018)",
                       subset_size=m, n_subsets=N_SUBSETS, kid_std="population std over subsets (ddof 0)",
                       subsets=f"without replacement from numpy default_rng([seed, {SUBSET_STREAM}])")


METRICS = [Metric("kid", "samples", ("kid", "kid_std", "kid_floor"), applies,
                  lambda ctx: kid_of(fd.sample_set_features(ctx), ctx.seed),
                  "Kernel (Inception-style) distance: unbiased MMD² with the cubic polynomial kernel in fd's "
                  "features, mean and std over 100 subsets, and its floor (n training rows)", describe=protocol)]
