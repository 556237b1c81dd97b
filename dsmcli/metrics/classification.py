"""``test_acc``: the accuracy of a model's own classifier (objectives with ``classify``, e.g.
``ssl_ae``) on the held-out rows, the class the argmax of its logits (ties to the lowest
class), streamed in ``train.eval_batch`` blocks."""

from __future__ import annotations

from dsmcli.metrics.base import Metric


def _applies(view) -> str | None:
    if not hasattr(view.exp.objective, "classify"):
        return f"objective.kind '{view.exp.cfg.objective.kind}' has no classifier"
    return None if view.data.y_test is not None else "the data set has no test labels"


def _compute(view) -> dict:
    import jax.numpy as jnp

    from dsmcli.streaming import blockwise_sum

    exp = view.exp
    net = exp.net(view.params)
    x, y = exp.data.x_test, exp.data.y_test
    import numpy as np

    rows = np.concatenate([np.asarray(x, np.float32), np.asarray(y, np.float32)[:, None]], 1)

    def per_row(block):
        pred = jnp.argmax(exp.objective.classify(net, block[:, :-1]), -1)
        return {"right": (pred == block[:, -1].astype(pred.dtype)).astype(jnp.float32)}

    return {"test_acc": blockwise_sum(per_row, rows, view.block or exp.cfg.train.eval_batch)["right"] / len(y)}


METRICS = [Metric("test_acc", "model", ("test_acc",), _applies, _compute,
                  "held-out accuracy of the model's own classifier (ssl_ae)")]
