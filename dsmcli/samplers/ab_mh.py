"""``ab_mh``: Alain & Bengio's (2014) approximate Metropolis–Hastings from a score alone.

A score or reconstruction model has no energy, but log p(x′) − log p(x) is the line integral of
∇log p from x to x′; the trapezoid rule gives

    log p(x′) − log p(x) ≈ ½ (x′ − x)·(s(x) + s(x′)).

Proposal: the Langevin step x′ = x + (ε/2)s(x) + √ε z (``sample.step_size`` = ε), accepted
with probability min(1, exp(½(x′ − x)·(s(x) + s(x′)) + log q(x|x′) − log q(x′|x))). Reports
``acceptance``. Works with every model that has a score.
"""

from __future__ import annotations


def check(target, cfg) -> None:
    return None


def run(target, x0, key, cfg):
    from dsmcli.samplers.base import metropolised_langevin

    return metropolised_langevin(target, x0, key, cfg, exact_energy=False)
