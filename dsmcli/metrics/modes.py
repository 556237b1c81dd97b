"""Mixture-mode weights of a sample set: the fraction of particles that each component of a
Gaussian mixture claims (maximum posterior), and the total variation to the true weights.

``mode_weights`` is a fraction of *all* particles (escaped ones belong to no mode) and
``mode_weight_error`` = ½(Σₖ |ŵₖ − wₖ| + escaped_fraction): the escaped mass counts as an extra
outcome the true distribution never has.
"""

from __future__ import annotations

import numpy as np

from dsmcli.metrics.base import Metric


def mode_weights(component_log_probs) -> list[float]:
    """Fraction of samples assigned to each mixture component by maximum posterior.

    Args:
        component_log_probs: (n, K) array with entry (i, k) = log w_k + log N_k(x_i), the
            log joint of sample i and component k (any per-row constant may be added:
            only the argmax over k matters). -inf is allowed (zero-weight component).

    Returns:
        List of K floats, entry k = #{i : argmax_j component_log_probs[i, j] = k} / n.
        Ties go to the lowest component index. The fractions sum to 1.
    """
    # O(nK) work: done in NumPy on the host (no per-shape compilation).
    from dsmcli.metrics.distances import _as_float_array

    arr = np.asarray(_as_float_array(component_log_probs, "component_log_probs"))
    if arr.ndim != 2:
        raise ValueError(
            f"component_log_probs must be a 2-D array of shape (n, K), got shape {arr.shape}"
        )
    n, k = arr.shape
    if n == 0 or k == 0:
        raise ValueError(f"component_log_probs is empty (shape {arr.shape})")
    if np.any(np.isnan(arr)) or np.any(arr == np.inf):
        raise ValueError("component_log_probs contains NaN or +inf")
    if np.any(np.all(arr == -np.inf, axis=1)):
        raise ValueError("component_log_probs has a row that is -inf for every component")
    counts = np.bincount(np.argmax(arr, axis=1), minlength=k)
    return [float(c) / n for c in counts]


def mode_weight_error(estimated, true) -> float:
    """Total-variation distance between two weight vectors: 1/2 sum_k |w_hat_k - w_k|.

    For probability vectors the result lies in [0, 1]. Both inputs must be 1-D, of the
    same non-zero length, finite and non-negative (they are not renormalised).
    """
    out = []
    for name, w in (("estimated", estimated), ("true", true)):
        try:
            a = np.asarray(w, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} could not be converted to a numeric array: {exc}") from exc
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D weight vector, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains non-finite values")
        if np.any(a < 0):
            raise ValueError(f"{name} contains negative weights")
        out.append(a)
    est, tru = out
    if est.shape != tru.shape:
        raise ValueError(
            f"estimated and true must have the same length, got {est.size} and {tru.size}"
        )
    return float(0.5 * np.sum(np.abs(est - tru)))



def _applies(ctx) -> str | None:
    return None if ctx.data.report_modes else "the data set is not a Gaussian mixture (gmm)"


def _compute(ctx) -> dict:
    import jax

    true = np.asarray(ctx.data.density.component_weights)
    counts = np.zeros(len(true))
    if len(ctx.kept):
        counts = np.asarray(mode_weights(ctx.data.density.component_log_probs(jax.numpy.asarray(ctx.kept)))) * len(ctx.kept)
    weights = counts / len(ctx.x)
    return {"mode_weights": [round(float(w), 4) for w in weights],
            "mode_weight_error": float(0.5 * (np.abs(weights - true).sum() + ctx.escaped_fraction))}


METRICS = [Metric("mode_weights", "samples", ("mode_weights", "mode_weight_error"), _applies, _compute,
                  "fraction of particles per mixture component; total variation to the true weights")]
