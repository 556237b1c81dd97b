"""``sde``: a continuous-time score model s_θ(x, t) of the marginals p_t of a forward SDE
(``dsmcli.sde``: VE, VP or sub-VP; Song et al. 2021, eq. 7), trained by denoising score matching
at a time drawn per row:

    J(θ) = E_{t ~ U(t_eps, 1)} E_x E_ε [ λ(t) · ½‖s_θ(x_t, t) + ε/s(t)‖² ],   x_t = m(t)x + s(t)ε

with ``weighting: sigma2`` λ(t) = s(t)² (the default; every t contributes O(1), NCSN's σ²) or
``likelihood`` λ(t) = g(t)² (Song, Durkan, Murray & Ermon 2021: J then bounds the KL to the
data, i.e. the negative log-likelihood up to a constant). Conventions as ``ncsn``: factor ½,
squared norm summed over dimensions, mean over the batch, ε/s(t) = −∇log N(x_t; m x, s² I) written
without cancellation; keys t, ε from ``jax.random.split(key)`` in that order. ``dequantize: true``
(quantised images) trains on x + a ⊙ (u − ½), u ~ U[0, 1)ᴰ, a the data's bin widths: the
density of the bins the ``bpd`` protocol integrates over (keys t, ε, u from a 3-way split).

The network is the noise-conditional MLP (``ncsn_mlp``) or U-Net (``ncsn_conv``) fed s(t): it
sees log s(t) — for VE exactly log σ(t), for VP and sub-VP a strictly increasing function of t,
so it is conditioned on t — and its output is divided by s(t), i.e. s_θ = −ε_θ/s(t), the
ε-parameterisation under which the score's 1/s(t) growth is not learned. The plain score
read-out is s_θ(x, t_eps) (the data's score up to the smoothing at s(t_eps)); for VE the network
is also a noise-conditional score s(x, σ) = s_θ(x, t(σ)) for ``annealed_langevin``.
"""

from __future__ import annotations

from typing import Literal

from dsmcli.errors import UserError
from dsmcli.objectives.base import Objective
from dsmcli.sde import SDEKeys, build


class Config(SDEKeys):
    kind: Literal["sde"] = "sde"
    sde: Literal["ve", "vp", "subvp"] = "ve"
    weighting: Literal["sigma2", "likelihood"] = "sigma2"
    dequantize: bool = False  # quantised images: train on x + a(u − ½), the bins bits/dim integrates over


class ScoreSDE(Objective):
    MODELS = ("ncsn_mlp", "ncsn_conv")
    DEFAULT_MODEL = "ncsn_mlp"
    DEFAULT_IMAGE_MODEL = "ncsn_conv"

    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        self.sde = build(cfg, data.x_train)
        if cfg.dequantize and getattr(data, "quantization", None) is None:
            raise UserError(f"objective.dequantize: data.kind '{data.kind}' has no quantised pixels to dequantise "
                            f"(digits and 8-bit mnist have)")

    def loss(self, model, x, key, train_set):
        import jax
        import jax.numpy as jnp

        sde = self.sde
        if self.cfg.dequantize:  # its own 3-way split (a key beside the 2-way one could repeat one of them)
            k_t, k_noise, k_deq = jax.random.split(key, 3)
            step = jnp.asarray(self.data.quantization, x.dtype)
            x = x + step * (jax.random.uniform(k_deq, x.shape, x.dtype) - 0.5)
        else:
            k_t, k_noise = jax.random.split(key)
        t = jax.random.uniform(k_t, (x.shape[0],), x.dtype, sde.t_eps, 1.0)
        m, s = sde.marginal(t)
        eps = jax.random.normal(k_noise, x.shape, x.dtype)
        x_t = m[:, None] * x + s[:, None] * eps
        score = model(x_t, s)
        if self.cfg.weighting == "sigma2":  # s² · ½‖s_θ + ε/s‖² = ½‖s·s_θ + ε‖²
            per_row = 0.5 * jnp.sum((s[:, None] * score + eps) ** 2, -1)
        else:
            per_row = 0.5 * sde.diffusion(t) ** 2 * jnp.sum((score + eps / s[:, None]) ** 2, -1)
        return jnp.mean(per_row), {}

    def score_t(self, model, x, t):
        """s_θ(x, t) row-wise; ``t`` a scalar or ``(B,)``."""
        import jax.numpy as jnp

        t = jnp.broadcast_to(jnp.asarray(t, x.dtype), (x.shape[0],))
        return model(x, self.sde.marginal(t)[1])

    def score(self, model, x):
        return self.score_t(model, x, self.sde.t_eps)

    @property
    def noise_conditional(self) -> bool:
        return self.sde.kind == "ve"

    def score_at(self, model, x, sigma):
        return model(x, sigma)  # VE: s(t) = σ(t), so the network's argument is σ itself

    def sigmas(self):
        if self.sde.kind != "ve":
            return None
        import numpy as np

        return np.geomspace(self.sde.sigma_max, self.sde.sigma_min, 10)

    @property
    def has_energy(self) -> bool:
        return False


make = ScoreSDE
