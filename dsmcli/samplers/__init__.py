"""Samplers, one module each, in an explicit registry: ``check(target, cfg)`` raises a
``UserError`` when the model cannot be sampled this way, ``run(target, x0, key, cfg) -> (x,
info)`` runs every step inside one ``lax.scan`` — written ``progress.scan`` for a fixed number of
steps, so that ``dsm sample`` reports progress within the dispatch (the same bits). ``target``
is a ``samplers.base.Target``.
Optional: ``initial(target, key, n)`` (the particles to start from, in place of ``sample.init``:
the reverse-time samplers start from the SDE's prior) and ``INPAINTS = True`` with
``run(..., condition=(observed, known))`` (``sample.inpaint``: the known coordinates held)."""

from __future__ import annotations

from dsmcli.samplers import ab_mh, ancestral, annealed_langevin, langevin, mala, ode, pc
from dsmcli.samplers.base import Target

REGISTRY = {"langevin": langevin, "mala": mala, "annealed_langevin": annealed_langevin, "ab_mh": ab_mh, "ancestral": ancestral,
            "pc": pc, "ode": ode}

__all__ = ["REGISTRY", "Target"]
