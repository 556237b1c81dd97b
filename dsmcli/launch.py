"""Where the runs of a ``dsm compare`` go: this process, local worker processes, or Ray.

The unit of work is a *group*: the rows (variant × seed) that share one training config
(variants that differ only in sampling settings share a run). ``run_group`` trains the group's
run — or reuses a completed one with the same training config — and then evaluates and samples
it once per row. It is a plain function of a JSON-able payload, so the same call runs

* in this process (``--jobs 1``, the default);
* in ``--jobs N`` worker processes of a ``concurrent.futures.ProcessPoolExecutor`` (spawned, so
  each starts a fresh JAX). Each worker takes one *slot* for its life: on CPU a share of the
  cores (``sched_setaffinity``; for convolution networks after JAX has sized its thread pools
  from every core: ``pin_after_jax_starts``), on GPUs its own device(s)
  (``CUDA_VISIBLE_DEVICES``) — so workers do not fight over them. A worker that dies (a crash,
  the OOM killer) breaks the pool; the groups it took down are run again, each in a pool of its
  own, and a group whose own worker dies again is that group's error, not the sweep's;
* as tasks on a Ray cluster (``--launcher ray``: ``ray.init(address)``, a local cluster when no
  address is given), each ``num_cpus`` = its share of a node.

Every worker writes into the shared runs directory under the run-directory guarantees (atomic
allocation, one writer per run), and the numbers do not depend on the worker: a worker's XLA
thread pools are those of a plain run (``pin_after_jax_starts``), dense layers and reductions do
not depend on the thread count at all (``models.dense``, ``jaxsetup``), so every run equals a
``dsm train`` of its own ``config.yaml`` bit for bit (tested, for dense and conv networks).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
import traceback
from pathlib import Path

from dsmcli.errors import NothingToSample, UserError


# --------------------------------------------------------------------------- the unit of work
def run_group(payload: dict) -> list[dict]:
    """Train (or reuse) the group's run, then evaluate and sample it for each of its rows.
    Returns one result per row: its status, metrics, run directory and stage events."""
    from dsmcli import api
    from dsmcli.compare import evaluate_run, find_reusable
    from dsmcli.config import validate

    root = Path(payload["root"])
    rows = payload["rows"]
    results = [{"variant": r["variant"], "seed": r["seed"], "events": []} for r in rows]
    t0 = time.perf_counter()
    try:
        cfg = validate(payload["config"], f"variant '{rows[0]['variant']}'")
        run_dir = find_reusable(root, cfg)
        reused = run_dir is not None
        if run_dir is None:
            run_dir, _ = api.train_config(cfg, runs_dir=str(root))
        stage = f"reused {run_dir}" if reused else f"trained in {time.perf_counter() - t0:.1f} s -> {run_dir}"
        for res in results:
            res.update(run_dir=str(run_dir), reused=reused)
        results[0]["events"].append(stage)
    except Exception as e:
        for res in results:
            _fail(res, e)
        return results
    for res, row in zip(results, rows):
        t1 = time.perf_counter()
        try:
            res["metrics"] = evaluate_run(run_dir, row["sample"])
            res["status"] = "completed"
            res["events"].append(f"evaluated and sampled in {time.perf_counter() - t1:.1f} s")
        except Exception as e:
            _fail(res, e)
    return results


def _fail(res: dict, e: BaseException) -> None:
    res.update(status="failed", error=f"{type(e).__name__}: {e}".strip()[:2000], metrics={})
    if not isinstance(e, (UserError, NothingToSample)):
        res["traceback"] = traceback.format_exc(limit=5)
    res["events"].append(f"failed: {res['error'][:300]}")


def _died(group: dict, why: str) -> list[dict]:
    out = []
    for r in group["rows"]:
        res = {"variant": r["variant"], "seed": r["seed"], "events": []}
        res.update(status="failed", error=why, metrics={})
        res["events"].append(f"failed: {why}")
        out.append(res)
    return out


# --------------------------------------------------------------------------- worker slots
def _gpus() -> list[str]:
    """The GPUs this machine would give JAX, without starting JAX (which would take memory)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    if os.environ.get("JAX_PLATFORMS", "").strip() == "cpu" or not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU ")]


