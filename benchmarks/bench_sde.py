"""Continuous-time sampler throughput: the predictor–corrector sampler and the probability-flow
ODE of a VP SDE with a noise-conditional MLP score, dsm against the same loops in PyTorch eager.

Setup: VP SDE (β_min = 0.1, β_max = 20, t_eps = 1e-5) on 2-D particles; the score is dsm's
``ncsn_mlp`` (input concat(x, log s(t)), hidden [128, 128], softplus, output divided by s(t), s(t)
the SDE's marginal std), initialised by ``dsmcli.models.build`` with ``nnx.Rngs(0)`` (untrained:
throughput does not depend on the weights, except the adaptive solver's step count). 10⁴
particles, float32, started from the same N(0, I) draws (the VP prior) on both sides.

Contenders (same math, same float32, same particles):

* **PC, dsm**: ``dsmcli.samplers.pc.run`` (reverse-diffusion predictor + 1 Langevin corrector
  step, snr 0.16, N = 200 steps), jit-compiled with the network split by ``nnx.split`` (the
  jitted function takes the parameter pytree as an argument and ``nnx.merge``s it, as the
  trainer and ``dsm sample`` see plain arrays): the whole run one ``lax.scan`` (compile
  excluded, reported). **PC, PyTorch eager**: the same loop in Python over the N steps
  (``torch.no_grad()``, the MLP with the JAX weights copied in; corrector step size from the
  batch-mean norms as ``pc.run``), 2 intra-op threads and 1 thread. Throughput: particle-steps
  per second, particles × N / wall time (one step = one corrector + one predictor update, two
  network evaluations).
* **ODE Heun, dsm**: ``dsmcli.flow.sample`` (diffrax, ``Heun``, 100 fixed steps from t = 1 to
  t_eps, one solve per particle, ``vmap``ped), jit-compiled likewise. **ODE Heun, PyTorch
  eager**: the same Heun loop on the whole batch. Throughput: solves (particles) per second.
* **ODE dopri5, dsm** (dsm only): adaptive ``Dopri5``, rtol = atol = 1e-5 (diffrax's PID
  controller, each particle its own steps); reported with its mean network evaluations per
  particle (nfe).
* **diagnostic, bare JAX Heun on the batch**: the PyTorch loop's algorithm in JAX (one
  ``lax.fori_loop`` over the 100 steps, each on the whole (n, 2) batch, the same network), to
  separate what ``flow.sample``'s per-particle vmapped diffrax solve costs from JAX itself.

Checks that the work is equal: the two networks agree (max |Δ| of the output relative to max |s|
over 1000 points at three times ≤ 1e-4); the dsm and PyTorch Heun end points of the same initial
particles agree (deterministic: max |Δ| ≤ 1e-3); the PC samples of the two sides (different
random streams) have the same per-coordinate mean and std within 5 standard errors.

Rounds: ``--rounds`` (default 3) interleaved rounds, every contender once per round; a contender
stops repeating once its rounds add up to ``CAP_S`` (PyTorch with 2 threads under contention);
best round reported, and the process CPU time of each run.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_sde.py            # 10⁴ particles, 3 rounds, ~2 min
    .venv/bin/python benchmarks/bench_sde.py --quick    # 2,000 particles, one round (smoke run)

Writes ``benchmarks/results_sde.json`` and ``benchmarks/sde.md`` (``--quick``: ``*_quick``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
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
from dsmcli.jaxsetup import configure_xla_env  # noqa: E402

configure_xla_env()  # the XLA flags `dsm sample` runs with (before JAX creates its CPU client)

import numpy as np  # noqa: E402

DIM = 2
HIDDEN = (128, 128)
BETA_MIN, BETA_MAX, T_EPS = 0.1, 20.0, 1e-5
N_PARTICLES = 10_000
PC_STEPS = 200
SNR = 0.16
CORRECTOR_STEPS = 1
ODE_STEPS = 100
RTOL = ATOL = 1e-5
TORCH_THREADS = 2
CAP_S = 25.0  # a contender stops repeating once its rounds add up to this
NET_TOL = 1e-4  # max |s_jax − s_torch| / max |s|
ODE_TOL = 1e-3  # max |x_dsm − x_torch| of the Heun end points
SE_TOL = 5.0  # PC sample moments: |Δ| within this many standard errors
NET_EVALS = 200  # diagnostic: batch evaluations of the network alone, x ← x + 10⁻³ s(x, σᵢ)

CONTENDERS = ("pc_dsm", "pc_torch", "pc_torch_1t",
              "heun_dsm", "heun_torch", "heun_torch_1t",
              "dopri5_dsm", "heun_jax_batch", "net_jax", "net_torch_1t")
LABELS = {
    "pc_dsm": "PC, dsm (`pc.run`, jit)",
    "pc_torch": f"PC, PyTorch eager ({TORCH_THREADS} threads)",
    "pc_torch_1t": "PC, PyTorch eager (1 thread)",
    "heun_dsm": f"ODE Heun {ODE_STEPS} steps, dsm (`flow.sample`: diffrax, vmapped per particle)",
    "heun_torch": f"ODE Heun {ODE_STEPS} steps, PyTorch eager ({TORCH_THREADS} threads), on the batch",
    "heun_torch_1t": f"ODE Heun {ODE_STEPS} steps, PyTorch eager (1 thread), on the batch",
    "dopri5_dsm": f"ODE dopri5 rtol=atol={RTOL:g}, dsm (`flow.sample`)",
    "heun_jax_batch": f"diagnostic: ODE Heun {ODE_STEPS} steps, bare JAX on the batch (`lax.fori_loop`)",
    "net_jax": f"diagnostic: {NET_EVALS} network evaluations alone, JAX (`lax.fori_loop`)",
    "net_torch_1t": f"diagnostic: {NET_EVALS} network evaluations alone, PyTorch eager (1 thread)",
}


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def init_particles(n: int, seed: int) -> np.ndarray:
    """Draws of the VP prior N(0, I), the same for every contender of a round."""
    return np.random.default_rng(1000 + seed).standard_normal((n, DIM)).astype(np.float32)


def vp_std(t: float) -> float:
    """s(t) of the VP SDE in float64 (PyTorch side): √(1 − e^{−B(t)})."""
    b = BETA_MIN * t + 0.5 * t * t * (BETA_MAX - BETA_MIN)
    return math.sqrt(-math.expm1(-b))


def vp_beta(t: float) -> float:
    return BETA_MIN + t * (BETA_MAX - BETA_MIN)


# --------------------------------------------------------------------------------------- JAX


def build_net():
    """dsm's ``ncsn_mlp`` (hidden [128, 128], softplus) split into (graphdef, params)."""
    from flax import nnx

    from dsmcli import models
    from dsmcli.models import ncsn_mlp

    net = models.build(ncsn_mlp.Config(hidden=list(HIDDEN)), DIM, nnx.Rngs(0))
    return nnx.split(net)


