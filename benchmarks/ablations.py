"""A/B ablations of the bare-JAX step, interleaved round by round: what the trainer's extra
per-step work costs, and what the activation costs on XLA:CPU. Reported: best wall-clock round
and the median of steps per CPU-second of this process (less sensitive to other processes'
load than wall clock on a shared machine).

* ``base``: the bare-JAX reference of ``bench_jax`` (dsm's softplus, whose derivative reuses
  the forward exponential: ``dsmcli.models.activations``);
* ``+ grad norm``: plus ``optax.tree.norm(grads)`` every step (what ``dsmcli.train`` did
  before it took the norm once per dispatch);
* ``jax.nn.softplus``: the library's softplus (logaddexp(x, 0) and its derivative) instead;
* ``relu``: no transcendental activation at all (a lower bound on the activation's cost);
* ``XLA_FLAGS=...ynn_fusion_type=+eltwise`` (fresh interpreters, alternated with plain ones):
  XLA:CPU's experimental YNNPACK fusion of elementwise ops, which changes how softplus and the
  other elementwise work are compiled;
* ``trainer step`` / ``trainer step, no grad norm``: ``dsmcli.train.StepFunction`` as is, and
  with ``optax.tree.norm`` replaced by a constant while it is traced (so the logged gradient norm
  is the only difference): what the trainer's gradient norm (now taken at the last step of each
  dispatch, behind a ``lax.cond``) still costs, in its own graph.

Run alone: ``.venv/bin/python benchmarks/ablations.py [--rounds N]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __name__ == "__main__":
    import os

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DSM_COMPILE_CACHE", "0")

from benchmarks import bench_jax  # noqa: E402
from benchmarks.common import LARGE, SMALL, Samples, data_for  # noqa: E402

VARIANTS = {
    "base": {},
    "+ grad norm": {"with_grad_norm": True},
    "jax.nn.softplus": {"act": "jax.nn.softplus"},
    "relu": {"act": "relu"},
}


# short segments, many rounds: on a shared machine, best-of-many short samples is the robust figure
SEGMENT = {"SMALL": {"length": 100, "dispatches": 2}, "LARGE": {"length": 20, "dispatches": 1}}


def _trainer_runners(p, x, length: int, workdir: Path) -> dict:
    """The trainer's compiled step, with and without its gradient norm (see the module doc)."""
    import jax.numpy as jnp
    import optax

    out = {"trainer step": bench_jax.TrainerStepRunner(p, x, workdir / "with_norm", length=length)}
    norm = optax.tree.norm
    optax.tree.norm = lambda tree, *a, **k: jnp.float32(1.0)  # traced inside the constructor
    try:
        out["trainer step, no grad norm"] = bench_jax.TrainerStepRunner(p, x, workdir / "no_norm", length=length)
    finally:
        optax.tree.norm = norm
    return out


YNN_ELTWISE = "--xla_cpu_experimental_ynn_fusion_type=+eltwise"

_CHILD = """
import json, sys, time
from benchmarks import bench_jax
from benchmarks.ablations import SEGMENT
from benchmarks.common import LARGE, SMALL, Samples, data_for
out = {}
for p in (SMALL, LARGE):
    seg = SEGMENT[p.name]
    r = bench_jax.BareRunner(p, data_for(p), length=seg["length"])
    wall, cpu = Samples(), Samples()
    for _ in range(int(sys.argv[1])):
        wall.add(r.segment(seg["dispatches"]))
        cpu.add(r.cpu_rate)
    out[p.name] = {"wall_best": wall.best, "cpu_median": cpu.median}
print(json.dumps(out))
"""


def xla_flag_ab(flags: str = YNN_ELTWISE, alternations: int = 2, rounds: int = 5, log=None) -> dict:
    """Bare-JAX steps/s in fresh interpreters without and with ``XLA_FLAGS=flags``, alternated
    (XLA flags are read once per process, so the two cannot share one)."""
    import json
    import os
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    runs = {"plain": [], "flag": []}
    for _ in range(alternations):
        for tag in ("plain", "flag"):
            env = {**os.environ, "PYTHONPATH": str(repo), "DSM_COMPILE_CACHE": "0"}
            env.pop("XLA_FLAGS", None)
            if tag == "flag":
                env["XLA_FLAGS"] = flags
            if log:
                log(f"ablations: XLA flag A/B, {tag}")
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(rounds)], capture_output=True, env=env,
                                  cwd=repo, timeout=300)
            if proc.returncode != 0:
                return {"error": proc.stderr.decode(errors="replace")[-300:]}
            runs[tag].append(json.loads(proc.stdout.decode().strip().splitlines()[-1]))
    out = {"flags": flags}
    for p in ("SMALL", "LARGE"):
        best = {t: max(r[p]["wall_best"] for r in runs[t]) for t in runs}
        cpu = {t: max(r[p]["cpu_median"] for r in runs[t]) for t in runs}
        out[p] = {"wall_best": best, "cpu_median_best_process": cpu,
                  "flag_over_plain_wall": round(best["flag"] / best["plain"], 3),
                  "flag_over_plain_cpu": round(cpu["flag"] / cpu["plain"], 3)}
    return out


def run(rounds: int = 10, log=None, workdir: Path | None = None) -> dict:
    import tempfile

    out = {}
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="dsm-bench-ablations-")
        workdir = Path(tmp.name)
    for p in (SMALL, LARGE):
        x = data_for(p)
        seg = SEGMENT[p.name]
        runners = {k: bench_jax.BareRunner(p, x, length=seg["length"], **kw) for k, kw in VARIANTS.items()}
        try:
            runners.update(_trainer_runners(p, x, seg["length"], workdir / p.name))
        except Exception as e:  # noqa: BLE001 - trainer internals may change; the bare variants still run
            if log:
                log(f"ablations: trainer-step variants unavailable ({type(e).__name__}: {e})")
        samples = {k: Samples() for k in runners}
        cpu = {k: Samples() for k in runners}
        if log:
            log(f"ablations {p.name}: {rounds} rounds")
        for _ in range(rounds):
            for k, runner in runners.items():
                samples[k].add(runner.segment(seg["dispatches"]))
                cpu[k].add(runner.cpu_rate)
        base, base_cpu = samples["base"].best, cpu["base"].median
        out[p.name] = {
            k: {**v.as_dict(), "best_over_base": round(v.best / base, 3) if base else None,
                "cpu_rate": cpu[k].as_dict(),
                "cpu_median_over_base": round(cpu[k].median / base_cpu, 3) if base_cpu else None}
            for k, v in samples.items()
        }
    if tmp is not None:
        tmp.cleanup()
    try:
        out["xla_ynn_eltwise"] = xla_flag_ab(log=log)
    except Exception as e:  # noqa: BLE001
        out["xla_ynn_eltwise"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return out


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    a = ap.parse_args()
    t0 = time.perf_counter()
    print(json.dumps(run(a.rounds), indent=1))
    print(f"({time.perf_counter() - t0:.0f} s)")
