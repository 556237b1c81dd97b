"""``aae``: the adversarial autoencoder (Makhzani et al. 2016), deterministic encoder, prior
p(z) = N(0, I_K). A latent discriminator D (an MLP ℝᴷ → logit, with an optimiser of its own)
learns to tell prior draws from codes, and the encoder learns to fool it:

    J_AE(θ)  = E‖dec(enc(x)) − x‖² + λ · E[softplus(−D(enc(x)))]            (non-saturating)
    J_D(φ)   = E[softplus(−D(z_p))] + E[softplus(D(enc(x)))],   z_p ~ N(0, I)   (binary cross-entropy)

(means over the batch, the reconstruction summed over dimensions). Both players take one
simultaneous step per batch: the trainer differentiates J = J_AE(θ; sg φ) + J_D(sg θ; φ) once,
whose gradient is ∇_θ J_AE for the autoencoder and ∇_φ J_D for the discriminator (sg = stop
gradient), and ``optax.multi_transform`` applies ``optim`` to the autoencoder and a copy of it
with ``disc_lr`` to the discriminator. The defaults (λ = 0.1, ``disc_lr`` = ``optim.lr``/10) are
the balanced setting measured on the digits: a discriminator at the autoencoder's rate with
λ = 1 wins outright and the codes collapse. The logged ``loss`` is that J; ``recon``, ``gen_loss``
(the λ-less adversarial term) and ``disc_loss`` are logged too (a balanced game keeps
``disc_loss`` near 2 log 2 ≈ 1.386).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from dsmcli.objectives.autoencoder import AutoencoderObjective, extended, squared_error
from dsmcli.section import Section

DISCRIMINATOR = "discriminator"  # the attribute holding the parameter group with its own optimiser


class Config(Section):
    kind: Literal["aae"] = "aae"
    lam: NonNegativeFloat = 0.1
    disc_hidden: list[PositiveInt] = Field(default_factory=lambda: [128, 128])
    disc_lr: PositiveFloat | None = None  # default: optim.lr / 10


def logits(layers, z):
    """The discriminator's logit of "z was drawn from the prior", ``(B,)`` (ReLU MLP)."""
    import jax

    from dsmcli.models.mlp import forward

    return forward(layers, jax.nn.relu, z)[:, 0]


def adversarial_autoencoder(autoencoder, latent: int, hidden: list[int], rngs):
    """The autoencoder plus the latent discriminator, as one module."""
    from dsmcli.models.mlp import stack

    return extended(autoencoder, discriminator=stack([latent, *hidden, 1], rngs))


def frozen(module):
    """``module`` with its parameters behind a stop-gradient (inside traced code)."""
    import jax
    from flax import nnx

    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.lax.stop_gradient(state))


def two_players(tx, optim_cfg, total_steps: int, disc_lr: float):
    """``tx`` for the autoencoder's parameters and ``optim`` at ``disc_lr`` for those under
    ``DISCRIMINATOR`` (``optax.multi_transform``)."""
    import jax
    import optax

    from dsmcli import optim

    disc_cfg = optim_cfg.model_copy(update={"lr": disc_lr})

    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: DISCRIMINATOR if getattr(path[0], "key", None) == DISCRIMINATOR else "autoencoder",
            params)

    return optax.multi_transform({"autoencoder": tx, DISCRIMINATOR: optim.build(disc_cfg, total_steps)}, labels)


class AAE(AutoencoderObjective):
    def extend_model(self, model, rngs):
        return adversarial_autoencoder(model, self.model_cfg.latent, self.cfg.disc_hidden, rngs)

    def optimizer(self, tx, optim_cfg, total_steps):
        return two_players(tx, optim_cfg, total_steps, self.cfg.disc_lr or optim_cfg.lr / 10)

    def loss(self, model, x, key, train_set):
        import jax
        import jax.numpy as jnp

        z = model.encode(x)
        recon = squared_error(model.decode(z), x).mean()
        z_prior = jax.random.normal(key, z.shape, z.dtype)
        disc = model.discriminator
        gen = jnp.mean(jax.nn.softplus(-logits(frozen(disc), z)))
        disc_loss = (jnp.mean(jax.nn.softplus(-logits(disc, z_prior)))
                     + jnp.mean(jax.nn.softplus(logits(disc, jax.lax.stop_gradient(z)))))
        return recon + self.cfg.lam * gen + disc_loss, {"recon": recon, "gen_loss": gen, "disc_loss": disc_loss}


make = AAE
