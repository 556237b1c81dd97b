"""The Python API behind every command (the CLI is a thin layer over these functions).

Each function validates everything it can *before* creating or touching a run directory, so a
user error leaves nothing behind; a refused resume changes no file of the run. Training (new or
resumed) holds the run's write lock (``dsmcli.runlock``) from its first check to its last
write; ``sample`` and ``evaluate`` only read the run's newest complete checkpoint and write their
own files atomically, so they work while the run trains.
"""

from __future__ import annotations

import io
import sys
from contextlib import ExitStack
from pathlib import Path

from dsmcli import console, runs
from dsmcli.errors import UserError


def resolve_train_config(config: str | Path, overrides: list[str] | None = None, name: str | None = None):
    from dsmcli.config import load_experiment

    return load_experiment(config, overrides or [], name)


def config_yaml(cfg) -> str:
    from dsmcli.config import dump_yaml

    return dump_yaml(cfg.to_dict())


def _load_run_config(run_dir: Path, overrides: list[str] | None = None, allowed_prefixes: tuple[str, ...] = ()):
    from dsmcli.config import apply_overrides, parse_override, read_yaml_file, validate
    from dsmcli.errors import quote

    import difflib

    for item in overrides or []:
        key = ".".join(parse_override(item)[0])
        if not any(key == p or key.startswith(p + ".") for p in allowed_prefixes):
            allowed = ", ".join(f"{p}…" if not p.count(".") else p for p in allowed_prefixes) or "nothing"
            close = difflib.get_close_matches(key[:100], [p for p in allowed_prefixes if "." in p], n=1, cutoff=0.8)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UserError(f"override '{quote(item, 80)}': {hint}only {allowed} may be set here")
    raw = read_yaml_file(run_dir / "config.yaml", what="RUN_DIR")
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
    """Train a new run of a validated ``ExperimentConfig``; returns (run directory, summary).
    Data, network, memory and the compiled first dispatch are checked before the run directory
    exists."""
    from dsmcli import experiment, parallel, provenance, tracking
    from dsmcli import train as trainer

    parallel.initialize(cfg.parallel)  # multi-process start-up, before anything touches JAX
    exp = experiment.build(cfg)  # data and model errors surface before any directory exists
    plan = trainer.prepare(exp)  # device, memory and compilation errors too
    if not parallel.is_writer():  # other processes compute; process 0 writes the run, they write nothing
        return WORKER_RUN_DIR, trainer.run(plan, WORKER_RUN_DIR)
    tracking.check_available(cfg.track)
    data_files = provenance.record(cfg)
    run_dir = runs.allocate(runs.runs_root(runs_dir), cfg.name)
    from dsmcli import runlock

    with runlock.hold(run_dir, _command(argv)):
        runs.write_text(run_dir / "config.yaml", config_yaml(cfg))
        runs.write_json(run_dir / "meta.json", {**runs.meta(argv), "config": cfg.to_dict(), "data_files": data_files})
        return run_dir, _guarded(trainer.run, plan, run_dir)


def _command(argv: list[str] | None) -> str:
    args = list(argv if argv is not None else sys.argv)
    return " ".join(["dsm", *args[1:]])[:300]


# Keys of a run's config that a resume may see changed: the length of the run, how it is
# spread over devices and processes, sampling, evaluation and tracking (which do not change what is trained).
RESUMABLE_KEYS = ("train.steps", "parallel", "sample", "eval", "track")


def config_edits(meta: dict, cfg) -> list[str]:
    """``key: old → new`` for every training setting of ``cfg`` that differs from the config the
    run started with (recorded in meta.json), apart from ``RESUMABLE_KEYS``."""
    from dsmcli.config import flatten, validate
    from dsmcli.errors import quote

    started = meta.get("config")
    if not isinstance(started, dict):
        return []  # a run from before the record existed
    try:
        before = flatten(validate(started, "meta.json").to_dict())
    except UserError:
        return []  # recorded by an older, incompatible schema: the checkpoint check still applies
    after = flatten(cfg.to_dict())
    edits = []
    for key in sorted(set(before) | set(after)):
        if any(key == p or key.startswith(p + ".") for p in RESUMABLE_KEYS):
            continue
        if before.get(key) != after.get(key):
            edits.append(f"{key}: {quote(before.get(key), 30)} → {quote(after.get(key), 30)}")
    return edits


