"""Samplers, one module each, in an explicit registry: ``check(target, cfg)`` raises a
``UserError`` when the model cannot be sampled this way, ``run(target, x0, key, cfg) -> (x,
info)`` runs every step inside one ``lax.scan``. ``target`` is a ``samplers.base.Target``."""

from __future__ import annotations

from dsmcli.samplers import ab_mh, ancestral, annealed_langevin, langevin, mala
from dsmcli.samplers.base import Target

REGISTRY = {"langevin": langevin, "mala": mala, "annealed_langevin": annealed_langevin, "ab_mh": ab_mh, "ancestral": ancestral}

__all__ = ["REGISTRY", "Target"]
