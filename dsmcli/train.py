"""The generic trainer: one jit-compiled step, ``log_every`` steps fused per dispatch with
``jax.lax.scan``, data on the device, periodic evaluation and checkpoints, exact resume.

Randomness: the key of step t is ``fold_in(PRNGKey(seed), t)``; it draws the batch indices and
the objective's noise. Nothing else is random, so a run resumed from the checkpoint of step t
continues bit for bit as the uninterrupted run would have.

Logged per dispatch (one ``metrics.jsonl`` line at every multiple of ``log_every``):
``loss`` (and an objective's extra metrics) are means over the steps of that dispatch;
``grad_norm`` is the global gradient norm ‖∇θ‖₂ at the dispatch's last step (every step's
with ``on_nonfinite: skip_step``, which needs it; then the mean); ``steps_per_sec`` is measured
over the dispatch (compilation excluded, reported once as ``compile_s``).
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dsmcli import checkpoint, parallel, progress, xla_options
from dsmcli.evaluation import evaluate
from dsmcli.errors import TrainingDiverged, TrainingInterrupted, UserError
from dsmcli.runs import MetricsLog, write_json
from dsmcli.tracking import Tracker


class StepFunction:
    """Builds and caches the compiled ``scan`` over ``length`` training steps."""

    def __init__(self, exp, tx, mesh=None):
        import jax
        import jax.numpy as jnp
        import optax

        cfg = exp.cfg
        base_key = jax.random.key(cfg.seed)
        batch_size = cfg.train.batch_size
        skip_nonfinite = cfg.train.on_nonfinite == "skip_step"
        ema_decay = cfg.train.ema_decay
        objective = exp.objective

        def one_step(state, x_train, step, last_step):
            key_batch, key_loss = jax.random.split(jax.random.fold_in(base_key, step))
            idx = jax.random.randint(key_batch, (batch_size,), 0, x_train.shape[0])
            x = x_train[idx]
            if mesh is not None and mesh.size > 1:
                x = jax.lax.with_sharding_constraint(x, parallel.batch_sharded(mesh))

            def loss_fn(params):
                return objective.step_loss(exp.net(params), x, key_loss, x_train, step)

            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
            if skip_nonfinite:  # every step needs its verdict before its update
                grad_norm = optax.tree.norm(grads)
                finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
            else:
                # A pass over every gradient entry per step cost 8-12 % of a large step
                # (BENCHMARKS.md): the norm is taken at the dispatch's last step only. A
                # non-finite gradient earlier makes the next loss non-finite, and the
                # parameters are checked once after the scan.
                is_last = step == last_step
                grad_norm = jax.lax.cond(is_last, optax.tree.norm, lambda g: jnp.float32(jnp.nan), grads)
                finite = jnp.isfinite(loss) & (~is_last | jnp.isfinite(grad_norm))
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"], step=step)
            params = optax.apply_updates(state["params"], updates)
            new = {"params": params, "opt_state": opt_state}
            if ema_decay is not None:
                new["ema"] = jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, state["ema"], params)
            if skip_nonfinite:
                new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)
            return new, {"loss": loss, "grad_norm": grad_norm, "finite": finite, **aux}

        def run(state, x_train, start, length):
            steps = start + jnp.arange(length)
            state, metrics = jax.lax.scan(lambda s, t: one_step(s, x_train, t, start + length - 1), state, steps)
            leaves = jax.tree.leaves(state["params"])
            metrics["params_finite"] = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in leaves]))
            return state, metrics

        self._jitted = jax.jit(run, static_argnums=3, donate_argnums=0)
        self.compiler_options = xla_options.for_training_step(exp.params, batch_size)
        self._compiled = {}
        self.compile_s = 0.0

    def compile(self, state, x_train, start: int, length: int):
        """The executable of a dispatch of ``length`` steps (compiled once per length)."""
        import numpy as np

        fn = self._compiled.get(length)
        if fn is None:
            t0 = time.perf_counter()
            fn = self._jitted.lower(state, x_train, np.int32(start), length).compile(compiler_options=self.compiler_options)
            self.compile_s += time.perf_counter() - t0
            self._compiled[length] = fn
        return fn

    def __call__(self, state, x_train, start: int, length: int):
        import numpy as np

        return self.compile(state, x_train, start, length)(state, x_train, np.int32(start))


@contextmanager
def _stop_on_signals():
    """Turn SIGINT/SIGTERM into a flag checked between dispatches (a clean stop)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class NothingToDo(Exception):
    """A resume of a completed run that is already at ``train.steps``: no file is touched."""


