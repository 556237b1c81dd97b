"""Metrics, one module per metric or small family, in an explicit registry.

Each module lists its ``METRICS``: ``base.Metric`` entries that declare a name (what
``--metrics`` selects), the input they read (``samples``: the particles of ``dsm sample``;
``chains``: a sampler's trace; ``model``: a checkpoint, for ``dsm eval`` and the trainer's
evaluations), the keys they write, when they apply and how they are computed. Adding a metric
= one module (or one entry in a family's module) + one line here + its test; the contract test
over the registry (``tests/test_metric_registry.py``) covers every entry.

Defaults: every ``default`` entry whose input the command computes and that applies to the run;
``dsm eval RUN --metrics a,b`` / ``dsm sample RUN --metrics a,b`` choose by name (a name that
does not exist, is of another input, or does not apply to the run is a user error).
"""

from __future__ import annotations

from dsmcli.errors import UserError
from dsmcli.metrics import classification, codes, density, distances, fd, hessian, inpainting, kid, likelihood, mcmc, modes, objective, score, stein
from dsmcli.metrics import trustworthiness
from dsmcli.metrics import iwae
from dsmcli.metrics.base import INPUTS, Metric, ModelView, SampleSet

MODULES = (score, hessian, density, likelihood, codes, classification, iwae, trustworthiness, objective, distances, modes, fd, kid, stein, mcmc, inpainting)
REGISTRY: dict[str, Metric] = {m.name: m for module in MODULES for m in module.METRICS}

COMMAND_INPUTS = {"eval": ("model",), "sample": ("samples", "chains")}


def parse_names(text: str | None) -> list[str] | None:
    """``--metrics a,b`` → ["a", "b"] (None: the defaults)."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--metrics: give one or more metric names separated by commas")
    return names


def select(names: list[str] | None, inputs: tuple[str, ...], ctx, command: str) -> list[Metric]:
    """The metrics to compute for ``ctx``: the applicable defaults, or ``names`` (checked)."""
    if names is None:
        return [m for m in REGISTRY.values() if m.input in inputs and m.default and m.applies(ctx) is None]
    own = [n for n, m in REGISTRY.items() if m.input in inputs]
    chosen = []
    for name in names:
        metric = REGISTRY.get(name)
        if metric is None or metric.input not in inputs:
            where = f" (a {metric.input} metric)" if metric is not None else ""
            raise UserError(f"--metrics: '{name[:40]}'{where} is not a metric of dsm {command} (allowed: {', '.join(own)})")
        why = metric.applies(ctx)
        if why:
            raise UserError(f"--metrics: '{name}' does not apply to this run: {why}")
        chosen.append(metric)
    return chosen


def compute(metrics: list[Metric], ctx) -> dict:
    out: dict = {}
    for metric in metrics:
        out.update(metric.compute(ctx))
    return out


def evaluate_model(view: ModelView, names: list[str] | None = None, *, final: bool = True) -> dict:
    """The model metrics of ``view``; ``final: false`` (the trainer's intermediate evaluations)
    leaves out the default metrics that are not ``periodic``."""
    chosen = select(names, COMMAND_INPUTS["eval"], view, "eval")
    return compute([m for m in chosen if final or m.periodic or names is not None], view)


def evaluate_samples(samples: SampleSet, names: list[str] | None = None) -> dict:
    return compute(select(names, COMMAND_INPUTS["sample"], samples, "sample"), samples)


__all__ = ["INPUTS", "REGISTRY", "Metric", "ModelView", "SampleSet", "evaluate_model", "evaluate_samples", "parse_names"]
