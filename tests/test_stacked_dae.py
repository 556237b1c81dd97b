"""The stacked denoising autoencoder (Vincent et al. 2010): each layer's DAE loss against a
hand-written one, the phases of greedy layer-wise pretraining (only the layer in training gets a
gradient, and the optimiser leaves the others exactly unchanged), supervised fine-tuning of the
encoder and head, the refusal of a budget without fine-tuning, and a run that resumes inside a
pretraining phase bit for bit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from dsmcli import config, experiment, optim, train
from dsmcli.cli import app
from tests.conftest import write_config

MODEL = {"kind": "mlp", "hidden": [16, 8], "latent": 4, "activation": "softplus"}


def build(steps=60, model=MODEL, **objective):
    raw = {"name": "t", "data": {"kind": "digits", "labels_per_class": 5}, "model": model,
           "objective": {"kind": "stacked_dae", "pretrain_steps": 10, **objective},
           "train": {"steps": steps, "batch_size": 32, "log_every": 10, "eval_every": 10, "ckpt_every": 10}}
    return experiment.build(config.validate(raw, "t"))


def softplus(a):
    return np.logaddexp(0.0, a)


def dense(params, part, i, u):
    layer = params["autoencoder"][part][i]
    return u @ np.asarray(layer["kernel"][...], np.float64) + np.asarray(layer["bias"][...], np.float64)


@pytest.mark.parametrize("noise", ["masking", "gaussian"])
def test_each_layers_loss_is_its_own_dae_on_the_clean_codes_below(noise):
    exp = build(noise=noise, sigma=0.3, p=0.4)
    params, obj = exp.params, exp.objective
    x = np.asarray(exp.data.x_train[:32], np.float64)
    key = jax.random.key(5)
    h = [x, softplus(dense(params, "encoder", 0, x)), None]
    h[2] = softplus(dense(params, "encoder", 1, h[1]))
    for k in range(3):
        u = h[k]
        if noise == "masking":
            keep = np.asarray(jax.random.bernoulli(key, 0.6, u.shape))
            u_tilde = u * keep
        else:
            u_tilde = u + 0.3 * np.asarray(jax.random.normal(key, u.shape), np.float64)
        code = dense(params, "encoder", k, u_tilde)
        code = code if k == 2 else softplus(code)  # the code layer is linear
        out = dense(params, "decoder", 2 - k, code)
        out = out if k == 0 else softplus(out)  # the pixel layer is linear
        want = np.mean(np.sum((out - u) ** 2, 1))
        got = float(obj.layer_loss(exp.net(params), jnp.asarray(x, jnp.float32), key, k))
        assert got == pytest.approx(want, rel=2e-5), k


def nonzero_parts(exp, steps) -> dict:
    """Step → the parts of the network whose loss gradient at that step is not zero (one jitted
    gradient, the step traced)."""
    x = jnp.asarray(exp.data.x_train[:32])
    grad = jax.jit(jax.grad(lambda p, t: exp.objective.step_loss(exp.net(p), x, jax.random.key(0), None, t)[0]))

    def parts(step):
        flat = jax.tree_util.tree_flatten_with_path(grad(exp.params, jnp.int32(step)))[0]
        return {tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path[:-2])
                for path, g in flat if np.any(np.asarray(g) != 0)}

    return {step: parts(step) for step in steps}


def test_phases_send_the_gradient_to_one_layer_then_to_the_encoder_and_head():
    exp = build()
    want = {0: {("autoencoder", "encoder", 0), ("autoencoder", "decoder", 2)},
            9: {("autoencoder", "encoder", 0), ("autoencoder", "decoder", 2)},
            10: {("autoencoder", "encoder", 1), ("autoencoder", "decoder", 1)},
            25: {("autoencoder", "encoder", 2), ("autoencoder", "decoder", 0)},
            30: {("autoencoder", "encoder", 0), ("autoencoder", "encoder", 1), ("autoencoder", "encoder", 2), ("head",)},
            59: {("autoencoder", "encoder", 0), ("autoencoder", "encoder", 1), ("autoencoder", "encoder", 2), ("head",)}}
    got = nonzero_parts(exp, want)
    for step, parts in want.items():
        assert got[step] == parts, step
    loss, logs = exp.objective.step_loss(exp.net(exp.params), jnp.asarray(exp.data.x_train[:32]), jax.random.key(0),
                                         None, jnp.int32(12))
    assert float(logs["phase"]) == 1.0 and float(loss) == float(logs["layer_recon"]) > 0
    with_recon = build(recon_weight=0.5)
    assert ("autoencoder", "decoder", 0) in nonzero_parts(with_recon, [40])[40]


def test_fine_tuning_loss_is_the_weighted_cross_entropy_of_the_head():
    exp = build(lam=0.7, label_batch=16)
    x = jnp.asarray(exp.data.x_train[:32])
    key = jax.random.key(2)
    net = exp.net(exp.params)
    loss, logs = exp.objective.step_loss(net, x, key, None, jnp.int32(45))
    k_ft = jax.random.split(key)[1]
    idx = np.asarray(jax.random.randint(k_ft, (16,), 0, len(exp.data.labelled_rows)))
    rows = exp.data.labelled_rows[idx]
    logits = np.asarray(exp.objective.classify(net, jnp.asarray(exp.data.x_train[rows])), np.float64)
    logp = logits - np.log(np.sum(np.exp(logits), 1, keepdims=True))
    xent = -np.mean(logp[np.arange(16), exp.data.y_train[rows]])
    assert float(logs["xent"]) == pytest.approx(xent, rel=1e-5)
    assert float(loss) == pytest.approx(0.7 * xent, rel=1e-5)


def test_layers_outside_their_phase_stay_exactly_unchanged():
    exp = build()
    tx = optim.for_experiment(exp, exp.cfg.train.steps)
    state = train.initial_state(exp, tx)
    step_fn = train.StepFunction(exp, tx)
    x_train = jnp.asarray(exp.data.x_train)

    def snapshot(s):
        return jax.tree.map(lambda a: np.array(a), s["params"])

    history = [snapshot(state)]
    for start in (0, 10, 20, 30):
        state, _ = step_fn(state, x_train, start, 10)
        history.append(snapshot(state))

    def same(a, b, part, i):
        return all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a["autoencoder"][part][i]),
                                                       jax.tree.leaves(b["autoencoder"][part][i])))

    trained = {0: [("encoder", 0), ("decoder", 2)], 1: [("encoder", 1), ("decoder", 1)], 2: [("encoder", 2), ("decoder", 0)]}
    for phase in range(3):
        before, after = history[phase], history[phase + 1]
        for part, i in [("encoder", 0), ("encoder", 1), ("encoder", 2), ("decoder", 0), ("decoder", 1), ("decoder", 2)]:
            assert same(before, after, part, i) == ((part, i) not in trained[phase]), (phase, part, i)
    before, after = history[3], history[4]  # fine-tuning: the decoder keeps its pretrained weights
    assert all(same(before, after, "decoder", i) for i in range(3))
    assert not any(same(before, after, "encoder", i) for i in range(3))
    assert not np.array_equal(np.asarray(history[3]["head"]["kernel"][...]), np.asarray(history[4]["head"]["kernel"][...]))


def test_a_budget_without_fine_tuning_is_refused(tmp_path, runs_dir):
    cfg = write_config(tmp_path / "sda.yaml", data={"kind": "digits"}, model=MODEL,
                       objective={"kind": "stacked_dae", "pretrain_steps": 100}, train={"steps": 300})
    r = CliRunner().invoke(app, ["train", "--config", cfg])  # in process: the exit status and the message
    assert r.exit_code == 2, r.output
    assert "objective.pretrain_steps: 3 layers × 100 pretraining steps" in r.stderr and "Traceback" not in r.output
    assert not any(Path(runs_dir).rglob("checkpoints/*"))
    bad = write_config(tmp_path / "conv.yaml", data={"kind": "digits"}, model={"kind": "conv", "latent": 4},
                       objective={"kind": "stacked_dae"})
    r = CliRunner().invoke(app, ["train", "--config", bad])
    assert r.exit_code == 2 and "cannot be used with objective.kind 'stacked_dae' (allowed: mlp)" in r.stderr, r.output


@pytest.mark.slow  # three trainings and a sampling in subprocesses; the phases are tested in-process above
def test_trains_resumes_inside_a_pretraining_phase_and_evaluates(tmp_path):
    sets = dict(data={"kind": "digits", "labels_per_class": 10}, model={"kind": "mlp", "hidden": [16], "latent": 4},
                objective={"kind": "stacked_dae", "pretrain_steps": 15}, optim={"kind": "adam", "lr": 0.01},
                train={"steps": 60, "batch_size": 32, "log_every": 5, "eval_every": 60, "ckpt_every": 5},
                sample={"kind": "ancestral", "n": 16, "prior": "gmm", "n_components": 2})
    cfg = write_config(tmp_path / "sda.yaml", **sets)
    dsm = [sys.executable, "-m", "dsmcli"]
    full = subprocess.run([*dsm, "train", "--config", cfg, "--runs-dir", str(tmp_path / "a")], capture_output=True, text=True)
    assert full.returncode == 0, full.stderr
    half = subprocess.run([*dsm, "train", "--config", cfg, "--runs-dir", str(tmp_path / "b"), "train.steps=35"],
                          capture_output=True, text=True)
    assert half.returncode == 0, half.stderr
    run_b = Path(half.stdout.strip().splitlines()[-1])
    for ckpt in (run_b / "checkpoints").glob("step_*"):  # resume from step 25: inside layer 2's phase (15–29)
        if int(ckpt.name.split("_")[1]) > 25:
            shutil.rmtree(ckpt)
    assert (run_b / "checkpoints" / "step_00000025").is_dir()
    resumed = subprocess.run([*dsm, "train", "--resume", str(run_b), "train.steps=60"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    a = next((tmp_path / "a").rglob("checkpoints/*60*/state.msgpack")).read_bytes()
    b = next((tmp_path / "b").rglob("checkpoints/*60*/state.msgpack")).read_bytes()
    assert a == b
    run_a = Path(full.stdout.strip().splitlines()[-1])
    summary = json.loads((run_a / "summary.json").read_text())
    assert summary["phase"] == 2.0 and summary["test_acc"] > 0.2  # chance: 0.1
    smp = subprocess.run([*dsm, "sample", str(run_a)], capture_output=True, text=True)
    assert smp.returncode == 0, smp.stderr


def test_each_phase_starts_its_own_optimisation():
    """Adam afresh at a phase's first step: the update is lr·g/(|g| + ε), i.e. ±lr for every
    entry (a state shared with the earlier phases would give ~√1000 times that)."""
    exp = build()
    tx = optim.for_experiment(exp, exp.cfg.train.steps)
    state = train.initial_state(exp, tx)
    step_fn = train.StepFunction(exp, tx)
    x_train = jnp.asarray(exp.data.x_train)
    state, _ = step_fn(state, x_train, 0, 10)
    before = np.array(state["params"]["autoencoder"]["encoder"][1]["kernel"][...])
    state, _ = step_fn(state, x_train, 10, 1)
    step = np.abs(np.array(state["params"]["autoencoder"]["encoder"][1]["kernel"][...]) - before)
    lr = exp.cfg.optim.lr
    assert np.all(step <= lr * (1 + 1e-4)) and np.median(step) > 0.99 * lr
