"""``energy``: a scalar energy network E_θ: ℝᴰ → ℝ (MLP with one output), returning ``(B,)``.

Read by the objectives through s_θ(x) = −∇ₓE_θ(x), so the model defines an unnormalised density
p_θ ∝ exp(−E_θ) usable by MALA and by ``kl_grid``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from dsmcli.models.activations import ACTIVATIONS, activation_fn
from dsmcli.models.mlp import forward, stack
from dsmcli.section import Section


# dense layers only (models.dense): the gradients' bits do not depend on the thread count
THREAD_INDEPENDENT = True


class Config(Section):
    kind: Literal["energy"] = "energy"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128, 128])
    activation: Literal[ACTIVATIONS] = "softplus"


def build(cfg: Config, dim: int, rngs, **options):
    from flax import nnx

    class Energy(nnx.Module):
        def __init__(self):
            self.act = activation_fn(cfg.activation)
            self.layers = stack([dim, *cfg.hidden, 1], rngs)

        def __call__(self, x):
            return forward(self.layers, self.act, x)[:, 0]

    return Energy()