@dataclass
class Plan:
    """Everything a training needs, prepared without writing a file: every check of a resume
    (checkpoint fits the model, steps, the log) and of memory happens here, so a refusal
    changes nothing."""

    exp: object
    tx: object
    mesh: object
    total: int
    step: int
    state: object
    x_train: object
    step_fn: StepFunction
    previous: dict = field(default_factory=dict)
    resume: bool = False
    started: float = field(default_factory=time.perf_counter)  # wall_s counts from here (compilation included)


def prepare(exp, run_dir: Path | None = None, *, resume: bool = False) -> Plan:
    """Build the optimiser and the state (restored from the newest checkpoint of ``run_dir`` for
    a resume), put state and data on the devices and compile the first dispatch, checking its
    memory. Raises ``UserError`` for a resume that cannot continue, ``NothingToDo`` for one
    that has nothing left to train; writes nothing."""
    import jax
    import numpy as np

    from dsmcli import memory, optim

    started = time.perf_counter()
    cfg = exp.cfg
    mesh = parallel.mesh(cfg.parallel, cfg.train.batch_size)
    total = cfg.train.steps if exp.objective.trains else 0
    tx = optim.for_experiment(exp, total)
    state = initial_state(exp, tx)
    step, previous = 0, {}
    if resume:
        step, state, previous = _restore_for_resume(exp, run_dir, state, total)
    state = jax.device_put(state, parallel.replicated(mesh))
    x_train = jax.device_put(np.asarray(exp.data.x_train), parallel.replicated(mesh))
    step_fn = StepFunction(exp, tx, mesh)
    if step < total:
        every = cfg.train.log_every
        length = min(every - step % every, total - step)
        compiled = step_fn.compile(state, x_train, step, length)
        new_bytes = memory.compiled_bytes(compiled, arguments=False)
        if new_bytes is not None:
            memory.check(new_bytes, f"the training step (train.batch_size {cfg.train.batch_size}, "
                         f"{length} steps per dispatch)", "lower train.batch_size, train.log_every (the "
                         "per-step metrics of a dispatch are kept) or the network size",
                         device=mesh.devices.flat[0])
    return Plan(exp, tx, mesh, total, step, state, x_train, step_fn, previous, resume, started)


def _restore_for_resume(exp, run_dir: Path, state, total: int):
    """(step, state, previous summary) to continue from; every refusal before any write."""
    from dsmcli import runs

    previous, problem = runs.read_object(run_dir / "summary.json")
    if problem:
        raise UserError(f"{run_dir}: summary.json {problem}; the run cannot be resumed safely "
                        f"(nothing was changed)")
    previous = previous or {}
    records, damaged = MetricsLog(run_dir / "metrics.jsonl").scan()
    if damaged:
        raise UserError(f"{run_dir}: metrics.jsonl is damaged ({'; '.join(damaged[:2])}); the run cannot be "
                        f"resumed safely (nothing was changed)")
    try:
        restored = checkpoint.restore_latest(run_dir, state)
    except checkpoint.IncompatibleCheckpoint as e:
        raise UserError(f"{run_dir}: its checkpoints do not fit the configured model: {e}. Was config.yaml "
                        f"edited, or dsm upgraded? Restore the config (or dsm version) the run was trained "
                        f"with, or start a new run; nothing was changed") from None
    except checkpoint.CorruptCheckpoint as e:
        raise UserError(f"{run_dir}: {e}; it cannot be resumed (nothing was changed)") from None
    if restored is None:
        if any(r["step"] > 0 for r in records):
            raise UserError(f"{run_dir}: metrics.jsonl logs {records[-1]['step']} steps but checkpoints/ holds no "
                            f"checkpoint to continue from; nothing was changed")
        return 0, state, previous
    step, state = restored
    if step > total:
        raise UserError(f"train.steps: the run is already at step {step}; pass train.steps larger than that to "
                        f"continue (nothing was changed)")
    if step == total and previous.get("status") == "completed" and previous.get("steps") == step:
        raise NothingToDo(f"{run_dir} is already complete at step {step} (train.steps={total}); nothing to do. "
                          f"Continue it with dsm train --resume {run_dir} train.steps=N (N > {step})")
    return step, state, previous


def train(exp, run_dir: Path, *, resume: bool = False) -> dict:
    """Prepare and run (the convenience of ``prepare`` + ``run``)."""
    return run(prepare(exp, run_dir, resume=resume), run_dir)


