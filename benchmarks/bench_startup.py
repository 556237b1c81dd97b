"""Start-up costs, measured on subprocesses: ``dsm --help``, ``dsm runs`` on an empty runs
directory, and the time from process start to the first ``metrics.jsonl`` line of a training run
(cold vs warm persistent compilation cache)."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def dsm_exe() -> list[str]:
    exe = Path(sys.executable).parent / "dsm"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dsmcli"]


def time_command(args: list[str], repeats: int = 5, env: dict | None = None) -> dict:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, env=env, cwd=REPO)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            return {"error": f"exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}"}
    return {"median_s": statistics.median(times), "best_s": min(times), "all_s": [round(t, 3) for t in times]}


def cli_startup(repeats: int = 5) -> dict:
    with tempfile.TemporaryDirectory(prefix="dsm-bench-runs-") as empty:
        return {
            "dsm --help": time_command([*dsm_exe(), "--help"], repeats),
            "dsm runs --runs-dir <empty>": time_command([*dsm_exe(), "runs", "--runs-dir", empty], repeats),
        }


# What-if for the start-up finding: the same ``dsm`` entry point, but with the persistent cache
# threshold ``jax_persistent_cache_min_compile_time_secs`` lowered from dsmcli's 0.2 s to 0 so the
# dozen small kernels of model initialisation are cached too (patched in this subprocess only).
_CACHE_ALL = """
import sys
import dsmcli.jaxsetup as js
_orig = js.setup
def setup():
    first = not js._done
    _orig()
    if first:
        import os, jax
        if os.environ.get("DSM_COMPILE_CACHE", "") != "0":
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
js.setup = setup
sys.argv = ["dsm", *sys.argv[1:]]
from dsmcli.cli import main
main()
"""


def dsm_cache_all() -> list[str]:
    return [sys.executable, "-c", _CACHE_ALL]


# Where the time to the first metrics line goes: the same ``dsm train`` with timestamps taken at
# the boundaries of its phases (module-level wrappers, nothing in dsmcli is changed), written to
# stderr as one ``BENCH_MARKS {...}`` line when the first metrics line is appended.
_BREAKDOWN = """
import json, sys, time
T = {}
def mark(k):
    T.setdefault(k, time.time())
mark("interpreter up")
import dsmcli.cli
mark("dsmcli.cli imported (typer, rich)")
import jax
mark("jax imported")
import flax.nnx, optax
mark("flax + optax imported")
import dsmcli.experiment as ex, dsmcli.train as tr, dsmcli.runs as rn
_build = ex.build
def build(cfg):
    mark("config validated")
    e = _build(cfg)
    mark("experiment built (data + model init)")
    return e
ex.build = build
_call = tr.StepFunction.__call__
def call(self, *a, **k):
    mark("trainer set up (optimizer state, step-0 checkpoint)")
    r = _call(self, *a, **k)
    mark("step function traced + compiled/loaded from cache")
    return r
tr.StepFunction.__call__ = call
_append = rn.MetricsLog.append
def append(self, record):
    _append(self, record)
    if "first metrics line written" not in T:
        mark("first metrics line written")
        print("BENCH_MARKS " + json.dumps(T), file=sys.stderr, flush=True)
rn.MetricsLog.append = append
sys.argv = ["dsm", *sys.argv[1:]]
dsmcli.cli.main()
"""


def dsm_breakdown() -> list[str]:
    return [sys.executable, "-c", _BREAKDOWN]


def first_step(config: Path, cache_dir: Path, runs_dir: Path, timeout: float = 300.0, exe: list[str] | None = None) -> dict:
    """Seconds from ``Popen`` of ``dsm train`` to the first line of its ``metrics.jsonl`` (the
    first fused dispatch of ``log_every`` steps done), then the run is stopped with SIGTERM."""
    env = {**os.environ, "DSM_COMPILE_CACHE": str(cache_dir)}
    wall0 = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*(exe or dsm_exe()), "train", "--config", str(config), "--runs-dir", str(runs_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    elapsed, record = None, None
    try:
        while time.perf_counter() - t0 < timeout:
            for f in runs_dir.glob("*/v*/metrics.jsonl"):
                text = f.read_text()
                if "\n" in text:
                    elapsed = time.perf_counter() - t0
                    record = json.loads(text.splitlines()[0])
                    break
            if elapsed is not None or proc.poll() is not None:
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    if elapsed is None:
        return {"error": f"no metrics line (exit {proc.returncode}): {err.decode(errors='replace')[-300:]}"}
    marks = None
    for line in err.decode(errors="replace").splitlines():
        if line.startswith("BENCH_MARKS "):
            raw = json.loads(line[len("BENCH_MARKS "):])
            marks = {k: round(v - wall0, 3) for k, v in sorted(raw.items(), key=lambda kv: kv[1])}
    return {
        **({"phases_s_since_popen": marks} if marks else {}),
        "first_metrics_s": elapsed,
        "first_step": record.get("step"),
        "compile_s": record.get("compile_s"),
        "first_dispatch_steps_per_sec": record.get("steps_per_sec"),
    }


def time_to_first_step(config: Path, pairs: int = 1, what_if: bool = True) -> dict:
    """``pairs`` × (cold run with an empty cache dir, then warm run reusing it); with ``what_if``
    also the same pair through :data:`_CACHE_ALL` (every compilation cached)."""
    variants = {"cold": [], "warm": []}
    breakdown: list | None = [] if what_if else None
    if what_if:
        variants.update({"cold, cache all (what-if)": [], "warm, cache all (what-if)": []})
    for _ in range(pairs):
        for tag, exe in (("", None), (", cache all (what-if)", dsm_cache_all())):
            if exe is not None and not what_if:
                continue
            with tempfile.TemporaryDirectory(prefix="dsm-bench-cache-") as tmp:
                tmp = Path(tmp)
                variants["cold" + tag].append(first_step(config, tmp / "cache", tmp / "runs_cold", exe=exe))
                variants["warm" + tag].append(first_step(config, tmp / "cache", tmp / "runs_warm", exe=exe))
                if exe is None and breakdown is not None:  # a third, timestamped warm run
                    breakdown.append(first_step(config, tmp / "cache", tmp / "runs_marks", exe=dsm_breakdown()))

    def summary(rows):
        ok = [r["first_metrics_s"] for r in rows if "first_metrics_s" in r]
        out = {"runs": rows}
        if ok:
            out["median_s"] = statistics.median(ok)
            out["best_s"] = min(ok)
        return out

    return {"config": str(config.relative_to(REPO) if config.is_relative_to(REPO) else config),
            **{k: summary(v) for k, v in variants.items()},
            **({"warm_breakdown": breakdown} if breakdown else {})}
