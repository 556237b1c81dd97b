"""``fd``: Fréchet distance between samples and held-out images in the feature space of a small
classifier trained on the data set's labels (the FID recipe of Heusel et al. 2017 with a
data-set-specific network instead of Inception):

    FD = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½)

over the classifier's hidden activations (``FeatureNet``). The classifier (scikit-learn
``MLPClassifier``, one ReLU layer of 128 units) is trained once per data set and cached under
``~/.cache/dsm/fd`` (keyed by a hash of the training rows and labels).

FD is biased upwards at small n (the plug-in covariances: its expectation for two samples of the
*same* distribution grows roughly like 1/n), so a raw FD is only comparable at the same n and
against the same reference set. Hence:

* ``fd``: the kept samples (all n of them) against every held-out (test) row;
* ``fd_floor``: **n training rows** against the same test rows — what a perfect sampler (one
  that draws the training distribution) scores *at this n*. n is the number of kept samples,
  capped at the training set's size; the rows are a deterministic subset drawn from the
  sample's seed (``numpy.random.default_rng([seed, 1])``, without replacement). Before this,
  ``fd_floor`` used every training row, whatever n: compare ``fd`` with ``fd_floor`` only from
  records that carry ``protocol`` (see below).

The cache entry also holds the classifier's output layer (W₂, b₂: hidden → class logits), which
``fd`` does not use (the ``dfc_vae`` objective compares logits); an entry written before it was
stored is fitted again (``random_state=0``: the same W, b under the same scikit-learn).

``protocol`` (``describe``): what the number was computed from — n, seed, the feature network's
identity and SHA-256 (of its float32 weights, little-endian W then b) and cache key, the
reference set and the floor's n. ``dsm sample`` stores it in ``samples/metrics.jsonl`` under
``protocol``. ``dsmcli.metrics.kid`` shares all of this (same features, reference and floor).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsmcli.metrics.base import Metric

HIDDEN = 128
NETWORK = (f"sklearn MLPClassifier(hidden_layer_sizes=({HIDDEN},), activation='relu', max_iter=300, "
           f"random_state=0) fitted to the training split's labels; features: its first hidden layer "
           f"({HIDDEN} ReLU units)")
FLOOR_STREAM = 1  # default_rng([seed, FLOOR_STREAM]) draws the floor's training rows


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dsm" / "fd"


def cache_key(x_train: np.ndarray, y_train: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x_train).tobytes() + np.ascontiguousarray(y_train).tobytes()).hexdigest()[:20]


def _load_or_fit(x_train: np.ndarray, y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, str | None]:
    """(W, b, train accuracy, scikit-learn version that fitted it or None if unknown), cached."""
    W, b, _, _, acc, version = _load_or_fit_layers(x_train, y_train)
    return W, b, acc, version


def classifier_layers(x_train: np.ndarray, y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(W, b, W₂, b₂) of the cached classifier, float32: hidden = relu(x W + b) (``features``),
    logits = hidden W₂ + b₂ (the output layer's input: its softmax is ``predict_proba``; one
    column, and the logistic function, for two classes)."""
    return _load_or_fit_layers(x_train, y_train)[:4]


def _load_or_fit_layers(x_train, y_train):
    """(W, b, W₂, b₂, train accuracy, scikit-learn version or None), cached; an entry without
    W₂, b₂ (written before they were stored) is fitted again."""
    path = _cache_dir() / f"{cache_key(x_train, y_train)}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                if "W2" in f.files and "b2" in f.files:
                    version = str(f["sklearn"]) if "sklearn" in f.files else None
                    return f["W"], f["b"], f["W2"], f["b2"], float(f["acc"]), version
        except Exception:  # a damaged cache entry (a killed writer, a full disk): train it again
            pass
    import warnings

    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():  # 300 epochs fit these small sets; the warning is noise here
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(HIDDEN,), max_iter=300, random_state=0).fit(x_train, y_train)
    W, b, acc = clf.coefs_[0].astype(np.float32), clf.intercepts_[0].astype(np.float32), float(clf.score(x_train, y_train))
    W2, b2 = clf.coefs_[1].astype(np.float32), clf.intercepts_[1].astype(np.float32)
    try:
        from dsmcli import fsio

        path.parent.mkdir(parents=True, exist_ok=True)
        with fsio.atomic_file(path) as f:
            np.savez(f, W=W, b=b, W2=W2, b2=b2, acc=acc, sklearn=sklearn.__version__)
    except OSError:
        pass  # the cache is an optimisation
    return W, b, W2, b2, acc, sklearn.__version__


