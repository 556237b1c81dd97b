"""Convolutional networks for images: the im2col convolution against XLA's, the networks'
shapes and row-wise independence, the defaults and errors, and NCSN end to end on digits."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from dsmcli import experiment
from dsmcli.cli import app
from dsmcli.config import validate
from dsmcli.models.conv_blocks import NHWC_DIMS, canonical_conv, patch_conv
from tests.conftest import write_config

DIGITS = {"kind": "digits"}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def build(objective, model=None, data=DIGITS):
    raw = {"name": "t", "data": data, "objective": objective}
    if model is not None:
        raw["model"] = model
    return experiment.build(validate(raw, "t"))


@pytest.mark.parametrize("h, w, cin, cout, k, stride", [(8, 8, 3, 5, 3, 1), (8, 8, 3, 5, 3, 2), (7, 9, 2, 4, 1, 1),
                                                        (28, 28, 1, 4, 3, 2), (5, 5, 2, 3, 3, 2)])
def test_patch_conv_equals_xla_convolution_and_its_gradients(h, w, cin, cout, k, stride):
    x = jax.random.normal(jax.random.key(0), (2, h, w, cin))
    kernel = jax.random.normal(jax.random.key(1), (k, k, cin, cout))

    def ref(x, kernel):
        return jax.lax.conv_general_dilated(x, kernel, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def ours(x, kernel):
        return patch_conv(x, kernel, (stride, stride), "SAME")

    np.testing.assert_allclose(ours(x, kernel), ref(x, kernel), atol=1e-5)
    g_ref = jax.grad(lambda a, b: jnp.sum(jnp.sin(ref(a, b))), argnums=(0, 1))(x, kernel)
    g_ours = jax.grad(lambda a, b: jnp.sum(jnp.sin(ours(a, b))), argnums=(0, 1))(x, kernel)
    for a, b in zip(g_ours, g_ref):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("k, padding, hw", [(3, "SAME", (8, 8)), (1, "SAME", (7, 9)), (3, ((0, 2), (1, 1)), (5, 7)),
                                        (5, ((2, 2), (2, 2)), (6, 6)), (3, ((2, 0), (0, 1)), (6, 5)),
                                        (1, ((1, 0), (0, 1)), (4, 4))])
@pytest.mark.parametrize("cin, cout", [(4, 5), (5, 4), (3, 3)])  # ∂W with x transposed (O > C) or g (O ≤ C)
def test_canonical_conv_has_xlas_gradients(x64, k, padding, hw, cin, cout):
    """The hand-written backward pass (two forward convolutions; a 1×1 kernel without padding is
    a matmul) against JAX's own transpose rules, in float64: the same numbers."""
    x = jax.random.normal(jax.random.key(0), (3, *hw, cin), jnp.float64)
    kernel = jax.random.normal(jax.random.key(1), (k, k, cin, cout), jnp.float64)

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, (1, 1), padding)))

    ref = jax.grad(loss(lambda x, w, s, p: jax.lax.conv_general_dilated(x, w, s, p, dimension_numbers=NHWC_DIMS)),
                   (0, 1))(x, kernel)
    ours = jax.grad(loss(canonical_conv), (0, 1))(x, kernel)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    strided = canonical_conv(x, kernel, (2, 2), "SAME")  # falls back to patch_conv
    np.testing.assert_allclose(strided, patch_conv(x, kernel, (2, 2), "SAME"), rtol=1e-12)


def test_every_convolution_of_the_scanned_training_step_is_in_xlas_canonical_layout():
    """The reason for canonical_conv: inside the scan over training steps XLA:CPU runs only
    convolutions in its canonical layout (NHWC × HWIO → NHWC, ``b01f_01io->b01f``) fast; JAX's
    own gradient convolutions (``b01f_01oi``, ``f01b_i01o->01bf``) are 50–100× slower there."""
    import re

    from dsmcli import optim, train

    exp = build({"kind": "ncsn"}, {"kind": "ncsn_conv", "channels": [4, 8]})
    tx = optim.for_experiment(exp, 10)
    step_fn = train.StepFunction(exp, tx)
    state = train.initial_state(exp, tx)
    hlo = step_fn._jitted.lower(state, jnp.asarray(exp.data.x_train), np.int32(0), 2).compile().as_text()
    layouts = re.findall(r"convolution\([^)]*\).*?dim_labels=(\S+?),", hlo)
    assert "while" in hlo and len(layouts) >= 3 * 10  # forward, input- and weight-gradient of every conv
    assert set(layouts) == {"b01f_01io->b01f"}, sorted(set(layouts))


@pytest.mark.parametrize("objective, model, out_dim", [
    ({"kind": "dsm", "sigma": 0.1}, {"kind": "conv", "channels": [4, 8]}, 64),
    ({"kind": "dae", "sigma": 0.1}, {"kind": "conv", "channels": [4, 8]}, 64),
    ({"kind": "ncsn"}, {"kind": "ncsn_conv", "channels": [4, 8]}, 64),
])
def test_image_networks_are_row_wise_maps_of_the_right_shape(objective, model, out_dim):
    """GroupNorm normalises within an image: changing one row never changes another's output."""
    exp = build(objective, model)
    x = jnp.asarray(exp.data.x_train[:5])
    f = exp.score_fn(exp.params)
    out = f(x)
    assert out.shape == (5, out_dim) and bool(jnp.all(jnp.isfinite(out)))
    moved = f(x.at[3].add(1.0))
    np.testing.assert_array_equal(np.delete(np.asarray(moved), 3, 0), np.delete(np.asarray(out), 3, 0))
    assert not np.allclose(moved[3], out[3])


