"""Matplotlib figures (PNG, Agg backend): samples over the data density, learned vs true score
fields, loss curves. 2-D data is drawn in the data plane; higher dimensions show the first two
coordinates; 1-D data as histograms over the density. Every axis is labelled, every shading has
its colour bar, and every panel has its own scale where the quantities are not comparable (the
training losses of different objectives)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _window(data, extra: np.ndarray | None = None):
    if data.bounds is not None and len(data.bounds) >= 2:
        (x0, x1), (y0, y1) = data.bounds[:2]
    else:
        pts = data.x_train[:, :2]
        (x0, y0), (x1, y1) = np.quantile(pts, 0.001, 0), np.quantile(pts, 0.999, 0)
    return x0, x1, y0, y1


def _save(plt, fig, path, tight: bool = True, **kw) -> None:
    """Write the figure as PNG: to a file object as is, to a path atomically (``fsio``)."""
    from dsmcli import fsio

    try:
        if tight:
            fig.tight_layout(**kw)
        if hasattr(path, "write"):
            fig.savefig(path, format="png")
        else:
            with fsio.atomic_file(path) as f:
                fig.savefig(f, format="png")
    finally:
        plt.close(fig)


def _frame(ax, window, title: str, fontsize: int, labels: bool = True) -> None:
    """Data-plane axes: the plotting window, equal aspect, axis labels, a title."""
    ax.set_xlim(window[0], window[1])
    ax.set_ylim(window[2], window[3])
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=fontsize)
    if labels:
        ax.set_xlabel("x₁", fontsize=fontsize - 1)
        ax.set_ylabel("x₂", fontsize=fontsize - 1)


def _grid(window, n: int):
    x0, x1, y0, y1 = window
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    return gx, gy, np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)


def _density_background(ax, data, window, n: int = 150):
    """Shade the exact density p(x) itself (not its logarithm, so that a mode of weight 0.8 is
    visibly four times one of 0.2) with a colour bar, where the density is known; else the
    held-out points."""
    dens = data.density
    if dens is None or data.dim != 2:
        ax.scatter(*data.x_test[:3000, :2].T, s=1, c="0.7", label="held-out data")
        return
    gx, gy, pts = _grid(window, n)
    sigma = 0.0 if dens.has_score else 0.05
    import jax

    p = np.exp(np.asarray(jax.jit(dens.log_prob, static_argnums=1)(pts, sigma))).reshape(gx.shape)
    levels = np.linspace(0, np.nanmax(p), 21)
    shading = ax.contourf(gx, gy, p, levels=levels, cmap="Blues")
    # the same levels as lines drawn above whatever is plotted next (samples hide the shading)
    ax.contour(gx, gy, p, levels=levels[2::4], colors="navy", linewidths=0.6, alpha=0.8, zorder=3)
    label = "p(x)" if dens.has_score else "q₀.₀₅(x) (p smoothed, σ = 0.05)"
    from matplotlib.ticker import MaxNLocator

    bar = ax.figure.colorbar(shading, ax=ax, fraction=0.046, pad=0.03, ticks=MaxNLocator(5))
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def samples_plot(path: Path, samples: np.ndarray, data, title: str) -> None:
    """Samples over the data: a scatter in the data plane (the first two coordinates beyond
    2-D), or for 1-D data a histogram over the exact density (or the held-out data's histogram)."""
    if data.dim == 1:
        return _samples_histogram(path, samples, data, title)
    plt = _plt()
    window = _window(data)
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=110)
    _density_background(ax, data, window)
    shown = samples[:5000, :2]
    ax.scatter(*shown.T, s=2, c="tab:red", alpha=0.5, label=f"samples ({len(samples)})")
    _frame(ax, window, title, 10)
    ax.legend(loc="upper right", fontsize=8, markerscale=4)
    _save(plt, fig, path)


