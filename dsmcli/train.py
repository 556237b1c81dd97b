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
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from dsmcli import checkpoint, parallel, xla_options
from dsmcli.evaluation import evaluate
from dsmcli.errors import TrainingDiverged, TrainingInterrupted, UserError
from dsmcli.runs import MetricsLog, read_json, write_json


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
                return objective.loss(exp.net(params), x, key_loss, x_train)

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
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
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

    def __call__(self, state, x_train, start: int, length: int):
        import numpy as np

        fn = self._compiled.get(length)
        if fn is None:
            t0 = time.perf_counter()
            fn = self._jitted.lower(state, x_train, np.int32(start), length).compile(compiler_options=self.compiler_options)
            self.compile_s += time.perf_counter() - t0
            self._compiled[length] = fn
        return fn(state, x_train, np.int32(start))


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


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[rate]} steps/s"),
        TimeRemainingColumn(),
        console=console,
        disable=not (console.is_terminal and sys.stdout.isatty()),
        transient=False,
    )


def train(exp, run_dir: Path, *, resume: bool = False) -> dict:
    """Train ``exp`` in ``run_dir`` (fresh, or resumed from its newest checkpoint).

    Returns the summary dict also written to ``summary.json``. Raises ``TrainingDiverged`` on a
    non-finite loss or gradient (with ``on_nonfinite: stop``) and ``TrainingInterrupted`` on
    SIGINT/SIGTERM, after writing the summary (and, when interrupted, a final checkpoint).
    """
    import jax
    import numpy as np

    from dsmcli import optim

    cfg = exp.cfg
    mesh = parallel.mesh(cfg.parallel, cfg.train.batch_size)
    writer = parallel.is_writer()
    total = cfg.train.steps if exp.objective.trains else 0
    tx = optim.for_experiment(exp, total)
    lr_at = optim.schedule(cfg.optim, total)
    state = initial_state(exp, tx)
    log = MetricsLog(run_dir / "metrics.jsonl")
    step = 0
    previous = read_json(run_dir / "summary.json", {}) if resume else {}
    wall_before = float(previous.get("wall_s") or 0.0)
    if resume:
        restored = checkpoint.restore_latest(run_dir, state)
        if restored is not None:
            step, state = restored
        if writer:
            log.truncate_after(step)
    if step > total:
        raise UserError(f"train.steps: the run is already at step {step}; pass train.steps larger than that to continue")

    kept = {k: v for k, v in previous.items() if k not in ("error", "stopped_by")}  # final metrics survive a no-op resume
    summary = {**kept, "status": "running", "steps": step, "objective": cfg.objective.kind, "devices": mesh.size}
    save = (lambda s, st: checkpoint.save(run_dir, s, st, cfg.train.keep_checkpoints)) if writer else (lambda s, st: None)
    write_summary = (lambda: write_json(run_dir / "summary.json", summary)) if writer else (lambda: None)
    append = log.append if writer else (lambda record: None)
    write_summary()
    state = jax.device_put(state, parallel.replicated(mesh))
    x_train = jax.device_put(np.asarray(exp.data.x_train), parallel.replicated(mesh))
    step_fn = StepFunction(exp, tx, mesh)
    every = cfg.train.log_every
    skip_mode = cfg.train.on_nonfinite == "skip_step"
    t_start = time.perf_counter()
    last: dict = {}
    evaluated_at = None
    trained_steps, train_time = 0, 0.0

    def finish(status: str, **extra) -> dict:
        wall = time.perf_counter() - t_start
        summary.update(
            status=status,
            steps=step,
            wall_s=round(wall_before + wall, 3),
            steps_per_sec=round(trained_steps / train_time, 2) if train_time else None,
            compile_s=round(step_fn.compile_s, 3),
            **{k: v for k, v in last.items() if k not in ("step", "steps_per_sec", "compile_s", "wall_s")},
            **extra,
        )
        write_summary()
        return summary

    if not checkpoint.checkpoints(run_dir):
        save(step, state)  # step 0: sample/eval work at once

    with _stop_on_signals() as signals, _progress() as bar:
        task = bar.add_task("train", total=total, completed=step, loss="-", rate="-")
        while step < total:
            length = min(every - step % every, total - step)
            compile_before = step_fn.compile_s
            t0 = time.perf_counter()
            new_state, metrics = step_fn(state, x_train, step, length)
            metrics = jax.device_get(metrics)
            dt = time.perf_counter() - t0 - (step_fn.compile_s - compile_before)
            params_finite = bool(metrics.pop("params_finite"))
            bad = np.flatnonzero(~metrics["finite"])
            diverged = None  # (index in the dispatch, quantity)
            if len(bad) and not skip_mode:
                i = int(bad[0])
                diverged = (i, "loss" if not np.isfinite(metrics["loss"][i]) else "gradient norm")
            elif not params_finite:  # skip_step cannot undo a whole dispatch either
                diverged = (length - 1, "parameters")
            if diverged is not None:
                first, quantity = step + diverged[0] + 1, diverged[1]
                saved = checkpoint.checkpoints(run_dir)
                where = f"; the last good checkpoint is {saved[-1][1]} (step {saved[-1][0]})" if saved else ""
                msg = f"training diverged: non-finite {quantity} at step {first}{where}"
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
            if step_fn.compile_s > compile_before:
                record["compile_s"] = round(step_fn.compile_s - compile_before, 3)
            if step % cfg.train.eval_every == 0 or step == total:
                record.update(evaluate(exp, eval_params(state)))
                evaluated_at = step
            append(record)
            last = record
            if step % cfg.train.ckpt_every == 0 or step == total or signals:
                save(step, state)
            bar.update(task, completed=step, loss=f"{record['loss']:.4g}", rate=f"{record['steps_per_sec'] or 0:.0f}")
            if signals:
                signum = signals[0]
                name = signal.Signals(signum).name
                finish("interrupted", stopped_by=name)
                raise TrainingInterrupted(f"training interrupted by {name} at step {step}; resume with "
                                          f"dsm train --resume {run_dir}", signum)
    if evaluated_at != step:  # nothing trained in this call (oracle, pca, or already done)
        last = {**last, **evaluate(exp, eval_params(state))}
    return finish("completed")


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
    """(step, evaluated parameters) of the newest verified checkpoint of ``run_dir``."""
    from dsmcli import optim

    target = initial_state(exp, optim.for_experiment(exp, exp.cfg.train.steps))
    restored = checkpoint.restore_latest(run_dir, target)
    if restored is None:
        raise UserError(f"RUN_DIR: '{run_dir}' has no complete checkpoint to load")
    step, state = restored
    return step, eval_params(state)
