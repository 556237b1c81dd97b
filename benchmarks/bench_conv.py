"""Why the image networks compute convolutions as im2col + matmul (``conv_blocks.patch_conv``).

The NCSN training step on the digits (``ncsn_conv``, channels [32, 64], batch 128: loss, gradient)
is timed three ways, interleaved over ``--rounds`` rounds, compile excluded:

* **patch_conv in scan**: the library's network, ``--steps`` steps fused in one ``lax.scan``
  (what ``dsm train`` runs);
* **XLA conv in scan**: the same network with ``nnx.Conv``'s own ``lax.conv_general_dilated``;
* **XLA conv, one jit per step**: the same, dispatched step by step (no while loop).

On XLA:CPU the weight-gradient convolution inside a ``while`` loop is many times slower than
outside one; as a matmul it is not. Prints ms per step and writes ``--out`` JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import machine_info  # noqa: E402


def build(use_patch: bool):
    import jax.lax

    from dsmcli import config, experiment
    from dsmcli.models import conv_blocks

    if not use_patch:  # nnx.Conv's default convolution
        original = conv_blocks.patch_conv
        conv_blocks.patch_conv = jax.lax.conv_general_dilated
    try:
        raw = {"name": "b", "data": {"kind": "digits"}, "objective": {"kind": "ncsn"},
               "model": {"kind": "ncsn_conv", "channels": [32, 64]}}
        return experiment.build(config.validate(raw, "bench"))
    finally:
        if not use_patch:
            conv_blocks.patch_conv = original


def runners(steps: int, batch: int):
    import jax
    import jax.numpy as jnp

    out = {}
    for name, use_patch, fused in [("patch_conv in scan", True, True), ("XLA conv in scan", False, True),
                                   ("XLA conv, one jit per step", False, False)]:
        exp = build(use_patch)
        x = jnp.asarray(exp.data.x_train[:batch])

        def grad(p, t, exp=exp, x=x):
            key = jax.random.fold_in(jax.random.key(0), t)
            return jax.grad(lambda q: exp.objective.loss(exp.net(q), x, key, None)[0])(p)

        if fused:
            def run(p, grad=grad):
                body = lambda c, t: (c + jax.tree.leaves(grad(p, t))[0].sum(), None)  # noqa: E731
                return jax.lax.scan(body, 0.0, jnp.arange(steps))[0]

            fn = jax.jit(run).lower(exp.params).compile()
            call = lambda fn=fn, p=exp.params: jax.block_until_ready(fn(p))  # noqa: E731
        else:
            fn = jax.jit(grad).lower(exp.params, 0).compile()

            def call(fn=fn, p=exp.params):
                for t in range(steps):
                    r = fn(p, t)
                jax.block_until_ready(r)
        call()
        out[name] = call
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results_conv.json"))
    args = ap.parse_args(argv)
    contenders = runners(args.steps, args.batch)
    times = {k: [] for k in contenders}
    for _ in range(args.rounds):
        for name, call in contenders.items():
            t0 = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - t0) / args.steps * 1e3)
    best = {k: min(v) for k, v in times.items()}
    for k, v in best.items():
        print(f"{k:30s} {v:8.1f} ms/step   ({best['XLA conv in scan'] / v:.2f}× XLA conv in scan)")
    Path(args.out).write_text(json.dumps({"machine": machine_info(), "ms_per_step_best": best, "all": times,
                                          "steps": args.steps, "batch": args.batch}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
