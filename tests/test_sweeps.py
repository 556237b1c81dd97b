"""Sweeps: ``dsm compare --jobs N`` worker processes and ``--launcher ray`` give the same runs as
``dsm train`` bit for bit; a dying worker is its row's failure; ``--sweep``/``--seeds`` build
the variants; an interrupted sweep is resumed by reusing what completed; progress lines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dsmcli import compare, runs
from dsmcli.cli import app

from tests.conftest import write_config

DSM = [sys.executable, "-m", "dsmcli"]
TIMING = {"steps_per_sec", "wall_s", "compile_s"}
SMALL_SAMPLE = ["sample.n=60", "sample.steps=5"]


def dsm(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def records(run_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in runs.MetricsLog(Path(run_dir) / "metrics.jsonl").read()]


def write_compare(tmp_path, tiny_config, variants, seeds=(0, 1), name="t"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": Path(tiny_config).name, "seeds": list(seeds), "variants": variants}))
    return path


def assert_each_run_equals_a_plain_train(table, tmp_path):
    for row in table:
        for run_dir in row["runs"]:
            fresh = tmp_path / "fresh"
            out = subprocess.run([*DSM, "train", "--config", Path(run_dir) / "config.yaml", "--runs-dir", fresh,
                                  "--name", "again"], capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, out.stderr[-2000:]
            again = sorted((fresh / "again").iterdir())[-1]
            assert records(again) == records(run_dir), run_dir


def test_jobs_2_runs_equal_plain_trainings_bit_for_bit(tmp_path, tiny_config, runs_dir):
    cmp = write_compare(tmp_path, tiny_config, [{"name": "a", "set": {"objective.sigma": 0.3}},
                                                {"name": "b", "set": {"objective.sigma": 0.5}},
                                                {"name": "a-sampled", "set": {"objective.sigma": 0.3, "sample.step_size": 0.02}}],
                        seeds=[0])
    out, table = compare.run(str(cmp), SMALL_SAMPLE, runs_dir=str(runs_dir), jobs=2)
    assert all(row["status"] == "completed" for row in table)
    by = {row["variant"]: row for row in table}
    assert by["a"]["runs"] == by["a-sampled"]["runs"]  # sampling-only variants share their training run
    assert len({r for row in table for r in row["runs"]}) == 2
    assert_each_run_equals_a_plain_train(table[:2], tmp_path)
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["jobs"] == 2 and saved["launcher"] == "local" and saved["seeds"] == [0]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs at least two CPUs for a worker pinned to fewer cores than a plain run")
def test_a_pinned_worker_trains_a_conv_network_as_a_plain_train_does(tmp_path, runs_dir):
    """A --jobs 2 worker has half the cores; the weight gradients of a convolution network (Eigen
    splits their long batch × pixels axis over its threads) still come out as in a ``dsm train``
    with every core, because the worker's thread pools are sized before it is pinned."""
    conv = write_config(tmp_path / "conv.yaml", {"train.batch_size": 128, "train.steps": 20},
                        data={"kind": "digits", "scale": "unit"},
                        model={"kind": "ncsn_conv", "channels": [8, 16], "embedding": 16},
                        objective={"kind": "ncsn", "n_sigmas": 3},
                        sample={"kind": "annealed_langevin", "n": 16, "steps": 2, "step_size": 1e-5,
                                "init": {"kind": "uniform", "low": 0, "high": 1}})
    cmp = write_compare(tmp_path, conv, [{"name": "conv", "set": {}}], seeds=[0, 1])  # two workers, a core each
    out, table = compare.run(str(cmp), [], runs_dir=str(runs_dir), jobs=2)
    assert table[0]["status"] == "completed" and len(table[0]["runs"]) == 2, table[0].get("errors")
    # one run retrained suffices: pinned in the old order, this one already differed at step 10
    assert_each_run_equals_a_plain_train([{**table[0], "runs": table[0]["runs"][:1]}], tmp_path)


def test_workers_start_jax_before_pinning_unless_every_network_is_dense(tmp_path, tiny_config):
    """Dense networks on non-image data pin first (faster); anything else sizes the pools first."""
    from dsmcli import config
    from dsmcli.launch import pools_from_every_core

    def group(**changes):
        raw = yaml.safe_load(Path(tiny_config).read_text()) | {"name": "t"} | changes
        return {"config": config.validate({k: v for k, v in raw.items() if v is not None}, "t").to_dict()}

    dense = group()
    conv = group(data={"kind": "digits"}, objective={"kind": "ncsn", "n_sigmas": 3}, model=None)
    assert conv["config"]["model"]["kind"] == "ncsn_conv"
    tied = group(model={"kind": "tied_dae", "hidden": 8})
    assert not pools_from_every_core([dense, dense])
    assert pools_from_every_core([dense, conv]) and pools_from_every_core([tied])


