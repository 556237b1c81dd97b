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
* ``+ YNNPACK eltwise``: compiled with the per-compilation XLA option that
  ``dsmcli.xla_options`` gives the training step of small dense networks (YNNPACK fusion of
  elementwise ops on CPU);
* ``+ YNNPACK reductions``: compiled with XLA's default YNNPACK fusion types (individual dots and
  reductions), i.e. without what ``dsmcli.jaxsetup`` sets so that sums do not depend on the
  number of threads: what that costs;
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
    from dsmcli.jaxsetup import configure_xla_env

    configure_xla_env()  # as the CLI and run_all.py

from benchmarks import bench_jax  # noqa: E402
from benchmarks.common import LARGE, SMALL, Samples, data_for  # noqa: E402
from dsmcli.xla_options import ELTWISE_OPTIONS  # noqa: E402

# XLA's own default (reductions handed to YNNPACK, whose sums depend on the thread count): what
# dsmcli.jaxsetup switches off.
YNN_WITH_REDUCE = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"

VARIANTS = {
    "base": {},
    "+ grad norm": {"with_grad_norm": True},
    "jax.nn.softplus": {"act": "jax.nn.softplus"},
    "relu": {"act": "relu"},
    "+ YNNPACK eltwise": {"compiler_options": ELTWISE_OPTIONS},
    "+ YNNPACK reductions": {"compiler_options": {"xla_cpu_experimental_ynn_fusion_type": YNN_WITH_REDUCE}},
}


# short segments, many rounds: on a shared machine, best-of-many short samples is the robust figure
SEGMENT = {"SMALL": {"length": 100, "dispatches": 4}, "LARGE": {"length": 20, "dispatches": 1}}


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
