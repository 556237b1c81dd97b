"""Objectives, one module each (``Config`` + ``make(cfg, data) -> Objective``), in an explicit
registry. Adding one = one new module, one line here and its test; the trainer, samplers and
CLI never name an objective."""

from __future__ import annotations

from dsmcli.objectives import dsm, oracle
from dsmcli.objectives.base import Objective

REGISTRY = {m.Config.model_fields["kind"].default: m for m in (dsm, oracle)}


def make(cfg, data) -> Objective:
    return REGISTRY[cfg.kind].make(cfg, data)
