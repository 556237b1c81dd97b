"""The adversarial autoencoder: its two losses against hand-written ones, the stop-gradients
that make one backward pass give each player its own gradient, the discriminator's own
optimiser, and a run with resume from the command line."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

from dsmcli import experiment, optim
from dsmcli.cli import app
from dsmcli.config import validate
from dsmcli.objectives.aae import logits
from tests.conftest import write_config

DIGITS = {"kind": "digits"}
MODEL = {"kind": "mlp", "hidden": [16], "latent": 3}


def build(objective=None, optim_cfg=None, model=MODEL):
    raw = {"name": "t", "data": DIGITS, "objective": objective or {"kind": "aae", "lam": 0.7, "disc_hidden": [8]},
           "model": model, "optim": optim_cfg or {"kind": "adam"}}
    return experiment.build(validate(raw, "t"))


def split_params(params):
    """(autoencoder leaves, discriminator leaves) of the parameter pytree, by path."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    disc = [v for p, v in flat if p[0].key == "discriminator"]
    ae = [v for p, v in flat if p[0].key != "discriminator"]
    return ae, disc


def hand_losses(exp, params, x, key):
    """J_AE and J_D written out again, without stop-gradients."""
    net = exp.net(params)
    z = net.encode(x)
    recon = jnp.mean(jnp.sum((net.decode(z) - x) ** 2, -1))
    prior = jax.random.normal(key, z.shape)
    d = lambda v: logits(net.discriminator, v)  # noqa: E731
    j_ae = recon + exp.cfg.objective.lam * jnp.mean(-jax.nn.log_sigmoid(d(z)))
    j_d = jnp.mean(-jax.nn.log_sigmoid(d(prior))) + jnp.mean(-jax.nn.log_sigmoid(-d(z)))
    return j_ae, j_d


def test_each_player_gets_the_gradient_of_its_own_loss():
    exp = build()
    x, key = jnp.asarray(exp.data.x_train[:32]), jax.random.key(3)
    total = jax.grad(lambda p: exp.objective.loss(exp.net(p), x, key, None)[0])(exp.params)
    g_ae = jax.grad(lambda p: hand_losses(exp, p, x, key)[0])(exp.params)
    g_d = jax.grad(lambda p: hand_losses(exp, p, x, key)[1])(exp.params)
    ours_ae, ours_d = split_params(total)
    want_ae, _ = split_params(g_ae)
    _, want_d = split_params(g_d)
    assert len(ours_d) == 4 and len(ours_ae) == 8  # 2 discriminator layers; 2 + 2 autoencoder layers
    for a, b in zip(ours_ae + ours_d, want_ae + want_d):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_losses_with_a_blind_discriminator_are_log_2():
    """D ≡ 0 (every weight zero): J_D = 2 log 2 and the adversarial term log 2, exactly."""
    exp = build()
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.zeros_like(v) if p[0].key == "discriminator" else v, exp.params)
    x = jnp.asarray(exp.data.x_train[:16])
    loss, aux = exp.objective.loss(exp.net(params), x, jax.random.key(0), None)
    np.testing.assert_allclose(aux["disc_loss"], 2 * np.log(2), rtol=1e-6)
    np.testing.assert_allclose(aux["gen_loss"], np.log(2), rtol=1e-6)
    np.testing.assert_allclose(loss, aux["recon"] + 0.7 * np.log(2) + 2 * np.log(2), rtol=1e-6)


def test_discriminator_has_its_own_learning_rate():
    """SGD without momentum: one update is −lr·g for the autoencoder and −disc_lr·g for D."""
    exp = build({"kind": "aae", "disc_hidden": [8], "disc_lr": 0.5}, {"kind": "sgd", "lr": 0.01, "momentum": 0.0})
    tx = optim.for_experiment(exp, 10)
    grads = jax.tree.map(jnp.ones_like, exp.params)
    updates, _ = tx.update(grads, tx.init(exp.params), exp.params)
    ae, disc = split_params(updates)
    assert all(np.allclose(u, -0.01) for u in ae) and all(np.allclose(u, -0.5) for u in disc)
    assert isinstance(tx, optax.GradientTransformation)
    default = build({"kind": "aae", "disc_hidden": [8]}, {"kind": "sgd", "lr": 0.01, "momentum": 0.0})
    tx = optim.for_experiment(default, 10)
    updates, _ = tx.update(grads, tx.init(default.params), default.params)
    ae, disc = split_params(updates)
    assert all(np.allclose(u, -0.01) for u in ae) and all(np.allclose(u, -0.001) for u in disc)  # optim.lr / 10


def test_aae_needs_a_bottleneck():
    with pytest.raises(Exception, match="model.latent"):
        build(model={"kind": "mlp", "hidden": [16]})


def test_aae_trains_resumes_and_evaluates_from_the_command_line(tmp_path):
    """Restoring the two optimisers' state into the multi_transform target: a resumed run ends
    with the parameters of an uninterrupted one (in process, typer's CliRunner)."""
    sets = dict(data=DIGITS, model=MODEL, objective={"kind": "aae", "disc_hidden": [8], "disc_lr": 1e-4},
                train={"steps": 20, "batch_size": 32, "log_every": 10, "eval_every": 10, "ckpt_every": 10},
                sample={"kind": "ancestral", "n": 16, "init": {"kind": "gaussian", "std": 1.0}})
    config = write_config(tmp_path / "aae.yaml", **sets)
    dsm = CliRunner().invoke
    full = dsm(app, ["train", "--config", config, "--runs-dir", str(tmp_path / "a")])
    assert full.exit_code == 0, full.output
    half = dsm(app, ["train", "--config", config, "--runs-dir", str(tmp_path / "b"), "train.steps=10"])
    assert half.exit_code == 0, half.output
    run_b = half.stdout.strip().splitlines()[-1]
    resumed = dsm(app, ["train", "--resume", run_b, "train.steps=20"])
    assert resumed.exit_code == 0, resumed.output
    run_a = full.stdout.strip().splitlines()[-1]
    a = (tmp_path / "a").rglob("checkpoints/*20*/state.msgpack")
    b = (tmp_path / "b").rglob("checkpoints/*20*/state.msgpack")
    assert next(a).read_bytes() == next(b).read_bytes()
    ev = dsm(app, ["eval", run_a])
    assert ev.exit_code == 0 and "probe_acc" in ev.stdout, ev.output
    assert any((tmp_path / "a").rglob("plots/interpolation.png"))
