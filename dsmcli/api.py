"""The Python API behind every command (the CLI is a thin layer over these functions).

Each function validates everything it can *before* creating or touching a run directory, so a
user error leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

from dsmcli import runs
from dsmcli.errors import UserError


def resolve_train_config(config: str | Path, overrides: list[str] | None = None, name: str | None = None):
    from dsmcli.config import load_experiment

    return load_experiment(config, overrides or [], name)


def config_yaml(cfg) -> str:
    from dsmcli.config import dump_yaml

    return dump_yaml(cfg.to_dict())


def _load_run_config(run_dir: Path, overrides: list[str] | None = None, allowed_prefixes: tuple[str, ...] = ()):
    from dsmcli.config import apply_overrides, parse_override, read_yaml_file, validate

    for item in overrides or []:
        key = ".".join(parse_override(item)[0])
        if not any(key == p or key.startswith(p + ".") for p in allowed_prefixes):
            allowed = ", ".join(f"{p}…" if not p.count(".") else p for p in allowed_prefixes)
            raise UserError(f"override '{item}': only {allowed} may be set here")
    raw = read_yaml_file(run_dir / "config.yaml")
    return validate(apply_overrides(raw, overrides or []), str(run_dir / "config.yaml"))


# What ``train_config`` returns on processes other than 0 of a multi-process run: they write
# nothing, so there is no run directory of theirs (the trainer only reads this non-existent path).
WORKER_RUN_DIR = Path("/nonexistent/dsm-worker")


def train(
    config: str | Path,
    overrides: list[str] | None = None,
    *,
    runs_dir: str | None = None,
    name: str | None = None,
    argv: list[str] | None = None,
) -> tuple[Path, dict]:
    """Train a new run of ``config``; returns (run directory, summary)."""
    return train_config(resolve_train_config(config, overrides, name), runs_dir=runs_dir, argv=argv)


def train_config(cfg, *, runs_dir: str | None = None, argv: list[str] | None = None) -> tuple[Path, dict]:
    """Train a new run of a validated ``ExperimentConfig``; returns (run directory, summary)."""
    from dsmcli import experiment
    from dsmcli import train as trainer

    from dsmcli import parallel

    parallel.initialize(cfg.parallel)  # multi-process start-up, before anything touches JAX
    exp = experiment.build(cfg)  # data and model errors surface before any directory exists
    parallel.mesh(cfg.parallel, cfg.train.batch_size)  # device errors too
    if not parallel.is_writer():  # other processes compute; process 0 writes the run, they write nothing
        return WORKER_RUN_DIR, trainer.train(exp, WORKER_RUN_DIR, resume=False)
    run_dir = runs.allocate(runs.runs_root(runs_dir), cfg.name)
    runs.write_text(run_dir / "config.yaml", config_yaml(cfg))
    runs.write_json(run_dir / "meta.json", runs.meta(argv))
    return run_dir, _guarded(trainer.train, exp, run_dir, resume=False)


def resume(run_dir: str | Path, overrides: list[str] | None = None, *, argv: list[str] | None = None):
    """Continue ``run_dir`` in place from its newest checkpoint (``train.steps`` may grow)."""
    from dsmcli import experiment
    from dsmcli import train as trainer

    from dsmcli import parallel

    path = runs.require_run_dir(run_dir)
    # parallel.*: each process of a multi-process resume passes its own process_id (the saved
    # config holds process 0's) and possibly a new coordinator address.
    cfg = _load_run_config(path, overrides, ("train.steps", "parallel"))
    parallel.initialize(cfg.parallel)  # every process reads the checkpoint (a shared file system)
    exp = experiment.build(cfg)
    if not parallel.is_writer():
        return path, trainer.train(exp, path, resume=True)  # writes nothing (train gates its writes)
    runs.write_text(path / "config.yaml", config_yaml(cfg))
    meta = runs.read_json(path / "meta.json", {}) or {}
    meta.setdefault("resumed", []).append(runs.meta(argv)["start_time"])
    runs.write_json(path / "meta.json", meta)
    return path, _guarded(trainer.train, exp, path, resume=True)


def _guarded(fn, exp, run_dir: Path, **kw):
    """Record an unexpected failure in ``summary.json`` before re-raising it."""
    from dsmcli.errors import TrainingDiverged, TrainingInterrupted

    try:
        return fn(exp, run_dir, **kw)
    except (TrainingDiverged, TrainingInterrupted, UserError):
        raise
    except BaseException as e:
        summary = runs.read_json(run_dir / "summary.json", {}) or {}
        summary.update(status="failed", error=f"{type(e).__name__}: {e}")
        try:
            runs.write_json(run_dir / "summary.json", summary)
        except OSError:
            pass  # e.g. the disk that is full: the original error is the one to report
        raise


def _experiment_at_checkpoint(run_dir: Path, cfg):
    from dsmcli import experiment
    from dsmcli.train import load_state

    exp = experiment.build(cfg)
    step, params = load_state(exp, run_dir)
    return exp, step, params


def sample(
    run_dir: str | Path,
    *,
    sampler: str | None = None,
    n: int | None = None,
    seed: int | None = None,
    overrides: list[str] | None = None,
) -> tuple[Path, dict]:
    """Draw samples from a run's newest checkpoint; returns (npz path, metrics record)."""
    import numpy as np

    from dsmcli import plots, sampling

    path = runs.require_run_dir(run_dir)
    extra = list(overrides or [])
    if sampler is not None:
        extra.append(f"sample.kind={sampler}")
    if n is not None:
        extra.append(f"sample.n={n}")
    cfg = _load_run_config(path, extra, ("sample",))
    seed = cfg.seed if seed is None else seed
    exp, step, params = _experiment_at_checkpoint(path, cfg)
    x, info = sampling.draw(exp, params, cfg.sample, seed)
    (path / "samples").mkdir(exist_ok=True)
    out = sampling.sample_file(path, cfg.sample.kind, cfg.sample.n, seed)
    np.savez(out.with_suffix(".tmp.npz"), x=x)
    out.with_suffix(".tmp.npz").replace(out)
    record = {"step": step, "file": out.name, "sampler": cfg.sample.kind, "n": cfg.sample.n, "seed": seed, **info}
    record.update(sampling.sample_metrics(x, exp.data, seed))
    runs.MetricsLog(path / "samples" / "metrics.jsonl").append(record)
    title = f"{cfg.name}: {cfg.objective.kind}, {cfg.sample.kind}"
    if cfg.sample.kind != "ancestral":
        title += f" ({cfg.sample.steps} steps, ε={cfg.sample.step_size:g})"
    if exp.data.image_shape is not None:
        plots.image_grid(out.with_suffix(".png"), x, exp.data.image_shape, title)
    else:
        plots.samples_plot(out.with_suffix(".png"), x, exp.data, title)
    return out, record


def evaluate(run_dir: str | Path, *, figures: bool = True) -> tuple[Path, dict]:
    """Evaluation metrics of the newest checkpoint → ``eval.json`` (+ figures in ``plots/``)."""
    from dsmcli import evaluation

    path = runs.require_run_dir(run_dir)
    cfg = _load_run_config(path)
    exp, step, params = _experiment_at_checkpoint(path, cfg)
    result = {"step": step, **evaluation.evaluate(exp, params)}
    summary = runs.read_json(path / "summary.json", {}) or {}
    for key in ("loss", "steps_per_sec", "wall_s", "compile_s"):
        if summary.get(key) is not None:
            result[key] = summary[key]
    runs.write_json(path / "eval.json", result)
    if figures:
        evaluation.figures(exp, params, path, runs.MetricsLog(path / "metrics.jsonl").read())
    return path / "eval.json", result


def list_runs(runs_dir: str | None = None) -> list[dict]:
    return runs.list_runs(runs.runs_root(runs_dir))