def resume(run_dir: str | Path, overrides: list[str] | None = None, *, argv: list[str] | None = None):
    """Continue ``run_dir`` in place from its newest checkpoint (``train.steps`` may grow).

    Every check — the run's files, the lock, the config, the data files, the checkpoint's fit,
    the steps — happens before any file is written; a run already complete at ``train.steps``
    is left untouched (returns its summary)."""
    from dsmcli import experiment, parallel, provenance, runlock, tracking
    from dsmcli import train as trainer

    path = runs.require_run_dir(run_dir)
    damaged = runs.damage(path)
    if damaged:
        raise UserError(f"{path} is damaged ({'; '.join(damaged)}); it cannot be resumed safely (nothing was changed)")
    # parallel.*: each process of a multi-process resume passes its own process_id (the saved
    # config holds process 0's) and possibly a new coordinator address.
    cfg = _load_run_config(path, overrides, ("train.steps", "parallel"))
    parallel.initialize(cfg.parallel)  # every process reads the checkpoint (a shared file system)
    with ExitStack() as stack:
        writer = parallel.is_writer()
        if writer:
            stack.enter_context(runlock.hold(path, _command(argv)))
        meta = runs.read_json(path / "meta.json", {})
        edits = config_edits(meta, cfg)
        if edits:
            raise UserError(f"{path / 'config.yaml'} differs from the config the run started with "
                            f"({'; '.join(edits[:4])}); a resume continues the same training, so only "
                            f"train.steps and parallel.* may change. Restore those settings, or start a new "
                            f"run with dsm train --config; nothing was changed")
        provenance.verify(path, cfg, meta)
        tracking.check_available(cfg.track)
        exp = experiment.build(cfg)
        try:
            plan = trainer.prepare(exp, path, resume=True)
        except trainer.NothingToDo as e:
            console.note(str(e))
            return path, runs.read_json(path / "summary.json", {})
        if not writer:
            return path, trainer.run(plan, path)  # writes nothing (run gates its writes)
        if overrides:
            runs.write_text(path / "config.yaml", config_yaml(cfg))
        meta.setdefault("resumed", []).append(runs.meta(argv)["start_time"])
        runs.write_json(path / "meta.json", meta)
        return path, _guarded(trainer.run, plan, path)


def _guarded(fn, plan, run_dir: Path):
    """Record an unexpected failure in ``summary.json`` before re-raising it."""
    from dsmcli.errors import TrainingDiverged, TrainingInterrupted

    try:
        return fn(plan, run_dir)
    except (TrainingDiverged, TrainingInterrupted, UserError):
        raise
    except BaseException as e:
        summary = runs.read_json(run_dir / "summary.json", {})
        summary.update(status="failed", error=f"{type(e).__name__}: {str(e)[:500]}")
        try:
            runs.write_json(run_dir / "summary.json", summary)
        except OSError:
            pass  # e.g. the disk that is full: the original error is the one to report
        raise


def _experiment_at_checkpoint(run_dir: Path, cfg):
    """(experiment, step, parameters) of the run's newest complete checkpoint, after checking
    that its data files are the ones it was trained on; notes which checkpoint is used when the
    run is not simply complete."""
    from dsmcli import experiment, provenance
    from dsmcli.train import load_state

    provenance.verify(run_dir, cfg, runs.read_json(run_dir / "meta.json", {}))
    exp = experiment.build(cfg)
    step, params = load_state(exp, run_dir)
    _note_checkpoint(run_dir, step, cfg.train.steps)
    return exp, step, params


def _note_checkpoint(run_dir: Path, step: int, total: int) -> None:
    """Say which checkpoint a reader uses, and why, unless the run is complete at it."""
    from dsmcli import runlock

    using = f"using its newest complete checkpoint, step {step}"
    holder = runlock.describe_holder(run_dir)
    if holder:
        console.note(f"{holder}; {using}")
        return
    summary, problem = runs.read_object(run_dir / "summary.json")
    if problem:
        console.note(f"{run_dir}: summary.json {problem}; {using}")
        return
    summary = summary or {}
    status = summary.get("status")
    if status == "completed" and step == summary.get("steps"):
        return
    if status == "failed":
        console.note(f"{run_dir} failed ({str(summary.get('error') or 'no reason recorded')[:200]}); using its last "
                     f"good checkpoint, step {step}")
    elif status == "interrupted":
        console.note(f"{run_dir} was interrupted ({summary.get('stopped_by', 'a signal')}) at step "
                     f"{summary.get('steps')} of {total}; {using}")
    elif status == "completed":
        console.note(f"{run_dir} completed {summary.get('steps')} steps but its newest checkpoint is step {step}; {using}")
    else:
        console.note(f"{run_dir} stopped without a final status (killed, or its machine went down) at step "
                     f"{summary.get('steps', '?')} of {total}; {using} (continue it with dsm train --resume)")