def the_sde():
    from dsmcli.sde import SDE

    return SDE("vp", beta_min=BETA_MIN, beta_max=BETA_MAX, t_eps=T_EPS)


def score_t_of(graphdef, params, sde):
    from flax import nnx

    net = nnx.merge(graphdef, params)
    return lambda x, t: net(x, sde.marginal(t)[1])


class JaxRunner:
    """One dsm contender jit-compiled for n particles: ``run(seed) -> (wall s, CPU s, x, extra)``."""

    def __init__(self, kind: str, n: int, graphdef, params):
        import jax
        import jax.numpy as jnp

        from dsmcli import flow
        from dsmcli.config import SampleConfig
        from dsmcli.samplers import pc
        from dsmcli.samplers.base import Target

        sde = the_sde()
        self.kind, self.n, self.params = kind, n, params
        if kind == "pc":
            cfg = SampleConfig(kind="pc", steps=PC_STEPS, snr=SNR, corrector_steps=CORRECTOR_STEPS)

            def fn(params, x, key):
                target = Target(score=None, score_t=score_t_of(graphdef, params, sde), sde=sde)
                pc.check(target, cfg)
                return pc.run(target, x, key, cfg)[0], jnp.zeros(())
        elif kind in ("heun", "dopri5"):
            cfg = SampleConfig(kind="ode", solver=kind, steps=ODE_STEPS, rtol=RTOL, atol=ATOL)

            def fn(params, x, key):
                x, nfe, ok = flow.sample(sde, score_t_of(graphdef, params, sde), x, cfg)
                return x, jnp.stack([jnp.mean(nfe.astype(jnp.float32)), jnp.mean(ok.astype(jnp.float32))])
        elif kind == "net":  # diagnostic: the network alone, NET_EVALS batch evaluations at varying σ

            def fn(params, x, key):
                score_t = score_t_of(graphdef, params, sde)

                def step(i, x):
                    return x + 1e-3 * score_t(x, 1.0 - i * (1.0 - sde.t_eps) / NET_EVALS)

                return jax.lax.fori_loop(0, NET_EVALS, step, x), jnp.zeros(())
        else:  # heun_batch: diagnostic, Heun on the whole batch (the PyTorch loop's algorithm)
            h = (sde.t_eps - 1.0) / ODE_STEPS

            def fn(params, x, key):
                score_t = score_t_of(graphdef, params, sde)

                def f(t, x):
                    return sde.drift_coef(t) * x - 0.5 * sde.diffusion(t) ** 2 * score_t(x, t)

                def step(i, x):
                    t = 1.0 + i * h
                    k1 = f(t, x)
                    k2 = f(t + h, x + h * k1)
                    return x + 0.5 * h * (k1 + k2)

                return jax.lax.fori_loop(0, ODE_STEPS, step, x), jnp.zeros(())

        x0 = jnp.asarray(init_particles(n, 0))
        t0 = time.perf_counter()
        self.compiled = jax.jit(fn).lower(params, x0, jax.random.key(0)).compile()
        self.compile_s = time.perf_counter() - t0

    def run(self, seed: int):
        import jax
        import jax.numpy as jnp

        x0 = jax.block_until_ready(jnp.asarray(init_particles(self.n, seed)))
        key = jax.random.key(seed)
        t0, c0 = time.perf_counter(), time.process_time()
        x, extra = jax.block_until_ready(self.compiled(self.params, x0, key))
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        extra = np.asarray(extra)
        info = {"nfe_mean": float(extra[0]), "ok_fraction": float(extra[1])} if self.kind == "dopri5" else {}
        return dt, dc, np.asarray(x), info


