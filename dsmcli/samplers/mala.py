"""``mala``: Metropolis-adjusted Langevin (Roberts & Tweedie 1996) for models with an energy.

Proposal x′ = x + (ε/2)s(x) + √ε z (the ULA step, ``sample.step_size`` = ε), accepted with
probability min(1, exp(E(x) − E(x′) + log q(x|x′) − log q(x′|x))), q the Gaussian proposal
density. Exact for p ∝ exp(−E) at any ε; reports ``acceptance`` (mean over steps and particles).
Needs an energy: the oracle, ``model.kind: energy`` or ``tied_dae``.
"""

from __future__ import annotations

from dsmcli.samplers.base import metropolised_langevin, require


def check(target, cfg) -> None:
    require(target.energy is not None,
            f"sample.kind: 'mala' needs an energy, and {target.description} has none; use model.kind energy "
            "or tied_dae, the oracle, or sample.kind ab_mh (approximate MH from the score alone)")


def run(target, x0, key, cfg):
    return metropolised_langevin(target, x0, key, cfg, exact_energy=True)