def feature_weights(x_train: np.ndarray, y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(W, b, classifier test-free train accuracy) of the feature layer, cached per data set."""
    return _load_or_fit(x_train, y_train)[:3]


@dataclass(frozen=True)
class FeatureNet:
    """The feature map relu(x W + b) (float64) and its identity."""

    W: np.ndarray
    b: np.ndarray
    train_accuracy: float
    key: str  # the cache key: SHA-256 (first 20 hex digits) of the training rows and labels
    sklearn: str | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return features(x, self.W, self.b)

    @property
    def sha256(self) -> str:
        w = np.ascontiguousarray(self.W, "<f4").tobytes() + np.ascontiguousarray(self.b, "<f4").tobytes()
        return hashlib.sha256(w).hexdigest()

    def describe(self) -> dict:
        out = {"network": NETWORK, "dim": int(self.W.shape[1]), "sha256": self.sha256, "cache_key": self.key,
               "train_accuracy": round(self.train_accuracy, 6)}
        if self.sklearn:
            out["sklearn"] = self.sklearn
        return out


def feature_net(data) -> FeatureNet:
    W, b, acc, version = _load_or_fit(data.x_train, data.y_train)
    return FeatureNet(W, b, acc, cache_key(data.x_train, data.y_train), version)


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


def floor_rows(data, n: int, seed: int) -> np.ndarray:
    """The floor's training rows: ``min(n, n_train)`` of them, without replacement, drawn from
    ``default_rng([seed, 1])`` (in their original order)."""
    n_train = len(data.x_train)
    if n >= n_train:
        return data.x_train
    idx = np.random.default_rng([seed, FLOOR_STREAM]).choice(n_train, n, replace=False)
    return data.x_train[np.sort(idx)]


@dataclass
class ImageFeatures:
    """What every image-sample metric compares: the samples', the floor's and the reference's
    features in one feature network."""

    net: FeatureNet
    samples: np.ndarray  # (n, d)
    floor: np.ndarray  # (min(n, n_train), d)
    reference: np.ndarray  # (n_test, d)


def image_features(samples: np.ndarray, data, seed: int) -> ImageFeatures:
    net = feature_net(data)
    return ImageFeatures(net, net(samples), net(floor_rows(data, len(samples), seed)), net(data.x_test))


def sample_set_features(ctx) -> ImageFeatures:
    """``image_features`` of a SampleSet's kept particles, computed once for fd, kid and their
    protocols."""
    return ctx.memo("image_features", lambda: image_features(ctx.kept, ctx.data, ctx.seed))


def fd_of(f: ImageFeatures) -> dict:
    return {"fd": frechet_distance(f.samples, f.reference), "fd_floor": frechet_distance(f.floor, f.reference)}


def fd_metrics(samples: np.ndarray, data, seed: int = 0) -> dict:
    """``fd`` of the samples and ``fd_floor`` (n training rows), both against the held-out rows."""
    return fd_of(image_features(samples, data, seed))


def protocol(ctx, **extra) -> dict:
    """What an image-sample metric of ``ctx`` (a SampleSet) is computed from (JSON-ready)."""
    data, n = ctx.data, len(ctx.kept)
    return {"n": n, "seed": int(ctx.seed), "features": sample_set_features(ctx).net.describe(),
            "reference": {"split": "test", "n": len(data.x_test)},
            "floor": {"split": "train", "n": min(n, len(data.x_train)), "of": len(data.x_train),
                      "rows": f"without replacement from numpy default_rng([seed, {FLOOR_STREAM}])"},
            **extra}


def image_metric_applies(name: str):
    """``applies`` of a metric in the classifier's features (fd, kid)."""
    def applies(ctx) -> str | None:
        if ctx.data.image_shape is None or ctx.data.y_train is None:
            return f"the data set is not labelled images ({name} needs a classifier's features)"
        return None if len(ctx.kept) >= 2 else "fewer than 2 particles are finite"

    return applies


applies = image_metric_applies("fd")

METRICS = [Metric("fd", "samples", ("fd", "fd_floor"), applies, lambda ctx: fd_of(sample_set_features(ctx)),
                  "Fréchet distance in the features of a classifier trained on the data set's labels, and its "
                  "floor (n training rows) at the same n", describe=protocol)]