def sample(
    run_dir: str | Path,
    *,
    sampler: str | None = None,
    n: int | None = None,
    seed: int | None = None,
    overrides: list[str] | None = None,
    metrics: list[str] | None = None,
) -> tuple[Path, dict]:
    """Draw samples from a run's newest checkpoint; returns (npz path, metrics record).
    The npz gets a name no other sample has (never an overwrite), its plot the same stem.
    ``metrics``: names from ``dsmcli.metrics`` (default: every sample metric that applies)."""
    import numpy as np

    from dsmcli import fsio, plots, sampling
    from dsmcli.config import SEED_LIMIT

    path = runs.require_run_dir(run_dir)
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise UserError(f"--seed: must be an integer from 0 to {SEED_LIMIT - 1}, got {str(seed)[:30]}")
    extra = list(overrides or [])
    if sampler is not None:
        extra.append(f"sample.kind={sampler}")
    if n is not None:
        extra.append(f"sample.n={n}")
    cfg = _load_run_config(path, extra, ("sample",))
    seed = cfg.seed if seed is None else seed
    exp, step, params = _experiment_at_checkpoint(path, cfg)
    x, info = sampling.draw(exp, params, cfg.sample, seed)
    record = {"step": step, "sampler": cfg.sample.kind, "n": cfg.sample.n, "seed": seed,
              **{k: v for k, v in info.items() if k not in ("trace", "inpaint")}}
    record.update(sampling.sample_metrics(x, exp.data, seed, exp=exp, params=params, info=info, names=metrics))
    title = f"{cfg.name}: {cfg.objective.kind}, {cfg.sample.kind}"
    if cfg.sample.kind == "pc":
        title += f" ({cfg.sample.steps} steps, snr {cfg.sample.snr:g})"
    elif cfg.sample.kind == "ode":
        title += f" ({cfg.sample.solver}, nfe {info['nfe']:.0f})"
    elif cfg.sample.kind != "ancestral":
        eps = info.get("step_size", cfg.sample.step_size)
        title += f" ({cfg.sample.steps} steps, ε={eps:g}{' (auto)' if cfg.sample.step_size == 'auto' else ''})"
    figure = io.BytesIO()  # drawn before anything is written: a plot error leaves no orphan npz
    inpainted = info.get("inpaint")
    if inpainted is not None and exp.data.image_shape is not None:
        plots.inpainting_grid(figure, inpainted["truth"], inpainted["known"], x, exp.data.image_shape,
                              f"{title}: inpainting ({cfg.sample.inpaint.mask}, {cfg.sample.inpaint.fraction:g} missing)",
                              period=len(exp.data.x_test))
    elif exp.data.image_shape is not None:
        plots.image_grid(figure, x, exp.data.image_shape, title)
    else:
        plots.samples_plot(figure, x, exp.data, title)
    samples = path / "samples"
    samples.mkdir(exist_ok=True)
    out = fsio.publish_new(sampling.sample_names(path, cfg.sample.kind, cfg.sample.n, seed),
                           lambda f: np.savez(f, x=x, **({} if inpainted is None else
                                                          {"observed": inpainted["truth"], "known": inpainted["known"]})))
    fsio.write_bytes(out.with_suffix(".png"), figure.getvalue())
    record = {"step": step, "file": out.name, **{k: v for k, v in record.items() if k != "step"}}
    runs.MetricsLog(samples / "metrics.jsonl").append(record)
    return out, record


def evaluate(run_dir: str | Path, *, figures: bool = True, metrics: list[str] | None = None,
             overrides: list[str] | None = None) -> tuple[Path, dict]:
    """Evaluation metrics of the newest checkpoint → ``eval.json`` (+ figures in ``plots/``).
    ``metrics``: names from ``dsmcli.metrics`` (default: every model metric that applies);
    ``overrides``: ``eval.KEY=VALUE`` settings of this evaluation."""
    from dsmcli import evaluation

    from dsmcli import progress

    path = runs.require_run_dir(run_dir)
    cfg = _load_run_config(path, overrides, ("eval",))
    exp, step, params = _experiment_at_checkpoint(path, cfg)
    with progress.Bar("eval", 2 if figures else 1, unit="stage") as bar:
        result = {"step": step, **evaluation.evaluate(exp, params, metrics)}
        bar.update(1, finished="metrics")
        plots = evaluation.figures(exp, params, path, runs.MetricsLog(path / "metrics.jsonl").read()) if figures else []
        if figures:
            bar.update(2, finished="figures")
    summary = runs.read_json(path / "summary.json", {})
    for key in ("loss", "steps_per_sec", "wall_s", "compile_s"):
        if isinstance(summary.get(key), (int, float)) and not isinstance(summary.get(key), bool):
            result[key] = summary[key]
    runs.write_json(path / "eval.json", result)
    from dsmcli import tracking

    tracking.log_evaluation(cfg, path, result, plots)
    return path / "eval.json", result


def list_runs(runs_dir: str | None = None) -> list[dict]:
    return runs.list_runs(runs.runs_root(runs_dir))
