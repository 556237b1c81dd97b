"""``esm``: explicit score matching, J(θ) = ½ E‖s_θ(x) − ∇log p(x)‖² (mean over the batch, sum
over dimensions; ``dsmcli.losses.esm``).

``target: exact`` uses the data set's closed-form score at the training points.
``target: parzen`` is Vincent's (2010) Parzen ESM: x̃ = x + σε is a draw of the Parzen density
q_σ(x̃) = (1/N) Σₙ N(x̃; xₙ, σ²I) of the training set, and the target is its exact score

    ∇log q_σ(x̃) = Σₙ wₙ(x̃)(xₙ − x̃)/σ²,  wₙ = softmax_n(−‖x̃ − xₙ‖²/(2σ²)),

summed over the whole training set (O(B·N·D) per step). Parzen ESM equals DSM at σ plus a
constant independent of θ (Vincent 2010, eq. 11–12).
"""

from __future__ import annotations

from typing import Literal

from dsmcli import losses
from dsmcli.errors import UserError
from dsmcli.objectives.base import Objective
from dsmcli.section import NoiseScale, Section


class Config(Section):
    kind: Literal["esm"] = "esm"
    target: Literal["exact", "parzen"] = "exact"
    sigma: NoiseScale = 0.1  # Parzen bandwidth (target: parzen)


def parzen_score(x, centers, sigma):
    """Exact score of q_σ(x) = (1/N) Σₙ N(x; cₙ, σ²I) at the rows of ``x``."""
    import jax
    import jax.numpy as jnp

    shift = jnp.mean(centers, 0)  # expand ‖x − c‖² around the data's centre: float32 keeps its precision
    xc, cc = x - shift, centers - shift
    sq = jnp.sum(xc**2, -1)[:, None] - 2 * xc @ cc.T + jnp.sum(cc**2, -1)[None]
    w = jax.nn.softmax(-sq / (2 * sigma**2), axis=-1)
    return (w @ centers - x) / sigma**2


class ESM(Objective):
    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        if cfg.target == "exact" and not data.has_score:
            raise UserError(
                f"objective.target: 'exact' needs a data set with a closed-form score; data.kind "
                f"'{data.kind}' has none (use objective.target: parzen)"
            )

    def loss(self, model, x, key, train_set):
        score = lambda y: self.score(model, y)  # noqa: E731
        if self.cfg.target == "exact":
            return losses.esm(score, x, self.data.density.score(x)), {}
        x_tilde, _ = losses.noisy(x, key, self.cfg.sigma)
        return losses.esm(score, x_tilde, parzen_score(x_tilde, train_set, self.cfg.sigma)), {}


make = ESM
