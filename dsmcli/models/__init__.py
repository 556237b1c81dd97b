"""Network kinds, one module each (``Config`` + ``build(cfg, dim, rngs) -> nnx.Module``).

``model.kind`` picks the network; the objective decides how its output is read (a score, an
energy, a reconstruction) and rejects kinds it cannot read."""

from __future__ import annotations

from dsmcli.models import conv, energy, mlp, ncsn_conv, ncsn_mlp, tied_dae

REGISTRY = {m.Config.model_fields["kind"].default: m for m in (mlp, energy, tied_dae, ncsn_mlp, conv, ncsn_conv)}
DEFAULT_KIND = "mlp"


def build(cfg, dim: int, rngs, **options):
    """``options`` are requests of the objective that a network kind may accept (e.g.
    ``stochastic_encoder`` for the VAE family) and facts about the data (``image_shape``)."""
    return REGISTRY[cfg.kind].build(cfg, dim, rngs, **options)
