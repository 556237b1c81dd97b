"""``autorec``: AutoRec (Sedhain, Menon, Sanner & Xie 2015), an autoencoder that completes a
partially observed rating matrix; item-based ("I-AutoRec", ``based: item``, the default) or
user-based ("U-AutoRec", ``based: user``).

``based: item``: each training row r ∈ ℝᵁ is one item's ratings by the U users (``data.kind
ratings``: NaN where unobserved; the data set's rows are items). ``based: user``: each row is one
user's ratings of the I items instead, a column of that matrix: the network is built on I inputs
(the objective replaces the network built on U), the loss draws its batch of users itself
(``batch_size`` user columns, uniformly with replacement, from the loss's PRNG key; the trainer's
item rows are not used) and predictions are transposed back. So ``based: user`` on a matrix is
``based: item`` on its transpose, with the same weights and rows the same loss and ``rmse``.
The paper found I-AutoRec the better of the two (ml-1m: 0.831 vs 0.874).

The network is an ``mlp`` without ``latent``; ``{kind: mlp, hidden: [500], activation: sigmoid}``
is exactly the paper's h(r) = W·g(V r + μ) + b (deeper ``hidden`` lists give a deeper AutoRec).
Conventions:

* input: unobserved entries are fed as 0 (ratings are ≥ 1 on MovieLens, so 0 is "no rating");
* loss: J = (1/B) Σ_rows Σ_{u observed} (h(r)ᵤ − rᵤ)² + (λ/2) Σ_layers ‖W‖²_F — the mean over the
  batch of the per-row *sum* of squared errors over observed entries only (an unobserved entry's
  prediction has no effect on J), plus an L2 penalty on every kernel (not on the biases),
  ``lam`` = λ. The paper sums over all items (users, for ``based: user``) instead of averaging
  over a batch, so its λ_paper corresponds to λ = λ_paper / n_items here (λ = 0.1 on ml-100k's
  1682 items ≈ λ_paper = 170; λ_paper / n_users for ``based: user``);
* logged: ``masked_mse``, the mean squared error over the batch's observed entries;
* evaluation (``metrics``): ``rmse`` over the held-out ratings (``x_test``) of h(training row),
  predictions clipped to the range of the training ratings ([1, 5] on MovieLens and the
  synthetic generator); ``rmse_baseline``, the same for the item's mean training rating (the
  global mean for items without training ratings), whatever ``based`` is (one reference per
  data set).

There is no score read-out (a rating matrix has no density to sample); ``dsm eval`` is the
read-out.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from dsmcli.errors import UserError
from dsmcli.objectives.base import Objective
from dsmcli.section import Section


class Config(Section):
    kind: Literal["autorec"] = "autorec"
    lam: float = Field(0.1, ge=0.0)  # λ of (λ/2) Σ‖W‖²_F (best of 0.05/0.1/0.2 at ml-100k's shape)
    based: Literal["item", "user"] = "item"  # rows autoencoded: items' ratings (I-AutoRec) or users' (U-AutoRec)


def observed(x):
    """(mask of observed entries, x with unobserved entries set to 0)."""
    import jax.numpy as jnp

    mask = ~jnp.isnan(x)
    return mask, jnp.where(mask, x, 0.0)


def masked_squared_error(pred, x):
    """Σ over each row's observed entries of (pred − x)², ``(B,)``, and the observed count."""
    import jax.numpy as jnp

    mask, target = observed(x)
    err = jnp.where(mask, pred - target, 0.0)
    return jnp.sum(err**2, axis=-1), jnp.sum(mask)


def kernel_penalty(model):
    """Σ ‖W‖²_F over the kernels of the network's linear layers (biases excluded)."""
    import jax.numpy as jnp

    return sum(jnp.sum(layer.kernel[...] ** 2) for layer in model.layers)


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared error over the finite entries of ``target``."""
    held = np.isfinite(target)
    return float(np.sqrt(np.mean((pred[held] - target[held]) ** 2)))


def item_mean_baseline(x_train: np.ndarray) -> np.ndarray:
    """Each row's mean observed training rating (the global mean for rows with none),
    broadcast to the matrix's shape."""
    counts = np.isfinite(x_train).sum(1)
    global_mean = float(np.nanmean(x_train))
    sums = np.nansum(x_train, 1)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), global_mean)
    return np.broadcast_to(means[:, None], x_train.shape)


class AutoRec(Objective):
    MODELS = ("mlp",)
    READS_RECONSTRUCTION = True
    HANDLES_MISSING = True
    DATA_KINDS = ("ratings",)  # rows = items; the held-out ratings sit in the same matrix (x_test)

    @property
    def user_based(self) -> bool:
        return self.cfg.based == "user"
    has_score = False

    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        if getattr(model_cfg, "latent", None) is not None:
            raise UserError(
                f"model.latent: objective.kind 'autorec' reads an mlp without a bottleneck "
                f"(h(r) = W·g(V r + μ) + b; the hidden width is the code); remove model.latent "
                f"(got {model_cfg.latent}) and set model.hidden, e.g. [500]"
            )

    def extend_model(self, model, rngs):
        if not self.user_based:
            return model
        from dsmcli import models

        return models.build(self.model_cfg, self.data.x_train.shape[0], rngs)  # I inputs: a user's ratings of the items

    def user_rows(self, batch_size: int, key, train_set):
        """``batch_size`` users' rating vectors over the items, (B, I): columns of the training
        matrix drawn uniformly with replacement with ``key`` (``based: user``)."""
        import jax

        idx = jax.random.randint(key, (batch_size,), 0, train_set.shape[1])
        return train_set[:, idx].T

    def loss(self, model, x, key, train_set):
        import jax.numpy as jnp

        if self.user_based:
            x = self.user_rows(x.shape[0], key, train_set)
        _, inputs = observed(x)
        sq, count = masked_squared_error(model(inputs), x)
        penalty = kernel_penalty(model)
        loss = jnp.mean(sq) + 0.5 * self.cfg.lam * penalty
        return loss, {"masked_mse": jnp.sum(sq) / jnp.maximum(count, 1), "weight_l2": penalty}

    def predict(self, model, x_train) -> np.ndarray:
        """h(r) for every row of the training matrix (unobserved inputs fed as 0; ``based:
        user``: for every column, transposed back), clipped to the range of the training ratings."""
        import jax.numpy as jnp

        rows = x_train.T if self.user_based else x_train
        pred = np.asarray(model(jnp.asarray(np.nan_to_num(rows, nan=0.0))), np.float64)
        pred = pred.T if self.user_based else pred
        return np.clip(pred, np.nanmin(x_train), np.nanmax(x_train))

    def metrics(self, model, data) -> dict:
        if not np.isfinite(data.x_test).any() or not np.isfinite(data.x_train).any():
            return {}
        return {"rmse": rmse(self.predict(model, data.x_train), data.x_test),
                "rmse_baseline": rmse(item_mean_baseline(data.x_train), data.x_test)}

    def score(self, model, x):
        raise UserError(
            "objective.kind 'autorec' has no score read-out (it completes a rating matrix, which has no "
            "density to sample); evaluate it with dsm eval RUN_DIR (rmse)"
        )

    @property
    def has_energy(self) -> bool:
        return False


make = AutoRec
