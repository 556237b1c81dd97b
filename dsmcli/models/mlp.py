"""``mlp``: a multilayer perceptron D → hidden… → out (Flax NNX).

The objective decides what the output means (a score, an energy, a reconstruction) and so its
width; the config only gives the hidden widths and the activation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from dsmcli.section import Section

ACTIVATIONS = ("softplus", "relu", "silu", "swish", "tanh", "elu", "gelu", "sigmoid")


class Config(Section):
    kind: Literal["mlp"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [128, 128])
    activation: Literal[ACTIVATIONS] = "softplus"


def activation_fn(name: str):
    import jax

    return {"swish": jax.nn.silu}.get(name) or getattr(jax.nn, name)


def build(cfg: Config, in_dim: int, out_dim: int, rngs):
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self):
            widths = [in_dim, *cfg.hidden, out_dim]
            self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:])])
            self.act = activation_fn(cfg.activation)

        def __call__(self, x):
            for layer in self.layers[:-1]:
                x = self.act(layer(x))
            return self.layers[-1](x)

    return MLP()