# ----------------------------------------------------------------------------------- PyTorch


class TorchNet:
    """The same network in PyTorch (float32), the weights copied from the JAX parameters."""

    def __init__(self, params):
        import jax
        import torch

        self.torch = torch
        layers = params["layers"]
        self.weights = []
        for i in range(len(layers)):
            w = np.asarray(jax.device_get(layers[i]["kernel"][...]), np.float32)  # (in, out), as x @ W
            b = np.asarray(jax.device_get(layers[i]["bias"][...]), np.float32)
            self.weights.append((torch.from_numpy(w.copy()), torch.from_numpy(b.copy())))

    def __call__(self, x, sigma: float):
        """s(x, σ) = f(concat(x, log σ)) / σ for one scalar σ."""
        torch = self.torch
        h = torch.cat([x, torch.full((x.shape[0], 1), math.log(sigma), dtype=x.dtype)], 1)
        for w, b in self.weights[:-1]:
            h = torch.nn.functional.softplus(torch.addmm(b, h, w))
        w, b = self.weights[-1]
        return torch.addmm(b, h, w).div_(sigma)


class TorchRunner:
    """PC or Heun in PyTorch eager: ``run(seed) -> (wall s, CPU s, x, {})``."""

    def __init__(self, kind: str, n: int, net: TorchNet, threads: int = TORCH_THREADS):
        self.kind, self.n, self.net, self.threads = kind, n, net, threads
        self.compile_s = 0.0
        self._loop(init_particles(n, 0), 0, steps=3)  # warm-up: thread pool, allocator

    def _pc(self, x, g, steps: int):
        torch, net = self.net.torch, self.net
        dt = (1.0 - T_EPS) / PC_STEPS
        z = torch.empty_like(x)
        for i in range(steps):
            t = 1.0 - i * dt
            sigma = vp_std(t)
            alpha = 1.0 - vp_beta(t) * dt
            for _ in range(CORRECTOR_STEPS):  # Langevin corrector, ε from the batch-mean norms
                s = net(x, sigma)
                torch.randn(x.shape, generator=g, out=z)
                ratio = SNR * torch.linalg.vector_norm(z, dim=1).mean() / torch.linalg.vector_norm(s, dim=1).mean().clamp_min(1e-30)
                eps = 2.0 * alpha * ratio.square()
                x = x + eps * s + torch.sqrt(2.0 * eps) * z
            # reverse-diffusion predictor: x ← x − f + G² s + G z, f = (√(1 − βΔt) − 1) x, G = √(βΔt)
            s = net(x, sigma)
            torch.randn(x.shape, generator=g, out=z)
            b = vp_beta(t) * dt
            x = x * (2.0 - math.sqrt(1.0 - b)) + b * s + math.sqrt(b) * z
        return x

    def _heun(self, x, steps: int):
        net = self.net
        h = (T_EPS - 1.0) / ODE_STEPS

        def f(t, x):  # probability-flow drift −½β(t)(x + s(x, t))
            return (x + net(x, vp_std(t))).mul_(-0.5 * vp_beta(t))

        for i in range(steps):
            t = 1.0 + i * h
            k1 = f(t, x)
            k2 = f(t + h, x + h * k1)
            x = x + (0.5 * h) * (k1 + k2)
        return x

    def _net(self, x, steps: int):
        for i in range(steps):
            x = x + 1e-3 * self.net(x, vp_std(1.0 - i * (1.0 - T_EPS) / NET_EVALS))
        return x

    def _loop(self, x0: np.ndarray, seed: int, steps: int | None = None):
        torch = self.net.torch
        torch.set_num_threads(self.threads)
        x = torch.from_numpy(x0.copy())
        with torch.no_grad():
            if self.kind == "pc":
                return self._pc(x, torch.Generator().manual_seed(seed), PC_STEPS if steps is None else steps)
            if self.kind == "net":
                return self._net(x, NET_EVALS if steps is None else steps)
            return self._heun(x, ODE_STEPS if steps is None else steps)

    def run(self, seed: int):
        x0 = init_particles(self.n, seed)
        t0, c0 = time.perf_counter(), time.process_time()
        x = self._loop(x0, seed)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        return dt, dc, x.numpy().copy(), {}


# ------------------------------------------------------------------------------------ checks


def net_agreement(graphdef, params, tnet: TorchNet) -> dict:
    """max |s_jax − s_torch| / max |s| over 1000 points at t ∈ {t_eps, 0.5, 1}."""
    import jax.numpy as jnp
    import torch
    from flax import nnx

    net = nnx.merge(graphdef, params)
    x = np.random.default_rng(7).standard_normal((1000, DIM)).astype(np.float32) * 2
    out = {}
    for t in (T_EPS, 0.5, 1.0):
        sigma = vp_std(t)
        a = np.asarray(net(jnp.asarray(x), jnp.float32(sigma)))
        with torch.no_grad():
            b = tnet(torch.from_numpy(x), sigma).numpy()
        out[f"t={t:g}"] = {"sigma": sigma, "max_abs_diff": float(np.max(np.abs(a - b))),
                           "max_abs_score": float(np.max(np.abs(a))),
                           "rel": float(np.max(np.abs(a - b)) / np.max(np.abs(a)))}
    out["max_rel"] = max(v["rel"] for v in out.values())
    return out


