"""``pixelcnn_vae``: the masks are causal (exact Jacobian zeros, and the one-layer receptive field
in closed form), the likelihood is the hand-written sum of log-softmaxes at the observed levels
and is normalised over all 16 images of a 2×2 binary case, ancestral samples follow the model's
own p(x|z) (frequencies within 5 binomial SEs), the greedy decode and the teacher-forced
reconstruction are what they say, the loss is −log p + β·KL written out again, the config
errors, and a train → sample → eval run from the command line with both encoders (the conv one
with the slow tests: the mlp run covers the same path)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from typer.testing import CliRunner

from dsmcli import config, experiment, models
from dsmcli.cli import app
from dsmcli.data.base import Dataset
from dsmcli.errors import UserError
from dsmcli.models.conv_blocks import patch_conv
from dsmcli.models.pixelcnn import causal_conv, causal_mask
from dsmcli.objectives import pixelcnn_vae
from tests.conftest import write_config

Z = 5.0


def jitter(params, seed: int, scale: float):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a) + scale * rng.normal(size=np.shape(a)).astype(np.float32)),
                        params)


def fake_images(h: int, w: int, levels: int, n: int = 32, channels: int | None = None, seed: int = 0) -> Dataset:
    """Random images on the grid k/(levels − 1), quantisation 1/(levels − 1)."""
    rng = np.random.default_rng(seed)
    d = h * w * (channels or 1)
    x = (rng.integers(0, levels, size=(n, d)) / (levels - 1)).astype(np.float32)
    shape = (h, w) if channels is None else (h, w, channels)
    return Dataset("npz", x, x, image_shape=shape, quantization=np.full(d, 1 / (levels - 1), np.float32))


def assemble(data: Dataset, latent: int = 2, scale: float = 0.5, **objective):
    """(objective, graphdef, jittered params) of a tiny PixelCNN-VAE (mlp encoder) on ``data``."""
    cfg = pixelcnn_vae.Config(**{"pixel_channels": 4, "pixel_layers": 2, "kernel": 3, **objective})
    model_cfg = models.REGISTRY["mlp"].Config(hidden=[8], latent=latent)
    obj = pixelcnn_vae.make(cfg, data, model_cfg)
    rngs = nnx.Rngs(params=0)
    net = obj.extend_model(models.build(model_cfg, data.dim, rngs, image_shape=data.image_shape,
                                        **obj.model_options()), rngs)
    graphdef, params = nnx.split(net)
    return obj, graphdef, jitter(params, 1, scale)


def log_softmax_np(a):
    a = np.asarray(a, np.float64)
    m = a.max(-1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(-1, keepdims=True))


def teacher_logits(obj, net, x, z):
    """The PixelCNN's logits (B, D, L) on the canvas x, written without the objective's helpers."""
    return net.pixelcnn(jnp.asarray(x), z, net.autoencoder.decode(z))


# --------------------------------------------------------------------------- masks
def test_causal_mask_closed_form():
    np.testing.assert_array_equal(causal_mask(3, "A"), [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(causal_mask(3, "B"), [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    a5 = causal_mask(5, "A")
    assert a5.sum() == 12 and a5[:2].all() and a5[2, :2].all() and not a5[2, 2:].any() and not a5[3:].any()


@pytest.mark.parametrize("k, kind", [(3, "A"), (3, "B"), (5, "A"), (5, "B")])
def test_causal_conv_is_patch_conv_of_the_masked_kernel(k, kind):
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 3))
    w = jax.random.normal(jax.random.key(1), (k, k, 3, 4))
    masked = w * causal_mask(k, kind)[:, :, None, None]
    got = causal_conv(x, w, kind)
    np.testing.assert_allclose(got, patch_conv(x, masked, (1, 1), "SAME"), rtol=1e-5, atol=1e-5)
    lax = jax.lax.conv_general_dilated(x, masked, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(got, lax, rtol=1e-5, atol=1e-5)


def _jacobian(obj, graphdef, params, x, z):
    """∂ logits[i, l] / ∂ canvas[j] for one row: (D, L, D)."""
    def logits(canvas):
        net = nnx.merge(graphdef, params)
        return net.pixelcnn(canvas[None], z, net.autoencoder.decode(z))[0]

    return np.asarray(jax.jit(jax.jacrev(logits))(x))


def test_logits_of_pixel_i_depend_on_earlier_pixels_only():
    """A 4×5 image (H ≠ W), three layers (A, B, B): ∂logitsᵢ/∂xⱼ is exactly 0 for every j ≥ i and
    nonzero for some j < i (every i > 0); pixel 0's logits depend on no pixel."""
    obj, graphdef, params = assemble(fake_images(4, 5, 5), pixel_layers=3)
    x = jnp.asarray(np.random.default_rng(2).uniform(size=20), jnp.float32)
    jac = _jacobian(obj, graphdef, params, x, jnp.asarray([[0.3, -0.7]]))
    d = 20
    for i in range(d):
        assert not jac[i, :, i:].any(), f"pixel {i}'s logits depend on pixels ≥ {i}"
        if i:
            assert jac[i, :, :i].any(), f"pixel {i}'s logits depend on no earlier pixel"


