"""Data parallelism over forced host devices (each configuration in its own process: the device
count is fixed when JAX starts). Bounded by timeouts so that a stuck collective cannot hang CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import write_config


def train_on(n_devices: int, config: str, runs_dir, name: str, extra=()):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}", "DSM_RUNS": str(runs_dir)}
    out = subprocess.run(
        [sys.executable, "-m", "dsmcli", "train", "--config", config, "--name", name, *extra],
        capture_output=True, text=True, env=env, timeout=300,
    )
    return out


def curve(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_same_loss_curve_on_one_and_four_devices(tmp_path):
    config = write_config(tmp_path / "dp.yaml", {"train.steps": 60, "train.eval_every": 30, "train.ckpt_every": 30})
    runs_dir = tmp_path / "runs"
    for n in (1, 4):
        out = train_on(n, config, runs_dir, f"dp{n}")
        assert out.returncode == 0, out.stderr[-2000:]
    one, four = curve(runs_dir / "dp1" / "v001"), curve(runs_dir / "dp4" / "v001")
    assert json.loads((runs_dir / "dp4" / "v001" / "summary.json").read_text())["devices"] == 4
    assert [r["step"] for r in one] == [r["step"] for r in four]
    # Same batches and noise; only the order of the batch reduction differs across devices.
    np.testing.assert_allclose([r["loss"] for r in one], [r["loss"] for r in four], rtol=1e-5)
    np.testing.assert_allclose([r["score_error"] for r in one if "score_error" in r],
                               [r["score_error"] for r in four if "score_error" in r], rtol=1e-4)


def test_batch_not_divisible_by_devices_is_a_user_error(tmp_path):
    config = write_config(tmp_path / "odd.yaml", {"train.batch_size": 30})
    out = train_on(4, config, tmp_path / "runs", "odd")
    assert out.returncode == 2
    assert "train.batch_size: 30 is not divisible by the 4 devices" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "runs" / "odd").exists()


@pytest.mark.parametrize("devices,ok", [(2, True), (8, False)])
def test_parallel_devices_limits_the_data_axis(tmp_path, devices, ok):
    config = write_config(tmp_path / "p.yaml", {"train.steps": 10, "train.log_every": 10, "train.eval_every": 10,
                                                "train.ckpt_every": 10})
    out = train_on(4, config, tmp_path / "runs", "p", [f"parallel.devices={devices}"])
    if ok:
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads((tmp_path / "runs" / "p" / "v001" / "summary.json").read_text())["devices"] == 2
    else:
        assert out.returncode == 2 and "parallel.devices: 8 requested but JAX sees 4" in out.stderr
