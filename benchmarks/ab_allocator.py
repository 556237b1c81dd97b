"""Do the conv NCSN step's page faults cost time? glibc's default allocator against one that keeps
freed memory, in alternating processes.

Every dispatch of the 28×28 training step (2 fused steps, batch 128) takes ~117 700 minor page
faults: XLA:CPU's buffers are allocated per execution, and glibc returns every chunk above its
mmap threshold (and every chunk of a thread's arena that ``new_heap`` cannot hold) to the kernel
on free, so the next dispatch faults ~460 MB in again. The ``keep`` allocator is glibc configured
with ``mallopt`` before JAX starts:

* ``M_ARENA_MAX = 1``: every thread allocates from the main arena (``brk``), since a thread arena
  serves large chunks with ``mmap`` whatever ``M_MMAP_MAX`` says;
* ``M_MMAP_MAX = 0``: no chunk is ``mmap``-ed;
* ``M_TRIM_THRESHOLD = 2³¹ − 1``: freed memory is never returned (an ``int``: a larger Python int
  would be truncated by ctypes to 0, which trims on every free).

Processes alternate (``default``, ``keep``, ``default``, …) so machine drift hits both; each takes
``--dispatches`` timed dispatches after an untimed first one and reports ms per step, the median
and the minor faults of its last dispatch (``resource.getrusage``).

Usage: ``.venv/bin/python benchmarks/ab_allocator.py [--shape 28x28x1] [--pairs 2] [--dispatches 5]``.
Not part of ``make bench``: a one-off question, answered in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8


def keep_freed_memory() -> None:
    libc = ctypes.CDLL("libc.so.6")
    for option, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1)):
        if libc.mallopt(option, value) != 1:
            raise RuntimeError(f"mallopt({option}, {value}) refused")


def measure(allocator: str, shape: str, dispatches: int) -> dict:
    if allocator == "keep":
        keep_freed_memory()  # before JAX exists: its threads must not have arenas yet
    from benchmarks import bench_ncsn_conv as b
    from dsmcli import jaxsetup

    jaxsetup.setup()
    steps = 2
    runner = b.DsmTrain(b.build_experiment(shape, Path(tempfile.mkdtemp()), 128, steps), steps)
    ms, faults = [], 0
    for i in range(dispatches):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        wall, _, info = runner.run(i)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        if not info["finite"]:
            raise RuntimeError("non-finite loss")
        ms.append(round(wall / steps * 1000, 1))
    return {"allocator": allocator, "ms_per_step": ms, "median": statistics.median(ms),
            "faults_per_dispatch": faults,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="28x28x1")
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--dispatches", type=int, default=5)
    p.add_argument("--child", choices=["default", "keep"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(measure(a.child, a.shape, a.dispatches)))
        return 0
    rows = []
    for pair in range(a.pairs):
        order = ("default", "keep") if pair % 2 == 0 else ("keep", "default")
        for allocator in order:
            out = subprocess.run([sys.executable, __file__, "--child", allocator, "--shape", a.shape,
                                  "--dispatches", str(a.dispatches)], check=True, capture_output=True, text=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"pair {pair + 1} {allocator:>7}: median {r['median']:7.1f} ms/step, "
                  f"{r['faults_per_dispatch']:>7} faults/dispatch, max RSS {r['max_rss_mb']} MB  {r['ms_per_step']}")
    for allocator in ("default", "keep"):
        med = statistics.median(r["median"] for r in rows if r["allocator"] == allocator)
        print(f"{allocator:>7}: median of medians {med:.1f} ms/step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