def moments_agree(a: np.ndarray, b: np.ndarray) -> dict:
    """Per-coordinate mean and std of two sample sets, their differences in standard errors
    (se of the std from the sample kurtosis, so heavy tails are allowed for)."""

    def se_std(x):
        c = x - x.mean(0)
        m2, m4 = (c**2).mean(0), (c**4).mean(0)
        return np.sqrt(np.maximum(m4 - m2**2, 0) / (4 * m2 * len(x)))

    da = np.abs(a.mean(0) - b.mean(0)) / np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))
    ds = np.abs(a.std(0) - b.std(0)) / np.sqrt(se_std(a) ** 2 + se_std(b) ** 2)
    return {"mean_a": a.mean(0).tolist(), "mean_b": b.mean(0).tolist(), "std_a": a.std(0).tolist(),
            "std_b": b.std(0).tolist(), "mean_diff_se": da.tolist(), "std_diff_se": ds.tolist(),
            "max_se": float(max(da.max(), ds.max()))}


# ------------------------------------------------------------------------------------ driver


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine() -> dict:
    import jax

    from benchmarks.common import machine_info

    return {**machine_info(), "jax_backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def work(name: str, n: int) -> float:
    """Units of a run: particle-steps for PC, solves (particles) for the ODE, particle-evaluations
    for the network diagnostic."""
    return n * PC_STEPS if name.startswith("pc") else (n * NET_EVALS if name.startswith("net") else n)


def unit(name: str) -> str:
    return "particle-steps/s" if name.startswith("pc") else ("particle-evaluations/s" if name.startswith("net") else "solves/s")


def bench(n: int, rounds: int) -> dict:
    graphdef, params = build_net()
    tnet = TorchNet(params)
    load_before = loadavg()
    net_check = net_agreement(graphdef, params, tnet)
    log(f"  network agreement JAX vs PyTorch: max |Δs| / max |s| = {net_check['max_rel']:.2e}")
    runners = {}
    for name in CONTENDERS:
        kind = name.split("_")[0]
        if name.endswith("_dsm"):
            runners[name] = JaxRunner(kind, n, graphdef, params)
        elif name == "heun_jax_batch":
            runners[name] = JaxRunner("heun_batch", n, graphdef, params)
        elif name == "net_jax":
            runners[name] = JaxRunner("net", n, graphdef, params)
        else:
            runners[name] = TorchRunner(kind, n, tnet, threads=1 if name.endswith("_1t") else TORCH_THREADS)
        log(f"  built {name} (compile {runners[name].compile_s:.2f} s)")
    times = {name: [] for name in CONTENDERS}
    cpus = {name: [] for name in CONTENDERS}
    by_round = [{} for _ in range(rounds)]  # round -> name -> (wall s, CPU s), for paired ratios
    extra = {name: [] for name in CONTENDERS}
    last = {}  # name -> (seed, x) of its latest round
    nonfinite = {name: 0.0 for name in CONTENDERS}
    heun_diff, pc_moments, dopri_vs_heun = [], [], []
    for r in range(rounds):
        for name, runner in runners.items():
            if r > 0 and sum(times[name]) > CAP_S:
                continue  # enough of this one: keep the run within a few minutes
            dt, dc, x, info = runner.run(seed=r)
            times[name].append(dt)
            cpus[name].append(dc)
            by_round[r][name] = (dt, dc)
            if info:
                extra[name].append(info)
            nonfinite[name] = max(nonfinite[name], float(1 - np.isfinite(x).all(1).mean()))
            last[name] = (r, x)
            log(f"  n={n} round {r + 1}/{rounds} {name}: {dt:.2f} s (CPU {dc:.2f} s), "
                f"{work(name, n) / dt / 1e3:.1f} k {unit(name)}{'' if not info else f', {info}'}, load {loadavg()}")
        # equal work, on this round's outputs (same seed on both sides)
        pairs = [(a, b) for a, b in (("heun_dsm", "heun_torch_1t"), ("heun_dsm", "heun_torch"),
                                     ("heun_dsm", "heun_jax_batch"))
                 if last.get(a, (None,))[0] == r and last.get(b, (None,))[0] == r]
        for a, b in pairs:
            d = np.abs(last[a][1] - last[b][1])
            heun_diff.append({"pair": f"{a} vs {b}", "round": r + 1, "max_abs": float(np.nanmax(d)),
                              "mean_abs": float(np.nanmean(d)),
                              "rms_endpoint": float(np.sqrt(np.nanmean(last[b][1] ** 2)))})
        for b in ("pc_torch_1t", "pc_torch"):
            if last.get("pc_dsm", (None,))[0] == r and last.get(b, (None,))[0] == r:
                pc_moments.append({"pair": f"pc_dsm vs {b}", "round": r + 1,
                                   **moments_agree(last["pc_dsm"][1], last[b][1])})
        if last.get("dopri5_dsm", (None,))[0] == r and last.get("heun_dsm", (None,))[0] == r:
            d = np.linalg.norm(last["dopri5_dsm"][1] - last["heun_dsm"][1], axis=1)
            dopri_vs_heun.append({"round": r + 1, "mean_dist": float(np.mean(d)), "max_dist": float(np.max(d)),
                                  "rms_endpoint": float(np.sqrt(np.mean(last["dopri5_dsm"][1] ** 2)))})
    out = {"n": n, "rounds": rounds, "cap_s": CAP_S, "load_before": load_before, "load_after": loadavg(),
           "contenders": {}}
    for name in CONTENDERS:
        best, med = min(times[name]), statistics.median(times[name])
        c = {
            "label": LABELS[name],
            "unit": unit(name),
            "seconds_best": best,
            "seconds_median": med,
            "seconds_all": [round(t, 3) for t in times[name]],
            "cpu_seconds_all": [round(t, 3) for t in cpus[name]],
            "cpu_seconds_median": statistics.median(cpus[name]),
            "cpu_per_wall_best_round": cpus[name][times[name].index(best)] / best,
            "rounds_run": len(times[name]),
            "rate_best": work(name, n) / best,
            "rate_median": work(name, n) / med,
            "compile_s": round(runners[name].compile_s, 3),
            "nonfinite_fraction": nonfinite[name],
            "max_rss_mib_after": round(max_rss_mib(), 1),
        }
        if extra[name]:
            c["nfe_mean"] = float(np.mean([e["nfe_mean"] for e in extra[name]]))
            c["ok_fraction_min"] = float(min(e["ok_fraction"] for e in extra[name]))
        out["contenders"][name] = c
    cc = out["contenders"]

    def over(a, b):
        return cc[b]["seconds_best"] / cc[a]["seconds_best"]

    out["ratios"] = {
        "pc_dsm_over_torch": over("pc_dsm", "pc_torch"),
        "pc_dsm_over_torch_1t": over("pc_dsm", "pc_torch_1t"),
        "heun_dsm_over_torch": over("heun_dsm", "heun_torch"),
        "heun_dsm_over_torch_1t": over("heun_dsm", "heun_torch_1t"),
        "heun_jax_batch_over_dsm": over("heun_jax_batch", "heun_dsm"),
        "heun_jax_batch_over_torch": over("heun_jax_batch", "heun_torch"),
        "heun_jax_batch_over_torch_1t": over("heun_jax_batch", "heun_torch_1t"),
        "net_jax_over_torch_1t": over("net_jax", "net_torch_1t"),
    }
    # the same ratios per round (both contenders timed within the same minute of machine load) and
    # per CPU-second of this process (median; much less sensitive to other jobs' load than wall time)
    pairs = {"pc_dsm_over_torch": ("pc_dsm", "pc_torch"), "pc_dsm_over_torch_1t": ("pc_dsm", "pc_torch_1t"),
             "heun_dsm_over_torch": ("heun_dsm", "heun_torch"), "heun_dsm_over_torch_1t": ("heun_dsm", "heun_torch_1t"),
             "net_jax_over_torch_1t": ("net_jax", "net_torch_1t")}
    out["ratios_per_round"] = {k: [round(rr[b][0] / rr[a][0], 3) for rr in by_round if a in rr and b in rr]
                               for k, (a, b) in pairs.items()}
    out["ratios_per_cpu_second"] = {k: cc[b]["cpu_seconds_median"] / cc[a]["cpu_seconds_median"]
                                    for k, (a, b) in pairs.items()}
    # network evaluations per second (one evaluation = one (n, 2) batch through the MLP); PC: 2 per step
    evals = {"pc_dsm": 2 * PC_STEPS, "pc_torch": 2 * PC_STEPS, "pc_torch_1t": 2 * PC_STEPS,
             "heun_dsm": 2 * ODE_STEPS, "heun_torch": 2 * ODE_STEPS, "heun_torch_1t": 2 * ODE_STEPS,
             "heun_jax_batch": 2 * ODE_STEPS, "net_jax": NET_EVALS, "net_torch_1t": NET_EVALS}
    out["ms_per_batch_evaluation"] = {k: 1e3 * cc[k]["seconds_best"] / v for k, v in evals.items()}
    heun_max = max(d["max_abs"] for d in heun_diff if "torch" in d["pair"])
    pc_max = max(m["max_se"] for m in pc_moments)
    checks = {
        "all_finite": all(cc[k]["nonfinite_fraction"] == 0 for k in CONTENDERS),
        "network": net_check,
        "network_tol": NET_TOL,
        "network_agrees": net_check["max_rel"] <= NET_TOL,
        "heun_endpoints": heun_diff,
        "heun_max_abs_dsm_vs_torch": heun_max,
        "heun_tol": ODE_TOL,
        "heun_agrees": heun_max <= ODE_TOL,
        "pc_moments": pc_moments,
        "pc_max_se": pc_max,
        "pc_se_tol": SE_TOL,
        "pc_agrees": pc_max <= SE_TOL,
        "dopri5_vs_heun": dopri_vs_heun,
        "dopri5_all_succeeded": cc["dopri5_dsm"].get("ok_fraction_min", 0.0) == 1.0,
    }
    out["checks"] = checks
    failed = [k for k in CHECKS if checks.get(k) is False]
    if failed:
        log(f"  CHECK FAILED at n={n}: {failed}")
    return out


CHECKS = ("all_finite", "network_agrees", "heun_agrees", "pc_agrees", "dopri5_all_succeeded")


def fmt_rate(v: float) -> str:
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.1f} k"


