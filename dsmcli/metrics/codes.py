"""What an autoencoder's codes are good for, on held-out data (the survey's uses)."""

from __future__ import annotations

from dsmcli.metrics.base import Metric


def code_tasks(exp, params) -> dict:
    """The survey's uses of an autoencoder, on held-out data (scikit-learn for the tasks):

    ``recon_mse``: mean over test rows and dimensions of (r(x) − x)²; ``elbo`` (VAE family):
    mean test ELBO per example in nats (one z sample); ``probe_acc``: logistic regression on
    training codes (of the labelled rows only, with ``data.labels_per_class``), accuracy on test codes; ``kmeans_nmi``: k-means on test codes with k = the
    number of classes, normalised mutual information with the labels; ``anomaly_auroc``: with
    ``holdout_class`` absent from training, the AUROC of the reconstruction error for telling
    that class from the others in the test rows.
    """
    import jax
    import numpy as np

    data, obj = exp.data, exp.objective
    model_fn = jax.jit(lambda x: (obj.encode(exp.net(params), x), obj.reconstruct(exp.net(params), x)))
    z_test, r_test = (np.asarray(a) for a in model_fn(data.x_test))
    err = np.mean((r_test - data.x_test) ** 2, axis=1)
    out = {"recon_mse": float(err.mean())}
    if hasattr(obj, "elbo"):
        elbo = jax.jit(lambda x: obj.elbo(exp.net(params), x, jax.random.key(exp.cfg.seed)))(data.x_test)
        out["elbo"] = float(np.mean(np.asarray(elbo)))
    if data.y_train is not None and data.y_test is not None:
        from sklearn.cluster import KMeans
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import normalized_mutual_info_score, roc_auc_score
        from sklearn.preprocessing import StandardScaler

        z_train = np.asarray(model_fn(data.x_train)[0])
        scaler = StandardScaler().fit(z_train)
        rows = data.labelled_rows  # data.labels_per_class: the probe sees the labels the model saw
        probe = LogisticRegression(max_iter=2000).fit(scaler.transform(z_train[rows]), data.y_train[rows])
        out["probe_acc"] = float(probe.score(scaler.transform(z_test), data.y_test))
        k = len(np.unique(data.y_test))
        clusters = KMeans(n_clusters=k, n_init=10, random_state=exp.cfg.seed).fit_predict(z_test)
        out["kmeans_nmi"] = float(normalized_mutual_info_score(data.y_test, clusters))
        if data.holdout_class is not None:
            out["anomaly_auroc"] = float(roc_auc_score(data.y_test == data.holdout_class, err))
    return out


def _applies(view) -> str | None:
    return None if getattr(view.exp.cfg.model, "latent", None) is not None else "the model has no bottleneck (model.latent)"


METRICS = [Metric("codes", "model", ("recon_mse", "elbo", "probe_acc", "kmeans_nmi", "anomaly_auroc"), _applies,
                  lambda view: code_tasks(view.exp, view.params),
                  "reconstruction error, ELBO, linear probe, k-means NMI and anomaly AUROC of the codes")]
