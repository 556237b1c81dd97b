"""``dsm eval``: metrics of a run's newest checkpoint (``eval.json``) and its figures."""

from __future__ import annotations

from pathlib import Path


def evaluate(exp, params, names: list[str] | None = None, *, final: bool = True) -> dict:
    """The model metrics of the registry (``dsmcli.metrics``): every default one that applies,
    or those named (``final: false``: an intermediate evaluation, without the costly ones)."""
    from dsmcli import metrics

    return metrics.evaluate_model(metrics.ModelView(exp, params), names, final=final)


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