def table(row: dict) -> str:
    c, r, rc = row["contenders"], row["ratios"], row["ratios_per_cpu_second"]

    def cell(name):
        x = c[name]
        return f"{fmt_rate(x['rate_best'])} ({x['seconds_best']:.2f} s)"

    def comp(name):
        return f"{c[name]['compile_s']:.1f} s" if c[name]["compile_s"] else "–"

    def ms(name):
        return f"{row['ms_per_batch_evaluation'][name]:.2f}"

    n = row["n"]
    lines = [
        f"| {n:,} particles | dsm | PyTorch eager, {TORCH_THREADS} threads | PyTorch eager, 1 thread "
        f"| dsm / PyTorch {TORCH_THREADS}t | dsm / PyTorch 1t | dsm / PyTorch 1t per CPU-second "
        f"| ms per batch evaluation: dsm · {TORCH_THREADS}t · 1t | dsm compile |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| PC, {PC_STEPS} steps (reverse diffusion + 1 Langevin corrector): particle-steps/s "
        f"| {cell('pc_dsm')} | {cell('pc_torch')} | {cell('pc_torch_1t')} "
        f"| {r['pc_dsm_over_torch']:.2f}× | {r['pc_dsm_over_torch_1t']:.2f}× | {rc['pc_dsm_over_torch_1t']:.2f}× "
        f"| {ms('pc_dsm')} · {ms('pc_torch')} · {ms('pc_torch_1t')} | {comp('pc_dsm')} |",
        f"| probability-flow ODE, Heun {ODE_STEPS} steps: solves/s "
        f"| {cell('heun_dsm')} | {cell('heun_torch')} | {cell('heun_torch_1t')} "
        f"| {r['heun_dsm_over_torch']:.2f}× | {r['heun_dsm_over_torch_1t']:.2f}× | {rc['heun_dsm_over_torch_1t']:.2f}× "
        f"| {ms('heun_dsm')} · {ms('heun_torch')} · {ms('heun_torch_1t')} | {comp('heun_dsm')} |",
        f"| probability-flow ODE, dopri5 rtol = atol = {RTOL:g} (dsm only; mean nfe "
        f"{c['dopri5_dsm'].get('nfe_mean', float('nan')):.0f}): solves/s | {cell('dopri5_dsm')} | | | | | | "
        f"| {comp('dopri5_dsm')} |",
        f"| diagnostic: the same Heun loop in bare JAX on the batch (`lax.fori_loop`, not `flow.sample`): solves/s "
        f"| {cell('heun_jax_batch')} | | | {r['heun_jax_batch_over_torch']:.2f}× | {r['heun_jax_batch_over_torch_1t']:.2f}× | "
        f"| {ms('heun_jax_batch')} | {comp('heun_jax_batch')} |",
        f"| diagnostic: the network alone, {NET_EVALS} batch evaluations (x ← x + 10⁻³ s(x, σᵢ)): "
        f"particle-evaluations/s | {cell('net_jax')} | | {cell('net_torch_1t')} | | {r['net_jax_over_torch_1t']:.2f}× "
        f"| {rc['net_jax_over_torch_1t']:.2f}× | {ms('net_jax')} · – · {ms('net_torch_1t')} | {comp('net_jax')} |",
    ]
    return "\n".join(lines)


