"""Sizes checked against the machine before anything large is allocated.

A data set, a network, a training step or a sampler that cannot fit would otherwise die in
NumPy or XLA with an out-of-memory traceback (or be killed by the OS), possibly after a run
directory was created. Each is estimated first — data sets from their config or their files'
headers, networks by ``nnx.eval_shape`` (shapes only, nothing allocated), training steps and
samplers by XLA's own ``memory_analysis`` of the compiled program — and compared with the
memory available now: the free device memory reported by the accelerator, or on CPU the
kernel's ``MemAvailable``. ``DSM_MEMORY_LIMIT`` (bytes, or with a suffix: ``512M``, ``8G``)
caps what dsm assumes is available, e.g. on a shared machine.

A refusal is a ``UserError`` (exit 2) that says what needs how much, what is available, and
which setting to lower.
"""

from __future__ import annotations

import os
import re

from dsmcli.errors import UserError

# The share of the available memory an allocation may take (the rest: the Python process,
# XLA's own workspace, fragmentation).
USABLE_FRACTION = 0.9

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", text.lower())
    if not m:
        raise UserError(f"DSM_MEMORY_LIMIT: '{text[:40]}' is not a size (bytes, or e.g. 512M, 8G)")
    return int(float(m[1]) * _UNITS[m[2]])


def fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def available(device=None) -> tuple[int | None, str]:
    """(bytes available, where) on ``device`` (an accelerator's free memory) or the host."""
    where, free = "this machine", None
    if device is not None and getattr(device, "platform", "cpu") != "cpu":
        try:
            stats = device.memory_stats() or {}
            if "bytes_limit" in stats:
                free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
                where = f"{device.platform} device {device.id}"
        except Exception:  # backends without memory statistics
            free = None
    if free is None:
        free, where = _host_available(), "this machine"
    cap = os.environ.get("DSM_MEMORY_LIMIT")
    if cap:
        limit = parse_size(cap)
        free = limit if free is None else min(free, limit)
        where += " (DSM_MEMORY_LIMIT)"
    return free, where


def check(nbytes: float, what: str, fix: str, device=None) -> None:
    """Refuse when ``nbytes`` exceed the usable share of the available memory."""
    free, where = available(device)
    if free is None:
        return
    if nbytes > USABLE_FRACTION * free:
        raise UserError(f"{what} needs ≈ {fmt(nbytes)} of memory, but {fmt(free)} are available on {where}; {fix}")


def compiled_bytes(compiled, *, arguments: bool = True) -> int | None:
    """Peak memory of one call of an XLA executable: arguments (unless ``arguments=False``:
    they exist already), outputs and temporaries, less the outputs that reuse donated
    arguments; None where XLA does not say."""
    try:
        m = compiled.memory_analysis()
    except Exception:
        return None
    if m is None:
        return None
    args = m.argument_size_in_bytes if arguments else 0
    return int(args + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)


def tree_bytes(tree) -> int:
    """Bytes of the arrays (or shape/dtype structs) in a pytree."""
    import jax
    import numpy as np

    return int(sum(np.prod(x.shape, dtype=np.float64) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))
