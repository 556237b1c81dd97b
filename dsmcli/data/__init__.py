"""Data kinds, one module each, listed in an explicit registry.

Each module defines ``Config`` (a pydantic section whose ``kind`` literal is its name) and
``build(cfg) -> Dataset``. Adding a data kind = one new module + one line here + its test (the
registry contract test picks it up automatically).
"""

from __future__ import annotations

from dsmcli.data import checkerboard, digits, gmm, mnist, moons, npz, ratings, rings, spiral
from dsmcli.data.base import Dataset, Density

REGISTRY = {m.Config.model_fields["kind"].default: m for m in (gmm, rings, moons, spiral, checkerboard, digits, mnist, npz, ratings)}


def build(cfg) -> Dataset:
    """Build the data set of a validated data config."""
    return REGISTRY[cfg.kind].build(cfg)


__all__ = ["REGISTRY", "Dataset", "Density", "build"]
