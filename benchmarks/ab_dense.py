"""Does the thread-count-independent dense layer (``dsmcli.models.dense``) cost time? The SMALL or
LARGE DSM training step with plain ``nnx.Linear`` layers against ``dense.Linear``, interleaved in
one process.

Each variant is its own experiment (the same config and seed, the model built with one or the
other ``dot_general``) prepared by the trainer (``train.prepare``: optimiser, state on the device,
the fused ``StepFunction``); after an untimed first dispatch the two take turns, ``--rounds``
dispatches of ``--length`` fused steps each, and each reports its best and median steps/s.

Usage: ``.venv/bin/python benchmarks/ab_dense.py [--problem SMALL|LARGE] [--rounds 12] [--length N]``.
Not part of ``make bench``: a one-off question, answered in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_dsm, common  # noqa: E402

VARIANTS = ("plain", "dense")


def prepared(raw: dict, variant: str):
    """The trainer's plan for ``raw`` with the MLP's layers built by ``variant``."""
    from flax import nnx
    from jax import lax

    from dsmcli import config, experiment, train
    from dsmcli.models import dense

    original = dense.Linear
    if variant == "plain":
        dense.Linear = lambda a, b, **kw: nnx.Linear(a, b, dot_general=lax.dot_general, **kw)
    try:
        exp = experiment.build(config.validate(raw, f"ab_dense {variant}"))
    finally:
        dense.Linear = original
    return train.prepare(exp)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problem", choices=("SMALL", "LARGE"), default="SMALL")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--length", type=int, default=None, help="steps per dispatch (default 1000 SMALL, 20 LARGE)")
    args = ap.parse_args(argv)
    import jax

    from dsmcli.jaxsetup import setup

    setup()
    problem = {"SMALL": common.SMALL, "LARGE": common.LARGE}[args.problem]
    length = args.length or (1000 if problem is common.SMALL else 20)
    with tempfile.TemporaryDirectory() as tmp:
        path = bench_dsm.write_config(problem, Path(tmp), common.data_for(problem), 10**6, length)
        raw = json.loads(path.read_text())
        plans = {v: prepared(raw, v) for v in VARIANTS}
        rates = {v: [] for v in VARIANTS}
        for r in range(args.rounds + 1):  # round 0: first executions, not timed
            for v, plan in plans.items():
                t0 = time.perf_counter()
                plan.state, metrics = plan.step_fn(plan.state, plan.x_train, r * length, length)
                jax.device_get(metrics)
                jax.block_until_ready(plan.state)
                if r:
                    rates[v].append(length / (time.perf_counter() - t0))
    out = {v: {"best": round(max(x), 1), "median": round(statistics.median(x), 1)} for v, x in rates.items()}
    print(json.dumps({"problem": args.problem, "rounds": args.rounds, "length": length, "steps_per_sec": out}))
    return out


if __name__ == "__main__":
    main()