def reading(row: dict) -> str:
    """Conclusions computed from the numbers (so the text stays true on a re-run)."""
    c, r, ch = row["contenders"], row["ratios"], row["checks"]
    ms = row["ms_per_batch_evaluation"]
    sec = {k: v["seconds_best"] for k, v in c.items()}
    t2 = f"{TORCH_THREADS} threads"
    parts = [
        f"PC: dsm runs {r['pc_dsm_over_torch']:.2f}× the particle-steps per second of the PyTorch eager loop with "
        f"{t2} and {r['pc_dsm_over_torch_1t']:.2f}× that with 1 thread. Probability-flow ODE with Heun: "
        f"dsm's `flow.sample` runs {r['heun_dsm_over_torch']:.2f}× / {r['heun_dsm_over_torch_1t']:.2f}× the solves "
        f"per second of PyTorch with {TORCH_THREADS} / 1 threads (best rounds)."
    ]
    pr, rc = row["ratios_per_round"], row["ratios_per_cpu_second"]

    def span(k):
        v = pr[k]
        return f"{min(v):.2f}–{max(v):.2f}×" if len(v) > 1 else (f"{v[0]:.2f}×" if v else "n/a")

    par = {k: c[k]["cpu_per_wall_best_round"] for k in ("pc_dsm", "heun_dsm")}
    parts.append(
        f"Round by round (both timed in the same minute of load) dsm / PyTorch 1 thread was {span('pc_dsm_over_torch_1t')} "
        f"(PC) and {span('heun_dsm_over_torch_1t')} (Heun); per CPU-second of the process (medians), which discounts "
        f"XLA's use of the second core when the other jobs left it free (dsm's best rounds used {par['pc_dsm']:.1f} / "
        f"{par['heun_dsm']:.1f} CPU-s per second), dsm does {rc['pc_dsm_over_torch_1t']:.2f}× (PC) and "
        f"{rc['heun_dsm_over_torch_1t']:.2f}× (Heun) the work of PyTorch with 1 thread, and the network alone "
        f"{rc['net_jax_over_torch_1t']:.2f}×."
    )
    if sec["pc_torch"] > sec["pc_torch_1t"]:
        parts.append(
            f"PyTorch with {t2} was {sec['pc_torch'] / sec['pc_torch_1t']:.1f}× (PC) and "
            f"{sec['heun_torch'] / sec['heun_torch_1t']:.1f}× (Heun) slower than with 1 thread on these shared cores "
            f"(its parallel kernels wait for descheduled threads), so the 1-thread column is the fairer baseline here."
        )
    frac_pc, frac_heun = ms["net_jax"] / ms["pc_dsm"], ms["net_jax"] / ms["heun_dsm"]
    parts.append(
        f"Where the time goes: one evaluation of the network alone on the {row['n']:,}-particle batch takes "
        f"{ms['net_jax']:.2f} ms in JAX and {ms['net_torch_1t']:.2f} ms in PyTorch (1 thread), i.e. "
        f"{100 * frac_pc:.0f} % of dsm's PC time per evaluation ({ms['pc_dsm']:.2f} ms) and {100 * frac_heun:.0f} % "
        f"of its Heun time per evaluation ({ms['heun_dsm']:.2f} ms)"
        + (": dsm's sampler loops cost little beyond the network (XLA fuses the noise, norms and updates); "
           if min(frac_pc, frac_heun) >= 0.85 else "; the rest is the samplers' noise, norms and updates; ")
        + f"PyTorch's 1-thread loops spend {100 * ms['net_torch_1t'] / ms['pc_torch_1t']:.0f} % (PC) and "
        f"{100 * ms['net_torch_1t'] / ms['heun_torch_1t']:.0f} % (Heun) of theirs in the network."
    )
    jb = r["heun_jax_batch_over_dsm"]
    if jb > 1.1:
        how = (f"{jb:.2f}× faster than `flow.sample` ({sec['heun_dsm']:.2f} s): that difference is the cost of "
               f"diffrax's per-particle solve under `vmap` (its while loop, step-size and event bookkeeping), not of JAX")
    elif jb < 1 / 1.1:
        how = f"{1 / jb:.2f}× slower than `flow.sample` ({sec['heun_dsm']:.2f} s)"
    else:
        how = (f"within 10 % of `flow.sample` ({sec['heun_dsm']:.2f} s, ratio {jb:.2f}): the per-particle vmapped "
               f"diffrax solve costs no measurable overhead over a batch loop here")
    parts.append(f"The same Heun loop written on the batch in bare JAX takes {sec['heun_jax_batch']:.2f} s, {how}.")
    d5 = c["dopri5_dsm"]
    dvh = ch["dopri5_vs_heun"]
    parts.append(
        f"Adaptive dopri5 (rtol = atol = {RTOL:g}) used {d5.get('nfe_mean', float('nan')):.0f} network evaluations "
        f"per particle on average (Heun: {2 * ODE_STEPS}) and ran {fmt_rate(d5['rate_best'])} solves/s "
        f"({sec['dopri5_dsm']:.2f} s for {row['n']:,})"
        + (f"; its end points are {dvh[0]['mean_dist']:.3g} from Heun's on average (max {dvh[0]['max_dist']:.3g}; "
           f"rms end point {dvh[0]['rms_endpoint']:.3g})" if dvh else "")
        + f". The network is untrained, so the end points are not data-like (the output is divided by "
        f"s(t_eps) = {vp_std(T_EPS):.1e}) and dopri5's step count is that of this field, not of a trained model's."
    )
    net = ch["network"]["max_rel"]
    parts.append(
        f"Equal work: the PyTorch network (weights copied from dsm's) matches dsm's to {net:.1e} of max |s| "
        f"({'within' if ch['network_agrees'] else 'NOT within'} {NET_TOL:g}); the dsm and PyTorch Heun end points of "
        f"the same initial particles differ by at most {ch['heun_max_abs_dsm_vs_torch']:.1e} "
        f"({'within' if ch['heun_agrees'] else 'NOT within'} {ODE_TOL:g}); the PC samples of the two sides "
        f"(different random streams) have per-coordinate means and stds within {ch['pc_max_se']:.1f} standard errors "
        f"of each other ({'within' if ch['pc_agrees'] else 'NOT within'} {SE_TOL:g}); "
        f"{'all' if ch['all_finite'] else 'NOT all'} outputs finite."
    )
    return " ".join(parts)


