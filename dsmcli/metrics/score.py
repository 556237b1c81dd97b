"""How close a model's score is to the data's exact score, on held-out data.

``score_error`` = E‖s_θ(x) − ∇log p(x)‖² / E‖∇log p(x)‖² (a relative Fisher divergence) over the
test rows, streamed in ``train.eval_batch`` blocks, where the data set has a closed-form score.
"""

from __future__ import annotations

from dsmcli.metrics.base import Metric
from dsmcli.streaming import blockwise_sum


def score_error(score_fn, true_score_fn, x, block: int = 4096) -> float:
    """Relative Fisher divergence E‖s(x) − ∇log p(x)‖² / E‖∇log p(x)‖² over the rows of ``x``."""
    import jax.numpy as jnp

    def per_row(rows):
        s, t = score_fn(rows), true_score_fn(rows)
        return {"err": jnp.sum((s - t) ** 2, -1), "ref": jnp.sum(t**2, -1)}

    sums = blockwise_sum(per_row, x, block)
    return sums["err"] / sums["ref"]


def _applies(view) -> str | None:
    if not view.data.has_score:
        return "the data set has no closed-form score"
    return None if view.exp.objective.has_score else f"objective.kind '{view.exp.cfg.objective.kind}' has no score read-out"


def _compute(view) -> dict:
    exp = view.exp
    return {"score_error": score_error(exp.score_fn(view.params), exp.data.density.score, exp.data.x_test,
                                       view.block or exp.cfg.train.eval_batch)}


METRICS = [Metric("score_error", "model", ("score_error",), _applies, _compute,
                  "relative Fisher divergence to the exact score on held-out data")]