def test_a_worker_that_dies_fails_its_own_rows_only(tmp_path, tiny_config, runs_dir, monkeypatch):
    # every process that saves a checkpoint of step 40 is killed with -9 (a crash, the OOM killer)
    monkeypatch.setenv("DSM_TEST_KILL_DURING_CHECKPOINT", "40")
    cmp = write_compare(tmp_path, tiny_config, [{"name": "dies", "set": {}},
                                                {"name": "lives", "set": {"train.steps": 20}}], seeds=[0])
    out, table = compare.run(str(cmp), SMALL_SAMPLE, runs_dir=str(runs_dir), jobs=2)
    by = {row["variant"]: row for row in table}
    assert by["lives"]["status"] == "completed"
    assert by["dies"]["status"] == "failed" and "worker process died" in by["dies"]["errors"][0]
    assert "| dies | failed" in (out / "comparison.md").read_text()


def test_sweep_and_seeds_from_the_command_line(tmp_path, tiny_config, runs_dir):
    r = dsm("compare", "--config", tiny_config, "--sweep", "objective.sigma=0.3,0.5", "--sweep",
            "model.hidden=[8,8],[16,16]", "--seeds", "5", *SMALL_SAMPLE, "train.steps=20")
    assert r.exit_code == 0, r.output
    out = Path(r.stdout.strip().splitlines()[-1])
    saved = json.loads((out / "comparison.json").read_text())
    names = [v["variant"] for v in saved["variants"]]
    assert names == ["objective.sigma=0.3,model.hidden=[8,8]", "objective.sigma=0.3,model.hidden=[16,16]",
                     "objective.sigma=0.5,model.hidden=[8,8]", "objective.sigma=0.5,model.hidden=[16,16]"]
    assert saved["sweep"] == ["objective.sigma=0.3,0.5", "model.hidden=[8,8],[16,16]"] and saved["seeds"] == [5]
    assert saved["overrides"] == [*SMALL_SAMPLE, "train.steps=20"]
    run = Path(saved["variants"][3]["runs"][0])
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["objective"]["sigma"] == 0.5 and cfg["model"]["hidden"] == [16, 16] and cfg["seed"] == 5
    assert run.parent.name == "tiny-objective.sigma-0.5_model.hidden-16_16"
    md = (out / "comparison.md").read_text()
    assert "- sweep: `objective.sigma=0.3,0.5` × `model.hidden=[8,8],[16,16]`" in md and "- seeds: 5" in md


def test_seeds_override_of_a_compare_file_and_bad_sweeps(tmp_path, tiny_config, runs_dir):
    cmp = write_compare(tmp_path, tiny_config, [{"name": "a", "set": {}}], seeds=[0, 1, 2])
    out, table = compare.run(str(cmp), ["seeds=[3]", "train.steps=20", *SMALL_SAMPLE], runs_dir=str(runs_dir))
    assert table[0]["seeds"] == [3]
    for args, text in [(["--sweep", "objective.sigma"], "expected KEY=V1,V2"),
                       (["--sweep", "objective.sigma=0.1,0.1"], "a value is repeated"),
                       (["--sweep", "objective.sigmaa=0.1,0.2"], "did you mean 'objective.sigma'"),
                       (["--seeds", "0,x"], "not a comma-separated list of integers"),
                       (["--launcher", "slurm"], "allowed: local, ray")]:
        r = dsm("compare", "--config", tiny_config, *args)
        assert r.exit_code == 2 and text in r.stderr and "Traceback" not in r.output, (args, r.output)


