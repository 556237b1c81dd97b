"""ALI / BiGAN: the losses against a NumPy forward pass and a closed form, the stop-gradients
that give each player the gradient of its own loss, the discriminator's own optimiser, the
deterministic (BiGAN) encoder, config errors and a run from the command line."""

from __future__ import annotations

import json

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
    raw = {"name": "t", "data": DIGITS, "objective": objective or {"kind": "ali", "disc_hidden": [8]},
           "model": model, "optim": optim_cfg or {"kind": "adam"}}
    return experiment.build(validate(raw, "t"))


def split_params(params):
    """(autoencoder leaves, discriminator leaves) of the parameter pytree, by path."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return [v for p, v in flat if p[0].key != "discriminator"], [v for p, v in flat if p[0].key == "discriminator"]


def draws(key, n, k):
    """(ε, z): the loss's split of its key into the encoder's noise and the prior draws."""
    k_eps, k_prior = jax.random.split(key)
    return jax.random.normal(k_eps, (n, k)), jax.random.normal(k_prior, (n, k))


def hand_losses(exp, params, x, key):
    """J_EG and J_D written out again (JAX, no stop-gradients; the R1 term from per-row
    gradients)."""
    net = exp.net(params)
    eps, z = draws(key, x.shape[0], 3)
    if exp.cfg.objective.encoder == "stochastic":
        mean, logvar = net.autoencoder.encode_stats(x)
        e = mean + jnp.exp(logvar / 2) * eps
    else:
        e = net.encode(x)
    g = net.decode(z)
    d = lambda a, b: logits(net.discriminator, jnp.concatenate([a, b], 1))  # noqa: E731
    j_eg = jnp.mean(-jax.nn.log_sigmoid(-d(x, e))) + jnp.mean(-jax.nn.log_sigmoid(d(g, z)))
    j_d = jnp.mean(-jax.nn.log_sigmoid(d(x, e))) + jnp.mean(-jax.nn.log_sigmoid(-d(g, z)))
    row = lambda u: logits(net.discriminator, u[None])[0]  # noqa: E731
    grads = jax.vmap(jax.grad(row))(jnp.concatenate([x, e], 1))
    j_d = j_d + 0.5 * exp.cfg.objective.r1 * jnp.mean(jnp.sum(grads**2, 1))
    return j_eg, j_d


@pytest.mark.parametrize("encoder, r1", [("stochastic", 10.0), ("deterministic", 0.0)])
def test_each_player_gets_the_gradient_of_its_own_loss(encoder, r1):
    exp = build({"kind": "ali", "encoder": encoder, "disc_hidden": [8], "r1": r1})
    x, key = jnp.asarray(exp.data.x_train[:32]), jax.random.key(3)
    total, g_eg, g_d = jax.jit(lambda params: (
        jax.grad(lambda p: exp.objective.loss(exp.net(p), x, key, None)[0])(params),
        jax.grad(lambda p: hand_losses(exp, p, x, key)[0])(params),
        jax.grad(lambda p: hand_losses(exp, p, x, key)[1])(params)))(exp.params)
    ours_eg, ours_d = split_params(total)
    want_eg, _ = split_params(g_eg)
    _, want_d = split_params(g_d)
    assert len(ours_d) == 4 and len(ours_eg) == 8  # 2 discriminator layers; 2 + 2 autoencoder layers
    for a, b in zip(ours_eg + ours_d, want_eg + want_d):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
    assert all(np.any(np.asarray(a) != 0) for a in ours_eg + ours_d)  # every layer of both players learns


def _np_params(params):
    """{(group, layer): (kernel, bias)} in float64."""
    out = {}
    for path, v in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [getattr(p, "key", getattr(p, "idx", None)) for p in path]
        group = tuple(keys[:-2]) if keys[0] == "discriminator" else tuple(keys[1:-2])
        out.setdefault(group, {})[keys[-2]] = np.asarray(v, np.float64)
    return out


def _np_mlp(layers, act, h):
    for i, (w, b) in enumerate(layers):
        h = h @ w + b
        if i < len(layers) - 1:
            h = act(h)
    return h


def _softplus(u):
    return np.logaddexp(0.0, u)


@pytest.mark.parametrize("encoder", ["stochastic", "deterministic"])
def test_losses_equal_a_numpy_forward_pass(encoder):
    """The logged losses, recomputed in float64 NumPy from the parameters and the key's draws
    (softplus autoencoder, ReLU discriminator on [x, z]):
    gen = mean softplus(D(x, E(x))) + mean softplus(−D(G(z), z)), disc with the signs swapped,
    recon = mean ‖G(μ(x)) − x‖², r1 = mean ‖∇_u D(u)‖² at u = [x, E(x)] with ∇_u D = W₁(1[h > 0] ⊙ w₂)
    (one hidden layer h = W₁ᵀu + b₁); the codes are μ(x) and the reconstructions G(μ(x))."""
    exp = build({"kind": "ali", "encoder": encoder, "disc_hidden": [8], "recon_weight": 0.3, "r1": 2.0})
    x, key = exp.data.x_train[:16].astype(np.float64), jax.random.key(5)
    loss, aux = jax.jit(lambda p, x: exp.objective.loss(exp.net(p), x, key, None))(exp.params, jnp.asarray(x, jnp.float32))
    p = _np_params(exp.params)
    layers = lambda group: [(p[(group, i)]["kernel"], p[(group, i)]["bias"]) for i in range(2)]  # noqa: E731
    enc = _np_mlp(layers("encoder"), _softplus, x)
    relu = lambda u: np.maximum(u, 0.0)  # noqa: E731
    disc = [(p[("discriminator", i)]["kernel"], p[("discriminator", i)]["bias"]) for i in range(2)]
    d = lambda a, b: _np_mlp(disc, relu, np.concatenate([a, b], 1))[:, 0]  # noqa: E731
    dec = lambda z: _np_mlp(layers("decoder"), _softplus, z)  # noqa: E731
    eps, z = (np.asarray(a, np.float64) for a in draws(key, 16, 3))
    mean = enc[:, :3]
    e = mean + np.exp(enc[:, 3:] / 2) * eps if encoder == "stochastic" else mean
    gen = np.mean(_softplus(d(x, e))) + np.mean(_softplus(-d(dec(z), z)))
    disc_loss = np.mean(_softplus(-d(x, e))) + np.mean(_softplus(d(dec(z), z)))
    recon = np.mean(np.sum((dec(mean) - x) ** 2, 1))
    (w1, b1), (w2, _) = disc
    active = (np.concatenate([x, e], 1) @ w1 + b1) > 0
    r1 = np.mean(np.sum(((active * w2[:, 0]) @ w1.T) ** 2, 1))
    np.testing.assert_allclose(float(aux["r1"]), r1, rtol=1e-5)
    np.testing.assert_allclose(float(aux["gen_loss"]), gen, rtol=1e-5)
    np.testing.assert_allclose(float(aux["disc_loss"]), disc_loss, rtol=1e-5)
    np.testing.assert_allclose(float(aux["recon"]), recon, rtol=1e-5)
    np.testing.assert_allclose(float(loss), gen + disc_loss + 0.3 * recon + 0.5 * 2.0 * r1, rtol=1e-5)
    net = exp.net(exp.params)
    np.testing.assert_allclose(exp.objective.encode(net, jnp.asarray(x, jnp.float32)), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(exp.objective.reconstruct(net, jnp.asarray(x, jnp.float32)), dec(mean), rtol=1e-4, atol=1e-5)


def test_losses_with_a_constant_discriminator():
    """D ≡ c (output layer weights 0, bias c): J_D = J_EG = softplus(c) + softplus(−c), whatever
    x, E and G (2 log 2 at c = 0), R1 = 0 (∇D = 0), and the logged loss is their sum (recon_weight 0)."""
    exp = build()
    c = 0.7

    def constant(path, v):
        if path[0].key != "discriminator":
            return v
        return jnp.full_like(v, c) if path[-2].key == "bias" and path[1].key == 1 else jnp.zeros_like(v)

    params = jax.tree_util.tree_map_with_path(constant, exp.params)
    x = jnp.asarray(exp.data.x_train[:16])
    loss, aux = exp.objective.loss(exp.net(params), x, jax.random.key(0), None)
    want = np.log1p(np.exp(c)) + np.log1p(np.exp(-c))
    np.testing.assert_allclose(aux["disc_loss"], want, rtol=1e-6)
    np.testing.assert_allclose(aux["gen_loss"], want, rtol=1e-6)
    assert float(aux["r1"]) == 0.0
    np.testing.assert_allclose(loss, 2 * want, rtol=1e-6)


def test_discriminator_has_its_own_learning_rate():
    """SGD without momentum: one update is −lr·g for the autoencoder and −disc_lr·g for D
    (``disc_lr`` defaults to optim.lr)."""
    sgd = {"kind": "sgd", "lr": 0.01, "momentum": 0.0}
    for objective, disc_lr in [({"kind": "ali", "disc_hidden": [8], "disc_lr": 0.5}, 0.5),
                               ({"kind": "ali", "disc_hidden": [8]}, 0.01)]:
        exp = build(objective, sgd)
        tx = optim.for_experiment(exp, 10)
        assert isinstance(tx, optax.GradientTransformation)
        grads = jax.tree.map(jnp.ones_like, exp.params)
        updates, _ = tx.update(grads, tx.init(exp.params), exp.params)
        ae, disc = split_params(updates)
        assert all(np.allclose(u, -0.01) for u in ae) and all(np.allclose(u, -disc_lr) for u in disc)


def test_bigan_encoder_is_deterministic():
    """``encoder: deterministic`` (BiGAN): a K-output encoder whose pairs are (x, enc(x)), no noise
    (the losses and gradients of this variant are checked with the ALI ones above)."""
    exp = build({"kind": "ali", "encoder": "deterministic", "disc_hidden": [8]})
    assert exp.objective.model_options() == {"stochastic_encoder": False}
    assert exp.params["autoencoder"]["encoder"][1]["kernel"].shape == (16, 3)
    ali = build()
    assert ali.objective.model_options() == {"stochastic_encoder": True}
    assert ali.params["autoencoder"]["encoder"][1]["kernel"].shape == (16, 6)  # ALI: mean and log σ²
    x = jnp.asarray(exp.data.x_train[:16])
    net = exp.net(exp.params)
    np.testing.assert_array_equal(exp.objective.inferred(net, x, jax.random.key(1)), net.encode(x))


def _dsm(*args):
    """In process (typer's CliRunner)."""
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("override, field, words", [
    ("objective.encoder=gaussian", "objective.encoder", ["stochastic", "deterministic"]),
    ("objective.disc_lr=-1", "objective.disc_lr", ["greater than 0"]),
    ("objective.disc_hidden=[]", "objective.disc_hidden", ["at least 1"]),
    ("objective.recon_weight=-0.5", "objective.recon_weight", ["greater than or equal to 0"]),
    ("objective.r1=-1", "objective.r1", ["greater than or equal to 0"]),
    ("model.latent=null", "model.latent", ["bottleneck"]),
])
def test_config_errors_exit_2_naming_the_field(tmp_path, override, field, words):
    """In process (typer's CliRunner): the exit status and the one message the CLI prints."""
    config = write_config(tmp_path / "ali.yaml", data=DIGITS, model=MODEL, objective={"kind": "ali"})
    out = CliRunner().invoke(app, ["train", "--config", config, "--runs-dir", str(tmp_path / "runs"), override])
    assert out.exit_code == 2, out.output
    assert field in out.stderr and all(w in out.stderr for w in words), out.stderr
    assert "Traceback" not in out.output and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()


def test_ali_trains_samples_and_evaluates_from_the_command_line(tmp_path):
    sets = dict(data=DIGITS, model=MODEL, objective={"kind": "ali", "disc_hidden": [8]},
                train={"steps": 20, "batch_size": 32, "log_every": 10, "eval_every": 20, "ckpt_every": 20},
                sample={"kind": "ancestral", "n": 16, "init": {"kind": "gaussian", "std": 1.0}})
    config = write_config(tmp_path / "ali.yaml", **sets)
    train = _dsm("train", "--config", config, "--runs-dir", str(tmp_path / "runs"))
    assert train.exit_code == 0, train.output
    run = train.stdout.strip().splitlines()[-1]
    records = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
    assert [r["step"] for r in records if "gen_loss" in r] == [10, 20]
    assert all(np.isfinite(r[k]) for r in records for k in ("loss", "gen_loss", "disc_loss", "recon", "r1") if k in r)
    sample = _dsm("sample", run, "--seed", "1", "--metrics", "mmd")
    assert sample.exit_code == 0, sample.output
    x = np.load(sample.stdout.strip().splitlines()[-1])["x"]
    assert x.shape == (16, 64) and np.isfinite(x).all()
    ev = _dsm("eval", run, "--metrics", "codes")
    assert ev.exit_code == 0, ev.output
    metrics = json.load(open(f"{run}/eval.json"))
    assert {"recon_mse", "probe_acc", "kmeans_nmi"} <= set(metrics)
