"""The trainer: fused steps, exact resume, checkpoints, divergence, reproducibility."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from dsmcli import api, checkpoint, experiment
from dsmcli.config import load_experiment
from dsmcli.errors import TrainingDiverged, UserError
from dsmcli.train import load_state
from tests.conftest import write_config


def final_params(run_dir):
    cfg = load_experiment(run_dir / "config.yaml")
    step, params = load_state(experiment.build(cfg), run_dir)
    return step, jax.tree.leaves(params)


def losses(run_dir):
    return [(r["step"], r["loss"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def test_train_writes_the_run_directory(tiny_config, runs_dir):
    run_dir, summary = api.train(tiny_config, runs_dir=str(runs_dir))
    assert run_dir == runs_dir / "tiny" / "v001"
    for name in ("config.yaml", "meta.json", "metrics.jsonl", "summary.json"):
        assert (run_dir / name).is_file()
    assert summary["status"] == "completed" and summary["steps"] == 40
    assert summary["steps_per_sec"] > 0 and summary["compile_s"] > 0
    assert 0 <= summary["score_error"] < 2
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    assert all("loss" in r for r in records) and "score_error" in records[1] and "score_error" in records[3]
    meta = json.loads((run_dir / "meta.json").read_text())
    assert {"dsm", "jax", "flax", "optax", "devices", "argv", "git_commit", "start_time"} <= set(meta)
    assert [s for s, _ in checkpoint.checkpoints(run_dir)] == [0, 20, 40][-3:]


def test_same_seed_same_numbers_different_seed_different(tiny_config, runs_dir):
    a, _ = api.train(tiny_config, runs_dir=str(runs_dir))
    b, _ = api.train(tiny_config, runs_dir=str(runs_dir))
    c, _ = api.train(tiny_config, ["seed=1"], runs_dir=str(runs_dir))
    assert b.name == "v002" and losses(a) == losses(b) and losses(a) != losses(c)


def test_resume_is_bit_identical_to_an_uninterrupted_run(tiny_config, runs_dir):
    full, _ = api.train(tiny_config, runs_dir=str(runs_dir))
    part, summary = api.train(tiny_config, ["train.steps=20"], runs_dir=str(runs_dir))
    assert summary["steps"] == 20
    resumed, summary = api.resume(part, ["train.steps=40"])
    assert resumed == part and summary["status"] == "completed" and summary["steps"] == 40
    step_a, leaves_a = final_params(full)
    step_b, leaves_b = final_params(resumed)
    assert step_a == step_b == 40
    for a, b in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(a, b)
    assert losses(full) == losses(resumed)  # no duplicated steps, identical values


def test_resume_after_losing_the_tail_of_metrics(tiny_config, runs_dir):
    """A crash after a log line but before the next checkpoint: resume drops the orphan lines."""
    full, _ = api.train(tiny_config, runs_dir=str(runs_dir))
    crashed, _ = api.train(tiny_config, runs_dir=str(runs_dir))
    checkpoint_dir = crashed / "checkpoints" / "step_00000040"
    import shutil

    shutil.rmtree(checkpoint_dir)  # as if killed between the log at step 40 and its checkpoint
    api.resume(crashed)
    assert losses(crashed) == losses(full)
    np.testing.assert_array_equal(final_params(crashed)[1][0], final_params(full)[1][0])


def test_corrupt_checkpoint_falls_back_to_previous(tiny_config, runs_dir, capsys):
    run_dir, _ = api.train(tiny_config, runs_dir=str(runs_dir))
    state = run_dir / "checkpoints" / "step_00000040" / "state.msgpack"
    state.write_bytes(state.read_bytes()[:100])  # truncated
    step, _ = final_params(run_dir)
    assert step == 20
    assert "step_00000040 is corrupt" in capsys.readouterr().err


def test_resume_only_changes_train_steps(tiny_config, runs_dir):
    run_dir, _ = api.train(tiny_config, runs_dir=str(runs_dir))
    with pytest.raises(UserError, match=r"only train.steps, parallel… may be set here"):
        api.resume(run_dir, ["optim.lr=0.1"])
    with pytest.raises(UserError, match="already at step 40"):
        api.resume(run_dir, ["train.steps=10"])
    with pytest.raises(UserError, match="not a dsm run directory"):
        api.resume(runs_dir)


def test_divergence_stops_with_message_and_keeps_last_good_checkpoint(tmp_path, runs_dir):
    cfg = write_config(tmp_path / "nan.yaml", {"optim.lr": 1e30, "optim.kind": "sgd", "optim.momentum": 0.0})
    with pytest.raises(TrainingDiverged, match=r"non-finite (loss|gradient norm|parameters) at step \d+") as e:
        api.train(cfg, runs_dir=str(runs_dir))
    run_dir = runs_dir / "nan" / "v001"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "non-finite" in summary["error"]
    kept = checkpoint.checkpoints(run_dir)
    assert kept and "last good checkpoint" in str(e.value)
    _, leaves = final_params(run_dir)
    assert all(np.isfinite(x).all() for x in leaves)
    api.evaluate(run_dir)  # the kept checkpoint is usable


def test_parameters_that_overflow_stop_the_run_even_with_a_finite_loss_and_gradient(tmp_path, runs_dir):
    """SGD at lr 1e38 turns an O(1) gradient into an infinite update: step 1's loss and gradient
    are finite, its parameters are not (the check after each dispatch)."""
    cfg = write_config(tmp_path / "inf.yaml", {"optim.lr": 1e38, "optim.kind": "sgd", "optim.momentum": 0.0,
                                              "train.log_every": 1})
    with pytest.raises(TrainingDiverged, match=r"non-finite parameters at step 1;"):
        api.train(cfg, runs_dir=str(runs_dir))
    _, leaves = final_params(runs_dir / "inf" / "v001")
    assert all(np.isfinite(x).all() for x in leaves)


def test_logged_loss_is_the_dispatch_mean_and_grad_norm_the_last_steps(tmp_path, runs_dir):
    """The same run logged every step and every 5 steps: the 5-step record's loss is the mean of
    the five per-step losses, its grad_norm the 5th step's gradient norm."""
    records = {}
    for every in (1, 5):
        cfg = write_config(tmp_path / f"log{every}.yaml", {"train.steps": 10, "train.log_every": every,
                                                           "train.eval_every": 10})
        run_dir, _ = api.train(cfg, runs_dir=str(runs_dir))
        records[every] = {r["step"]: r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}
    fine, coarse = records[1], records[5]
    assert sorted(coarse) == [5, 10]
    for end in (5, 10):
        per_step = [fine[t] for t in range(end - 4, end + 1)]
        assert coarse[end]["loss"] == pytest.approx(np.mean([r["loss"] for r in per_step]), rel=1e-5)
        assert coarse[end]["grad_norm"] == pytest.approx(per_step[-1]["grad_norm"], rel=1e-5)
        assert len({round(r["grad_norm"], 6) for r in per_step}) == 5  # the norms differ step to step