def test_an_interrupted_sweep_is_finished_by_reusing_what_completed(tmp_path, tiny_config):
    runs_dir = tmp_path / "runs"
    cmp = write_compare(tmp_path, tiny_config, [{"name": f"v{i}", "set": {"objective.sigma": 0.2 + 0.1 * i}}
                                                for i in range(4)], seeds=[0])
    proc = subprocess.Popen([*DSM, "compare", "--config", cmp, "--runs-dir", runs_dir, *SMALL_SAMPLE],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (runs_dir / "t-v1").is_dir():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done = [p for p in runs_dir.glob("t-*/v*") if runs.run_row(p)["status"] == "completed"]
    assert done, "the first variant should have completed before the kill"
    out = subprocess.run([*DSM, "compare", "--config", cmp, "--runs-dir", runs_dir, *SMALL_SAMPLE],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    saved = json.loads((Path(out.stdout.strip().splitlines()[-1]) / "comparison.json").read_text())
    reused = {r["run_dir"] for r in saved["runs"] if r.get("reused")}
    assert {str(p.resolve()) for p in done} <= reused
    assert all(r["status"] == "completed" for r in saved["runs"])
    # off a terminal: one plain line per stage, with its place in the sweep
    assert "compare [1/4] v0 seed 0: reused" in out.stderr
    assert "trained in" in out.stderr and "evaluated and sampled in" in out.stderr
    assert "train step" not in out.stderr  # the runs' own progress stays inside the compare's


def test_quiet_silences_progress_and_notes(tmp_path, tiny_config):
    out = subprocess.run([*DSM, "train", "--config", tiny_config, "--runs-dir", tmp_path / "runs"],
                         capture_output=True, text=True, timeout=300)
    assert "train step 10/40 loss" in out.stderr and "steps/s" in out.stderr and "ETA" in out.stderr
    assert out.stderr.count("train step") == 4  # one line per log_every dispatch
    run_dir = out.stdout.strip().splitlines()[-1]
    for args, line in ((["sample", run_dir, "--n", 50, "sample.steps=5"], "sample (langevin) particle 50/50"),
                       (["eval", run_dir], "eval stage 2/2"),
                       (["train", "--config", tiny_config, "--runs-dir", tmp_path / "runs"], "train step 40/40")):
        shown = dsm(*args)  # in process: stderr is not a terminal here either
        assert shown.exit_code == 0 and line in shown.stderr, shown.stderr
        silent = dsm(*args, "--quiet")
        assert silent.exit_code == 0 and silent.stderr == "", silent.stderr


# ------------------------------------------------------------------ Ray (optional extra)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster(tmp_path):
    """A real local Ray cluster: a head and one more worker node (its own raylet) on loopback."""
    pytest.importorskip("ray")
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    if ray_cli is None:
        pytest.skip("the ray command is not installed")
    import secrets

    port = _free_port()
    # Ray >= 2.59 authenticates with a token by default: one shared by the nodes and the driver
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(Path(__file__).parents[1]),
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    temp = f"/tmp/ray-dsm-{port}"
    head = subprocess.run([ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                           "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"],
                          capture_output=True, text=True, timeout=180, env=env)
    assert head.returncode == 0, head.stderr[-3000:]
    address = f"127.0.0.1:{port}"
    try:
        worker = subprocess.run([ray_cli, "start", f"--address={address}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                                 "--disable-usage-stats"], capture_output=True, text=True, timeout=180, env=env)
        assert worker.returncode == 0, worker.stderr[-3000:]
        status = subprocess.run([ray_cli, "status", f"--address={address}"], capture_output=True, text=True, timeout=120,
                                env=env)
        assert status.stdout.count(" node_") == 2, status.stdout  # the head and the worker node
        yield address, env
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120, env=env)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_ray_launcher_on_a_local_cluster_gives_the_same_runs(tmp_path, tiny_config, ray_cluster):
    runs_dir = tmp_path / "runs"
    cmp = write_compare(tmp_path, tiny_config, [{"name": "a", "set": {"objective.sigma": 0.3}},
                                                {"name": "b", "set": {"objective.sigma": 0.5}}])
    address, env = ray_cluster
    out = subprocess.run([*DSM, "compare", "--config", cmp, "--runs-dir", runs_dir, "--launcher", "ray", "--ray-address",
                          address, "--jobs", "2", *SMALL_SAMPLE], capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    saved = json.loads((Path(out.stdout.strip().splitlines()[-1]) / "comparison.json").read_text())
    assert saved["launcher"] == "ray" and all(v["status"] == "completed" for v in saved["variants"])
    assert_each_run_equals_a_plain_train(saved["variants"], tmp_path)
    # the run-directory guarantees held across the cluster's workers: one version per run, all complete
    assert sorted(p.name for p in (runs_dir / "t-a").iterdir()) == ["v001", "v002"]


def test_ray_launcher_without_ray_is_a_clear_error(tmp_path, tiny_config, monkeypatch):
    if __import__("importlib").util.find_spec("ray") is not None:
        monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were absent
    r = dsm("compare", "--config", tiny_config, "--launcher", "ray", "--runs-dir", tmp_path / "runs")
    assert r.exit_code == 2 and "pip install 'dsm[ray]'" in r.stderr
