"""Shared pieces of the benchmark suite: problem sizes, FLOP counts, timing helpers, machine info."""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SIGMA = 0.1
LR = 1e-3


@dataclass(frozen=True)
class Problem:
    """One training problem: data dimension, MLP widths, batch size, steps per measurement."""

    name: str
    dim: int
    hidden: tuple[int, ...]
    batch: int
    n_data: int = 20000

    @property
    def widths(self) -> list[int]:
        return [self.dim, *self.hidden, self.dim]

    def forward_flops(self) -> float:
        """2·B·Σ(in·out) over the Linear layers (activations and bias adds ignored)."""
        return 2.0 * self.batch * sum(a * b for a, b in zip(self.widths[:-1], self.widths[1:]))

    def step_flops(self) -> float:
        """≈ 3 × forward: backward = one matmul for ∂W and one for ∂x per layer."""
        return 3.0 * self.forward_flops()


SMALL = Problem("SMALL", 2, (128, 128), 512)
LARGE = Problem("LARGE", 784, (1024, 1024), 256)


def small_data(n: int = 20000, seed: int = 0) -> np.ndarray:
    """The quickstart mixture: 0.2·N((-5,-5), I) + 0.8·N((5,5), I), float32 (n, 2)."""
    rng = np.random.default_rng(seed)
    comp = rng.random(n) < 0.2
    means = np.where(comp[:, None], -5.0, 5.0)
    return (means + rng.standard_normal((n, 2))).astype(np.float32)


def large_data(n: int = 20000, dim: int = 784, seed: int = 0) -> np.ndarray:
    """A 10-component Gaussian mixture in 784 dims (unit-variance components), float32."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((10, dim)).astype(np.float32)
    comp = rng.integers(0, 10, n)
    return (centers[comp] + rng.standard_normal((n, dim), dtype=np.float32)).astype(np.float32)


def data_for(p: Problem) -> np.ndarray:
    return small_data(p.n_data) if p.dim == 2 else large_data(p.n_data, p.dim)


@dataclass
class Samples:
    """Repeated rate measurements (steps/s or GFLOP/s); higher is better."""

    values: list[float] = field(default_factory=list)

    def add(self, v: float) -> None:
        self.values.append(float(v))

    @property
    def best(self) -> float | None:
        return max(self.values) if self.values else None

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    def as_dict(self) -> dict:
        return {"best": self.best, "median": self.median, "all": [round(v, 3) for v in self.values]}


def timed(fn, *args, **kw) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, out


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    info: dict = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
        info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in flags]
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        rel = dict(
            line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
        )
        info["os"] = rel.get("PRETTY_NAME", "").strip('"')
    except OSError:
        pass
    from importlib import metadata

    versions = {}
    for mod in ("jax", "jaxlib", "flax", "optax", "numpy", "torch"):
        try:  # the installed distribution's version: importing torch would load its runtime here
            versions[mod] = metadata.version(mod)
        except Exception as e:  # noqa: BLE001 - report, don't fail
            versions[mod] = f"n/a ({type(e).__name__})"
    info["versions"] = versions
    return info