def slots(jobs: int) -> list[dict]:
    """One slot per worker: its CPU cores and, on a GPU machine, its devices and environment."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    gpus = _gpus()
    out = []
    for i in range(jobs):
        if jobs <= len(cpus):
            share = cpus[i * len(cpus) // jobs:(i + 1) * len(cpus) // jobs]
        else:
            share = [cpus[i % len(cpus)]]
        env = {}
        if gpus:
            per = max(1, len(gpus) // jobs)
            mine = gpus[(i * per) % len(gpus):(i * per) % len(gpus) + per] if jobs <= len(gpus) else [gpus[i % len(gpus)]]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
            sharing = math.ceil(jobs / len(gpus))
            if sharing > 1:  # several workers on one device: each its share of the memory
                env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
                env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / sharing:.3f}"
        out.append({"cpus": share, "env": env})
    return out


def _worker_init(queue, pools_first: bool) -> None:
    """Runs first in each spawned worker: take a slot, stay quiet, set XLA's flags, pin it (after
    JAX has started when ``pools_first``: ``pools_from_every_core``)."""
    slot = queue.get()
    os.environ.update(slot["env"])
    from dsmcli import console
    from dsmcli.jaxsetup import configure_xla_env

    console.set_quiet(True)
    configure_xla_env()
    if hasattr(os, "sched_setaffinity") and slot["cpus"]:
        if pools_first:
            pin_after_jax_starts(slot["cpus"])
        else:
            os.sched_setaffinity(0, slot["cpus"])


def pools_from_every_core(groups: list[dict]) -> bool:
    """Whether the workers must start JAX before they pin themselves (``pin_after_jax_starts``):
    unless every group trains a network of dense layers only — a model kind marked
    ``THREAD_INDEPENDENT`` (``models.dense``), on data that are not images, whose objectives may
    add convolution networks of their own. A pool of a plain run's size on a worker's share of
    the cores costs time: the 8 runs of the objectives comparison took 175 s with it against
    150 s pinned first (BENCHMARKS.md), so dense sweeps pin first."""
    from dsmcli import data as data_registry
    from dsmcli import models

    def dense_only(cfg: dict) -> bool:
        model = models.REGISTRY.get((cfg.get("model") or {}).get("kind"))
        data = data_registry.REGISTRY.get((cfg.get("data") or {}).get("kind"))
        return getattr(model, "THREAD_INDEPENDENT", False) and data is not None and not getattr(data, "IMAGES", False)

    return not all(dense_only(g["config"]) for g in groups)


def pin_after_jax_starts(cpus) -> None:
    """Start JAX's CPU client with every core this process may use, then move every thread of
    the process to ``cpus``.

    XLA:CPU sizes its thread pools from the cores a process may use when the client starts, and
    how Eigen splits a convolution's or a matrix product's long contracted axis over those
    threads decides the last bits of the result: pinned before JAX started, a worker's conv
    networks gave other bits than a ``dsm train`` on every core (loss 29.636999 against
    29.637003 at step 40 of the digits NCSN). Started first, the pools have a plain run's size
    and the worker computes a plain run's bits; the pinning keeps the workers off each other's
    cores (``sched_setaffinity`` is per thread on Linux, so each thread is moved)."""
    import jax

    jax.devices("cpu")
    tasks = Path("/proc/self/task")
    tids = [int(t) for t in os.listdir(tasks)] if tasks.is_dir() else [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:  # a thread that has ended since the listing
            pass


# --------------------------------------------------------------------------- launchers
def run_local(groups: list[dict], jobs: int, report) -> list[list[dict]]:
    """Run the groups on ``jobs`` workers; ``report(group_index, results)`` as each finishes."""
    if jobs <= 1:
        out = []
        for i, g in enumerate(groups):
            results = run_group(g)
            report(i, results)
            out.append(results)
        return out
    done: dict[int, list[dict]] = {}
    broken = _run_pool(list(range(len(groups))), groups, jobs, report, done)
    for i in broken:  # each again in a pool of its own: a second death is this group's own
        again = _run_pool([i], groups, 1, report, done)
        if again:
            results = _died(groups[i], "its worker process died (killed, out of memory, or a crash) twice")
            report(i, results)
            done[i] = results
    return [done[i] for i in range(len(groups))]


def _run_pool(indices: list[int], groups: list[dict], jobs: int, report, done: dict) -> list[int]:
    """Run ``indices`` on a fresh pool; returns those lost to a broken pool."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    for slot in slots(min(jobs, len(indices))):
        queue.put(slot)
    lost = []
    with ProcessPoolExecutor(max_workers=min(jobs, len(indices)), mp_context=ctx, initializer=_worker_init,
                             initargs=(queue, pools_from_every_core([groups[i] for i in indices]))) as pool:
        futures = {pool.submit(run_group, groups[i]): i for i in indices}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                results = fut.result()
            except BrokenProcessPool:
                lost.append(i)
                continue
            except Exception as e:  # e.g. a result that cannot be sent back
                results = _died(groups[i], f"{type(e).__name__}: {e}"[:500])
            report(i, results)
            done[i] = results
    return lost


def run_ray(groups: list[dict], jobs: int, address: str | None, report) -> list[list[dict]]:
    """Submit every group as a Ray task (at most ``jobs`` CPUs' worth of tasks per node share)."""
    try:
        import ray
    except ImportError:
        raise UserError("--launcher ray: Ray is not installed; pip install 'dsm[ray]' (or pip install ray)") from None
    from dsmcli.jaxsetup import configure_xla_env

    configure_xla_env()
    env = {"XLA_FLAGS": os.environ["XLA_FLAGS"], "DSM_QUIET": "1"}
    for key in ("JAX_PLATFORMS", "DSM_COMPILE_CACHE", "JAX_DISABLE_MOST_OPTIMIZATIONS", "DSM_MEMORY_LIMIT"):
        if key in os.environ:
            env[key] = os.environ[key]
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False,
                     include_dashboard=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UserError(f"--ray-address: cannot connect to Ray at '{address}': {str(e)[:300]}") from None
    try:
        total_cpus = float(ray.cluster_resources().get("CPU", 1.0))
        num_cpus = max(1.0, total_cpus / max(jobs, 1)) if jobs > 1 else 1.0
        task = ray.remote(num_cpus=num_cpus, max_retries=1)(_ray_group)
        refs = {task.remote(g): i for i, g in enumerate(groups)}
        done: dict[int, list[dict]] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = refs[ready[0]]
            try:
                results = ray.get(ready[0])
            except Exception as e:  # the task's worker died, or the node went away
                results = _died(groups[i], f"Ray task failed: {type(e).__name__}: {str(e)[:300]}")
            report(i, results)
            done[i] = results
        return [done[i] for i in range(len(groups))]
    finally:
        if started_here:
            ray.shutdown()


def _ray_group(payload: dict) -> list[dict]:
    from dsmcli import console
    from dsmcli.jaxsetup import configure_xla_env

    console.set_quiet(True)
    configure_xla_env()
    return run_group(payload)
