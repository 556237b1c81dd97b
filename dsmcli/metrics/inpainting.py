"""``inpaint_mse``: the mean squared error of inpainted coordinates against the held-out truth,
Σ (x − y)² over the missing coordinates / their number, over the particles drawn with
``sample.inpaint`` (non-finite particles left out). Baselines: ``inpaint_mse_mean`` fills every
missing coordinate with its training mean; ``inpaint_mse_unconditional`` fills it from a
training row drawn at random (seeded by ``sample.seed``): an unconditional sample, the draw
inpainting must beat. A draw of the exact conditional scores twice the conditional variance
per coordinate (E‖x − y‖², x and y independent draws of p(· | observed)), an unconditional
draw twice the marginal variance, the mean fill once the marginal variance; so a sampler is
compared with ``inpaint_mse_unconditional``, and the conditional mean with ``inpaint_mse_mean``.
"""

from __future__ import annotations

import numpy as np

from dsmcli.metrics.base import Metric


def _applies(ctx) -> str | None:
    return None if "inpaint" in ctx.info else "the samples were not drawn with sample.inpaint"


def _compute(ctx) -> dict:
    x = np.asarray(ctx.x, np.float64)
    truth = np.asarray(ctx.info["inpaint"]["truth"], np.float64)
    missing = ~np.asarray(ctx.info["inpaint"]["known"], bool)
    ok = np.isfinite(x).all(1)
    miss = missing[ok]
    err = np.sum(((x[ok] - truth[ok]) ** 2)[miss]) / max(miss.sum(), 1)
    mean = np.asarray(ctx.data.x_train, np.float64).mean(0)
    base = np.sum(((np.broadcast_to(mean, truth.shape) - truth) ** 2)[missing]) / max(missing.sum(), 1)
    rows = np.random.default_rng(ctx.seed).integers(0, len(ctx.data.x_train), len(truth))
    draw = np.asarray(ctx.data.x_train, np.float64)[rows]
    uncond = np.sum(((draw - truth) ** 2)[missing]) / max(missing.sum(), 1)
    return {"inpaint_mse": float(err), "inpaint_mse_mean": float(base), "inpaint_mse_unconditional": float(uncond)}


METRICS = [Metric("inpaint_mse", "samples", ("inpaint_mse", "inpaint_mse_mean", "inpaint_mse_unconditional"), _applies, _compute,
                  "squared error of inpainted pixels against the held-out truth (and of the training mean)")]
