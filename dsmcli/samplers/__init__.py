"""Samplers, one module each (``run(target, x0, key, cfg) -> (x, info)``), in an explicit
registry. ``target`` gives ``score(x)`` and, for energy models, ``energy(x)``."""

from __future__ import annotations

from dsmcli.samplers import langevin

REGISTRY = {"langevin": langevin}