def score_field_plot(path: Path, fields: dict, data, n: int = 21, ncols: int = 4) -> None:
    """One quiver panel per named score function over the density (2-D data only), on a grid
    of at most ``ncols`` columns."""
    import jax

    plt = _plt()
    window = _window(data)
    gx, gy, pts = _grid(window, n)
    cols = min(ncols, len(fields))
    rows = -(-len(fields) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.6 * rows), dpi=100, squeeze=False)
    for ax in axes.ravel()[len(fields):]:
        ax.set_visible(False)
    for ax, (title, fn) in zip(axes.ravel(), fields.items()):
        _density_background(ax, data, window)
        s = np.asarray(jax.jit(fn)(pts))
        norm = np.linalg.norm(s, axis=1, keepdims=True)
        u = s / np.maximum(norm, 1e-12) * np.log1p(norm)  # compress the dynamic range
        ax.quiver(gx, gy, u[:, 0].reshape(gx.shape), u[:, 1].reshape(gx.shape), color="tab:red", width=0.004)
        _frame(ax, window, title, 10)
    fig.suptitle("score fields (arrow length ∝ log(1 + ‖s‖))", fontsize=9)
    _save(plt, fig, path)


def loss_plot(path: Path, records: list[dict], title: str) -> None:
    """Training loss (and ``loss_excess``, the loss above the exact score's, on a log axis) and
    the held-out score error against steps."""
    plt = _plt()
    pts = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), (int, float))]
    excess = [(r["step"], r["loss_excess"]) for r in records if isinstance(r.get("loss_excess"), (int, float))]
    evals = [(r["step"], r["score_error"]) for r in records if isinstance(r.get("score_error"), (int, float))]
    panels = 1 + bool(excess) + bool(evals)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), dpi=110, squeeze=False)
    ax = axes[0, 0]
    if pts:
        ax.plot(*zip(*pts), lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=10)
    k = 1
    if excess:
        ax = axes[0, k]
        steps, values = zip(*excess)
        ax.plot(steps, np.maximum(values, 1e-8), lw=1.2, color="tab:orange")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss_excess (loss − exact score's loss)")
        k += 1
    if evals:
        ax = axes[0, k]
        ax.semilogy(*zip(*evals), "o-", lw=1.2)
        ax.set_xlabel("step")
        ax.set_ylabel("score_error (held-out)")
    _save(plt, fig, path)


def sample_panels(path: Path, samples: dict, data, ncols: int = 4) -> None:
    """One panel of samples over the density per variant, all on the same axes."""
    plt = _plt()
    window = _window(data)
    n = len(samples)
    cols = min(ncols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), dpi=100, squeeze=False, sharex=True, sharey=True)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for ax, (title, x) in zip(axes.ravel(), samples.items()):
        _density_background(ax, data, window)
        ax.scatter(*x[:3000, :2].T, s=1.5, c="tab:red", alpha=0.5)
        _frame(ax, window, title, 9)
    fig.suptitle("samples (red) over the data density (blue, colour bar: p(x))", fontsize=9)
    _save(plt, fig, path)


