"""Network kinds, one module each (``Config`` + ``build(cfg, in_dim, out_dim, rngs)``)."""

from __future__ import annotations

from dsmcli.models import mlp

REGISTRY = {m.Config.model_fields["kind"].default: m for m in (mlp,)}
DEFAULT_KIND = "mlp"


def build(cfg, in_dim: int, out_dim: int, rngs):
    return REGISTRY[cfg.kind].build(cfg, in_dim, out_dim, rngs)