def test_one_type_a_layer_sees_exactly_its_causal_neighbours():
    """With one 3×3 type-A layer, pixel (r, c) depends on exactly the in-image pixels among
    (r−1, c−1), (r−1, c), (r−1, c+1), (r, c−1)."""
    h, w = 4, 5
    obj, graphdef, params = assemble(fake_images(h, w, 3), pixel_layers=1)
    x = jnp.asarray(np.random.default_rng(3).uniform(size=h * w), jnp.float32)
    jac = _jacobian(obj, graphdef, params, x, jnp.asarray([[0.1, 0.4]]))
    for r, c in itertools.product(range(h), range(w)):
        want = {(rr, cc) for rr, cc in [(r - 1, c - 1), (r - 1, c), (r - 1, c + 1), (r, c - 1)]
                if 0 <= rr < h and 0 <= cc < w}
        got = {divmod(j, w) for j in np.flatnonzero(np.any(jac[r * w + c] != 0, axis=0))}
        assert got == want, (r, c, got, want)


# --------------------------------------------------------------------------- likelihood
def test_levels_nearest_ties_down_and_data_default():
    digits = experiment.build(config.validate({"name": "t", "data": {"kind": "digits"}, "model": {
        "kind": "mlp", "hidden": [8], "latent": 2}, "objective": {"kind": "pixelcnn_vae"}}, "t")).objective
    assert digits.levels == 17  # the digits' 0…16
    k = np.arange(17)
    np.testing.assert_array_equal(digits.level_of(jnp.asarray(k / 16.0, jnp.float32)), k)
    two = pixelcnn_vae.make(pixelcnn_vae.Config(levels=2), fake_images(2, 2, 17), digits.model_cfg)
    x = jnp.asarray([0.0, 0.4375, 0.5, 0.5625, 1.0], jnp.float32)
    np.testing.assert_array_equal(two.level_of(x), [0, 0, 0, 1, 1])  # as nll_iw binarises: 1 where x > 0.5


def test_log_prob_is_the_sum_of_log_softmax_at_the_observed_levels():
    data = fake_images(3, 4, 17, n=6)
    obj, graphdef, params = assemble(data, latent=3)
    x = data.x_train
    z = np.random.default_rng(4).normal(size=(6, 3)).astype(np.float32)

    @jax.jit
    def evaluate(p):
        net = nnx.merge(graphdef, p)
        return obj.decoder_log_prob(net, jnp.asarray(x), z), teacher_logits(obj, net, x, z)

    got, logits = evaluate(params)
    levels = np.rint(x * 16).astype(int)
    want = np.take_along_axis(log_softmax_np(logits), levels[..., None], -1)[..., 0].sum(-1)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5)


BINARY = np.array(list(itertools.product([0.0, 1.0], repeat=4)), np.float32)  # the 16 images of 2×2 pixels


def _binary_case():
    return assemble(fake_images(2, 2, 2), latent=2, scale=1.0)