def run(plan: Plan, run_dir: Path) -> dict:
    """Train ``plan`` in ``run_dir`` (fresh, or from the step it was prepared at).

    Returns the summary dict also written to ``summary.json``. Raises ``TrainingDiverged`` on a
    non-finite loss or gradient (with ``on_nonfinite: stop``), or when ``max_consecutive_skips``
    steps in a row were skipped (``skip_step``), and ``TrainingInterrupted`` on SIGINT/SIGTERM,
    after writing the summary (and, when interrupted, a final checkpoint).
    """
    import jax
    import numpy as np

    from dsmcli import optim

    exp, cfg, total, step, state = plan.exp, plan.exp.cfg, plan.total, plan.step, plan.state
    writer = parallel.is_writer()
    lr_at = optim.schedule(cfg.optim, total)
    log = MetricsLog(run_dir / "metrics.jsonl")
    previous = plan.previous
    wall_before = float(previous.get("wall_s") or 0.0) if isinstance(previous.get("wall_s"), (int, float)) else 0.0
    if plan.resume and writer:
        log.truncate_after(step)
    kept = {k: v for k, v in previous.items() if k not in ("error", "stopped_by")}  # final metrics survive
    metric_steps = dict(previous.get("metric_steps") or {}) if isinstance(previous.get("metric_steps"), dict) else {}
    summary = {**kept, "status": "running", "steps": step, "objective": cfg.objective.kind, "devices": plan.mesh.size}
    save = (lambda s, st: checkpoint.save(run_dir, s, st, cfg.train.keep_checkpoints)) if writer else (lambda s, st: None)
    write_summary = (lambda: write_json(run_dir / "summary.json", summary)) if writer else (lambda: None)
    append = log.append if writer else (lambda record: None)
    write_summary()
    tracker = Tracker(cfg, run_dir, resume_step=step if plan.resume else None) if writer else None
    if tracker is not None:
        append = (lambda record, log_append=append: (log_append(record), tracker.log(record)))
    x_train, step_fn = plan.x_train, plan.step_fn
    every = cfg.train.log_every
    skip_mode = cfg.train.on_nonfinite == "skip_step"
    max_skips = cfg.train.max_consecutive_skips
    skip_run = 0  # consecutive skipped steps up to the current step
    t_start = plan.started
    last: dict = {}
    evaluated_at = None
    trained_steps, train_time = 0, 0.0

    def finish(status: str, **extra) -> dict:
        wall = time.perf_counter() - t_start
        final = {k: v for k, v in last.items() if k not in ("step", "steps_per_sec", "compile_s", "wall_s")}
        for key in final:
            metric_steps[key] = last.get("step", step)
        summary.update(
            status=status,
            steps=step,
            wall_s=round(wall_before + wall, 3),
            steps_per_sec=round(trained_steps / train_time, 2) if train_time else None,
            compile_s=round(step_fn.compile_s, 3),
            **final,
            **extra,
        )
        summary["metric_steps"] = {k: v for k, v in metric_steps.items() if k in summary}
        write_summary()
        if tracker is not None:
            tracker.finish(status)
        return summary

    if not checkpoint.checkpoints(run_dir) and writer:
        save(step, state)  # step 0: sample/eval work at once

    with _stop_on_signals() as signals, progress.Bar("train", total, done=step) as bar:
        while step < total:
            length = min(every - step % every, total - step)
            compile_before = step_fn.compile_s
            t0 = time.perf_counter()
            new_state, metrics = step_fn(state, x_train, step, length)
            metrics = jax.device_get(metrics)
            dt = time.perf_counter() - t0 - (step_fn.compile_s - compile_before)
            params_finite = bool(metrics.pop("params_finite"))
            bad = np.flatnonzero(~metrics["finite"])
            diverged = None  # (index in the dispatch, what)
            if len(bad) and not skip_mode:
                i = int(bad[0])
                diverged = (i, "non-finite " + ("loss" if not np.isfinite(metrics["loss"][i]) else "gradient norm"))
            elif not params_finite:  # skip_step cannot undo a whole dispatch either
                diverged = (length - 1, "non-finite parameters")
            elif skip_mode:
                reached = _skip_limit_reached(metrics["finite"], skip_run, max_skips)
                if reached is not None:
                    diverged = (reached, f"{max_skips} consecutive skipped steps (train.on_nonfinite: skip_step; "
                                         f"train.max_consecutive_skips={max_skips}), the last")
                skip_run = _trailing_skips(metrics["finite"], skip_run)
            if diverged is not None:
                first, what = step + diverged[0] + 1, diverged[1]
                saved = checkpoint.checkpoints(run_dir)
                where = f"; the last good checkpoint is {saved[-1][1]} (step {saved[-1][0]})" if saved else ""
                msg = f"training diverged: {what} at step {first}{where}"
                finish("failed", error=msg)
                raise TrainingDiverged(msg)
            state = new_state
            step += length
            trained_steps += length
            train_time += dt
            finite = metrics["finite"]
            finite_mean = lambda v: float(np.mean(v[finite])) if finite.any() else float("nan")  # noqa: E731
            record = {
                "step": step,
                "loss": finite_mean(metrics["loss"]),
                "grad_norm": finite_mean(metrics["grad_norm"]) if skip_mode else float(metrics["grad_norm"][-1]),
                "lr": float(lr_at(step)),
                "steps_per_sec": round(length / dt, 2) if dt > 0 else None,
                "wall_s": round(wall_before + time.perf_counter() - t_start, 3),
            }
            for k, v in metrics.items():
                if k not in ("loss", "grad_norm", "finite"):
                    record[k] = finite_mean(v)
            if len(bad):
                record["skipped_steps"] = int(len(bad))
            if trained_steps == length:  # the first dispatch of this process: its compilation (done in prepare)
                record["compile_s"] = round(step_fn.compile_s, 3)
            elif step_fn.compile_s > compile_before:  # a dispatch of another length (the run's last)
                record["compile_s"] = round(step_fn.compile_s - compile_before, 3)
            if step % cfg.train.eval_every == 0 or step == total:
                record.update(evaluate(exp, eval_params(state), final=step == total))
                evaluated_at = step
            append(record)
            last = record
            if step % cfg.train.ckpt_every == 0 or step == total or signals:
                save(step, state)
            bar.update(step, loss=record["loss"] if np.isfinite(record["loss"]) else "skipped",
                       **{"steps/s": round(record["steps_per_sec"] or 0)})
            if signals:
                signum = signals[0]
                name = signal.Signals(signum).name
                finish("interrupted", stopped_by=name)
                raise TrainingInterrupted(f"training interrupted by {name} at step {step}; resume with "
                                          f"dsm train --resume {run_dir}", signum)
    if evaluated_at != step:  # nothing trained in this call (oracle, pca, or a resume at its last step)
        last = {**last, "step": step, **evaluate(exp, eval_params(state))}
    return finish("completed")


