"""The interface every objective implements.

An objective is built from its config section and the data set. It decides how the network's
output is read (``output_dim``, ``score``, optionally ``energy``) and defines the training loss
as a pure function of a network callable, a batch and a PRNG key, so that the generic trainer
can differentiate it, jit it and fuse many steps with ``lax.scan``.
"""

from __future__ import annotations

from typing import Any, Callable

from dsmcli.data.base import Dataset

Net = Callable[[Any], Any]


class Objective:
    trains: bool = True

    def __init__(self, cfg, data: Dataset):
        self.cfg = cfg
        self.data = data

    def output_dim(self, dim: int) -> int:
        """Width of the network output for data of dimension ``dim`` (default: a score)."""
        return dim

    def loss(self, net: Net, x, key) -> tuple[Any, dict]:
        """Scalar loss on a batch ``x`` (B, D) and a dict of extra scalars to log."""
        raise NotImplementedError

    def score(self, net: Net, x):
        """The model's estimate of ∇ₓ log p(x), row-wise ``(B, D)``."""
        raise NotImplementedError

    @property
    def has_energy(self) -> bool:
        return type(self).energy is not Objective.energy

    def energy(self, net: Net, x):
        """An unnormalised −log p(x) ``(B,)`` where the parameterisation has one, else None."""
        return None
