"""``dsm eval``: metrics of a run's newest checkpoint (``eval.json``) and its figures."""

from __future__ import annotations

from pathlib import Path


def evaluate(exp, params) -> dict:
    """Metrics that need no sampling: ``score_error`` where the data set has an exact score;
    ``kl_grid`` for 2-D models with an energy on data with a known density."""
    from dsmcli.streaming import score_error

    out = {}
    dens = exp.data.density
    if exp.data.has_score and exp.objective.has_score:
        out["score_error"] = score_error(exp.score_fn(params), dens.score, exp.data.x_test, exp.cfg.train.eval_batch)
    energy = exp.energy_fn(params)
    if energy is not None and dens is not None and exp.data.dim == 2 and exp.data.bounds is not None:
        out["kl_grid"] = kl_grid(dens.log_prob, energy, exp.data.bounds)
    if getattr(exp.cfg.model, "latent", None) is not None:
        out.update(code_tasks(exp, params))
    out.update(exp.objective.metrics(exp.net(params), exp.data))
    return out


def code_tasks(exp, params) -> dict:
    """The survey's uses of an autoencoder, on held-out data (scikit-learn for the tasks):

    ``recon_mse``: mean over test rows and dimensions of (r(x) − x)²; ``elbo`` (VAE family):
    mean test ELBO per example in nats (one z sample); ``probe_acc``: logistic regression on
    training codes, accuracy on test codes; ``kmeans_nmi``: k-means on test codes with k = the
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
        probe = LogisticRegression(max_iter=2000).fit(scaler.transform(z_train), data.y_train)
        out["probe_acc"] = float(probe.score(scaler.transform(z_test), data.y_test))
        k = len(np.unique(data.y_test))
        clusters = KMeans(n_clusters=k, n_init=10, random_state=exp.cfg.seed).fit_predict(z_test)
        out["kmeans_nmi"] = float(normalized_mutual_info_score(data.y_test, clusters))
        if data.holdout_class is not None:
            out["anomaly_auroc"] = float(roc_auc_score(data.y_test == data.holdout_class, err))
    return out


def interpolations(exp, params, pairs: int = 8, steps: int = 8):
    """Rows of a latent interpolation grid: for each of ``pairs`` pairs of held-out images (of
    classes c and c + 1 where labels exist), the first image, the decoded codes
    (1 − t)·enc(a) + t·enc(b) for ``steps`` values of t from 0 to 1, and the second image —
    ``pairs × (steps + 2)`` rows, ``steps + 2`` per grid row."""
    import jax
    import numpy as np

    x, y = exp.data.x_test, exp.data.y_test
    if y is not None and len(np.unique(y)) > 1:
        classes = np.unique(y)
        firsts = [int(np.flatnonzero(y == c)[0]) for c in classes]
        a_idx = [firsts[i % len(classes)] for i in range(pairs)]
        b_idx = [firsts[(i + 1) % len(classes)] for i in range(pairs)]
    else:
        a_idx, b_idx = list(range(0, 2 * pairs, 2)), list(range(1, 2 * pairs, 2))
    a, b = x[np.asarray(a_idx) % len(x)], x[np.asarray(b_idx) % len(x)]
    obj = exp.objective
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]

    @jax.jit
    def decoded(a, b):
        net = exp.net(params)
        za, zb = obj.encode(net, a), obj.encode(net, b)
        z = (1 - t) * za[:, None] + t * zb[:, None]  # (pairs, steps, K)
        return obj.decode_mean(net, z.reshape(-1, z.shape[-1])).reshape(len(a), steps, -1)

    middle = np.asarray(decoded(a, b))
    return np.concatenate([a[:, None], middle, b[:, None]], axis=1).reshape(-1, x.shape[1])


def kl_grid(log_p, energy, bounds, n: int = 256) -> float:
    """KL(p ‖ p_θ) with p_θ = exp(−E)/Z, both normalised numerically on an n×n grid over
    ``bounds``: KL ≈ Σ_g p̂(g) (log p̂(g) − log p̂_θ(g)) with p̂ ∝ the density times the cell area,
    renormalised on the grid (so mass outside the window is ignored for both)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.scipy.special import logsumexp

    (x0, x1), (y0, y1) = bounds[:2]
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    pts = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], 1), jnp.float32)

    @jax.jit
    def kl(pts):
        lp = log_p(pts)
        lq = -energy(pts)
        lp, lq = lp - logsumexp(lp), lq - logsumexp(lq)
        p = jnp.exp(lp)
        return jnp.sum(jnp.where(p > 0, p * (lp - lq), 0.0))

    return float(kl(pts))


def figures(exp, params, run_dir: Path, records: list[dict]) -> list[Path]:
    from dsmcli import plots

    out_dir = run_dir / "plots"
    try:
        out_dir.mkdir(exist_ok=True)
    except FileExistsError:  # a file where the directory belongs: the caller reports the path
        raise FileExistsError(17, "File exists (a file is where the plots directory belongs)", str(out_dir)) from None
    written = []
    if any(isinstance(r.get("loss"), (int, float)) for r in records):  # runs that trained
        plots.loss_plot(out_dir / "loss.png", records, f"{exp.cfg.name}: {exp.cfg.objective.kind}")
        written.append(out_dir / "loss.png")
    if exp.data.dim in (1, 2) and exp.objective.has_score:  # 1-D: curves s(x); 2-D: quiver fields
        fields = {f"learned ({exp.cfg.objective.kind})": exp.score_fn(params)}
        if exp.data.has_score:
            fields["true ∇log p"] = exp.data.density.score
        draw = plots.score_curve_plot if exp.data.dim == 1 else plots.score_field_plot
        draw(out_dir / "score_field.png", fields, exp.data)
        written.append(out_dir / "score_field.png")
    if exp.data.dim == 2 and exp.objective.has_score:
        energy = exp.energy_fn(params)
        if energy is not None:
            panels = {f"learned exp(−E) ({exp.cfg.model.kind})": lambda x: -energy(x)}
            if exp.data.density is not None:
                sigma = 0.0 if exp.data.has_score else 0.05
                panels["true density"] = lambda x: exp.data.density.log_prob(x, sigma)
            plots.density_plot(out_dir / "density.png", panels, exp.data)
            written.append(out_dir / "density.png")
    if exp.data.image_shape is not None and getattr(exp.cfg.model, "latent", None) is not None:
        rows = interpolations(exp, params)
        plots.image_grid(out_dir / "interpolation.png", rows, exp.data.image_shape,
                         f"{exp.cfg.name}: latent interpolation ({exp.cfg.objective.kind}); ends are the data", n=len(rows), cols=10)
        written.append(out_dir / "interpolation.png")
    return written
