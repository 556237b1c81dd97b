"""``dsm train`` itself, through ``dsmcli.api.train``: logging, checkpoints and the full trainer
loop included; ``summary["steps_per_sec"]`` excludes compilation (the trainer subtracts it)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import LR, SIGMA, Problem


def write_config(p: Problem, workdir: Path, x: np.ndarray, steps: int, log_every: int) -> Path:
    """A config file for ``p`` (the data as an npz file next to it; YAML flow style = JSON)."""
    workdir.mkdir(parents=True, exist_ok=True)
    data_path = workdir / f"{p.name.lower()}_data.npz"
    if not data_path.exists():
        np.savez(data_path, x=x)
    cfg = {
        "name": f"bench_{p.name.lower()}",
        "seed": 0,
        # all rows go to training except the minimum test split the npz reader allows
        "data": {"kind": "npz", "path": str(data_path), "test_fraction": 0.01},
        "model": {"kind": "mlp", "hidden": list(p.hidden), "activation": "softplus"},
        "objective": {"kind": "dsm", "sigma": SIGMA},
        "optim": {"kind": "adam", "lr": LR},
        "train": {
            "steps": steps,
            "batch_size": p.batch,
            "log_every": log_every,
            "ckpt_every": 1000 if 1000 % log_every == 0 else log_every * max(1, 1000 // log_every),
            "eval_every": log_every * 10**6,
        },
    }
    path = workdir / f"{p.name.lower()}_{steps}.yaml"
    path.write_text(json.dumps(cfg, indent=1))
    return path


def measure(p: Problem, x: np.ndarray, workdir: Path, steps: int, log_every: int) -> dict:
    from dsmcli import api

    cfg = write_config(p, workdir, x, steps, log_every)
    t0 = time.perf_counter()
    from dsmcli import console

    console.set_quiet(True)  # no progress lines in the benchmark's own log
    run_dir, summary = api.train(str(cfg), runs_dir=str(workdir / "runs"))
    wall = time.perf_counter() - t0
    records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    per_dispatch = [r["steps_per_sec"] for r in records if r.get("steps_per_sec")]
    return {
        "steps_per_sec": summary["steps_per_sec"],
        "compile_s": summary["compile_s"],
        "wall_s": round(wall, 3),
        "final_loss": summary.get("loss"),
        "status": summary["status"],
        "dispatch_steps_per_sec_max": max(per_dispatch) if per_dispatch else None,
        "checkpoints": sorted(q.name for q in (Path(run_dir) / "checkpoints").glob("*")) if (Path(run_dir) / "checkpoints").is_dir() else None,
    }