def test_probabilities_of_all_16_binary_images_sum_to_one():
    obj, graphdef, params = _binary_case()
    zs = np.array([[0.0, 0.0], [1.5, -0.5], [-2.0, 1.0]], np.float32)
    x = np.tile(BINARY, (3, 1))
    z = np.repeat(zs, 16, axis=0)
    logp = np.asarray(jax.jit(lambda p: obj.decoder_log_prob(nnx.merge(graphdef, p), x, z))(params), np.float64)
    np.testing.assert_allclose(np.exp(logp).reshape(3, 16).sum(1), 1.0, rtol=1e-5)
    assert np.exp(logp).max() < 0.9  # a non-trivial distribution for the sampling test


def test_ancestral_samples_follow_the_models_conditionals():
    """20 000 draws at one z: each of the 16 images' frequency within 5 binomial SEs of
    exp(log p(x|z)); the same key gives the same draws."""
    obj, graphdef, params = _binary_case()
    n = 20000
    z = jnp.broadcast_to(jnp.asarray([[0.7, -1.2]], jnp.float32), (n, 2))

    @jax.jit
    def draw(p, key):
        net = nnx.merge(graphdef, p)
        return obj.decode_sample(net, z, key), obj.decoder_log_prob(net, BINARY, z[:16])

    x, logp = draw(params, jax.random.key(5))
    x = np.asarray(x)
    assert set(np.unique(x)) <= {0.0, 1.0}
    index = (x @ np.array([8, 4, 2, 1])).astype(int)  # the row of BINARY each draw equals
    freq = np.bincount(index, minlength=16) / n
    p = np.exp(np.asarray(logp, np.float64))
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < Z * se + 1e-12), (freq, p)
    np.testing.assert_array_equal(np.asarray(draw(params, jax.random.key(5))[0]), x)


def test_greedy_decode_takes_the_argmax_level_given_its_own_earlier_pixels():
    """decode_mean's image x̂ satisfies x̂ᵢ = argmax_k fᵢ(x̂_<i, z) at every pixel (logits of the
    finished canvas: by causality those the scan saw at step i)."""
    data = fake_images(3, 3, 5)
    obj, graphdef, params = assemble(data, latent=2, scale=1.0)
    z = np.random.default_rng(6).normal(size=(8, 2)).astype(np.float32)

    @jax.jit
    def evaluate(p):
        net = nnx.merge(graphdef, p)
        xhat = obj.decode_mean(net, z)
        return xhat, teacher_logits(obj, net, xhat, z)

    xhat, logits = (np.asarray(a) for a in evaluate(params))
    levels = xhat * 4
    np.testing.assert_array_equal(levels, np.rint(levels))  # on the grid k/4
    np.testing.assert_array_equal(levels.astype(int), np.argmax(logits, -1))


def test_reconstruction_is_the_teacher_forced_predictive_mean():
    data = fake_images(3, 3, 5, n=7)
    obj, graphdef, params = assemble(data, latent=2)
    x = data.x_train

    @jax.jit
    def evaluate(p):
        net = nnx.merge(graphdef, p)
        mu = net.encode_stats(jnp.asarray(x))[0]
        return obj.reconstruct(net, jnp.asarray(x)), teacher_logits(obj, net, x, mu)

    got, logits = evaluate(params)
    probs = np.exp(log_softmax_np(logits))
    np.testing.assert_allclose(np.asarray(got, np.float64), probs @ (np.arange(5) / 4), rtol=1e-5, atol=1e-6)


