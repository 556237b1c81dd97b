"""JAX process settings applied once before any compilation:

* the persistent compilation cache (repeated runs of the same config skip XLA compilation;
  ``DSM_COMPILE_CACHE=0`` turns it off, ``DSM_COMPILE_CACHE=/path`` moves it);
* the Threefry-2x32 hash behind every ``jax.random`` draw lowered with its 20 rounds unrolled
  on CPU, as JAX lowers it on GPU and TPU. JAX's CPU lowering rolls the rounds into a 5-trip
  ``while`` loop, and a training step draws through six such loops (fold_in, two splits, the
  batch indices, the noise): on XLA:CPU their per-iteration control cost was the largest
  avoidable part of a small step (SMALL DSM step 1.2–1.5× faster unrolled; no change on
  LARGE; BENCHMARKS.md). It is the same function, so every random bit is unchanged
  (tests/test_jaxsetup.py checks the Random123 known answers). It uses JAX's registration of
  the primitive's lowering (``jax._src``); where that has moved, JAX's default stays.
"""

from __future__ import annotations

import os
from pathlib import Path

_done = False


def unroll_threefry_on_cpu() -> bool:
    """Register JAX's unrolled Threefry lowering for the CPU platform (True if it could)."""
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as threefry

        mlir.register_lowering(threefry.threefry2x32_p, threefry._threefry2x32_lowering_rule, platform="cpu")
    except (ImportError, AttributeError):
        return False
    return True


def setup() -> None:
    global _done
    if _done:
        return
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
    unroll_threefry_on_cpu()
    _done = True
