"""Random interleavings of train / resume / sample / eval / kill -9 on one run directory
(hypothesis draws the schedule), and the run store's invariants after each:

* every command ends in success, a clean refusal (exit 2 with its reason) or the kill;
* ``metrics.jsonl`` steps strictly increase; every checkpoint loads; ``summary.json`` agrees
  with the log and the checkpoints;
* nothing outside the runs directory is touched;
* one last plain resume finishes the run, and it equals an uninterrupted run bit for bit.

A few schedules run in ``make test``; many more in the slow variant (``make test-all``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsmcli import checkpoint, experiment, optim, runs
from dsmcli.config import load_experiment
from dsmcli.train import initial_state
from tests.conftest import write_config
from tests.test_run_store import snapshot

DSM = [sys.executable, "-m", "dsmcli"]
TIMING = {"steps_per_sec", "wall_s", "compile_s"}
STEPS = {"train.steps": 3000, "train.log_every": 100, "train.eval_every": 1000, "train.ckpt_every": 500}
ACCEPTED_REFUSALS = ("is being trained by process", "is not a dsm run directory", "does not exist",
                     "has no complete checkpoint", "nothing to do")
OPS = st.lists(st.tuples(st.sampled_from(["resume", "sample", "eval", "kill", "wait"]), st.floats(0.0, 2.0)),
               min_size=2, max_size=6)


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([*DSM, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})


def records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in runs.MetricsLog(run_dir / "metrics.jsonl").read()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    config = write_config(tmp / "p.yaml", STEPS)
    out = subprocess.run([*DSM, "train", "--config", config, "--runs-dir", tmp / "runs"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return config, tmp / "runs" / "p" / "v001"


def check_invariants(run_dir: Path) -> None:
    recs = runs.MetricsLog(run_dir / "metrics.jsonl").read()
    steps = [r["step"] for r in recs]
    assert steps == sorted(set(steps)), steps
    assert not runs.damage(run_dir)
    cfg = load_experiment(run_dir / "config.yaml")
    exp = experiment.build(cfg)
    target = initial_state(exp, optim.for_experiment(exp, cfg.train.steps))
    saved = checkpoint.checkpoints(run_dir)
    for step, path in saved:
        assert checkpoint.load(path, target)[0] == step
    summary = runs.read_json(run_dir / "summary.json", {})
    if summary.get("status") == "completed":
        assert summary["steps"] == steps[-1] == saved[-1][0] == cfg.train.steps
    if summary.get("steps") is not None and steps:
        assert summary["steps"] <= steps[-1] or summary["status"] == "running"


def run_schedule(tmp: Path, reference, ops) -> None:
    config, ref = reference
    local = tmp / "p.yaml"
    local.write_text(Path(config).read_text())
    runs_dir = tmp / "runs"
    outside = snapshot(tmp)
    run_dir = runs_dir / "p" / "v001"
    procs: list[tuple[str, subprocess.Popen]] = [("train", start("train", "--config", local, "--runs-dir", runs_dir))]
    rng = random.Random(str(ops))
    try:
        for op, delay in ops:
            time.sleep(delay)
            if op == "resume":
                procs.append((op, start("train", "--resume", run_dir)))
            elif op in ("sample", "eval"):
                extra = ["--n", 50, "sample.steps=5"] if op == "sample" else []
                procs.append((op, start(op, run_dir, *extra)))
            elif op == "kill":
                writers = [p for name, p in procs if name in ("train", "resume") and p.poll() is None]
                if writers:
                    rng.choice(writers).send_signal(signal.SIGKILL)
            else:
                for _, p in procs:
                    p.wait(timeout=300)
        for name, p in procs:
            _, err = p.communicate(timeout=300)
            if p.returncode == -signal.SIGKILL:
                continue
            assert "Traceback" not in err, (name, err[-3000:])
            assert p.returncode in (0, 2), (name, p.returncode, err[-3000:])
            if p.returncode == 2:
                assert any(reason in err for reason in ACCEPTED_REFUSALS), (name, err[-2000:])
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=60)
    assert {k: v for k, v in snapshot(tmp).items() if not k.startswith("runs/")} == outside
    if not run_dir.is_dir() or not (run_dir / "meta.json").is_file():
        return  # killed before the run directory was complete: nothing to resume (and nothing lost)
    check_invariants(run_dir)
    out = subprocess.run([*DSM, "train", "--resume", run_dir], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    check_invariants(run_dir)
    assert records(run_dir) == records(ref)
    exp = experiment.build(load_experiment(ref / "config.yaml"))
    target = initial_state(exp, optim.for_experiment(exp, exp.cfg.train.steps))
    (_, a), (_, b) = (checkpoint.restore_latest(d, target) for d in (run_dir, ref))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == STEPS["train.steps"]


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(ops=OPS)
def test_random_interleavings_keep_the_invariants(tmp_path_factory, reference, ops):
    run_schedule(tmp_path_factory.mktemp("schedule"), reference, ops)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS)
def test_many_random_interleavings_keep_the_invariants(tmp_path_factory, reference, ops):
    run_schedule(tmp_path_factory.mktemp("schedule"), reference, ops)