def test_loss_is_nll_plus_beta_kl_and_elbo_is_its_beta_1_negative():
    data = fake_images(3, 4, 17, n=10)
    obj, graphdef, params = assemble(data, latent=3, beta=0.4)
    x = data.x_train
    key = jax.random.key(8)

    @jax.jit
    def evaluate(p):
        net = nnx.merge(graphdef, p)
        mean, logvar = net.encode_stats(jnp.asarray(x))
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
        return (obj.loss(net, jnp.asarray(x), key, None), obj.elbo(net, jnp.asarray(x), key), mean, logvar,
                teacher_logits(obj, net, x, z))

    (loss, aux), elbo, mean, logvar, logits = evaluate(params)
    mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
    nll = -np.take_along_axis(log_softmax_np(logits), np.rint(x * 16).astype(int)[..., None], -1)[..., 0].sum(-1)
    kl = 0.5 * np.sum(np.exp(logvar) + mean**2 - 1 - logvar, -1)
    np.testing.assert_allclose(float(loss), np.mean(nll + 0.4 * kl), rtol=1e-5)
    np.testing.assert_allclose(float(aux["nll"]), nll.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(aux["kl"]), kl.mean(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(elbo, np.float64), -(nll + kl), rtol=1e-5)


# --------------------------------------------------------------------------- config errors
MLP = {"kind": "mlp", "hidden": [8], "latent": 2}


@pytest.mark.parametrize("data, objective, match", [
    ({"kind": "digits", "scale": "standard"}, {}, "data.scale unit"),
    ({"kind": "moons"}, {}, "data.kind.*has none"),
    ({"kind": "digits"}, {"kernel": 4}, "objective.kernel"),
    ({"kind": "digits"}, {"levels": 1}, "objective.levels"),
], ids=["standardised", "not-images", "even-kernel", "one-level"])
def test_config_errors_name_the_field(data, objective, match):
    with pytest.raises(UserError, match=match):
        experiment.build(config.validate({"name": "t", "data": data, "model": MLP,
                                          "objective": {"kind": "pixelcnn_vae", **objective}}, "t"))


def test_refuses_colour_images_and_unknown_quantisation():
    model_cfg = models.REGISTRY["mlp"].Config(hidden=[8], latent=2)
    with pytest.raises(UserError, match="one-channel images.*3 channels"):
        pixelcnn_vae.make(pixelcnn_vae.Config(), fake_images(2, 2, 4, channels=3), model_cfg)
    data = fake_images(2, 2, 4)
    unquantised = Dataset("npz", data.x_train, data.x_test, image_shape=(2, 2))
    with pytest.raises(UserError, match="objective.levels: .*set objective.levels"):
        pixelcnn_vae.make(pixelcnn_vae.Config(), unquantised, model_cfg)
    assert pixelcnn_vae.make(pixelcnn_vae.Config(levels=4), unquantised, model_cfg).levels == 4


# --------------------------------------------------------------------------- command line
@pytest.mark.parametrize("model", [pytest.param({"kind": "conv", "channels": [4, 8], "latent": 3}, marks=pytest.mark.slow),
                                   MLP], ids=["conv", "mlp"])
def test_trains_samples_and_evaluates_from_the_command_line(tmp_path, model):
    cfg = write_config(
        tmp_path / "pcnn.yaml", data={"kind": "digits"}, model=model,
        objective={"kind": "pixelcnn_vae", "pixel_channels": 8, "pixel_layers": 2},
        train={"steps": 20, "batch_size": 32, "log_every": 10, "eval_every": 20, "ckpt_every": 20},
        sample={"kind": "ancestral", "n": 16, "init": {"kind": "gaussian", "std": 1.0}},
        eval={"nll_n": 20, "iw_samples": 5})
    dsm = CliRunner().invoke  # in process
    train = dsm(app, ["train", "--config", cfg, "--runs-dir", str(tmp_path / "runs")])
    assert train.exit_code == 0, train.output
    run = train.stdout.strip().splitlines()[-1]
    sample = dsm(app, ["sample", run])
    assert sample.exit_code == 0, sample.output
    x = np.load(sample.stdout.strip().splitlines()[-1])["x"]
    assert x.shape == (16, 64)
    np.testing.assert_array_equal(x * 16, np.rint(x * 16))  # drawn on the digits' 17 levels
    ev = dsm(app, ["eval", run, "--metrics", "codes,nll_iw"])
    assert ev.exit_code == 0, ev.output
    metrics = json.loads((Path(run) / "eval.json").read_text())
    metrics = metrics.get("metrics", metrics)
    assert np.isfinite(metrics["nll_iw"]) and np.isfinite(metrics["recon_mse"]) and metrics["elbo"] < 0
    assert metrics["nll_iw"] <= -metrics["elbo"] + 5.0  # the IWAE bound, up to 1-sample noise
    assert (Path(run) / "plots" / "interpolation.png").exists()
