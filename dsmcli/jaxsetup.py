"""JAX process settings, applied before any compilation.

* **Results that do not depend on the number of threads.** XLA:CPU hands reductions to
  YNNPACK by default (``xla_cpu_experimental_ynn_fusion_type`` includes
  ``LIBRARY_FUSION_TYPE_REDUCE``), whose partial sums depend on how many threads the process may
  use: the same config gave different last bits of the gradient on 1 and on 2 cores.
  ``configure_xla_env`` keeps YNNPACK's matrix products and leaves reductions to XLA's own
  emitter, whose order is fixed, so a run gives the same numbers bit for bit whatever cores it
  gets — a worker of ``dsm compare --jobs N`` pinned to some of them, or another machine with
  more (tested; no measurable cost: BENCHMARKS.md). A value already in ``XLA_FLAGS`` wins. It
  must be set before JAX creates its CPU client: the CLI sets it before it imports JAX, and
  ``setup`` again for library use. The other two parts of the guarantee: dense layers' gradient
  products go to YNNPACK too (``models.dense``), and a ``--jobs`` worker sizes its thread pools
  before it is pinned, for the convolutions Eigen computes (``launch.pin_after_jax_starts``).
* **The persistent compilation cache**: repeated runs of the same config skip XLA compilation;
  ``DSM_COMPILE_CACHE=0`` turns it off, ``DSM_COMPILE_CACHE=/path`` moves it.
"""

from __future__ import annotations

import os
from pathlib import Path

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# YNNPACK for individual dot products only (XLA's default adds LIBRARY_FUSION_TYPE_REDUCE).
YNN_DOTS_ONLY = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"

_done = False


def configure_xla_env() -> None:
    """Make XLA:CPU's results independent of the thread count (see the module docstring)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if YNN_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {YNN_FLAG}={YNN_DOTS_ONLY}".strip()


def setup() -> None:
    global _done
    if _done:
        return
    configure_xla_env()
    import jax

    where = os.environ.get("DSM_COMPILE_CACHE", "")
    if where != "0":
        cache = Path(where) if where else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dsm" / "jax"
        try:
            cache.mkdir(parents=True, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", str(cache))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # setup compiles many small kernels
        except OSError:
            pass
    _done = True
