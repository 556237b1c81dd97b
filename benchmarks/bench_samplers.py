"""Sampler throughput: annealed Langevin dynamics on a 2-D mixture with its exact smoothed score,
JAX through the library against the same loop in PyTorch eager.

Target: p = 0.8·N((5, 5), I) + 0.2·N((−5, −5), I). Its σ-smoothed score is exact,

    ∇log q_σ(x) = Σₖ rₖ(x, σ) · (−(x − μₖ)/(1 + σ²)),   rₖ = softmaxₖ(log wₖ + log N(x; μₖ, (1 + σ²)I)).

Sampler (Song & Ermon 2019, Algorithm 1): 10 noise levels geometric from σ = 20 to 1, T steps
per level of x ← x + (αᵢ/2) s(x, σᵢ) + √αᵢ z with αᵢ = ε σᵢ²/σ_L², ε = 0.1; particles start
uniform on [−8, 8]².

Contenders (same math, same float32, same schedule):

* **JAX, library**: ``dsmcli.samplers.annealed_langevin.run`` with a ``Target`` whose
  ``score_at`` is ``dsmcli.data.mixture.GaussianMixture.score`` (the general K-component
  responsibilities, computed in log space), jit-compiled: every step of the schedule in one
  ``lax.scan`` (compile time excluded, reported);
* **PyTorch eager**: the same update written as a Python loop over steps (2 intra-op threads,
  ``torch.set_num_threads(2)``), the score with the same (N, K, D) log-space softmax, the update
  in place into preallocated buffers. Also run with 1 thread: on 2 cores already carrying other
  jobs, PyTorch's 2-thread kernels spend much of their time waiting for a descheduled thread, and
  the 1-thread loop is then several times faster (measured side by side, reported as such).

Supplementary (``closed form``): both backends with the score specialised to two components of
equal variance, where the log-odds are linear in x: r₂ = sigmoid(a·x + b) and
s = (μ₁ − x + r₂(μ₂ − μ₁))/(1 + σ²); JAX still runs the library's sampler, with this ``score_at``.
It separates the cost of the general mixture score from that of the sampler loop.

Sizes: 10⁴ particles with the full schedule (10 levels × 100 steps = 1000 steps), best of
``--rounds`` (default 3) interleaved rounds. 10⁶ particles: by default the *same per-step work*
over a shortened schedule, 10 levels × ``--large-steps`` (default 5) steps, best of 2 rounds,
because one full 1000-step run of 10⁶ particles takes ~3–4 minutes per contender on 2 shared
cores; ``--full`` runs the full 10 × 100 schedule at 10⁶ once per contender (~15 minutes). A
contender stops repeating once its rounds add up to ``CAP_S`` (PyTorch with 2 threads under
contention). Throughput is particle-steps per second (particles × steps / wall time of the whole
run).

Checks that the work is equal: each particle is assigned to the nearer mean and the mode weights
are compared (i) with the true 0.8/0.2 after the full schedule (tolerance 0.04, as in
``tests/test_samplers.py``; finite-step annealed Langevin is slightly biased) and (ii) across
contenders on the same schedule (the shortened schedule does not reach 0.8/0.2, so there the
backends must agree with each other). Peak memory of the process (``ru_maxrss``) is recorded
before and after the 10⁶ runs.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_samplers.py            # 10⁴ and 10⁶ (shortened), ~3 min
    .venv/bin/python benchmarks/bench_samplers.py --quick    # 10⁴ only, one round
    .venv/bin/python benchmarks/bench_samplers.py --full     # 10⁶ with the full 1000-step schedule

Writes ``benchmarks/results_samplers.json`` and ``benchmarks/samplers.md`` (``--quick`` writes
``*_quick`` variants).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import loadavg  # noqa: E402
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

MEANS = np.array([[5.0, 5.0], [-5.0, -5.0]])
WEIGHTS = np.array([0.8, 0.2])
STD = 1.0
SIGMA_MAX, SIGMA_MIN, N_SIGMAS = 20.0, 1.0, 10
STEP_SIZE = 0.1
STEPS_PER_LEVEL = 100
INIT_LOW, INIT_HIGH = -8.0, 8.0
TORCH_THREADS = 2
WEIGHT_TOL = 0.04  # |ŵ₁ − 0.8| after the full schedule
AGREE_TOL = {10_000: 0.03, 1_000_000: 0.005}  # |ŵ₁(a) − ŵ₁(b)| between contenders, ~5 s.e.

CONTENDERS = ("jax_library", "torch_eager", "torch_eager_1t",
              "jax_closed_form", "torch_closed_form", "torch_closed_form_1t")
LABELS = {
    "jax_library": "JAX, library (`annealed_langevin.run` + `GaussianMixture.score`)",
    "torch_eager": f"PyTorch eager ({TORCH_THREADS} threads), same math",
    "torch_eager_1t": "PyTorch eager (1 thread), same math",
    "jax_closed_form": "JAX, library sampler + 2-component closed-form score",
    "torch_closed_form": f"PyTorch eager ({TORCH_THREADS} threads), 2-component closed-form score",
    "torch_closed_form_1t": "PyTorch eager (1 thread), 2-component closed-form score",
}
CAP_S = 30.0  # a contender stops repeating once its rounds add up to this (PyTorch under contention)
LARGE_STEPS = 5  # steps per level at 10⁶ particles unless --full


def schedule() -> tuple[np.ndarray, np.ndarray]:
    sigmas = np.geomspace(SIGMA_MAX, SIGMA_MIN, N_SIGMAS)
    return sigmas, STEP_SIZE * sigmas**2 / sigmas[-1] ** 2


def mode_weight(x: np.ndarray) -> tuple[float, float]:
    """(fraction nearer μ₁ = (5, 5), fraction non-finite)."""
    finite = np.isfinite(x).all(1)
    d1 = np.sum((x - MEANS[0]) ** 2, 1)
    d2 = np.sum((x - MEANS[1]) ** 2, 1)
    return float(np.mean(finite & (d1 < d2))), float(1 - finite.mean())


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --------------------------------------------------------------------------------------- JAX


class JaxRunner:
    """The library's annealed Langevin sampler, jit-compiled for one (n, steps per level)."""

    def __init__(self, n: int, steps: int, closed_form: bool):
        import jax

        from dsmcli.config import SampleConfig
        from dsmcli.data.mixture import GaussianMixture
        from dsmcli.samplers import Target, annealed_langevin

        gm = GaussianMixture(MEANS, WEIGHTS, stds=[STD, STD])
        score_at = closed_form_score_jax if closed_form else gm.score
        target = Target(score=lambda x: score_at(x, 0.0), score_at=score_at, description="2-D mixture, exact score")
        cfg = SampleConfig(kind="annealed_langevin", n=n, steps=steps, step_size=STEP_SIZE,
                           sigma_max=SIGMA_MAX, sigma_min=SIGMA_MIN, n_sigmas=N_SIGMAS)
        annealed_langevin.check(target, cfg)
        self.n, self.steps = n, steps
        x0 = self._init(0)
        t0 = time.perf_counter()
        fn = jax.jit(lambda x, k: annealed_langevin.run(target, x, k, cfg)[0])
        self.compiled = fn.lower(x0, jax.random.key(0)).compile()
        self.compile_s = time.perf_counter() - t0

    def _init(self, seed: int):
        import jax

        return jax.random.uniform(jax.random.key(1000 + seed), (self.n, 2), minval=INIT_LOW, maxval=INIT_HIGH)

    def run(self, seed: int) -> tuple[float, np.ndarray]:
        import jax

        x0 = jax.block_until_ready(self._init(seed))
        t0 = time.perf_counter()
        x = jax.block_until_ready(self.compiled(x0, jax.random.key(seed)))
        dt = time.perf_counter() - t0
        return dt, np.asarray(x)


