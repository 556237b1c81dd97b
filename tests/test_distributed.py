"""Multi-process training (``parallel.distributed``) with two local CPU processes, one device
each, so the mesh spans two devices over two processes and the gradient all-reduce goes through
gloo over TCP. Every subprocess runs under a hard deadline: a stuck collective kills both
processes and fails the test with their stderr instead of hanging CI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_config

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 120  # for a whole two-process run; a healthy one takes ~10 s on two busy cores
SHORT = {"train.steps": 20, "train.log_every": 5, "train.eval_every": 10, "train.ckpt_every": 10}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(runs_dir, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device per process
    return {**env, "JAX_PLATFORMS": "cpu", "DSM_RUNS": str(runs_dir), **extra}


class Pair:
    """Two ``dsm train`` processes of one distributed run; output goes to files (a full pipe
    could stall one process and, through the collectives, the other)."""

    def __init__(self, tmp_path, config, runs_dir, name, extra=(), env=None):
        port = free_port()
        self.procs, self.logs, self.sandboxes = [], [], []
        for pid in (0, 1):
            box = tmp_path / f"proc{pid}"
            (box / "tmp").mkdir(parents=True)
            out, err = open(box.parent / f"proc{pid}.out", "w+"), open(box.parent / f"proc{pid}.err", "w+")
            cmd = [sys.executable, "-m", "dsmcli", "train", "--config", config, "--name", name,
                   "parallel.distributed=true", f"parallel.coordinator_address=localhost:{port}",
                   "parallel.num_processes=2", f"parallel.process_id={pid}", "parallel.platform=cpu", *extra]
            penv = base_env(runs_dir, TMPDIR=str(box / "tmp"), **(env or {}))
            penv["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [penv.get("PYTHONPATH")])])
            self.procs.append(subprocess.Popen(cmd, cwd=box, env=penv, stdout=out, stderr=err))
            self.logs.append((out, err))
            self.sandboxes.append(box)
        self.started = time.monotonic()

    def output(self, pid: int) -> tuple[str, str]:
        out, err = self.logs[pid]
        out.seek(0), err.seek(0)
        return out.read(), err.read()

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):  # whatever happened, no process outlives the test
        self.kill()
        for out, err in self.logs:
            out.close(), err.close()

    def fail(self, why: str):
        self.kill()
        tails = "\n".join(f"--- process {i} stderr ---\n{self.output(i)[1][-3000:]}" for i in (0, 1))
        pytest.fail(f"{why}\n{tails}")

    def wait(self, deadline_s: float = DEADLINE_S) -> list[int]:
        """Exit codes of both; past the deadline both are killed and the test fails."""
        codes = []
        for p in self.procs:
            try:
                codes.append(p.wait(timeout=max(0.1, self.started + deadline_s - time.monotonic())))
            except subprocess.TimeoutExpired:
                self.fail(f"distributed run still going after {deadline_s} s (hung collective?); killed both")
        return codes


def single_process(config, runs_dir, name, devices: int):
    env = base_env(runs_dir, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    out = subprocess.run([sys.executable, "-m", "dsmcli", "train", "--config", config, "--name", name],
                         capture_output=True, text=True, env=env, timeout=DEADLINE_S)
    assert out.returncode == 0, out.stderr[-2000:]
    return runs_dir / name / "v001"


def curve(run_dir, key):
    return [r.get(key) for r in (json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines())]


def final_state_digest(run_dir):
    last = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    return last.name, hashlib.sha256((last / "state.msgpack").read_bytes()).hexdigest()


def test_two_processes_train_one_run_as_one_process_on_two_devices(tmp_path):
    config = write_config(tmp_path / "dist.yaml", SHORT)
    runs_dir = tmp_path / "runs"
    with Pair(tmp_path, config, runs_dir, "dist") as pair:
        codes = pair.wait()
        if codes != [0, 0]:
            pair.fail(f"exit codes {codes}")
        (out0, _), (out1, _) = pair.output(0), pair.output(1)

    # Exactly one run directory, written by process 0, complete.
    assert [p.relative_to(runs_dir).as_posix() for p in runs_dir.glob("*/*")] == ["dist/v001"]
    run = runs_dir / "dist" / "v001"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 20 and summary["devices"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000000", "step_00000010", "step_00000020"]
    assert out0.strip().splitlines()[-1] == str(run)
    # Process 1 trained to completion but wrote nothing: the path it prints does not exist, and
    # neither process left anything in its working directory or its TMPDIR.
    assert "completed" in out1 and not os.path.exists(out1.strip().splitlines()[-1])
    for box in pair.sandboxes:
        assert list(box.rglob("*")) == [box / "tmp"], f"{box.name} wrote {list(box.rglob('*'))}"

    # The same SPMD program as one process with two devices (the batch split the same way, one
    # all-reduce of two partial sums, which is commutative): equal bit for bit, loss curve and
    # final parameters. Against one device the order of the batch reduction differs: ~1e-7.
    two = single_process(config, tmp_path / "ref", "two", devices=2)
    one = single_process(config, tmp_path / "ref", "one", devices=1)
    for key in ("step", "loss", "grad_norm", "score_error"):
        assert curve(run, key) == curve(two, key), key
    assert final_state_digest(run) == final_state_digest(two)
    assert curve(run, "step") == curve(one, "step")
    for key in ("loss", "grad_norm"):
        np.testing.assert_allclose(curve(run, key), curve(one, key), rtol=1e-5)


@pytest.mark.slow
def test_a_dead_peer_ends_the_other_process_instead_of_hanging(tmp_path):
    config = write_config(tmp_path / "long.yaml", {"train.steps": 1_000_000, "train.log_every": 10,
                                                   "train.eval_every": 1_000_000, "train.ckpt_every": 1_000_000})
    runs_dir = tmp_path / "runs"
    metrics = runs_dir / "long" / "v001" / "metrics.jsonl"
    with Pair(tmp_path, config, runs_dir, "long", env={"DSM_HEARTBEAT_TIMEOUT_S": "10"}) as pair:
        while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
            if any(p.poll() is not None for p in pair.procs) or time.monotonic() - pair.started > DEADLINE_S:
                pair.fail("training did not get going")
            time.sleep(0.2)
        pair.procs[1].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        try:
            code = pair.procs[0].wait(timeout=60)
        except subprocess.TimeoutExpired:
            pair.fail("process 0 still running 60 s after its peer died")
        waited = time.monotonic() - killed_at
    # The next all-reduce fails at once (gloo: connection reset) and process 0 records the
    # failure; its exit then waits in JAX's shutdown barrier until the heartbeat timeout (10 s
    # here) declares the peer dead, and JAX's distributed runtime aborts the process.
    assert code != 0 and waited < 40
    summary = json.loads((runs_dir / "long" / "v001" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"], summary  # e.g. "Gloo all-reduce failed: ..."