def _trailing_skips(finite, before: int) -> int:
    """Consecutive skipped steps at the end of a dispatch (``before``: those leading into it)."""
    import numpy as np

    good = np.flatnonzero(finite)
    return before + len(finite) if not len(good) else len(finite) - 1 - int(good[-1])


def _skip_limit_reached(finite, before: int, limit: int) -> int | None:
    """Index in the dispatch of the step at which ``limit`` consecutive skips are reached."""
    run = before
    for i, ok in enumerate(finite):
        run = 0 if ok else run + 1
        if run >= limit:
            return i
    return None


def initial_state(exp, tx) -> dict:
    """Parameters, optimiser state and (with ``train.ema_decay``) the parameter EMA."""
    state = {"params": exp.params, "opt_state": tx.init(exp.params)}
    if exp.cfg.train.ema_decay is not None:
        import jax
        import jax.numpy as jnp

        state["ema"] = jax.tree.map(jnp.copy, exp.params)  # own buffers: the state is donated
    return state


def eval_params(state: dict):
    """The parameters evaluated and sampled: the EMA where there is one."""
    return state.get("ema", state["params"])


def load_state(exp, run_dir: Path):
    """(step, evaluated parameters) of the newest verified checkpoint of ``run_dir``; a run
    without a usable one is a ``UserError`` that says why."""
    from dsmcli import optim

    target = initial_state(exp, optim.for_experiment(exp, exp.cfg.train.steps))
    try:
        restored = checkpoint.restore_latest(run_dir, target)
    except checkpoint.IncompatibleCheckpoint as e:
        raise UserError(f"{run_dir}: its checkpoints do not fit the configured model: {e} (was config.yaml "
                        f"edited, or dsm upgraded?)") from None
    except checkpoint.CorruptCheckpoint as e:
        raise UserError(f"{run_dir}: {e}") from None
    if restored is None:
        raise UserError(f"RUN_DIR: '{run_dir}' has no complete checkpoint to load")
    step, state = restored
    return step, eval_params(state)