class JaxNoiseOnly(JaxRunner):
    """Diagnostic: the sampler's noise alone (x ← x + √α z with the same per-step keys), to show what
    share of a JAX step is the threefry draw of z."""

    def __init__(self, n: int, steps: int):
        import jax
        import jax.numpy as jnp

        self.n, self.steps = n, steps
        total = steps * N_SIGMAS

        def noise(x, key):
            def step(x, t):
                return x + 0.3 * jax.random.normal(jax.random.fold_in(key, t), x.shape, x.dtype), None

            return jax.lax.scan(step, x, jnp.arange(total))[0]

        t0 = time.perf_counter()
        self.compiled = jax.jit(noise).lower(self._init(0), jax.random.key(0)).compile()
        self.compile_s = time.perf_counter() - t0


def closed_form_score_jax(x, sigma):
    """Exact smoothed score of the two equal-variance components: r₂ = sigmoid(a·x + b)."""
    import jax
    import jax.numpy as jnp

    v = STD**2 + sigma**2
    mu1, mu2 = jnp.asarray(MEANS[0], x.dtype), jnp.asarray(MEANS[1], x.dtype)
    a = (mu2 - mu1) / v
    b = math.log(WEIGHTS[1] / WEIGHTS[0]) - (float(MEANS[1] @ MEANS[1]) - float(MEANS[0] @ MEANS[0])) / (2 * v)
    r2 = jax.nn.sigmoid(x @ a + b)[:, None]
    return (mu1 - x + r2 * (mu2 - mu1)) / v


