"""An objective's own evaluation metrics (e.g. AutoRec's ``rmse`` and ``rmse_baseline``)."""

from __future__ import annotations

from dsmcli.metrics.base import Metric


def _compute(view) -> dict:
    return view.exp.objective.metrics(view.exp.net(view.params), view.exp.data)


METRICS = [Metric("objective", "model", (), lambda view: None, _compute,
                  "the objective's own metrics (rmse, rmse_baseline for autorec; none for most)")]
