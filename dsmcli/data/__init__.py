"""Data kinds, one module each, listed in an explicit registry.

Each module defines ``Config`` (a pydantic section whose ``kind`` literal is its name) and
``build(cfg) -> Dataset``. Optional: ``nbytes(cfg)``, an upper estimate of the memory that
``build`` takes (checked before building; kinds sampled from a generating process get one from
``n_train``/``n_test`` automatically), and ``source_files(cfg)``, the files it reads (recorded in
the run's provenance). Labelled kinds take ``labels_per_class`` (semi-supervised learning: only
that many labels per class are given to the model; ``Dataset.labelled``). Adding a data kind = one new module + one line here + its test (the
registry contract test picks it up automatically).
"""

from __future__ import annotations

from dsmcli.data import checkerboard, cifar10, digits, gmm, images, mnist, moons, npz, ratings, rings, spiral
from dsmcli.data.base import Dataset, Density, synthetic_nbytes

REGISTRY = {m.Config.model_fields["kind"].default: m
            for m in (gmm, rings, moons, spiral, checkerboard, digits, mnist, cifar10, images, npz, ratings)}


def estimated_bytes(cfg) -> int | None:
    """Upper estimate of the memory of building ``cfg``'s data set (None: not estimated)."""
    from dsmcli.section import SyntheticData

    module = REGISTRY[cfg.kind]
    hook = getattr(module, "nbytes", None)
    if hook is not None:
        return hook(cfg)
    if isinstance(cfg, SyntheticData):
        return synthetic_nbytes(cfg, getattr(module, "DIM", 2))
    return None


def build(cfg) -> Dataset:
    """Build the data set of a validated data config (refused first if it cannot fit)."""
    from dsmcli import memory

    need = estimated_bytes(cfg)
    if need:
        fix = getattr(REGISTRY[cfg.kind], "NBYTES_FIX", "lower data.n_train or data.n_test")
        memory.check(need, f"data.kind {cfg.kind}", fix)
    dataset = REGISTRY[cfg.kind].build(cfg)
    per_class = getattr(cfg, "labels_per_class", None)
    if per_class is not None:
        from dsmcli.data.base import keep_labels_per_class

        dataset = keep_labels_per_class(dataset, per_class, getattr(cfg, "seed", 0))
    return dataset


__all__ = ["REGISTRY", "Dataset", "Density", "build", "estimated_bytes"]