@pytest.mark.parametrize("objective", [{"kind": "ae"}, {"kind": "vae"}, {"kind": "cae", "lam": 0.01}])
def test_conv_autoencoder_codes_and_reconstructions(objective):
    exp = build(objective, {"kind": "conv", "channels": [4, 8], "latent": 3})
    net, x = exp.net(exp.params), jnp.asarray(exp.data.x_train[:6])
    assert exp.objective.encode(net, x).shape == (6, 3)
    assert exp.objective.reconstruct(net, x).shape == (6, 64)
    assert exp.objective.decode_mean(net, jnp.zeros((2, 3))).shape == (2, 64)
    if objective["kind"] == "vae":
        mean, logvar = net.encode_stats(x)
        assert mean.shape == logvar.shape == (6, 3)
    loss, _ = exp.objective.loss(net, x, jax.random.key(0), None)
    assert np.isfinite(float(loss))


def test_ncsn_defaults_to_the_conv_network_on_images_and_the_mlp_on_vectors():
    assert validate({"name": "t", "data": DIGITS, "objective": {"kind": "ncsn"}}, "t").model.kind == "ncsn_conv"
    gmm = {"kind": "gmm", "means": [[0.0, 0.0], [1.0, 1.0]], "stds": [1.0, 1.0], "weights": [0.5, 0.5]}
    assert validate({"name": "t", "data": gmm, "objective": {"kind": "ncsn"}}, "t").model.kind == "ncsn_mlp"
    assert validate({"name": "t", "data": DIGITS, "objective": {"kind": "ae"}, "model": {"kind": "conv", "latent": 2}},
                    "t").model.kind == "conv"


@pytest.mark.parametrize("sets, message", [
    ({"objective": {"kind": "dsm", "sigma": 0.1}, "model": {"kind": "conv"}}, "model.kind: 'conv' needs image data"),
    ({"data": DIGITS, "objective": {"kind": "ae"}, "model": {"kind": "conv", "channels": [4, 4, 4, 4], "latent": 2}},
     "model.channels: 4 resolution halvings need image sides divisible by 16, the images are 8×8"),
    ({"data": DIGITS, "objective": {"kind": "ncsn"}, "model": {"kind": "conv"}},
     "model.kind: 'conv' cannot be used with objective.kind 'ncsn' (allowed: ncsn_mlp, ncsn_conv)"),
])
def test_conv_misuse_is_a_user_error(tmp_path, sets, message):
    config = write_config(tmp_path / "c.yaml", **sets)
    out = CliRunner().invoke(app, ["train", "--config", config, "--runs-dir", str(tmp_path / "runs")])  # in process
    assert out.exit_code == 2, out.output
    assert message in out.stderr and "Traceback" not in out.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("summary.json"))


def test_ncsn_on_digits_trains_and_draws_an_image_grid_from_the_command_line(tmp_path):
    config = write_config(
        tmp_path / "ncsn.yaml",
        data=DIGITS, objective={"kind": "ncsn", "n_sigmas": 4}, model={"kind": "ncsn_conv", "channels": [4, 8]},
        train={"steps": 20, "batch_size": 16, "log_every": 10, "eval_every": 20, "ckpt_every": 20, "ema_decay": 0.9},
        sample={"kind": "annealed_langevin", "n": 16, "steps": 3, "step_size": 1e-5, "denoise": True,
                "init": {"kind": "uniform", "low": 0, "high": 1}},
    )
    runs = str(tmp_path / "runs")
    train = CliRunner().invoke(app, ["train", "--config", config, "--runs-dir", runs])  # in process
    assert train.exit_code == 0, train.output
    run_dir = train.stdout.strip().splitlines()[-1]
    sample = CliRunner().invoke(app, ["sample", run_dir])
    assert sample.exit_code == 0, sample.output
    npz = sample.stdout.strip().splitlines()[-1]
    x = np.load(npz)["x"]
    assert x.shape == (16, 64) and np.all(np.isfinite(x))
    assert any(p.name.endswith(".png") for p in (tmp_path / "runs").rglob("samples/*"))


def test_networks_on_28x28_mnist_files(tmp_path):
    """MNIST-sized images: the U-Net halves 28 → 14, the autoencoder 28 → 14 → 7."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (40, 28, 28)), "y_train": rng.integers(0, 10, 40),
              "x_test": rng.integers(0, 256, (10, 28, 28)), "y_test": rng.integers(0, 10, 10)}
    np.savez(tmp_path / "m.npz", **{k: v.astype(np.uint8) for k, v in arrays.items()})
    data = {"kind": "mnist", "path": str(tmp_path / "m.npz")}
    exp = build({"kind": "ncsn", "n_sigmas": 3}, {"kind": "ncsn_conv", "channels": [4, 8]}, data)
    assert exp.cfg.model.kind == "ncsn_conv" and exp.data.image_shape == (28, 28)
    x = jnp.asarray(exp.data.x_train[:3])
    assert exp.score_fn(exp.params)(x).shape == (3, 784)
    ae = build({"kind": "vae"}, {"kind": "conv", "channels": [4, 8], "latent": 5}, data)
    net = ae.net(ae.params)
    assert net.encode(x).shape == (3, 5) and net.decode(jnp.zeros((2, 5))).shape == (2, 784)
