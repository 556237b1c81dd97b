"""How faithfully a bottleneck model's codes keep the held-out data's neighbourhoods.

``trustworthiness`` (Venna & Kaski 2001; scikit-learn ``sklearn.manifold.trustworthiness``) of
the codes z = enc(x) of the first min(1000, n_test) held-out rows, k = 5 neighbours:

    T(k) = 1 − 2 / (n k (2n − 3k − 1)) · Σᵢ Σ_{j ∈ Uₖ(i)} (r(i, j) − k),

Uₖ(i) the k nearest neighbours of row i in code space that are not among its k nearest in data
space, r(i, j) the rank of j among i's neighbours in data space. 1: no code-space neighbour is an
intruder; it penalises false neighbours, not lost ones. The codes are computed in blocks of
``train.eval_batch`` rows (``--block``); the metric itself is O(n²) in the rows, hence the cap
at 1000 (a 1000 × 1000 distance matrix in each space), which keeps it cheap at any n_test.
"""

from __future__ import annotations

from dsmcli.metrics.base import Metric

MAX_ROWS = 1000
N_NEIGHBORS = 5


def trustworthiness(exp, params, block: int, n_neighbors: int = N_NEIGHBORS) -> float:
    import numpy as np
    from sklearn.manifold import trustworthiness as sk_trustworthiness

    x = np.asarray(exp.data.x_test[:MAX_ROWS])
    z = exp.codes(params, x, block)
    return float(sk_trustworthiness(x.astype(np.float64), z.astype(np.float64), n_neighbors=n_neighbors))


def _applies(view) -> str | None:
    if getattr(view.exp.cfg.model, "latent", None) is None:
        return "the model has no bottleneck (model.latent)"
    n = min(MAX_ROWS, len(view.data.x_test))
    if n <= 2 * N_NEIGHBORS:
        return f"it needs more than {2 * N_NEIGHBORS} held-out rows for {N_NEIGHBORS} neighbours, there are {n}"
    return None


def _compute(view) -> dict:
    return {"trustworthiness": trustworthiness(view.exp, view.params, view.block or view.exp.cfg.train.eval_batch)}


METRICS = [Metric("trustworthiness", "model", ("trustworthiness",), _applies, _compute,
                  f"trustworthiness of the codes ({N_NEIGHBORS} neighbours) on at most {MAX_ROWS} held-out rows")]
