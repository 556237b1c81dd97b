"""What does progress within a sampling dispatch cost? The library's samplers with their loop as
``progress.scan`` (≤ 25 pieces, a host callback after each) against the same sampler with a plain
``jax.lax.scan``, compiled once each, interleaved in one process; also checks that both give the
same bits.

Workloads: Langevin and MALA (``step_size: auto``, so two loops per dispatch) on a 2-D Gaussian
with a linear score — the cheapest steps there are, where a fixed cost per dispatch shows most.

Usage: ``.venv/bin/python benchmarks/ab_progress.py [--rounds 15]``. Not part of ``make bench``: a
one-off question, answered in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

WORKLOADS = [("langevin", 5000, 1000, {}), ("langevin", 200, 5000, {}), ("langevin", 100, 1037, {}),
             ("mala", 300, 777, {"step_size": "auto", "adapt_steps": 55})]


def compiled(kind: str, n: int, steps: int, options: dict, pieces: bool):
    """The jitted sampler, its loops as ``progress.scan`` (``pieces``) or as ``lax.scan``."""
    import jax
    import jax.numpy as jnp

    from dsmcli import progress
    from dsmcli.config import SampleConfig
    from dsmcli.samplers import REGISTRY, Target

    precision = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    target = Target(score=lambda x: -x @ precision, energy=lambda x: 0.5 * jnp.sum(x * (x @ precision), -1),
                    description="a 2-D Gaussian")
    cfg = SampleConfig(kind=kind, n=n, steps=steps, **options)
    real = progress.scan
    if not pieces:
        progress.scan = lambda f, init, xs, *a, **k: jax.lax.scan(f, init, xs)
    try:
        run = jax.jit(lambda x, key: REGISTRY[kind].run(target, x, key, cfg)[0])
        return run.lower(jax.ShapeDtypeStruct((n, 2), jnp.float32), jax.random.key(0)).compile()
    finally:
        progress.scan = real


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    import jax
    import numpy as np

    print("| sampler | particles | steps | plain scan, best / median ms | progress.scan | same bits |")
    print("|---|---:|---:|---:|---:|---|")
    for kind, n, steps, options in WORKLOADS:
        runs = {p: compiled(kind, n, steps, options, p) for p in (False, True)}
        x0 = jax.random.normal(jax.random.key(3), (n, 2))
        same = np.array_equal(*(np.asarray(f(x0, jax.random.key(4))) for f in runs.values()))
        times = {p: [] for p in runs}
        for _ in range(args.rounds):
            for p, f in runs.items():
                t0 = time.perf_counter()
                jax.block_until_ready(f(x0, jax.random.key(4)))
                times[p].append((time.perf_counter() - t0) * 1e3)
        cells = [f"{min(times[p]):.1f} / {statistics.median(times[p]):.1f}" for p in (False, True)]
        print(f"| {kind} | {n} | {steps} | {cells[0]} | {cells[1]} | {same} |", flush=True)


if __name__ == "__main__":
    main()
