"""``dsm``: denoising score matching at a single noise level σ (Vincent 2010).

J(θ) = ½ E_x E_ε ‖s_θ(x̃) + (x̃ − x)/σ²‖²,  x̃ = x + σε,  ε ~ N(0, I)

mean over the batch, sum over dimensions (``dsmcli.losses.dsm``). Its minimiser is the score of
the smoothed data density q_σ = p ⊛ N(0, σ²I), so small σ approximates ∇log p. Works with a score
network (``mlp``), an energy network (s = −∇E) and the tied DAE read as (r(x̃) − x̃)/σ², for which
J_DSM = J_DAE/(2σ⁴) exactly (Vincent 2010, §4).

J never reaches 0: at the optimum it is the constant ½E‖∇log q_σ(x̃) + ε/σ‖² (≈ D/(2σ²) for
small σ, ≈ 100 on the quickstart). Where the data set has the smoothed score in closed form, each
step also logs ``loss_excess`` = J(s_θ) − J(∇log q_σ) on the *same* batch and noise. Its
expectation is ½E_{x̃~q_σ}‖s_θ(x̃) − ∇log q_σ(x̃)‖² ≥ 0 (Vincent's identity: DSM is ESM on q_σ
plus that constant), and it is 0 exactly at the optimum (tested).
"""

from __future__ import annotations

from typing import Literal

import jax

from dsmcli import losses
from dsmcli.objectives.base import SCORE_MODELS, Objective
from dsmcli.section import NoiseScale, Section


class Config(Section):
    kind: Literal["dsm"] = "dsm"
    sigma: NoiseScale = 0.1


class DSM(Objective):
    MODELS = (*SCORE_MODELS, "tied_dae")

    def loss(self, model, x, key, train_set):
        loss = losses.dsm(lambda y: self.score(model, y), x, key, self.cfg.sigma)
        density = self.data.density
        if density is None or not density.smoothable:
            return loss, {}
        exact = losses.dsm(lambda y: density.score(y, self.cfg.sigma), x, key, self.cfg.sigma)  # same noise
        return loss, {"loss_excess": loss - jax.lax.stop_gradient(exact)}


make = DSM