def test_skip_step_survives_nonfinite_steps(tmp_path, runs_dir):
    cfg = write_config(tmp_path / "skip.yaml", {"optim.lr": 1e30, "optim.kind": "sgd", "train.on_nonfinite": "skip_step"})
    _, summary = api.train(cfg, runs_dir=str(runs_dir))
    assert summary["status"] == "completed"
    records = [json.loads(x) for x in (runs_dir / "skip" / "v001" / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("skipped_steps", 0) for r in records) > 0


def test_bad_data_file_leaves_no_run_directory(tmp_path, runs_dir):
    cfg = write_config(tmp_path / "npz.yaml", data={"kind": "npz", "path": str(tmp_path / "missing.npz")})
    with pytest.raises(UserError, match="missing.npz' does not exist"):
        api.train(cfg, runs_dir=str(runs_dir))
    assert not (runs_dir / "npz").exists()


def test_optimisers_and_schedules_train(tmp_path, runs_dir):
    for i, optim in enumerate([
        {"kind": "adamw", "lr": 3e-3, "schedule": "cosine", "warmup_steps": 10, "grad_clip": 1.0},
        {"kind": "sgd", "lr": 1e-3, "momentum": 0.9},
    ]):
        cfg = write_config(tmp_path / f"o{i}.yaml", optim=optim)
        run_dir, summary = api.train(cfg, runs_dir=str(runs_dir))
        assert summary["status"] == "completed" and np.isfinite(summary["loss"])
    lrs = [json.loads(x)["lr"] for x in (runs_dir / "o0" / "v001" / "metrics.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(3e-3) and lrs[-1] < 1e-4  # warm-up done at 10, cosine to 0 at 40


@pytest.mark.parametrize("signame,code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_signals_stop_cleanly_with_checkpoint_and_exit_code(tmp_path, runs_dir, signame, code):
    import signal
    import subprocess
    import sys
    import time

    cfg = write_config(tmp_path / "long.yaml", {"train.steps": 10_000_000, "train.eval_every": 1000, "train.ckpt_every": 1000})
    proc = subprocess.Popen([sys.executable, "-m", "dsmcli", "train", "--config", cfg], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = runs_dir / "long" / "v001" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(getattr(signal, signame))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"interrupted by {signame}" in err and "dsm train --resume" in err
    summary = json.loads((runs_dir / "long" / "v001" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert checkpoint.checkpoints(runs_dir / "long" / "v001")[-1][0] == summary["steps"]


def test_vincent_identity_dsm_on_tied_energy_and_tied_dae_follow_the_same_trajectory(tmp_path, runs_dir):
    """∇J_DAE = 2σ⁴ ∇J_DSM on the same noise, so SGD with learning rates in the ratio 2σ⁴ gives
    the same parameters (configs/repro/vincent_identity.yaml at small scale)."""
    sigma, lr = 0.3, 1e-3
    common = {"model": {"kind": "tied_dae", "hidden": 8}, "train.steps": 40}
    dsm_cfg = write_config(tmp_path / "a.yaml", {"optim": {"kind": "sgd", "lr": lr, "momentum": 0.9}},
                           objective={"kind": "dsm", "sigma": sigma}, **{"model": common["model"]})
    dae_cfg = write_config(tmp_path / "b.yaml", {"optim": {"kind": "sgd", "lr": lr / (2 * sigma**4), "momentum": 0.9}},
                           objective={"kind": "dae", "sigma": sigma}, **{"model": common["model"]})
    (a, sa), (b, sb) = api.train(dsm_cfg, runs_dir=str(runs_dir)), api.train(dae_cfg, runs_dir=str(runs_dir))
    assert sb["loss"] == pytest.approx(2 * sigma**4 * sa["loss"], rel=1e-4)
    for x, y in zip(final_params(a)[1], final_params(b)[1]):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    assert sa["score_error"] == pytest.approx(sb["score_error"], rel=1e-4)


@pytest.mark.parametrize("kind", ["esm", "ism", "ssm", "dsm", "dae", "cae", "rcae"])
def test_every_objective_trains_from_yaml_on_digits(tmp_path, runs_dir, kind):
    objective = {"kind": kind, **({"target": "parzen", "sigma": 0.3} if kind == "esm" else {})}
    model = {"kind": "mlp", "hidden": [32], **({"latent": 8} if kind == "cae" else {})}
    cfg = write_config(tmp_path / "digits.yaml", {"train.steps": 20, "train.batch_size": 32},
                       data={"kind": "digits"}, objective=objective, model=model)
    _, summary = api.train(cfg, runs_dir=str(runs_dir))
    assert summary["status"] == "completed" and np.isfinite(summary["loss"])
    assert "score_error" not in summary  # no closed-form score for real data


def test_resuming_a_completed_run_keeps_its_summary(tiny_config, runs_dir):
    run_dir, before = api.train(tiny_config, runs_dir=str(runs_dir))
    _, after = api.resume(run_dir)
    for key in ("loss", "score_error", "steps", "status"):
        assert after[key] == before[key]
