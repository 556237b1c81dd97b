"""Do XLA:CPU's compile options speed up the conv NCSN training step (issue #17)? The
``bench_ncsn_conv`` step at one shape, compiled once per option set, the variants interleaved in
one process.

Each variant is its own ``train.prepare`` of the same experiment (``bench_ncsn_conv``'s config:
ncsn, ``ncsn_conv`` channels [32, 64], batch 128, Adam) whose ``StepFunction`` is compiled with
that variant's ``compiler_options`` (XLA ``DebugOptions`` fields, for that one compilation). After
an untimed first dispatch the variants take turns, ``--rounds`` dispatches of ``--length`` fused
steps each; each reports its best and median ms per step and its first loss (every variant must
compute the same step).

Options this jaxlib (0.10.2) refuses as compile options, though their names are in its binary:
``xla_cpu_use_multi_output_fusion``, ``xla_cpu_disable_new_fusion_emitters``,
``xla_cpu_disable_tiled_emitter``, ``xla_cpu_flatten_after_fusion``,
``xla_cpu_disable_loop_unrolling``, ``xla_cpu_small_while_loop_byte_threshold``.

Usage: ``.venv/bin/python benchmarks/ab_xla_options.py [--shape 28x28x1] [--rounds 4] [--length 2]
[--variants base,xnnpack,...]``. Not part of ``make bench``: a one-off question, answered in
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_ncsn_conv  # noqa: E402

VARIANTS = {
    "base": {},
    "tiling_propagation": {"xla_cpu_experimental_enable_tiling_propagation": True},
    "xnnpack": {"xla_cpu_use_xnnpack": True},
    "codegen_split_4": {"xla_cpu_parallel_codegen_split_count": 4},
    "old_fusion_emitters": {"xla_cpu_use_fusion_emitters": False},
}


def prepared(exp, options: dict, length: int):
    """The trainer's plan of ``exp`` with its step compiled under ``options``, after one dispatch."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dsmcli import train

    plan = train.prepare(dataclasses.replace(exp, params=jax.tree.map(jnp.copy, exp.params)))
    # prepare compiled the trainer's own step: a step function of the variant's options instead
    plan.step_fn = train.StepFunction(plan.exp, plan.tx, plan.mesh)
    plan.step_fn.compiler_options = dict(options) or None
    t0 = time.perf_counter()
    plan.state, metrics = plan.step_fn(plan.state, plan.x_train, 0, length)
    jax.block_until_ready(plan.state)
    return plan, time.perf_counter() - t0, float(np.mean(jax.device_get(metrics)["loss"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="28x28x1", choices=bench_ncsn_conv.SHAPES)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--length", type=int, default=2, help="fused steps per dispatch")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    import jax

    names = args.variants.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; allowed: {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory() as folder:
        exp = bench_ncsn_conv.build_experiment(args.shape, Path(folder), args.batch, args.length)
        plans, times = {}, {}
        for name in names:
            plans[name], first_s, loss = prepared(exp, VARIANTS[name], args.length)
            times[name] = []
            print(f"{name}: compiled + first dispatch {first_s:.1f} s, loss {loss:.6f}", flush=True)
        for r in range(args.rounds):
            for name, plan in plans.items():
                t0 = time.perf_counter()
                plan.state, metrics = plan.step_fn(plan.state, plan.x_train, (r + 1) * args.length, args.length)
                jax.device_get(metrics)
                jax.block_until_ready(plan.state)
                times[name].append((time.perf_counter() - t0) / args.length * 1000)
    print(f"\n{args.shape}, batch {args.batch}, {args.rounds} rounds of {args.length} steps (ms per step)")
    print("| variant | options | best | median |\n|---|---|---:|---:|")
    for name in names:
        options = ", ".join(f"`{k}={v}`" for k, v in VARIANTS[name].items()) or "(XLA's defaults)"
        print(f"| {name} | {options} | {min(times[name]):.0f} | {statistics.median(times[name]):.0f} |")


if __name__ == "__main__":
    main()
