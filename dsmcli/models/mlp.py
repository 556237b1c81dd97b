"""``mlp``: a multilayer perceptron ℝᴰ → ℝᴰ (Flax NNX), optionally with a bottleneck.

Without ``latent`` it is D → hidden… → D: read as a score s(x) by the score-matching
objectives, or as a reconstruction r(x) by the autoencoder objectives. With ``latent: K`` it is
an autoencoder: ``encode`` D → hidden… → K (linear code) and ``decode`` K → reversed(hidden)… → D,
and ``__call__ = decode ∘ encode``. With ``stochastic_encoder`` (asked for by the VAE objectives)
the encoder outputs 2K numbers, the mean and log-variance of q(z|x) (``encode_stats``), and
``encode`` returns the mean. With ``residual: true`` (no ``latent``) it is x ↦ x + f(x), f the
perceptron: read as a reconstruction r(x) = x + f(x), the score read-out (r(x) − x)/σ² = f(x)/σ²
no longer divides the network's error in reproducing x by σ².
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from dsmcli.models.activations import ACTIVATIONS, activation_fn
from dsmcli.section import Section


# dense layers only (models.dense): the gradients' bits do not depend on the thread count
THREAD_INDEPENDENT = True


class Config(Section):
    kind: Literal["mlp"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128, 128])
    activation: Literal[ACTIVATIONS] = "softplus"
    latent: PositiveInt | None = None
    residual: bool = False  # x ↦ x + f(x) (reconstruction objectives, no latent)

    @model_validator(mode="after")
    def _residual(self):
        if self.residual and self.latent is not None:
            raise ValueError("'residual' adds x to the output and would bypass the bottleneck; drop 'latent' or 'residual'")
        return self


def stack(widths: list[int], rngs):
    """Linear layers between consecutive ``widths``."""
    from flax import nnx

    from dsmcli.models.dense import Linear

    return nnx.List([Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])


def forward(layers, act, x):
    """Activation after every layer but the last."""
    for layer in layers[:-1]:
        x = act(layer(x))
    return layers[-1](x)


def build(cfg: Config, dim: int, rngs, stochastic_encoder: bool = False, **options):
    from flax import nnx

    k = cfg.latent

    class MLP(nnx.Module):
        def __init__(self):
            self.act = activation_fn(cfg.activation)
            if k is None:
                self.layers = stack([dim, *cfg.hidden, dim], rngs)
            else:
                self.encoder = stack([dim, *cfg.hidden, 2 * k if stochastic_encoder else k], rngs)
                self.decoder = stack([k, *reversed(cfg.hidden), dim], rngs)

        def encode_stats(self, x):
            """(mean, log-variance) of q(z|x) (stochastic encoder only)."""
            out = forward(self.encoder, self.act, x)
            return out[:, :k], out[:, k:]

        def encode(self, x):
            return forward(self.encoder, self.act, x)[:, :k]

        def decode(self, z):
            return forward(self.decoder, self.act, z)

        def __call__(self, x):
            if cfg.latent is None:
                out = forward(self.layers, self.act, x)
                return x + out if cfg.residual else out
            return self.decode(self.encode(x))

    return MLP()