# ----------------------------------------------------------------------------------- PyTorch


class TorchRunner:
    """The same annealed Langevin loop in PyTorch eager (float32, in-place updates)."""

    def __init__(self, n: int, steps: int, closed_form: bool, threads: int = TORCH_THREADS):
        import torch

        self.torch = torch
        self.n, self.steps, self.closed_form, self.threads = n, steps, closed_form, threads
        self.compile_s = 0.0
        self.mu = torch.tensor(MEANS, dtype=torch.float32)  # (K, D)
        self.logw = torch.log(torch.tensor(WEIGHTS, dtype=torch.float32))  # (K,)
        self.std2 = torch.full((len(WEIGHTS),), STD**2, dtype=torch.float32)  # (K,)
        self.x = torch.empty((n, 2), dtype=torch.float32)
        self.z = torch.empty((n, 2), dtype=torch.float32)
        self._loop(1, 0)  # warm-up: thread pool, allocator (1 step per level)

    def score_mixture(self, x, sigma: float):
        """GaussianMixture.score's math: log-space responsibilities over K, (N, K, D) differences."""
        torch = self.torch
        d = x.shape[1]
        var = self.std2 + sigma**2  # (K,)
        diff = x.unsqueeze(1) - self.mu  # (N, K, D)
        maha = diff.square().sum(-1) / var  # (N, K)
        logp = self.logw - 0.5 * (maha + d * torch.log(var) + d * math.log(2 * math.pi))
        resp = torch.softmax(logp, dim=1)  # (N, K)
        return (resp.unsqueeze(-1) * (-diff / var[None, :, None])).sum(1)

    def score_closed_form(self, x, sigma: float):
        torch = self.torch
        v = STD**2 + sigma**2
        mu1, mu2 = self.mu[0], self.mu[1]
        a = (mu2 - mu1) / v
        b = math.log(WEIGHTS[1] / WEIGHTS[0]) - (float(MEANS[1] @ MEANS[1]) - float(MEANS[0] @ MEANS[0])) / (2 * v)
        r2 = torch.sigmoid(x @ a + b).unsqueeze(1)
        return (mu1 - x + r2 * (mu2 - mu1)) / v

    def _loop(self, steps: int, seed: int):
        torch = self.torch
        torch.set_num_threads(self.threads)
        g = torch.Generator().manual_seed(seed)
        x, z = self.x, self.z
        torch.rand((self.n, 2), generator=g, out=x)
        x.mul_(INIT_HIGH - INIT_LOW).add_(INIT_LOW)
        score = self.score_closed_form if self.closed_form else self.score_mixture
        sigmas, alphas = schedule()
        with torch.no_grad():
            for sigma, alpha in zip(sigmas.tolist(), alphas.tolist()):
                half, root = 0.5 * alpha, math.sqrt(alpha)
                for _ in range(steps):
                    x.add_(score(x, sigma), alpha=half)
                    torch.randn((self.n, 2), generator=g, out=z)
                    x.add_(z, alpha=root)
        return x

    def run(self, seed: int) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        x = self._loop(self.steps, seed)
        dt = time.perf_counter() - t0
        return dt, x.numpy().copy()


