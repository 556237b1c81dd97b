"""XLA compiler options for the compiled training step, chosen per experiment.

One option is used: on CPU, for small multilayer perceptrons, XLA's YNNPACK fusion of
elementwise ops (``xla_cpu_experimental_ynn_fusion_type`` = individual dots plus elementwise
fusions, for this one compilation; reductions stay with XLA's own emitter, whose results do not
depend on the thread count: see ``jaxsetup``). Measured side by side (BENCHMARKS.md, ablations): the DSM step of
a 2→128→128→2 MLP at batch 512 (largest activation 512 × 128 = 65 536 entries) ran 1.15–1.18×
faster with it, that of a 784→1024→1024→784 MLP at batch 256 (262 144 entries) 0.83–0.88× as
fast. So it is on when every parameter is a vector or a matrix (a dense network) and batch ×
widest layer ≤ ``ELTWISE_MAX_ENTRIES`` = 2¹⁷, the geometric middle of the two measured sizes.
The values it computes agree with XLA's own elementwise code to float32 rounding (≈ 1e-7
relative), and the choice depends on the config only, so a run and its resume, or two runs of
the same config, compile the same step. ``DSM_YNN_ELTWISE=1`` / ``0`` forces it on / off.
"""

from __future__ import annotations

import os

ELTWISE_MAX_ENTRIES = 2**17
YNN_FUSIONS_WITH_ELTWISE = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_ELTWISE"
ELTWISE_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": YNN_FUSIONS_WITH_ELTWISE}


def largest_dense_activation(params, batch_size: int) -> int | None:
    """batch × the widest output of any weight matrix, or None when some parameter has more
    than two axes (a convolution: its activations are not read off the parameters)."""
    import jax

    leaves = jax.tree.leaves(params)
    if any(getattr(v, "ndim", 0) > 2 for v in leaves):
        return None
    widths = [v.shape[-1] for v in leaves if getattr(v, "ndim", 0) == 2]
    return batch_size * max(widths) if widths else None


def ynn_eltwise(params, batch_size: int, backend: str) -> bool:
    forced = os.environ.get("DSM_YNN_ELTWISE")
    if forced in ("0", "1"):
        return forced == "1" and backend == "cpu"
    entries = largest_dense_activation(params, batch_size)
    return backend == "cpu" and entries is not None and entries <= ELTWISE_MAX_ENTRIES


def for_training_step(params, batch_size: int) -> dict | None:
    """``compiler_options`` for ``Lowered.compile`` of the training step (None: XLA's defaults)."""
    import jax

    if ynn_eltwise(params, batch_size, jax.default_backend()):
        return dict(ELTWISE_OPTIONS)
    return None