def image_panels(path: Path, samples: dict, shape: tuple[int, ...], side: int = 6, ncols: int = 5) -> None:
    """One mosaic of the first side × side sampled images per variant (grey scale, each
    mosaic on the shared [0, 1] range of pixel intensities when the data lives there; colour
    images, shape (H, W, 3), in colour clipped to [0, 1])."""
    plt = _plt()
    n = len(samples)
    cols = min(ncols, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), dpi=110, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    h, w = shape[:2]
    c = shape[2] if len(shape) == 3 else 1
    for ax, (title, x) in zip(axes.ravel(), samples.items()):
        k = min(side * side, len(x))
        imgs = x[:k].reshape(k, h, w, c)
        if c == 3:
            lo, hi = 0.0, 1.0
            tiles = np.ones((side * side, h + 1, w + 1, c))  # white between images
            tiles[:k, :h, :w] = np.clip(np.nan_to_num(imgs, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        else:
            imgs = imgs[..., 0]
            lo, hi = (0.0, 1.0) if imgs.min() >= -0.05 and imgs.max() <= 1.05 else np.percentile(imgs, [1, 99])
            tiles = np.full((side * side, h + 1, w + 1, 1), lo)  # one background pixel between images
            tiles[:k, :h, :w, 0] = np.clip(imgs, lo, hi)
        mosaic = (tiles.reshape(side, side, h + 1, w + 1, -1).transpose(0, 2, 1, 3, 4)
                  .reshape(side * (h + 1), side * (w + 1), -1))
        if c == 3:
            ax.imshow(mosaic)
        else:
            ax.imshow(mosaic[..., 0], cmap="gray_r", vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=9)
    _save(plt, fig, path, pad=0.3)


def loss_overlay(path: Path, curves: dict, ncols: int = 4) -> bool:
    """Training loss of several runs, one panel each on its own scale (objectives' losses are
    not comparable: DSM's sits near its constant, ≈ 100 on the quickstart), and where logged the
    held-out score error of all of them on one shared log axis (which is comparable). Variants
    that trained nothing (oracle, pca) get no loss panel; returns False (and writes nothing)
    when there is nothing to draw."""
    plt = _plt()
    losses = {name: [(r["step"], r["loss"]) for r in recs if isinstance(r.get("loss"), (int, float))]
              for name, recs in curves.items()}
    losses = {name: pts for name, pts in losses.items() if pts}
    errors = {name: [(r["step"], r["score_error"]) for r in recs if isinstance(r.get("score_error"), (int, float))]
              for name, recs in curves.items()}
    errors = {name: pts for name, pts in errors.items() if pts}
    panels = len(losses) + bool(errors)
    if not panels:
        return False
    cols = min(ncols, panels)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.2 * rows), dpi=100, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[panels:]:
        ax.set_visible(False)
    for ax, (name, pts) in zip(flat, losses.items()):
        ax.plot(*zip(*pts), lw=1.2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("training loss (own scale)", fontsize=8)
        ax.tick_params(labelsize=7)
    if errors:
        ax = flat[len(losses)]
        for name, pts in errors.items():
            ax.semilogy(*zip(*pts), "o-", lw=1.2, ms=3, label=name)
        ax.set_title("held-out score error (shared axis)", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("score_error", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    _save(plt, fig, path)
    return True


def image_grid(path: Path, x: np.ndarray, shape: tuple[int, ...], title: str, n: int = 100,
               cols: int | None = None) -> None:
    """The first ``n`` rows of ``x`` drawn as images, row-major on a grid of ``cols`` columns
    (default: square), grey scale with a shared range; colour images (shape (H, W, 3)) in
    colour, clipped to [0, 1]."""
    plt = _plt()
    n = min(n, len(x))
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    colour = len(shape) == 3 and shape[2] == 3
    lo, hi = np.percentile(x[:n], 1), np.percentile(x[:n], 99)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.6, rows * 0.6 + 0.4), dpi=110, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img in zip(axes.ravel(), x[:n]):
        if colour:
            ax.imshow(np.clip(np.nan_to_num(img.reshape(shape), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0))
        else:
            ax.imshow(np.clip(img.reshape(shape[:2]), lo, hi), cmap="gray_r", vmin=lo, vmax=hi)
    fig.suptitle(title, fontsize=8)
    _save(plt, fig, path, pad=0.2)


def inpainting_grid(path: Path, truth: np.ndarray, known: np.ndarray, samples: np.ndarray, shape: tuple[int, ...],
                    title: str, period: int, n: int = 10, draws: int = 2) -> None:
    """Inpainting at a glance, one column per held-out image: the observation (missing pixels
    in red), up to ``draws`` inpainted samples of it, and the truth; one grey scale for all
    panels. Particle i is conditioned on test row i mod ``period`` (n_test), so the draws of
    image j are the particles j, j + period, ..."""
    plt = _plt()
    n = min(n, period, len(samples))
    columns = []
    for j in range(n):
        same = list(range(j, len(samples), period))[:draws]
        columns.append((truth[j], known[j], [samples[i] for i in same]))
    rows = 2 + max(len(c[2]) for c in columns)
    lo, hi = np.percentile(truth[:n], 1), np.percentile(truth[:n], 99)
    fig, axes = plt.subplots(rows, n, figsize=(n * 0.7 + 0.9, rows * 0.7 + 0.4), dpi=110, squeeze=False)
    cmap = plt.get_cmap("gray_r").with_extremes(bad="tab:red")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
    colour = len(shape) == 3 and shape[2] == 3

    def show(ax, img, hidden=None):
        if colour:  # RGB in [0, 1]; hidden pixels painted red
            img = np.clip(img.reshape(shape), 0.0, 1.0)
            if hidden is not None:
                img = np.where(hidden.reshape(shape), np.array([0.84, 0.15, 0.16]), img)
            ax.imshow(img)
        else:
            img = np.clip(img.reshape(shape), lo, hi)
            ax.imshow(img if hidden is None else np.ma.masked_where(hidden.reshape(shape), img), cmap=cmap, vmin=lo, vmax=hi)

    for j, (y, k, draws_j) in enumerate(columns):
        show(axes[0, j], y, ~k)
        for i, d in enumerate(draws_j):
            show(axes[1 + i, j], d)
        show(axes[rows - 1, j], y)
    labels = ["observed", *[f"sample {i + 1}" for i in range(rows - 2)], "truth"]
    for row, label in enumerate(labels):
        axes[row, 0].set_ylabel(label, fontsize=7)
    fig.suptitle(title, fontsize=8)
    _save(plt, fig, path, pad=0.2)


def density_plot(path: Path, log_densities: dict, data, n: int = 150) -> None:
    """Heatmaps of normalised log-densities on the plotting window (one panel per entry), e.g.
    the learned exp(−E_θ)/Z beside the true density; each normalised on the grid."""
    import jax
    from jax.scipy.special import logsumexp

    plt = _plt()
    window = _window(data)
    gx, gy, pts = _grid(window, n)
    fig, axes = plt.subplots(1, len(log_densities), figsize=(5 * len(log_densities), 4.6), dpi=110, squeeze=False)
    for ax, (title, fn) in zip(axes[0], log_densities.items()):
        lp = np.asarray(jax.jit(lambda p, fn=fn: fn(p) - logsumexp(fn(p)))(pts)).reshape(gx.shape)
        lp = np.maximum(lp, np.nanmax(lp) - 12)
        im = ax.imshow(lp, origin="lower", extent=window, cmap="viridis", aspect="equal")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("x₁")
        ax.set_ylabel("x₂")
        fig.colorbar(im, ax=ax, fraction=0.046, label="log density (grid-normalised)")
    _save(plt, fig, path)


def _samples_histogram(path, samples: np.ndarray, data, title: str) -> None:
    plt = _plt()
    x = samples[:, 0]
    x = x[np.isfinite(x)]
    ref = data.x_test[:, 0]
    lo, hi = np.quantile(ref, 0.001), np.quantile(ref, 0.999)
    pad = 0.25 * (hi - lo) + 1e-3
    lo, hi = lo - pad, hi + pad
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    bins = np.linspace(lo, hi, 80)
    ax.hist(np.clip(x, lo, hi), bins=bins, density=True, color="tab:red", alpha=0.5, label=f"samples ({len(samples)})")
    if data.density is not None:
        import jax

        grid = np.linspace(lo, hi, 400, dtype=np.float32)[:, None]
        sigma = 0.0 if data.density.has_score else 0.05
        p = np.exp(np.asarray(jax.jit(data.density.log_prob, static_argnums=1)(grid, sigma)))
        ax.plot(grid[:, 0], p, color="tab:blue", lw=1.5, label="true density")
    else:
        ax.hist(ref, bins=bins, density=True, histtype="step", color="tab:blue", lw=1.5, label="held-out data")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    _save(plt, fig, path)


def score_curve_plot(path: Path, fields: dict, data, n: int = 400) -> None:
    """1-D data: each named score function s(x) against x, over the held-out data's range."""
    import jax

    plt = _plt()
    ref = data.x_test[:, 0]
    lo, hi = np.quantile(ref, 0.001), np.quantile(ref, 0.999)
    pad = 0.25 * (hi - lo) + 1e-3
    grid = np.linspace(lo - pad, hi + pad, n, dtype=np.float32)[:, None]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for (name, fn), style in zip(fields.items(), ("-", "--", ":", "-.")):
        ax.plot(grid[:, 0], np.asarray(jax.jit(fn)(grid))[:, 0], style, lw=1.5, label=name)
    ax.axhline(0.0, color="0.7", lw=0.8)
    ax.set_xlabel("x")
    ax.set_ylabel("score s(x) = d log p / dx")
    ax.legend(fontsize=8)
    _save(plt, fig, path)


AGAINST_METRICS = ("score_error", "hessian_error")


def _log_x(xs) -> bool:
    xs = [x for x in xs if x > 0]
    return len(xs) > 1 and max(xs) / min(xs) >= 10


def against_plot(path: Path, points: dict, key: str) -> bool:
    """Held-out metrics (one panel each, log axis) against a config value, one line per group
    (mean ± std over seeds); a metric's ``<name>_floor`` (the exact σ-smoothed density's) dashed
    in black: the bias no training removes."""
    plt = _plt()
    present = [m for m in AGAINST_METRICS if any(m in met for pts in points.values() for _, met in pts)]
    if not present:
        return False
    fig, axes = plt.subplots(1, len(present), figsize=(5.2 * len(present), 4.2), dpi=100, squeeze=False)
    xs_all = sorted({x for pts in points.values() for x, _ in pts})
    for ax, metric in zip(axes[0], present):
        for label, pts in points.items():
            got = [(x, met[metric]) for x, met in pts if metric in met and met[metric][0] > 0 and (x > 0 or not _log_x(xs_all))]
            if got:
                ax.errorbar([x for x, _ in got], [m for _, (m, _) in got], yerr=[s for _, (_, s) in got],
                            fmt="o-", lw=1.2, ms=3.5, capsize=2, label=label)
        floor = {x: met[f"{metric}_floor"][0] for pts in points.values() for x, met in pts
                 if f"{metric}_floor" in met and met[f"{metric}_floor"][0] > 0 and (x > 0 or not _log_x(xs_all))}
        if floor:
            fx = sorted(floor)
            ax.plot(fx, [floor[x] for x in fx], "k--", lw=1.3, label="exact ∇log q_σ (bias floor)")
        ax.set_yscale("log")
        if _log_x(xs_all):
            ax.set_xscale("log")
        ax.set_xlabel(key, fontsize=9)
        ax.set_ylabel(metric, fontsize=9)
        ax.set_title(f"{metric} against {key.rsplit('.', 1)[-1]}", fontsize=10)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3, which="both", lw=0.5)
    axes[0][0].legend(fontsize=7)
    _save(plt, fig, path)
    return True


def step_curves(path: Path, curves: dict, key: str) -> bool:
    """Held-out ``score_error`` and ``hessian_error`` against training steps: one column per
    group, one line per value of ``key`` (colour bar), one row per metric on a shared log axis —
    where every variant has plateaued is read off here."""
    plt = _plt()
    import matplotlib as mpl

    metrics = [m for m in ("score_error", "hessian_error")
               if any(isinstance(r.get(m), (int, float)) for pts in curves.values() for _, recs in pts for r in recs)]
    if not metrics:
        return False
    def has(recs, metric):
        return sum(isinstance(r.get(metric), (int, float)) and r[metric] > 0 for r in recs) > 1

    groups = [g for g in curves if any(has(recs, m) for _, recs in curves[g] for m in metrics)]  # trained ones
    if not groups:
        return False
    fig, axes = plt.subplots(len(metrics), len(groups), figsize=(3.9 * len(groups) + 0.8, 3.2 * len(metrics)),
                             dpi=100, squeeze=False, sharey="row", layout="constrained")
    xs = sorted({x for g in groups for x, _ in curves[g]})
    norm = mpl.colors.LogNorm(min(xs), max(xs)) if _log_x(xs) and min(xs) > 0 else mpl.colors.Normalize(min(xs), max(xs))
    cmap = mpl.colormaps["viridis"]
    for row, metric in enumerate(metrics):
        for col, group in enumerate(groups):
            ax = axes[row][col]
            for x, recs in curves[group]:
                pts = [(r["step"], r[metric]) for r in recs if isinstance(r.get(metric), (int, float)) and r[metric] > 0]
                if pts:
                    ax.semilogy(*zip(*pts), "-", lw=1.3, color=cmap(norm(x)))
            ax.set_title(group, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"held-out {metric}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3, which="both", lw=0.5)
    bar = fig.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes.ravel().tolist(), fraction=0.04, pad=0.01)
    bar.set_label(key, fontsize=8)
    _save(plt, fig, path, tight=False)
    return True
