"""``fd``: Fréchet distance between samples and held-out images in the feature space of a small
classifier trained on the data set's labels (the FID recipe of Heusel et al. 2017 with a
data-set-specific network instead of Inception):

    FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½)

over the classifier's hidden activations. The classifier (scikit-learn ``MLPClassifier``, one
ReLU layer of 128 units) is trained once per data set and cached under ``~/.cache/dsm/fd``
(keyed by a hash of the training rows and labels). ``fd_floor`` is the same distance between
the held-out and the training images: what a perfect sampler would score with this many points.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dsm" / "fd"


def feature_weights(x_train: np.ndarray, y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(W, b, classifier test-free train accuracy) of the feature layer, cached per data set."""
    digest = hashlib.sha256(np.ascontiguousarray(x_train).tobytes() + np.ascontiguousarray(y_train).tobytes()).hexdigest()[:20]
    path = _cache_dir() / f"{digest}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                return f["W"], f["b"], float(f["acc"])
        except Exception:  # a damaged cache entry (a killed writer, a full disk): train it again
            pass
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():  # 300 epochs fit these small sets; the warning is noise here
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, random_state=0).fit(x_train, y_train)
    W, b, acc = clf.coefs_[0].astype(np.float32), clf.intercepts_[0].astype(np.float32), float(clf.score(x_train, y_train))
    try:
        from dsmcli import fsio

        path.parent.mkdir(parents=True, exist_ok=True)
        with fsio.atomic_file(path) as f:
            np.savez(f, W=W, b=b, acc=acc)
    except OSError:
        pass  # the cache is an optimisation
    return W, b, acc


def features(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(np.asarray(x, np.float64) @ W + b, 0.0)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    import warnings

    from scipy import linalg

    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    with warnings.catch_warnings():  # singular products (collapsed samples, dead units) are expected
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(root).all():  # the usual FID remedy: a small ridge on both covariances
            eps = 1e-6 * np.eye(len(s1))
            root = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(root)))


def fd_metrics(samples: np.ndarray, data) -> dict:
    """``fd`` of the samples and ``fd_floor`` (held-out vs train), for labelled image data."""
    W, b, _ = feature_weights(data.x_train, data.y_train)
    test = features(data.x_test, W, b)
    return {"fd": frechet_distance(features(samples, W, b), test),
            "fd_floor": frechet_distance(features(data.x_train, W, b), test)}
