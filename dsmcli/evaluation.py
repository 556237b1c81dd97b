"""``dsm eval``: metrics of a run's newest checkpoint (``eval.json``) and its figures."""

from __future__ import annotations

from pathlib import Path


def evaluate(exp, params) -> dict:
    """Metrics that need no sampling: ``score_error`` where the data set has an exact score."""
    from dsmcli.streaming import score_error

    out = {}
    if exp.data.has_score:
        dens = exp.data.density
        out["score_error"] = score_error(exp.score_fn(params), dens.score, exp.data.x_test, exp.cfg.train.eval_batch)
    return out


def figures(exp, params, run_dir: Path, records: list[dict]) -> list[Path]:
    from dsmcli import plots

    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    written = []
    if records:
        plots.loss_plot(out_dir / "loss.png", records, f"{exp.cfg.name}: {exp.cfg.objective.kind}")
        written.append(out_dir / "loss.png")
    if exp.data.dim == 2:
        fields = {f"learned ({exp.cfg.objective.kind})": exp.score_fn(params)}
        if exp.data.has_score:
            fields["true ∇log p"] = exp.data.density.score
        plots.score_field_plot(out_dir / "score_field.png", fields, exp.data)
        written.append(out_dir / "score_field.png")
    return written
