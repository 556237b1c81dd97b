"""``checkerboard``: uniform on the dark squares of a ``cells`` × ``cells`` board on
[−extent, extent]².

p is piecewise constant (its score is 0 almost everywhere, so ``has_score`` is False), but the
σ-smoothed density has a closed form: for a dark cell [a₁,b₁]×[a₂,b₂],
(p ⊛ N(0,σ²I))(x) = (1/A) Σ_cells Π_d [Φ((b_d − x_d)/σ) − Φ((a_d − x_d)/σ)], A the dark area,
computed in log space so that its score is finite far from the board.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import PositiveFloat, PositiveInt

from dsmcli.data.base import Dataset, Density
from dsmcli.section import SyntheticData


class Config(SyntheticData):
    kind: Literal["checkerboard"] = "checkerboard"
    cells: PositiveInt = 4
    extent: PositiveFloat = 4.0


def log_diff_ndtr(lo, hi):
    """log(Φ(hi) − Φ(lo)) for lo < hi, stable in both tails (uses Φ(h) − Φ(l) = Φ(−l) − Φ(−h))."""
    import jax.numpy as jnp
    from jax.scipy.special import log_ndtr

    flip = lo > 0
    a, b = jnp.where(flip, -hi, lo), jnp.where(flip, -lo, hi)
    la, lb = log_ndtr(a), log_ndtr(b)
    return lb + jnp.log1p(-jnp.exp(la - lb))


class CheckerboardDensity(Density):
    dim = 2
    has_score = False
    smoothable = True

    def __init__(self, cells: int, extent: float):
        width = 2 * extent / cells
        ij = [(i, j) for i in range(cells) for j in range(cells) if (i + j) % 2 == 0]
        self.lower = np.array([(-extent + i * width, -extent + j * width) for i, j in ij])
        self.width = width
        self.log_area = float(np.log(len(ij) * width**2))

    def log_prob(self, x, sigma: float = 0.0):
        import jax.numpy as jnp
        from jax.scipy.special import logsumexp

        lo = jnp.asarray(self.lower, x.dtype)[None]  # (1, C, 2)
        if not sigma:
            inside = jnp.all((x[:, None] >= lo) & (x[:, None] < lo + self.width), -1).any(-1)
            return jnp.where(inside, -self.log_area, -jnp.inf)
        per_dim = log_diff_ndtr((lo - x[:, None]) / sigma, (lo + self.width - x[:, None]) / sigma)
        return logsumexp(per_dim.sum(-1), axis=-1) - self.log_area

    def sample(self, n, rng):
        cell = rng.integers(len(self.lower), size=n)
        return (self.lower[cell] + self.width * rng.uniform(size=(n, 2))).astype(np.float32)


def build(cfg: Config) -> Dataset:
    dens = CheckerboardDensity(cfg.cells, cfg.extent)
    rng = np.random.default_rng(cfg.seed)
    x_train, x_test = dens.sample(cfg.n_train, rng), dens.sample(cfg.n_test, rng)
    pad = 0.1 * cfg.extent
    bounds = ((-cfg.extent - pad, cfg.extent + pad),) * 2
    return Dataset("checkerboard", x_train, x_test, density=dens, bounds=bounds)
