"""What every data kind returns: a ``Dataset`` of arrays plus, where it has one, the exact
``Density`` of its generating process.

Conventions: samples are rows of float32 arrays ``(N, D)``. ``Density.log_prob(x, sigma)`` is
the log-density of the Gaussian-smoothed distribution q_σ = p ⊛ N(0, σ²I) (σ = 0: p itself) and
``Density.score(x, sigma)`` is ∇ₓ log q_σ(x) and ``Density.hessian(x, sigma)`` is ∇²ₓ log q_σ(x)
``(B, D, D)`` (``hessian_vp`` its product with a direction, for large D), all row-wise on a batch
``(B, D)`` in JAX, so they can be used inside jit-compiled samplers, objectives and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class Density:
    """Exact density of a data set's generating process (subclasses implement the maths).

    Attributes:
      dim: the dimension D.
      has_score: ``score(x, 0)`` exists in closed form (it does not for densities that are
        piecewise constant, e.g. the checkerboard, whose score is 0 almost everywhere).
      smoothable: ``log_prob``/``score`` accept ``sigma > 0`` in closed form.
    """

    dim: int
    has_score: bool = True
    smoothable: bool = False

    def log_prob(self, x, sigma: float = 0.0):
        raise NotImplementedError

    def score(self, x, sigma: float = 0.0):
        """∇ₓ log q_σ(x) by automatic differentiation of ``log_prob`` (exact, not numerical)."""
        import jax

        return jax.vmap(jax.grad(lambda row: self.log_prob(row[None], sigma)[0]))(x)

    @property
    def has_hessian(self) -> bool:
        """∇²log p exists in closed form (automatic differentiation of a closed-form score)."""
        return self.has_score

    def hessian(self, x, sigma: float = 0.0):
        """∇²ₓ log q_σ(x) ``(B, D, D)``: the Jacobian of ``score`` (exact, forward over reverse)."""
        import jax

        return jax.vmap(jax.jacfwd(lambda row: self.score(row[None], sigma)[0]))(x)

    def hessian_vp(self, x, v, sigma: float = 0.0):
        """(∇²ₓ log q_σ(x)) v row-wise ``(B, D)`` for directions ``v`` ``(B, D)``: one jvp of the
        score (rows are independent, so one batched jvp gives every row's product)."""
        import jax

        return jax.jvp(lambda y: self.score(y, sigma), (x,), (v,))[1]

    def component_log_probs(self, x):
        """``(B, K)`` log wₖ + log Nₖ(x) for mixtures (used for mode weights), else None."""
        return None

    @property
    def component_weights(self):
        return None


@dataclass(frozen=True)
class Dataset:
    """Train/test arrays of one data kind, and its exact density where known."""

    kind: str
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    density: Density | None = None
    bounds: tuple[tuple[float, float], ...] | None = field(default=None)
    report_modes: bool = False  # a mixture whose components are the modes (gmm), for mode_weights
    image_shape: tuple[int, ...] | None = None  # rows are flattened images of this shape
    holdout_class: int | None = None  # a class absent from training (anomaly detection)
    has_missing: bool = False  # NaN marks unobserved entries (ratings); only masking objectives train on it
    # Quantised pixels: coordinate j holds a_j·k + b_j for integer levels k; ``quantization`` is a
    # (its bin width in the model's space, (D,)): uniform dequantisation and bits/dim use it.
    quantization: np.ndarray | None = field(default=None, repr=False)
    # ``data.labels_per_class``: the training rows whose label a model may use (semi-supervised
    # learning); None: every label. ``y_train`` keeps all labels for the evaluation tools.
    labelled: np.ndarray | None = field(default=None, repr=False)

    @property
    def labelled_rows(self) -> np.ndarray:
        """Indices of the training rows whose labels the model may use."""
        if self.y_train is None:
            return np.zeros(0, np.int64)
        return np.flatnonzero(self.labelled) if self.labelled is not None else np.arange(len(self.y_train))

    @property
    def dim(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def has_score(self) -> bool:
        return self.density is not None and self.density.has_score


def keep_labels_per_class(dataset: Dataset, per_class: int, seed: int) -> Dataset:
    """``dataset`` with the labels of ``per_class`` training rows of each class (the first of a
    permutation seeded by ``seed``) marked usable, the others' hidden from the model."""
    import dataclasses

    from dsmcli.errors import UserError

    if dataset.y_train is None:
        raise UserError(f"data.labels_per_class: data.kind '{dataset.kind}' has no labels")
    y = np.asarray(dataset.y_train)
    order = np.random.default_rng(seed).permutation(len(y))
    mask = np.zeros(len(y), bool)
    for c in np.unique(y):
        rows = order[y[order] == c]
        if len(rows) < per_class:
            raise UserError(f"data.labels_per_class: {per_class} labels per class, but class {c} has only "
                            f"{len(rows)} training rows; lower it (or omit it: every label)")
        mask[rows[:per_class]] = True
    return dataclasses.replace(dataset, labelled=mask)


def plot_bounds(x: np.ndarray, margin: float = 0.15) -> tuple[tuple[float, float], ...]:
    """A square-ish plotting window around the data (per dimension, with a relative margin)."""
    lo, hi = np.quantile(x, 0.001, axis=0), np.quantile(x, 0.999, axis=0)
    pad = margin * (hi - lo) + 1e-3
    return tuple((float(a), float(b)) for a, b in zip(lo - pad, hi + pad))


def synthetic_nbytes(cfg, dim: int) -> int:
    """Peak memory of sampling ``n_train + n_test`` rows of ``dim`` coordinates: float64 draws and
    their float32 copies (3 × 8 bytes per value covers the generators' temporaries)."""
    return int((cfg.n_train + cfg.n_test) * dim * 24)