def write_md(result: dict, out_json: Path) -> Path:
    """``sde[_quick].md`` next to ``out_json``, from a result dict (a fresh run or a saved JSON)."""
    row, info = result["row"], result["machine"]
    started = _dt.datetime.fromisoformat(result["date"])
    loads = [v[0] for v in (row["load_before"], row["load_after"], result.get("load_end")) if v]
    cpu = info.get("cpu_model", "unknown CPU")
    ncpu = info.get("affinity_cpus", info["cpu_count"])
    rel = out_json.relative_to(REPO) if out_json.is_relative_to(REPO) else out_json
    rounds = ", ".join(f"{k} {v['rounds_run']}" for k, v in row["contenders"].items())
    md = [
        "# Continuous-time samplers (PC and probability-flow ODE): dsm vs PyTorch eager",
        "",
        f"VP SDE (β_min = {BETA_MIN:g}, β_max = {BETA_MAX:g}, t_eps = {T_EPS:g}), 2-D particles started from the same "
        f"N(0, I) draws, score dsm's `ncsn_mlp` (concat(x, log s(t)) → {' → '.join(map(str, HIDDEN))} → 2, softplus, "
        f"÷ s(t); untrained, `nnx.Rngs(0)`), float32. Best of the rounds (time of the whole run in brackets); dsm "
        f"compile excluded and shown. Produced by `benchmarks/bench_sde.py`{' --quick' if result['quick'] else ''}.",
        "",
        table(row),
        "",
        reading(row),
        "",
        f"Rounds run per contender (a contender stops repeating once its rounds add up to {CAP_S:.0f} s): {rounds}.",
        "",
        f"Machine: {cpu}, {ncpu} CPU cores available to the process, {info.get('mem_gib', '?')} GiB RAM, JAX "
        f"{info['versions']['jax']} ({info['jax_backend']}), PyTorch {info['versions']['torch']}, {info['platform']}. "
        f"Date: {started.strftime('%Y-%m-%d %H:%M %Z')}. 1-minute load average {min(loads):.1f}–{max(loads):.1f} "
        f"during the run (on {ncpu} cores; the cores were shared with other jobs); contenders were interleaved "
        f"round by round. Wall time {result['wall_s']:.0f} s. Raw numbers (all rounds, CPU seconds, medians, compile "
        f"times, checks): `{rel}`.",
        "",
    ]
    out_md = out_json.with_name(out_json.stem.removeprefix("results_") + ".md")
    out_md.write_text("\n".join(md))
    return out_md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 particles, one round (smoke run)")
    ap.add_argument("--n", type=int, default=None, help=f"particles (default {N_PARTICLES:,}; 2,000 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; 1 with --quick)")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results_sde[_quick].json); the "
                    "markdown goes next to it, named without 'results_'")
    ap.add_argument("--render", type=Path, default=None, metavar="JSON",
                    help="only rewrite the markdown (and the JSON's reading) from a saved result, no run")
    args = ap.parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        result["reading"] = reading(result["row"])
        args.render.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {write_md(result, args.render.resolve())}")
        return 0
    suffix = "_quick" if args.quick else ""
    out_json = (args.out or REPO / "benchmarks" / f"results_sde{suffix}.json").resolve()
    n = args.n or (2_000 if args.quick else N_PARTICLES)
    rounds = args.rounds or (1 if args.quick else 3)

    started = _dt.datetime.now().astimezone()
    t0 = time.perf_counter()
    info = machine()
    log(f"bench_sde: n={n}, {rounds} round(s); load {loadavg()}")
    row = bench(n, rounds)
    wall = time.perf_counter() - t0

    text = reading(row)
    print(table(row))
    print()
    print(text)
    result = {
        "benchmark": "continuous-time samplers: PC and probability-flow ODE",
        "date": started.isoformat(timespec="seconds"),
        "wall_s": round(wall, 1),
        "quick": args.quick,
        "setup": {"sde": {"kind": "vp", "beta_min": BETA_MIN, "beta_max": BETA_MAX, "t_eps": T_EPS},
                  "network": {"kind": "ncsn_mlp", "hidden": list(HIDDEN), "activation": "softplus",
                              "init": "nnx.Rngs(0)", "trained": False},
                  "pc": {"steps": PC_STEPS, "predictor": "reverse_diffusion", "corrector": "langevin",
                         "corrector_steps": CORRECTOR_STEPS, "snr": SNR},
                  "ode": {"heun_steps": ODE_STEPS, "dopri5_rtol": RTOL, "dopri5_atol": ATOL},
                  "init": "N(0, I), numpy default_rng(1000 + round)", "dtype": "float32",
                  "torch_threads": TORCH_THREADS,
                  "timing": "wall time of a whole sampler run (dsm: one compiled dispatch; compile excluded), "
                            "best of the rounds; contenders interleaved round by round"},
        "machine": info,
        "load_end": loadavg(),
        "row": row,
        "reading": text,
    }
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    out_md = write_md(result, out_json)
    log(f"wrote {out_json} and {out_md} ({wall:.0f} s)")
    return 1 if any(row["checks"].get(k) is False for k in CHECKS) else 0


if __name__ == "__main__":
    sys.exit(main())
