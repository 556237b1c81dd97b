"""Why the image networks compute convolutions with ``conv_blocks.canonical_conv``.

The NCSN training step on the digits (``ncsn_conv``, channels [32, 64], batch 128: loss, gradient
and a plain SGD update of every parameter by its gradient) is timed four ways, interleaved over
``--rounds`` rounds, compile excluded:

* **canonical_conv in scan**: the library's network, ``--steps`` steps fused in one ``lax.scan``
  (what ``dsm train`` runs): XLA's convolution, its backward pass written as two more forward
  convolutions in XLA:CPU's canonical NHWC/HWIO layout;
* **patch_conv in scan**: the same with im2col + one matmul per convolution (the library's
  formulation until 2026-12-02);
* **XLA conv in scan**: the same network with ``nnx.Conv``'s own ``lax.conv_general_dilated``
  (JAX's transpose rules for the backward pass);
* **XLA conv, one jit per step**: the same, dispatched step by step (no while loop).

Every timed call returns the parameters after its ``--steps`` updates and is blocked on, so every
gradient leaf (in particular every weight-gradient convolution) is computed: XLA removes whatever
does not reach an output. (Until 2026-12-02 the scanned contenders summed only the first gradient
leaf, and XLA dropped the rest of the backward pass.) All contenders start from the same
parameters and do the same steps; their final parameters are compared (``max_param_diff``).

On XLA:CPU JAX's gradient convolutions (``b01f_01oi`` and ``f01b_i01o->01bf`` layouts) run many
times slower inside a ``while`` loop than outside one, where XLA rewrites them to its canonical
layout; written in that layout they are fast in the loop too. Prints ms per step and writes
``--out`` JSON.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import loadavg, machine_info  # noqa: E402

LR = 1e-3  # the SGD step that makes every gradient leaf reach the timed function's output

# name -> (how the convolutions are computed, steps fused in one lax.scan?)
CONTENDERS = {
    "canonical_conv in scan": ("canonical", True),
    "patch_conv in scan": ("patch", True),
    "XLA conv in scan": ("xla", True),
    "XLA conv, one jit per step": ("xla", False),
}


def convolution(kind: str):
    import jax.lax

    from dsmcli.models import conv_blocks

    return {"canonical": conv_blocks.canonical_conv, "patch": conv_blocks.patch_conv,
            "xla": jax.lax.conv_general_dilated}[kind]  # xla: nnx.Conv's default


def build(kind: str, channels=(32, 64)):
    from dsmcli import config, experiment
    from dsmcli.models import conv_blocks

    original = conv_blocks.CONVOLUTION["fn"]
    conv_blocks.CONVOLUTION["fn"] = convolution(kind)
    try:
        raw = {"name": "b", "data": {"kind": "digits"}, "objective": {"kind": "ncsn"},
               "model": {"kind": "ncsn_conv", "channels": list(channels)}}
        return experiment.build(config.validate(raw, "bench"))
    finally:
        conv_blocks.CONVOLUTION["fn"] = original


def step_functions(exp, x):
    """``(grad, step)``: ``grad(p, t)`` the gradient pytree of the loss at step ``t`` (its own noise
    key), ``step(p, t)`` the parameters after one SGD update by *all* of it."""
    import jax

    def grad(p, t):
        key = jax.random.fold_in(jax.random.key(0), t)
        return jax.grad(lambda q: exp.objective.loss(exp.net(q), x, key, None)[0])(p)

    def step(p, t):
        return jax.tree.map(lambda w, g: w - LR * g, p, grad(p, t))

    return grad, step


def make_call(step, params, steps: int, fused: bool):
    """A compiled ``call(p)``: the parameters after ``steps`` SGD steps from ``p``, blocked on.
    ``fused``: one dispatch of a ``lax.scan`` carrying the parameters; else one ``jax.jit``
    dispatch per step."""
    import jax
    import jax.numpy as jnp

    if fused:
        def run(p):
            return jax.lax.scan(lambda q, t: (step(q, t), None), p, jnp.arange(steps))[0]

        fn = jax.jit(run).lower(params).compile()
        return lambda p: jax.block_until_ready(fn(p))
    fn = jax.jit(step).lower(params, 0).compile()

    def call(p):
        for t in range(steps):
            p = fn(p, t)
        return jax.block_until_ready(p)

    return call


def contenders(steps: int, batch: int, names=None, channels=(32, 64)) -> dict:
    """name -> ``{"call", "params", "grad"}`` for the contenders in ``names`` (default all):
    ``call(params)`` is the timed function (compiled), ``grad(p, t)`` the gradient of step ``t``
    (one function per network, shared by its contenders), for checks. ``channels``: the U-Net's
    (the benchmark's [32, 64]; the tests use a smaller one)."""
    import jax.numpy as jnp

    out, built = {}, {}
    for name in names or CONTENDERS:
        kind, fused = CONTENDERS[name]
        if kind not in built:
            exp = build(kind, channels)
            built[kind] = (exp, *step_functions(exp, jnp.asarray(exp.data.x_train[:batch])))
        exp, grad, step = built[kind]
        out[name] = {"call": make_call(step, exp.params, steps, fused), "params": exp.params, "grad": grad}
    return out


def max_param_diff(a, b) -> float:
    import jax
    import numpy as np

    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results_conv.json"))
    args = ap.parse_args(argv)
    started = _dt.datetime.now(_dt.timezone.utc)
    load_before = loadavg()
    runs = contenders(args.steps, args.batch)
    final = {name: c["call"](c["params"]) for name, c in runs.items()}  # first execution: not timed
    times = {k: [] for k in runs}
    for _ in range(args.rounds):
        for name, c in runs.items():
            t0 = time.perf_counter()
            c["call"](c["params"])
            times[name].append((time.perf_counter() - t0) / args.steps * 1e3)
    best = {k: min(v) for k, v in times.items()}
    ref = next(iter(final))
    diffs = {k: max_param_diff(final[ref], v) for k, v in final.items() if k != ref}
    for k, v in best.items():
        print(f"{k:30s} {v:8.1f} ms/step   ({best['XLA conv in scan'] / v:.2f}× XLA conv in scan, "
              f"{best['patch_conv in scan'] / v:.2f}× patch_conv in scan)")
    print(f"max |Δ final params| vs {ref}: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
    Path(args.out).write_text(json.dumps({
        "machine": machine_info(), "date": started.isoformat(timespec="seconds"),
        "load_before": load_before, "load_after": loadavg(),
        "timed": f"loss, gradient and an SGD update (lr {LR}) of every parameter per step; the call returns "
                 "the final parameters and is blocked on",
        "ms_per_step_best": best, "all": times, "steps": args.steps, "batch": args.batch,
        "rounds": args.rounds, "max_param_diff_vs_" + ref.replace(" ", "_"): diffs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
