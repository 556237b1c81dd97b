"""JAX process settings applied once before any compilation: the persistent compilation cache
(repeated runs of the same config skip XLA compilation; ``DSM_COMPILE_CACHE=0`` turns it off,
``DSM_COMPILE_CACHE=/path`` moves it)."""

from __future__ import annotations

import os
from pathlib import Path

_done = False


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
    _done = True
