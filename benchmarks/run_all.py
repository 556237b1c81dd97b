"""The benchmark suite behind ``make bench``: tables on stdout, ``benchmarks/results.json``,
one summary line per full run appended to ``benchmarks/results_history.jsonl``.

Every figure that is compared is a ratio of two measurements taken side by side in this
process run. Throughput contenders are interleaved round by round (``--rounds``), so a burst of
load from other processes on the machine hits all of them alike; each reports its best round,
the median, and (where it can be measured) steps per CPU-second of this process, which is far
less sensitive to other jobs' load than wall clock. Sections:

1. training throughput, DSM (σ = 0.1, Adam lr 1e-3), SMALL (2-D mixture, MLP 2→128→128→2,
   B = 512) and LARGE (784-D mixture, MLP 784→1024→1024→784, B = 256):
   (a) ``dsm train`` through ``dsmcli.api.train`` (logging, checkpoints; compile excluded;
       in-process persistent compile cache off: ``DSM_COMPILE_CACHE=0``),
   (b) a bare JAX reference (params pytree, ``jax.jit`` + ``lax.scan`` of 100 steps, XLA's
       default options),
   (b') the trainer's own compiled scan (``dsmcli.train.StepFunction``) driven by the bare loop,
   (c) PyTorch eager (2 threads; 1 thread and ``OMP_WAIT_POLICY=PASSIVE`` as supplementary
       rows) and ``torch.compile``,
   (d) the ``jnp.dot`` 2048×2048 float32 rate (sampled 3x per round) and the LARGE model's
       achieved GFLOP/s (3 x forward FLOPs) and fraction of that rate;
2. start-up: ``dsm --help``, ``dsm runs`` (median of 5) and time to the first metrics line of
   the quickstart config with a cold and a warm persistent compilation cache, a what-if with
   every compilation cached, and a timestamped breakdown of a warm start;
3. a ``jax.profiler`` breakdown of the compiled step by op category (bare JAX, trainer) and a
   ``torch.profiler`` one of the PyTorch step;
4. ablations (``benchmarks/ablations.py``): grad norm, activation, an XLA compiler option;
5. with ``--sde`` only: ``benchmarks/bench_sde.py`` (PC sampler and probability-flow ODE, dsm vs
   PyTorch eager; a subprocess of ~2–3 min, outside the budget, writing its own
   ``benchmarks/results_sde[_quick].json`` and ``sde[_quick].md``);
6. with ``--images`` only: ``benchmarks/bench_ncsn_conv.py`` (the convolutional NCSN's training
   step and annealed Langevin sampler on 8×8×1, 28×28×1 and 32×32×3 images, dsm vs a PyTorch
   twin; a subprocess outside the budget, writing its own ``benchmarks/results_ncsn_conv[_quick].json``
   and ``ncsn_conv[_quick].md``), then ``benchmarks/bench_unet_layers.py`` (the same network's layers, each
   alone, XLA:CPU vs PyTorch's oneDNN; ``results_unet_layers[_quick].json``, ``unet_layers[_quick].md``).

``--quick`` runs one round with small step counts and skips ``torch.compile``, the profile and
the ablations (a smoke check, written to ``benchmarks/results_quick.json``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# In-process training runs: no persistent compile cache (compile time is excluded from the
# throughput anyway, and the user's cache is left alone). The start-up section sets its own.
os.environ["DSM_COMPILE_CACHE"] = "0"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
from dsmcli.jaxsetup import configure_xla_env  # noqa: E402

configure_xla_env()  # the XLA flags the CLI runs with (thread-count-independent reductions), for every contender

from benchmarks import ablations, bench_dsm, bench_jax, bench_startup, bench_torch, profile_step  # noqa: E402
from benchmarks.common import LARGE, SMALL, Samples, data_for, loadavg, machine_info  # noqa: E402

# the LARGE step's parts, each alone (bench_jax.PartRunner): contender name -> part
PARTS = {"matmuls alone": "matmuls", "Adam alone": "adam", "RNG alone": "rng"}

TARGETS = {
    "small_dsm_over_torch": 2.0,
    "large_dsm_over_torch": 1.3,
    "large_fraction_of_matmul": 0.8,
    "cli_startup_s": 0.3,
}


def plan(quick: bool) -> dict:
    if quick:
        return {
            "rounds": 1,
            "SMALL": {"dsm_steps": 500, "log_every": 100, "bare_dispatches": 5, "trainer_dispatches": 3,
                      "torch_steps": 500, "torch_limit_s": 3.0, "torch1_steps": 300},
            "LARGE": {"dsm_steps": 100, "log_every": 50, "bare_dispatches": 1, "trainer_dispatches": 1,
                      "torch_steps": 100, "torch_limit_s": 4.0, "torch1_steps": 50},
            "torch_compile": False,
            "cli_repeats": 3,
            "first_step_pairs": 1,
            "first_step_what_if": False,
            "profile_dispatches": 0,
            "ablation_rounds": 0,
            "budget_s": 240,
        }
    return {
        "rounds": 3,
        "SMALL": {"dsm_steps": 3000, "log_every": 100, "bare_dispatches": 30, "trainer_dispatches": 10,
                  "torch_steps": 3000, "torch_limit_s": 5.0, "torch1_steps": 1000},
        "LARGE": {"dsm_steps": 300, "log_every": 50, "bare_dispatches": 2, "trainer_dispatches": 1,
                  "torch_steps": 300, "torch_limit_s": 6.0, "torch1_steps": 60},
        "torch_compile": True,
        "cli_repeats": 5,
        "first_step_pairs": 2,
        "first_step_what_if": True,
        "profile_dispatches": 1,
        "ablation_rounds": 8,
        # soft limit for the whole run: on a loaded machine fewer rounds are run, and the profile
        # and ablations are skipped when the time is not left for them (recorded in results.json)
        "budget_s": 570,
    }


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {loadavg()}] {msg}", file=sys.stderr, flush=True)


def throughput(cfg: dict, workdir: Path, deadline: float | None = None) -> dict:
    import jax  # noqa: F401  (imported here so the start-up section runs first)

    contenders = ["dsm train", "bare JAX", "trainer step (bare loop)", *PARTS, "torch eager",
                  "torch eager 1 thread", "torch eager OMP passive"]
    if cfg["torch_compile"]:
        contenders.append("torch.compile")
    res = {p.name: {c: Samples() for c in contenders} for p in (SMALL, LARGE)}
    cpu = {p.name: {c: Samples() for c in contenders} for p in (SMALL, LARGE)}
    info = {p.name: {c: {} for c in contenders} for p in (SMALL, LARGE)}
    matmul = Samples()
    matmul_cpu = Samples()
    paired = []  # per round: matmul rate measured right before LARGE's contenders, and their rates
    data = {p.name: data_for(p) for p in (SMALL, LARGE)}

    log("building runners (JAX compiles; torch.compile compiles on its first steps)")
    runners = {}
    for p in (SMALL, LARGE):
        c, x = cfg[p.name], data[p.name]
        bare = bench_jax.BareRunner(p, x)
        info[p.name]["bare JAX"]["compile_s"] = round(bare.compile_s, 3)
        try:  # uses trainer internals (dsmcli.train.StepFunction): diagnostic, allowed to fail
            trainer = bench_jax.TrainerStepRunner(p, x, workdir / "trainer_step")
            info[p.name]["trainer step (bare loop)"]["compile_s"] = round(trainer.compile_s, 3)
        except Exception as e:  # noqa: BLE001
            trainer = None
            info[p.name]["trainer step (bare loop)"]["error"] = f"{type(e).__name__}: {e}"[:300]
        eager = bench_torch.Runner(p, x)
        eager.warm()
        eager1 = bench_torch.Runner(p, x, threads=1)
        eager1.warm()
        r = {"bare JAX": bare, "torch eager": eager, "torch eager 1 thread": eager1}
        if p is LARGE:
            for name, part in PARTS.items():
                r[name] = bench_jax.PartRunner(p, x, part)
        if trainer is not None:
            r["trainer step (bare loop)"] = trainer
        if cfg["torch_compile"]:
            log(f"torch.compile {p.name}")
            comp = bench_torch.Runner(p, x, compiled=True)
            comp.warm()
            info[p.name]["torch.compile"]["warmup_incl_compile_s"] = comp.warm_s and round(comp.warm_s, 2)
            r["torch.compile"] = comp
        runners[p.name] = r

    rounds_done, round_s = 0, []
    for rnd in range(cfg["rounds"]):
        if rnd and deadline is not None and time.perf_counter() + max(round_s) > deadline:
            log(f"time budget: stopping after {rnd} round(s) (a round took up to {max(round_s):.0f} s)")
            break
        t_round = time.perf_counter()
        for p in (SMALL, LARGE):
            mm = bench_jax.matmul_gflops()  # sampled 3x per round, next to the contenders
            matmul.add(mm["best"])
            matmul_cpu.add(mm["cpu_median"])
            if p is LARGE:
                pair = {"matmul_gflops": mm["best"]}
            c, x, r = cfg[p.name], data[p.name], runners[p.name]
            log(f"round {rnd + 1}/{cfg['rounds']} {p.name}: dsm train ({c['dsm_steps']} steps)")
            out = bench_dsm.measure(p, x, workdir, c["dsm_steps"], c["log_every"])
            res[p.name]["dsm train"].add(out["steps_per_sec"])
            if p is LARGE:
                pair["dsm_train_steps_per_sec"] = out["steps_per_sec"]
            info[p.name]["dsm train"].setdefault("runs", []).append(out)
            log(f"round {rnd + 1} {p.name}: bare JAX, trainer step, torch")
            for name, n in (("bare JAX", c["bare_dispatches"]), ("trainer step (bare loop)", c["trainer_dispatches"]),
                            *((name, c["bare_dispatches"]) for name in PARTS)):
                if name in r:
                    res[p.name][name].add(r[name].segment(n))
                    cpu[p.name][name].add(r[name].cpu_rate)
                    if p is LARGE and name == "bare JAX":
                        pair["bare_jax_steps_per_sec"] = res[p.name][name].values[-1]
                    if p is LARGE and name in PARTS:
                        pair[PARTS[name] + "_alone_steps_per_sec"] = res[p.name][name].values[-1]
            if p is LARGE:
                paired.append(pair)
            for name, steps in (("torch eager", c["torch_steps"]), ("torch eager 1 thread", c["torch1_steps"]),
                                ("torch.compile", c["torch_steps"])):
                if name in r:
                    v = r[name].segment(steps, c["torch_limit_s"])
                    if v is not None:
                        res[p.name][name].add(v)
                        cpu[p.name][name].add(r[name].cpu_rate)
        log(f"round {rnd + 1}: torch eager with OMP_WAIT_POLICY=PASSIVE (subprocess), jnp.dot rate")
        passive = bench_torch.in_subprocess(
            [(p.name, cfg[p.name]["torch1_steps"], cfg[p.name]["torch_limit_s"]) for p in (SMALL, LARGE)],
            {"OMP_WAIT_POLICY": "PASSIVE"})
        for p in (SMALL, LARGE):
            v = passive.get(p.name) if "error" not in passive else None
            if isinstance(v, dict) and v.get("steps_per_sec"):
                res[p.name]["torch eager OMP passive"].add(v["steps_per_sec"])
                cpu[p.name]["torch eager OMP passive"].add(v["cpu_rate"])
            else:
                info[p.name]["torch eager OMP passive"]["error"] = str(passive.get("error") or v)[:300]
        mm = bench_jax.matmul_gflops()
        matmul.add(mm["best"])
        matmul_cpu.add(mm["cpu_median"])
        rounds_done += 1
        round_s.append(time.perf_counter() - t_round)
    for p in (SMALL, LARGE):
        for name in ("torch eager", "torch eager 1 thread", "torch.compile"):
            if name in runners[p.name] and runners[p.name][name].error:
                info[p.name][name]["error"] = runners[p.name][name].error
        for name in ("bare JAX", "trainer step (bare loop)", "torch eager", "torch eager 1 thread", "torch.compile"):
            if name in runners[p.name]:
                info[p.name][name]["last_loss"] = runners[p.name][name].last_loss
    return {"samples": res, "cpu": cpu, "info": info, "matmul": matmul, "matmul_cpu": matmul_cpu,
            "paired": paired, "rounds_done": rounds_done,
            "round_s": [round(x, 1) for x in round_s]}


def ratio(a, b):
    return a / b if a and b else None


def parts_budget(pair: dict, step_flops: float) -> dict | None:
    """The LARGE 80 % target as a time budget: at the matmul rate sampled in that round, 80 %
    means at most ``step_flops / (0.8 · rate)`` per step; against it, the times of the step's
    parts measured alone in the same round (ms per step) and their sum."""
    rate = pair.get("matmul_gflops")
    parts = {k: pair.get(f"{k}_alone_steps_per_sec") for k in PARTS.values()}
    if not rate or not all(parts.values()):
        return None
    ms = {k: 1e3 / v for k, v in parts.items()}
    return {"budget_ms": step_flops / (TARGETS["large_fraction_of_matmul"] * rate * 1e9) * 1e3,
            "parts_ms": ms, "sum_ms": sum(ms.values())}


def summarize(thr: dict, startup: dict, cfg: dict) -> dict:
    s = thr["samples"]
    best = {p: {c: v.best for c, v in d.items()} for p, d in s.items()}
    mm = thr["matmul"].best
    large_flops = LARGE.step_flops()
    dsm_large_gflops = best["LARGE"]["dsm train"] * large_flops / 1e9 if best["LARGE"]["dsm train"] else None
    bare_large_gflops = best["LARGE"]["bare JAX"] * large_flops / 1e9 if best["LARGE"]["bare JAX"] else None
    torch_best = {p: max([v for k, v in best[p].items() if k.startswith("torch eager") and v] or [0]) or None
                  for p in best}
    # per round: dsm train's LARGE GFLOP/s over the jnp.dot rate sampled just before it (same
    # minute of machine load); the headline is the best round
    per_round = [ratio(q.get("dsm_train_steps_per_sec", 0) * large_flops / 1e9, q.get("matmul_gflops"))
                 for q in thr.get("paired", [])]
    per_round_bare = [ratio(q.get("bare_jax_steps_per_sec", 0) * large_flops / 1e9, q.get("matmul_gflops"))
                      for q in thr.get("paired", [])]
    per_round_ceiling = [ratio(q.get("matmuls_alone_steps_per_sec", 0) * large_flops / 1e9, q.get("matmul_gflops"))
                         for q in thr.get("paired", [])]
    budget = [parts_budget(q, large_flops) for q in thr.get("paired", [])]
    mm_cpu = thr["matmul_cpu"].median
    cpu_med = {p: {c: v.median for c, v in d.items()} for p, d in thr["cpu"].items()}
    r = {
        "small_dsm_over_torch": ratio(best["SMALL"]["dsm train"], best["SMALL"]["torch eager"]),
        "large_dsm_over_torch": ratio(best["LARGE"]["dsm train"], best["LARGE"]["torch eager"]),
        "large_fraction_of_matmul": max([x for x in per_round if x] or [0]) or None,
        "large_fraction_of_matmul_per_round": [x and round(x, 3) for x in per_round],
        "large_fraction_of_matmul_best_over_best": ratio(dsm_large_gflops, mm),
        "large_bare_fraction_of_matmul_paired": max([x for x in per_round_bare if x] or [0]) or None,
        "large_matmuls_alone_fraction_of_matmul_paired": max([x for x in per_round_ceiling if x] or [0]) or None,
        "large_dsm_over_matmuls_alone": ratio(best["LARGE"]["dsm train"], best["LARGE"].get("matmuls alone")),
        "large_parts_budget_per_round": budget,
        "large_bare_fraction_of_matmul_cpu_basis": ratio((cpu_med["LARGE"]["bare JAX"] or 0) * large_flops / 1e9, mm_cpu),
        "large_trainer_step_fraction_of_matmul_cpu_basis": ratio(
            (cpu_med["LARGE"]["trainer step (bare loop)"] or 0) * large_flops / 1e9, mm_cpu),
        "small_bare_over_torch_1thread_cpu_basis": ratio(cpu_med["SMALL"]["bare JAX"], cpu_med["SMALL"]["torch eager 1 thread"]),
        "large_bare_over_torch_1thread_cpu_basis": ratio(cpu_med["LARGE"]["bare JAX"], cpu_med["LARGE"]["torch eager 1 thread"]),
        "small_bare_over_dsm": ratio(best["SMALL"]["bare JAX"], best["SMALL"]["dsm train"]),
        "large_bare_over_dsm": ratio(best["LARGE"]["bare JAX"], best["LARGE"]["dsm train"]),
        "small_trainer_step_over_dsm": ratio(best["SMALL"]["trainer step (bare loop)"], best["SMALL"]["dsm train"]),
        "large_trainer_step_over_dsm": ratio(best["LARGE"]["trainer step (bare loop)"], best["LARGE"]["dsm train"]),
        "small_bare_over_trainer_step": ratio(best["SMALL"]["bare JAX"], best["SMALL"]["trainer step (bare loop)"]),
        "large_bare_over_trainer_step": ratio(best["LARGE"]["bare JAX"], best["LARGE"]["trainer step (bare loop)"]),
        "large_bare_fraction_of_matmul": ratio(bare_large_gflops, mm),
        "small_dsm_over_torch_best_eager": ratio(best["SMALL"]["dsm train"], torch_best["SMALL"]),
        "large_dsm_over_torch_best_eager": ratio(best["LARGE"]["dsm train"], torch_best["LARGE"]),
        "small_dsm_over_torch_compile": ratio(best["SMALL"]["dsm train"], best["SMALL"].get("torch.compile")),
        "large_dsm_over_torch_compile": ratio(best["LARGE"]["dsm train"], best["LARGE"].get("torch.compile")),
    }
    cli = startup.get("cli", {})
    return {
        "ratios": r,
        "large": {
            "flops_per_step": large_flops,
            "flops_formula": "3 x forward, forward = 2*B*sum(in*out) = 2*256*(784*1024+1024*1024+1024*784)",
            "dsm_train_gflops": dsm_large_gflops,
            "bare_jax_gflops": bare_large_gflops,
            "matmul_gflops_best": mm,
            "matmul_gflops_per_cpu_sec_median": mm_cpu,
        },
        "targets": {
            "SMALL dsm/torch-eager >= 2": _met(r["small_dsm_over_torch"], TARGETS["small_dsm_over_torch"]),
            "LARGE dsm/torch-eager >= 1.3": _met(r["large_dsm_over_torch"], TARGETS["large_dsm_over_torch"]),
            "LARGE dsm >= 80% of matmul rate": _met(r["large_fraction_of_matmul"], TARGETS["large_fraction_of_matmul"]),
            "dsm --help < 0.3 s": _met(cli.get("dsm --help", {}).get("median_s"), TARGETS["cli_startup_s"], below=True),
            "dsm runs < 0.3 s": _met(cli.get("dsm runs --runs-dir <empty>", {}).get("median_s"), TARGETS["cli_startup_s"], below=True),
        },
    }


def _met(value, target, below=False):
    if value is None:
        return None
    return bool(value < target) if below else bool(value >= target)


def _f(v, fmt="{:.3g}", unit=""):
    if v is None:
        return "n/a"
    return fmt.format(v) + unit


def render(results: dict) -> str:
    thr, summ, st = results["throughput"], results["summary"], results["startup"]
    lines = []
    add = lines.append
    add(f"dsm benchmark  {results['date']}  ({'quick' if results['quick'] else 'full'}, "
        f"{results.get('rounds_done')} of {results['plan']['rounds']} round(s) run, best round shown; load avg start {results['load_start']} "
        f"end {results['load_end']} on {results['machine'].get('affinity_cpus')} CPUs)")
    add("")
    add("| contender | SMALL steps/s (best / median) | LARGE steps/s (best / median) | LARGE GFLOP/s (best) "
        "| steps per CPU-s SMALL / LARGE (median) |")
    add("|---|---|---|---|---|")
    for c in thr["steps_per_sec"]["SMALL"]:
        sm, lg = thr["steps_per_sec"]["SMALL"][c], thr["steps_per_sec"]["LARGE"][c]
        csm, clg = thr["steps_per_cpu_sec"]["SMALL"][c], thr["steps_per_cpu_sec"]["LARGE"][c]
        err = thr["info"]["LARGE"][c].get("error") or thr["info"]["SMALL"][c].get("error")
        gfl = lg["best"] * LARGE.step_flops() / 1e9 if lg["best"] else None
        cell = (lambda d: f"{_f(d['best'], '{:.1f}')} / {_f(d['median'], '{:.1f}')}")
        cpu_cell = "-" if c == "dsm train" else f"{_f(csm['median'], '{:.0f}')} / {_f(clg['median'], '{:.1f}')}"
        row = f"| {c} | {cell(sm)} | {cell(lg)} | {_f(gfl, '{:.1f}')} | {cpu_cell} |"
        if err:
            row += f" n/a: {err[:120]}"
        add(row)
    add(f"| jnp.dot 2048² f32 | | | {_f(summ['large']['matmul_gflops_best'], '{:.1f}')} (matmul rate) | |")
    add("")
    r, t = summ["ratios"], summ["targets"]

    def mark(key):
        v = t.get(key)
        return "n/a" if v is None else ("MET" if v else "MISSED")

    add("| ratio | value | target | status |")
    add("|---|---|---|---|")
    add(f"| SMALL dsm train / torch eager | {_f(r['small_dsm_over_torch'], '{:.2f}', 'x')} | >= 2x | {mark('SMALL dsm/torch-eager >= 2')} |")
    add(f"| LARGE dsm train / torch eager | {_f(r['large_dsm_over_torch'], '{:.2f}', 'x')} | >= 1.3x | {mark('LARGE dsm/torch-eager >= 1.3')} |")
    pct = (lambda v: _f(v and 100 * v, "{:.0f}", "%"))
    add(f"| LARGE dsm train GFLOP/s / matmul rate (same round, best round) | {pct(r['large_fraction_of_matmul'])} | >= 80% | {mark('LARGE dsm >= 80% of matmul rate')} |")
    add(f"| ... per round | {', '.join(pct(x) for x in r['large_fraction_of_matmul_per_round'])} | | |")
    add(f"| ... best dsm round / best matmul sample of the run | {pct(r['large_fraction_of_matmul_best_over_best'])} | | |")
    add(f"| LARGE bare JAX / matmul rate (same round, best round) | {pct(r['large_bare_fraction_of_matmul_paired'])} | | |")
    if r.get("large_matmuls_alone_fraction_of_matmul_paired"):
        add(f"| LARGE step's matmuls alone / matmul rate (same round, best round): the ceiling | {pct(r['large_matmuls_alone_fraction_of_matmul_paired'])} | | |")
        add(f"| LARGE dsm train / its matmuls alone (steps/s, best rounds) | {pct(r['large_dsm_over_matmuls_alone'])} | | |")
    for i, b in enumerate(r.get("large_parts_budget_per_round") or []):
        if b:
            parts = " + ".join(f"{k} {v:.2f}" for k, v in b["parts_ms"].items())
            add(f"| round {i + 1}: 80 % budget per LARGE step vs its parts alone (ms) | budget {b['budget_ms']:.2f}; "
                f"{parts} = {b['sum_ms']:.2f} ({100 * b['sum_ms'] / b['budget_ms']:.0f} % of it) | | |")
    add(f"| LARGE GFLOP per CPU-s / matmul GFLOP per CPU-s: bare JAX; trainer step | {pct(r['large_bare_fraction_of_matmul_cpu_basis'])}; {pct(r['large_trainer_step_fraction_of_matmul_cpu_basis'])} | | |")
    add(f"| steps per CPU-s, bare JAX / torch 1 thread: SMALL; LARGE | {_f(r['small_bare_over_torch_1thread_cpu_basis'], '{:.2f}', 'x')}; {_f(r['large_bare_over_torch_1thread_cpu_basis'], '{:.2f}', 'x')} | | |")
    add(f"| bare JAX / dsm train, SMALL | {_f(r['small_bare_over_dsm'], '{:.2f}', 'x')} | (overhead) | |")
    add(f"| bare JAX / dsm train, LARGE | {_f(r['large_bare_over_dsm'], '{:.2f}', 'x')} | (overhead) | |")
    add(f"| bare JAX / trainer step (same loop), SMALL | {_f(r['small_bare_over_trainer_step'], '{:.2f}', 'x')} | (graph overhead) | |")
    add(f"| bare JAX / trainer step (same loop), LARGE | {_f(r['large_bare_over_trainer_step'], '{:.2f}', 'x')} | (graph overhead) | |")
    add(f"| SMALL dsm / fastest torch eager variant (2 thr, 1 thr, OMP passive) | {_f(r['small_dsm_over_torch_best_eager'], '{:.2f}', 'x')} | | |")
    add(f"| LARGE dsm / fastest torch eager variant (2 thr, 1 thr, OMP passive) | {_f(r['large_dsm_over_torch_best_eager'], '{:.2f}', 'x')} | | |")
    add(f"| SMALL dsm / torch.compile | {_f(r['small_dsm_over_torch_compile'], '{:.2f}', 'x')} | | |")
    add(f"| LARGE dsm / torch.compile | {_f(r['large_dsm_over_torch_compile'], '{:.2f}', 'x')} | | |")
    add("")
    add("| start-up | median | best | target | status |")
    add("|---|---|---|---|---|")
    for k, label in (("dsm --help", "dsm --help < 0.3 s"), ("dsm runs --runs-dir <empty>", "dsm runs < 0.3 s")):
        d = st["cli"].get(k, {})
        add(f"| `{k}` | {_f(d.get('median_s'), '{:.3f}')} s | {_f(d.get('best_s'), '{:.3f}')} s | < 0.3 s | {mark(label)} |")
    for k in [k for k in st["first_step"] if k not in ("config", "warm_breakdown")]:
        d = st["first_step"].get(k, {})
        comp = [x.get("compile_s") for x in d.get("runs", [])]
        add(f"| first metrics line, quickstart, {k} cache | {_f(d.get('median_s'), '{:.2f}')} s | {_f(d.get('best_s'), '{:.2f}')} s | | compile_s {comp} |")
    bd = [b.get("phases_s_since_popen") for b in st["first_step"].get("warm_breakdown", []) if b.get("phases_s_since_popen")]
    if bd:
        add("")
        add("| warm start, phase reached (s since Popen) | " + " | ".join(f"run {i + 1}" for i in range(len(bd))) + " |")
        add("|---|" + "---|" * len(bd))
        for phase in bd[0]:
            add(f"| {phase} | " + " | ".join(_f(b.get(phase), "{:.2f}") for b in bd) + " |")
    if results.get("profile"):
        add("")
        add("| profile (us/step, op self time) | " + " | ".join(results["profile"]) + " |")
        add("|---|" + "---|" * len(results["profile"]))
        cats = []
        for prof in results["profile"].values():
            for c in prof.get("by_category_us_per_step", {}):
                if c not in cats:
                    cats.append(c)
        for c in cats:
            cells = []
            for prof in results["profile"].values():
                us = prof.get("by_category_us_per_step", {}).get(c)
                frac = prof.get("by_category_fraction", {}).get(c)
                cells.append("-" if us is None else f"{us:.0f} ({100 * (frac or 0):.0f}%)")
            add(f"| {c} | " + " | ".join(cells) + " |")
        add("| total op self time | " + " | ".join(_f(prof.get("op_self_us_per_step"), "{:.0f}") for prof in results["profile"].values()) + " |")
    if results.get("ablations"):
        add("")
        abl = {k: v for k, v in results["ablations"].items() if k in ("SMALL", "LARGE")}
        variants = list(next(iter(abl.values())))
        add("| ablation, bare JAX step: best steps/s (x base); median steps per CPU-s (x base) | " + " | ".join(variants) + " |")
        add("|---|" + "---|" * len(variants))
        for pname, d in abl.items():
            add(f"| {pname} | " + " | ".join(
                f"{_f(d[v]['best'], '{:.1f}')} ({_f(d[v]['best_over_base'], '{:.2f}', 'x')}); "
                f"{_f(d[v]['cpu_rate']['median'], '{:.1f}')} ({_f(d[v]['cpu_median_over_base'], '{:.2f}', 'x')})"
                for v in variants) + " |")
    for key, title, script in (("sde", "continuous-time samplers", "bench_sde.py"),
                               ("images", "convolutional NCSN vs a PyTorch twin", "bench_ncsn_conv.py"),
                               ("image_layers", "the convolutional NCSN layer by layer vs PyTorch", "bench_unet_layers.py")):
        if results.get(key):
            sub = results[key]
            add("")
            add(f"{title} (benchmarks/{script}, exit {sub['returncode']}, {sub['wall_s']} s; raw numbers {sub['results']}):")
            add(sub.get("table", ""))
    for k in ("profile_skipped", "ablations_skipped"):
        if results.get(k):
            add(f"({k.replace('_', ' ')}: {results[k]})")
    return "\n".join(lines)


def run_profiles(cfg: dict, workdir: Path) -> dict:
    out = {}
    for p in (SMALL, LARGE):
        x = data_for(p)
        try:
            bare = bench_jax.BareRunner(p, x)
            out[f"{p.name} bare"] = profile_step.profile(
                bare._run, bare.compiled.as_text(), bench_jax.SCAN, cfg["profile_dispatches"])
        except Exception as e:  # noqa: BLE001 - diagnostic only
            out[f"{p.name} bare"] = {"error": f"{type(e).__name__}: {e}"[:300]}
        try:
            tr = bench_jax.TrainerStepRunner(p, x, workdir / "profile")
            out[f"{p.name} trainer"] = profile_step.profile(
                tr._run, tr.fn._compiled[tr.length].as_text(), tr.length, cfg["profile_dispatches"])
        except Exception as e:  # noqa: BLE001
            out[f"{p.name} trainer"] = {"error": f"{type(e).__name__}: {e}"[:300]}
        try:
            eager = bench_torch.Runner(p, x, threads=1)
            eager.warm()
            out[f"{p.name} torch 1 thread"] = profile_step.torch_profile(eager.step, 100 if p is SMALL else 10)
        except Exception as e:  # noqa: BLE001
            out[f"{p.name} torch 1 thread"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return out


def append_history(results: dict) -> None:
    """One line per full run in ``benchmarks/results_history.jsonl``: on a shared machine the
    spread across runs is part of the result."""
    thr = results["throughput"]["steps_per_sec"]
    line = {"date": results["date"], "load_start": results["load_start"], "load_end": results["load_end"],
            "total_s": results["total_s"],
            "ratios": {k: round(v, 3) if isinstance(v, float) else v for k, v in results["summary"]["ratios"].items()},
            "best_steps_per_sec": {p: {c: d["best"] and round(d["best"], 2) for c, d in v.items()} for p, v in thr.items()},
            "steps_per_cpu_sec_median": {p: {c: d["median"] and round(d["median"], 2) for c, d in v.items()}
                                         for p, v in results["throughput"].get("steps_per_cpu_sec", {}).items()},
            "matmul_gflops": round(results["summary"]["large"]["matmul_gflops_best"] or 0, 1),
            "targets": results["summary"]["targets"]}
    with open(REPO / "benchmarks" / "results_history.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


def run_script(script: str, results_stem: str, quick: bool) -> dict:
    """A benchmark script of its own run as a subprocess (``--quick`` passed on): its exit
    status, wall time, results file and first table."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *(["--quick"] if quick else [])],
                          cwd=REPO, capture_output=True, text=True)
    out = REPO / "benchmarks" / f"{results_stem}{'_quick' if quick else ''}.json"
    return {"returncode": proc.returncode, "results": str(out.relative_to(REPO)),
            "wall_s": round(time.perf_counter() - t0, 1), "table": proc.stdout.strip().split("\n\n")[0],
            **({"stderr_tail": proc.stderr[-2000:]} if proc.returncode else {})}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="dsm benchmark suite (make bench): throughput vs bare JAX and PyTorch, start-up, profile")
    ap.add_argument("--quick", action="store_true", help="smoke check: one round, small step counts, no torch.compile/profile/ablations")
    ap.add_argument("--rounds", type=int, help="override the number of interleaved rounds")
    ap.add_argument("--budget-s", type=float, help="soft time limit of the whole run (default 570 s, --quick 240 s)")
    ap.add_argument("--no-torch-compile", action="store_true")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--no-ablations", action="store_true")
    ap.add_argument("--sde", action="store_true", help="also run benchmarks/bench_sde.py (PC and probability-flow ODE "
                    "vs PyTorch; subprocess, ~2-3 min, not counted in --budget-s; --quick passed on)")
    ap.add_argument("--images", action="store_true", help="also run benchmarks/bench_ncsn_conv.py (the conv NCSN's "
                    "training step and annealed Langevin vs a PyTorch twin, 3 image shapes; subprocess, ~10 min, not "
                    "counted in --budget-s; --quick passed on)")
    ap.add_argument("--out", help="results file (default benchmarks/results.json; --quick: benchmarks/results_quick.json)")
    ap.add_argument("--render", metavar="RESULTS_JSON", help="only print the tables of an existing results file")
    args = ap.parse_args(argv)
    if args.render:
        print(render(json.loads(Path(args.render).read_text())))
        return 0
    if args.out is None:
        args.out = str(REPO / "benchmarks" / ("results_quick.json" if args.quick else "results.json"))
    cfg = plan(args.quick)
    if args.rounds:
        cfg["rounds"] = args.rounds
    if args.no_torch_compile:
        cfg["torch_compile"] = False
    if args.no_ablations:
        cfg["ablation_rounds"] = 0
    if args.budget_s:
        cfg["budget_s"] = args.budget_s
    t_start = time.perf_counter()
    results = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": args.quick,
        "plan": cfg,
        "load_start": loadavg(),
        "env": {"DSM_COMPILE_CACHE (in-process training)": "0", "torch threads": bench_torch.THREADS,
                "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS")},
    }
    log("start-up: dsm --help, dsm runs, time to first metrics line (subprocesses)")
    deadline = t_start + cfg["budget_s"]
    startup = {"cli": bench_startup.cli_startup(cfg["cli_repeats"]),
               "first_step": bench_startup.time_to_first_step(REPO / "configs" / "quickstart.yaml", cfg["first_step_pairs"],
                                                              what_if=cfg["first_step_what_if"])}
    results["startup"] = startup
    with tempfile.TemporaryDirectory(prefix="dsm-bench-") as tmp:
        # leave ~2 minutes of the budget for the profile and the ablations
        thr = throughput(cfg, Path(tmp), deadline=deadline - (120 if cfg["profile_dispatches"] or cfg["ablation_rounds"] else 0))
        results["rounds_done"] = thr["rounds_done"]
        results["round_s"] = thr["round_s"]
        results["throughput"] = {
            "steps_per_sec": {p: {c: v.as_dict() for c, v in d.items()} for p, d in thr["samples"].items()},
            "steps_per_cpu_sec": {p: {c: v.as_dict() for c, v in d.items()} for p, d in thr["cpu"].items()},
            "info": thr["info"],
            "matmul_gflops": thr["matmul"].as_dict(),
            "matmul_gflops_per_cpu_sec": thr["matmul_cpu"].as_dict(),
            "large_paired_rounds": thr["paired"],
        }
        results["summary"] = summarize(thr, startup, cfg)
        left = deadline - time.perf_counter()
        if not args.no_profile and cfg["profile_dispatches"] and left < 45:
            results["profile_skipped"] = f"time budget ({left:.0f} s left)"
        elif not args.no_profile and cfg["profile_dispatches"]:
            log("jax.profiler breakdown of the compiled step")
            try:
                results["profile"] = run_profiles(cfg, Path(tmp))
            except Exception as e:  # noqa: BLE001 - the profile is diagnostic only
                results["profile_error"] = f"{type(e).__name__}: {e}"
        left = deadline - time.perf_counter()
        if cfg["ablation_rounds"] and left < 45:
            results["ablations_skipped"] = f"time budget ({left:.0f} s left)"
        elif cfg["ablation_rounds"]:
            log("ablations (bare JAX step variants, interleaved)")
            results["ablations"] = ablations.run(cfg["ablation_rounds"], log=log, workdir=Path(tmp) / "ablations")
    if args.sde:
        log("continuous-time samplers: benchmarks/bench_sde.py (subprocess)")
        results["sde"] = run_script("bench_sde.py", "results_sde", args.quick)
    if args.images:
        log("convolutional NCSN vs PyTorch: benchmarks/bench_ncsn_conv.py (subprocess)")
        results["images"] = run_script("bench_ncsn_conv.py", "results_ncsn_conv", args.quick)
        log("the conv NCSN layer by layer vs PyTorch: benchmarks/bench_unet_layers.py (subprocess)")
        results["image_layers"] = run_script("bench_unet_layers.py", "results_unet_layers", args.quick)
    results["load_end"] = loadavg()
    results["machine"] = machine_info()
    results["total_s"] = round(time.perf_counter() - t_start, 1)
    Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    print(render(results))
    print(f"\n(total {results['total_s']} s; written {args.out})")
    if not args.quick and "summary" in results:
        append_history(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