# ------------------------------------------------------------------------------------ driver


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine() -> dict:
    """The shared machine description plus the JAX backend and devices."""
    import jax

    from benchmarks.common import machine_info

    return {**machine_info(), "jax_backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}

def bench_size(n: int, steps: int, rounds: int) -> dict:
    total_steps = steps * N_SIGMAS
    rss_before = max_rss_mib()
    load_before = loadavg()
    runners = {}
    for name in CONTENDERS:
        closed_form = "closed_form" in name
        if name.startswith("jax"):
            runners[name] = JaxRunner(n, steps, closed_form)
        else:
            runners[name] = TorchRunner(n, steps, closed_form, threads=1 if name.endswith("_1t") else TORCH_THREADS)
    noise_only = JaxNoiseOnly(n, steps)  # diagnostic, timed in the same rounds
    noise_times = []
    times = {name: [] for name in CONTENDERS}
    weights = {name: [] for name in CONTENDERS}
    nonfinite = {name: 0.0 for name in CONTENDERS}
    rss_after = {}
    for r in range(rounds):
        for name, runner in runners.items():
            if r > 0 and sum(times[name]) > CAP_S:
                continue  # enough of this one: keep the run within a few minutes
            dt, x = runner.run(seed=r)
            times[name].append(dt)
            w, bad = mode_weight(x)
            weights[name].append(w)
            nonfinite[name] = max(nonfinite[name], bad)
            rss_after[name] = max_rss_mib()
            log(f"  n={n} steps={total_steps} round {r + 1}/{rounds} {name}: {dt:.2f} s, "
                f"{n * total_steps / dt / 1e6:.2f} M particle-steps/s, mode weight {w:.4f}, load {loadavg()}")
        noise_times.append(min(noise_only.run(seed=r)[0] for _ in range(2)))
    full = steps == STEPS_PER_LEVEL
    out = {"n": n, "steps_per_level": steps, "total_steps": total_steps, "full_schedule": full,
           "rounds": rounds, "cap_s": CAP_S, "load_before": load_before, "load_after": loadavg(),
           "max_rss_mib_before": round(rss_before, 1), "contenders": {}}
    for name in CONTENDERS:
        best = min(times[name])
        out["contenders"][name] = {
            "label": LABELS[name],
            "seconds_best": best,
            "seconds_median": statistics.median(times[name]),
            "seconds_all": [round(t, 3) for t in times[name]],
            "rounds_run": len(times[name]),
            "particle_steps_per_s_best": n * total_steps / best,
            "particle_steps_per_s_median": n * total_steps / statistics.median(times[name]),
            "compile_s": round(runners[name].compile_s, 3),
            "mode_weight_1": float(np.mean(weights[name])),
            "mode_weight_1_all": [round(w, 5) for w in weights[name]],
            "nonfinite_fraction": nonfinite[name],
            "max_rss_mib_after": round(rss_after[name], 1),
        }
    c = out["contenders"]
    out["jax_noise_only_seconds_best"] = min(noise_times)
    out["jax_noise_only_seconds_all"] = [round(t, 4) for t in noise_times]
    out["jax_over_torch"] = c["torch_eager"]["seconds_best"] / c["jax_library"]["seconds_best"]
    out["jax_over_torch_1t"] = c["torch_eager_1t"]["seconds_best"] / c["jax_library"]["seconds_best"]
    out["closed_form_jax_over_torch"] = c["torch_closed_form"]["seconds_best"] / c["jax_closed_form"]["seconds_best"]
    out["closed_form_jax_over_torch_1t"] = c["torch_closed_form_1t"]["seconds_best"] / c["jax_closed_form"]["seconds_best"]
    out["library_score_over_closed_form_jax"] = c["jax_library"]["seconds_best"] / c["jax_closed_form"]["seconds_best"]

    # equal work: all finite, same mode weights across contenders, ≈ 0.8/0.2 after the full schedule
    ws = [c[name]["mode_weight_1"] for name in CONTENDERS]
    spread = max(ws) - min(ws)
    tol = AGREE_TOL.get(n, 5 * math.sqrt(0.16 / n) * math.sqrt(2) + 1e-3)
    checks = {
        "all_finite": all(c[name]["nonfinite_fraction"] == 0 for name in CONTENDERS),
        "mode_weight_spread": spread,
        "mode_weight_spread_tol": tol,
        "contenders_agree": spread <= tol,
    }
    if full:
        checks["true_weight_tol"] = WEIGHT_TOL
        checks["weights_match_truth"] = all(abs(w - WEIGHTS[0]) <= WEIGHT_TOL for w in ws)
    out["checks"] = checks
    failed = [k for k in ("all_finite", "contenders_agree", "weights_match_truth") if checks.get(k) is False]
    if failed:
        log(f"  CHECK FAILED at n={n}: {failed} ({checks})")
    return out


def fmt_rate(v: float) -> str:
    return f"{v / 1e6:.2f} M" if v < 1e8 else f"{v / 1e6:.0f} M"


def _cell(c: dict, digits: int = 1) -> str:
    return f"{fmt_rate(c['particle_steps_per_s_best'])} ({c['seconds_best']:.{digits}f} s)"


def _sched(row: dict) -> str:
    return f"{row['total_steps']}" + ("" if row["full_schedule"] else f" ({N_SIGMAS}×{row['steps_per_level']})")


def table(rows: list[dict]) -> str:
    lines = [
        f"| particles | steps | JAX library | PyTorch eager, {TORCH_THREADS} threads | PyTorch eager, 1 thread "
        f"| JAX / PyTorch {TORCH_THREADS}t | JAX / PyTorch 1t | mode weights JAX · PyTorch {TORCH_THREADS}t · 1t "
        "| JAX compile | peak RSS after |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        c = row["contenders"]
        j, t, t1 = c["jax_library"], c["torch_eager"], c["torch_eager_1t"]
        lines.append(
            f"| {row['n']:,} | {_sched(row)} | {_cell(j)} | {_cell(t)} | {_cell(t1)} "
            f"| {row['jax_over_torch']:.2f}× | {row['jax_over_torch_1t']:.2f}× "
            f"| {j['mode_weight_1']:.3f} · {t['mode_weight_1']:.3f} · {t1['mode_weight_1']:.3f} "
            f"| {j['compile_s']:.1f} s | {max(v['max_rss_mib_after'] for v in c.values()):.0f} MiB |"
        )
    return "\n".join(lines)


def supplementary_table(rows: list[dict]) -> str:
    lines = [
        f"| particles | steps | JAX, closed form | PyTorch {TORCH_THREADS}t, closed form | PyTorch 1t, closed form "
        f"| JAX / PyTorch {TORCH_THREADS}t | JAX / PyTorch 1t | mode weights JAX · {TORCH_THREADS}t · 1t "
        "| JAX library ÷ JAX closed form (time) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        c = row["contenders"]
        j, t, t1 = c["jax_closed_form"], c["torch_closed_form"], c["torch_closed_form_1t"]
        lines.append(
            f"| {row['n']:,} | {_sched(row)} | {_cell(j, 2)} | {_cell(t, 2)} | {_cell(t1, 2)} "
            f"| {row['closed_form_jax_over_torch']:.2f}× | {row['closed_form_jax_over_torch_1t']:.2f}× "
            f"| {j['mode_weight_1']:.3f} · {t['mode_weight_1']:.3f} · {t1['mode_weight_1']:.3f} "
            f"| {row['library_score_over_closed_form_jax']:.1f}× |"
        )
    return "\n".join(lines)


def reading(rows: list[dict]) -> str:
    """Conclusions computed from the numbers (so the text stays true on a re-run)."""

    def sec(row, name):
        return row["contenders"][name]["seconds_best"]

    def per_step_ms(row, name):
        return 1e3 * sec(row, name) / row["total_steps"]

    def each(fn, fmt="{:.1f}"):
        return " / ".join(fmt.format(fn(r)) for r in rows)

    sizes = " / ".join({10_000: "10⁴", 1_000_000: "10⁶"}.get(r["n"], f"{r['n']:,}") for r in rows)
    small = rows[0]
    parts = [
        f"Through the library, JAX runs {each(lambda r: r['jax_over_torch'], '{:.2f}')}× the particle-steps per "
        f"second of the PyTorch eager loop with {TORCH_THREADS} threads on the same math ({sizes} particles), "
        f"and {each(lambda r: r['jax_over_torch_1t'], '{:.2f}')}× that of PyTorch with 1 thread. On this "
        f"oversubscribed machine PyTorch with 1 thread was "
        f"{each(lambda r: sec(r, 'torch_eager') / sec(r, 'torch_eager_1t'))}× faster than with {TORCH_THREADS} "
        f"(its parallel kernels wait for descheduled threads), so the 1-thread column is the fairer baseline "
        f"here (on idle cores a second thread would be expected to help at 10⁶; not measurable on this machine)."
    ]
    parts.append(
        f"In both frameworks most of the time is the general mixture score rather than the sampler: with the "
        f"two-component closed-form score the JAX run is "
        f"{each(lambda r: sec(r, 'jax_library') / sec(r, 'jax_closed_form'))}× faster and the 1-thread PyTorch "
        f"run {each(lambda r: sec(r, 'torch_eager_1t') / sec(r, 'torch_closed_form_1t'))}× faster ({sizes}). "
        f"`GaussianMixture.score` works on (N, K, D) arrays with K = D = 2 (a log-space softmax and reductions "
        f"over axes of length 2), which is slow on both CPU backends. The eager loop's own per-step overhead "
        f"is small: PyTorch's 1-thread closed-form loop does a whole step at 10⁴ in "
        f"{per_step_ms(small, 'torch_closed_form_1t'):.2f} ms (mixture score: "
        f"{per_step_ms(small, 'torch_eager_1t'):.2f} ms; JAX library: {per_step_ms(small, 'jax_library'):.2f} ms). "
        f"With the closed form on both sides JAX/PyTorch(1 thread) is "
        f"{each(lambda r: r['closed_form_jax_over_torch_1t'], '{:.2f}')}×, and what is left of JAX's step is "
        f"largely its Gaussian noise: drawing z alone (threefry, same keys, timed in the same rounds) costs "
        f"{each(lambda r: 1e3 * r['jax_noise_only_seconds_best'] / r['total_steps'], '{:.2f}')} ms per step against "
        f"{each(lambda r: per_step_ms(r, 'jax_closed_form'), '{:.2f}')} ms for the whole closed-form step."
    )
    large = next((r for r in rows if r["n"] == 1_000_000), None)
    if large:
        rss = max(v["max_rss_mib_after"] for v in large["contenders"].values())
        parts.append(
            f"Memory: the peak resident size of the whole process (JAX and PyTorch runtimes, every run) was "
            f"{rss:.0f} MiB after the 10⁶-particle runs against {large['max_rss_mib_before']:.0f} MiB before "
            f"them; the particles are 8 MB (10⁶ × 2 float32), so 10⁶ particles fit with room to spare."
        )
    checks = [r["checks"] for r in rows]
    ok_truth = all(ch.get("weights_match_truth", True) for ch in checks)
    ok_agree = all(ch["contenders_agree"] for ch in checks)
    full_w = [(r["contenders"]["jax_library"]["mode_weight_1"], r["contenders"]["torch_eager_1t"]["mode_weight_1"])
              for r in rows if r["full_schedule"]]
    txt = (
        f"Equal work: every contender ran the same schedule and ended with the same mode weights "
        f"({'within' if ok_agree else 'NOT within'} ~5 standard errors of one another)"
    )
    if full_w:
        txt += (f"; after the full 1000-step schedule they are {'≈' if ok_truth else 'NOT ≈'} 0.8/0.2 "
                f"(JAX {full_w[0][0]:.3f}, PyTorch 1 thread {full_w[0][1]:.3f} for the (5, 5) mode: finite-step annealed "
                f"Langevin slightly under-weights the major mode, in both)")
    if large and not large["full_schedule"]:
        w = large["contenders"]["jax_library"]["mode_weight_1"]
        txt += (f"; the shortened schedule used at 10⁶ for time reasons ends at {w:.3f} for (5, 5), short of 0.8 "
                "(too few steps per level for particles to move between modes), which is why it is checked "
                "across backends rather than against 0.8")
    parts.append(txt + ".")
    return " ".join(parts)


def rounds_note(rows: list[dict], args) -> str:
    done = ", ".join(f"{r['rounds']} at {r['n']:,}" for r in rows)
    if args.quick:
        return f"Rounds: {done} (`--quick`: no 10⁶ run)."
    done += f" (a contender stops repeating once its rounds add up to {CAP_S:.0f} s)"
    if args.full:
        return f"Rounds: {done}; 10⁶ uses the full 10×100 schedule."
    steps = rows[-1]["steps_per_level"]
    return (f"Rounds: {done}; 10⁶ uses {N_SIGMAS} levels × {steps} steps: the same per-step work as the full "
            "schedule, but a full 1000-step run of 10⁶ particles takes ~3–4 min per contender here "
            "(`--full` runs it).")


def write_md(result: dict, out_json: Path) -> Path:
    """``samplers[…].md`` next to ``out_json``, from a result dict (a fresh run or a saved JSON)."""
    rows, info = result["rows"], result["machine"]
    flags = argparse.Namespace(quick=result["quick"], full=result.get("full", False))
    started = _dt.datetime.fromisoformat(result["date"])
    loads = [v[0] for r in rows for v in (r["load_before"], r["load_after"]) if v]
    cpu = info.get("cpu_model", "unknown CPU")
    ncpu = info.get("affinity_cpus", info["cpu_count"])
    rel = out_json.relative_to(REPO) if out_json.is_relative_to(REPO) else out_json
    md = [
        "# Sampler throughput: annealed Langevin, JAX (library) vs PyTorch eager",
        "",
        "Annealed Langevin dynamics (10 noise levels geometric σ = 20 → 1, ε = 0.1, αᵢ = ε σᵢ²/σ_L²) on 2-D "
        "particles with the exact smoothed score of 0.8·N((5,5), I) + 0.2·N((−5,−5), I), float32, particles "
        "started uniform on [−8, 8]². Throughput in particle-steps per second (best of the rounds; time of the "
        "whole run in brackets; JAX compile excluded). Mode weights: fraction of particles nearer (5,5), mean "
        "over the rounds each contender ran. "
        f"Produced by `benchmarks/bench_samplers.py`{' --quick' if flags.quick else (' --full' if flags.full else '')}.",
        "",
        table(rows),
        "",
        "Supplementary: the same two loops with the score specialised to two equal-variance components "
        "(log-odds linear in x, responsibility = sigmoid); JAX still through `annealed_langevin.run`.",
        "",
        supplementary_table(rows),
        "",
        reading(rows),
        "",
        rounds_note(rows, flags),
        "",
        f"Machine: {cpu}, {ncpu} CPU cores available to the process, {info.get('mem_gib', '?')} GiB RAM, JAX "
        f"{info['versions']['jax']} ({info['jax_backend']}), PyTorch {info['versions']['torch']}, {info['platform']}. "
        f"Date: {started.strftime('%Y-%m-%d %H:%M %Z')}. The cores were shared with other jobs: 1-minute load "
        f"average {min(loads):.1f}–{max(loads):.1f} during the run (on {ncpu} cores), so absolute rates are "
        f"pessimistic and repeat runs differ by up to ~2× in places; contenders were interleaved round by round "
        f"so the ratios within a run compare like with like. Wall time {result['wall_s']:.0f} s. Raw numbers "
        f"(all rounds, medians, compile times, memory, checks): `{rel}`.",
        "",
    ]
    out_md = out_json.with_name(out_json.stem.removeprefix("results_") + ".md")
    out_md.write_text("\n".join(md))
    return out_md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10⁴ particles only, one round (smoke run)")
    ap.add_argument("--full", action="store_true", help="10⁶ particles with the full 10×100 schedule (one round)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds at 10⁴ (default 3; 1 with --quick)")
    ap.add_argument("--large-steps", type=int, default=LARGE_STEPS,
                    help=f"steps per level at 10⁶ particles without --full (default {LARGE_STEPS})")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results_samplers[_quick].json); the "
                    "markdown goes next to it, named without 'results_'")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="only rewrite the markdown (and the JSON's reading) from a saved result, no run")
    args = ap.parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        result["reading"] = reading(result["rows"])
        args.render.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {write_md(result, args.render.resolve())}")
        return 0
    suffix = "_quick" if args.quick else ""
    out_json = (args.out or REPO / "benchmarks" / f"results_samplers{suffix}.json").resolve()

    started = _dt.datetime.now().astimezone()
    t0 = time.perf_counter()
    info = machine()
    plan = [(10_000, STEPS_PER_LEVEL, args.rounds or (1 if args.quick else 3))]
    if not args.quick:
        plan.append((1_000_000, STEPS_PER_LEVEL, 1) if args.full else (1_000_000, args.large_steps, 2))
    log(f"bench_samplers: {plan} (n, steps per level, rounds); load {loadavg()}")
    rows = [bench_size(*p) for p in plan]
    wall = time.perf_counter() - t0

    text = reading(rows)
    print(table(rows))
    print()
    print(supplementary_table(rows))
    print()
    print(text)

    result = {
        "benchmark": "annealed Langevin sampler throughput",
        "date": started.isoformat(timespec="seconds"),
        "wall_s": round(wall, 1),
        "quick": args.quick,
        "full": args.full,
        "setup": {"mixture": {"means": MEANS.tolist(), "weights": WEIGHTS.tolist(), "std": STD},
                  "sigmas": schedule()[0].tolist(), "alphas": schedule()[1].tolist(), "step_size": STEP_SIZE,
                  "init": f"uniform [{INIT_LOW}, {INIT_HIGH}]^2", "dtype": "float32",
                  "torch_threads": TORCH_THREADS,
                  "timing": "wall time of a whole sampler run (JAX: one compiled dispatch; compile excluded), "
                            "best of the rounds; contenders interleaved round by round"},
        "machine": info,
        "load_end": loadavg(),
        "rows": rows,
        "reading": text,
    }
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    out_md = write_md(result, out_json)
    log(f"wrote {out_json} and {out_md} ({wall:.0f} s)")
    failed = any(r["checks"].get(k) is False for r in rows for k in ("all_finite", "contenders_agree", "weights_match_truth"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
