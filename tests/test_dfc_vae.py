"""``dfc_vae`` (Hou et al. 2017): the loss against a NumPy closed form, the features against
scikit-learn's own classifier, the feature network as a constant, config validation, the
``fd`` cache extension (W₂, b₂ stored; fd's numbers and sha256 unchanged) and a CLI run.

The classifier is fitted on tiny data sets here, into a fresh cache for the module."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from dsmcli import experiment
from dsmcli.cli import app
from dsmcli.config import validate
from dsmcli.errors import UserError
from dsmcli.metrics import fd
from dsmcli.objectives import dfc_vae, vae
from tests.conftest import write_config

DIGITS = {"kind": "digits", "test_fraction": 0.9}  # 179 training images: a fast classifier fit
MODEL = {"kind": "mlp", "hidden": [12], "latent": 3}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One fresh classifier cache for this module (each data set is fitted once)."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        yield root / "dsm" / "fd"


def tiny_images(n=60, side=3, classes=3, seed=0):
    """Labelled 'images' in [0, 1], the class visible in the pixels (so the classifier learns)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = np.clip(0.3 * rng.uniform(size=(n, side * side)) + 0.6 * (np.arange(side * side)[None] % classes == y[:, None]), 0, 1)
    return SimpleNamespace(kind="tiny", x_train=x.astype(np.float32), y_train=y, x_test=x[:20].astype(np.float32),
                           image_shape=(side, side))


def sklearn_fit(data):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, random_state=0).fit(data.x_train, data.y_train)


def relu(a):
    return np.maximum(a, 0.0)


def test_loss_matches_its_closed_form(cache):
    """J = mean_rows Σ_l w_l ½‖φ_l(x) − φ_l(x̂)‖² + β KL, x̂ = sigmoid(dec(μ + σε)), in float64 NumPy."""
    data = tiny_images()
    cfg = dfc_vae.Config(feature_layers=["pixels", "hidden", "logits"], feature_weights=[3.0, 0.5, 0.2], beta=2.0)
    obj = dfc_vae.DFCVAE(cfg, data, SimpleNamespace(kind="mlp", latent=2))
    rng = np.random.default_rng(1)
    x = data.x_train[:5].astype(np.float64)
    mean, logvar = rng.normal(size=(5, 2)), rng.normal(size=(5, 2))
    A = rng.normal(size=(2, 9))
    model = SimpleNamespace(encode_stats=lambda _: (jnp.asarray(mean, jnp.float32), jnp.asarray(logvar, jnp.float32)),
                            decode=lambda z: z @ jnp.asarray(A, jnp.float32))
    key = jax.random.key(3)
    loss, aux = obj.loss(model, jnp.asarray(x, jnp.float32), key, None)

    eps = np.asarray(jax.random.normal(key, (5, 2)), np.float64)  # the same draw of ε
    xhat = 1 / (1 + np.exp(-((mean + np.exp(0.5 * logvar) * eps) @ A)))
    clf = sklearn_fit(data)  # an independent fit: the same network (random_state=0)
    (W, W2), (b, b2) = clf.coefs_, clf.intercepts_
    phi = lambda v: {"pixels": v, "hidden": relu(v @ W + b), "logits": relu(v @ W + b) @ W2 + b2}  # noqa: E731
    fx, fr = phi(x), phi(xhat)
    terms = {k: 0.5 * np.sum((fx[k] - fr[k]) ** 2, 1) for k in fx}
    kl = 0.5 * np.sum(np.exp(logvar) + mean**2 - 1 - logvar, 1)
    want = (3.0 * terms["pixels"] + 0.5 * terms["hidden"] + 0.2 * terms["logits"] + 2.0 * kl).mean()
    np.testing.assert_allclose(float(loss), want, rtol=1e-4)
    np.testing.assert_allclose(float(aux["kl"]), kl.mean(), rtol=1e-5)
    for k in fx:
        np.testing.assert_allclose(float(aux[f"feat_{k}"]), terms[k].mean(), rtol=1e-4)


def test_pixels_alone_is_the_gaussian_vae_on_a_sigmoid_decoder(cache):
    """feature_layers [pixels] with w = 1/s²: the vae's gaussian −log p(x|z) minus (D/2) log 2πs²."""
    data = tiny_images()
    s = 0.5
    obj = dfc_vae.DFCVAE(dfc_vae.Config(feature_layers=["pixels"], feature_weights=[1 / s**2]), data,
                         SimpleNamespace(kind="mlp", latent=2))
    ref = vae.VAE(vae.Config(likelihood="gaussian", decoder_std=s), data, SimpleNamespace(kind="mlp", latent=2))
    rng = np.random.default_rng(2)
    mean, logvar, A = (jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in ((4, 2), (4, 2), (2, 9)))
    model = SimpleNamespace(encode_stats=lambda _: (mean, logvar), decode=lambda z: jax.nn.sigmoid(z @ A))
    raw = SimpleNamespace(encode_stats=model.encode_stats, decode=lambda z: z @ A)
    x, key = jnp.asarray(data.x_train[:4]), jax.random.key(0)
    got, _ = obj.loss(raw, x, key, None)
    want, _ = ref.loss(model, x, key, None)
    np.testing.assert_allclose(float(got), float(want) - 0.5 * 9 * np.log(2 * np.pi * s**2), rtol=1e-5)


@pytest.mark.parametrize("classes", [3, 2])
def test_features_are_the_scikit_learn_classifiers(cache, classes):
    """hidden = relu(x W₁ + b₁) of the fitted MLPClassifier, softmax(logits) = predict_proba (the
    logistic of the single logit for two classes)."""
    data = tiny_images(classes=classes)
    clf = sklearn_fit(data)
    W, b, W2, b2 = fd.classifier_layers(data.x_train, data.y_train)
    for got, want in zip((W, W2, b, b2), (*clf.coefs_, *clf.intercepts_)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    x = data.x_train[:10]
    f = jax.jit(lambda v: dfc_vae.features(v, dfc_vae.LAYERS, W, b, W2, b2))(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(f["pixels"]), x)
    np.testing.assert_allclose(np.asarray(f["hidden"]), fd.features(x, *clf_first(clf)), rtol=1e-5, atol=1e-5)
    logits = np.asarray(f["logits"], np.float64)
    proba = clf.predict_proba(x)
    if classes == 2:
        assert logits.shape == (10, 1)
        np.testing.assert_allclose(1 / (1 + np.exp(-logits[:, 0])), proba[:, 1], rtol=1e-4, atol=1e-6)
    else:
        soft = np.exp(logits - logits.max(1, keepdims=True))
        np.testing.assert_allclose(soft / soft.sum(1, keepdims=True), proba, rtol=1e-4, atol=1e-6)


def clf_first(clf):
    return clf.coefs_[0], clf.intercepts_[0]


def build(objective, model=MODEL, data=DIGITS):
    return experiment.build(validate({"name": "t", "data": data, "objective": objective, "model": model}, "t"))


def test_the_feature_network_is_a_constant_not_a_parameter(cache):
    exp = build({"kind": "dfc_vae", "feature_layers": ["hidden", "logits"]})
    ref = build({"kind": "vae"})
    # the trained parameters are exactly the VAE's (encoder with 2K outputs, decoder): nothing else
    assert jax.tree.structure(exp.params) == jax.tree.structure(ref.params)
    assert [np.shape(a) for a in jax.tree.leaves(exp.params)] == [np.shape(a) for a in jax.tree.leaves(ref.params)]
    assert all(isinstance(a, np.ndarray) for a in exp.objective.classifier)
    before = [a.copy() for a in exp.objective.classifier]
    x = jnp.asarray(exp.data.x_train[:16])
    grads = jax.jit(jax.grad(lambda p: exp.objective.loss(exp.net(p), x, jax.random.key(0), None)[0]))(exp.params)
    assert jax.tree.structure(grads) == jax.tree.structure(exp.params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads))
    assert all(np.array_equal(a, c) for a, c in zip(before, exp.objective.classifier))
    assert not hasattr(exp.objective, "elbo") and not hasattr(exp.objective, "decoder_log_prob")  # no nll_iw


def test_config_defaults_and_validation():
    cfg = dfc_vae.Config()
    assert cfg.feature_layers == ["pixels", "hidden"] and cfg.beta == 1.0
    assert cfg.feature_weights == [dfc_vae.DEFAULT_WEIGHTS["pixels"], dfc_vae.DEFAULT_WEIGHTS["hidden"]]
    assert dfc_vae.Config(feature_layers=["logits"]).feature_weights == [dfc_vae.DEFAULT_WEIGHTS["logits"]]

    def error(objective):
        with pytest.raises(UserError) as e:
            validate({"name": "t", "data": DIGITS, "objective": {"kind": "dfc_vae", **objective}, "model": MODEL}, "t")
        return str(e.value)

    msg = error({"feature_layers": ["pixels", "relu2_1"]})
    assert "objective.feature_layers.1: 'relu2_1' is not allowed" in msg and "pixels, hidden, logits" in msg
    assert "objective.feature_weights: " in error({"feature_layers": ["pixels", "hidden"], "feature_weights": [1.0]})
    assert "one weight per entry of feature_layers" in error({"feature_weights": [1.0, 2.0, 3.0]})
    assert "objective.feature_layers: " in error({"feature_layers": ["hidden", "hidden"]})
    assert "objective.feature_layers: " in error({"feature_layers": []})
    assert "objective.feature_weights.0: " in error({"feature_layers": ["hidden"], "feature_weights": [0.0]})


def test_data_without_labels_images_or_unit_range_is_refused(cache):
    gmm = {"kind": "gmm", "means": [[0.0, 0.0]], "stds": [1.0], "weights": [1.0], "n_train": 64, "n_test": 16}
    with pytest.raises(UserError, match=r"data.kind: objective.kind 'dfc_vae' .* data.kind 'gmm' is not labelled images"):
        build({"kind": "dfc_vae"}, data=gmm)
    with pytest.raises(UserError, match=r"data.kind: .*needs pixels in \[0, 1\]"):
        build({"kind": "dfc_vae"}, data={**DIGITS, "scale": "standard"})


def test_fd_cache_stores_the_output_layer_and_fd_is_unchanged(cache):
    """An old cache entry (W, b only) is refitted to the same W, b: fd, fd_floor and sha256 equal."""
    data = tiny_images()
    samples = np.random.default_rng(4).uniform(size=(30, 9)).astype(np.float32)
    first, net = fd.fd_metrics(samples, data, seed=0), fd.feature_net(data)
    entry = cache / f"{fd.cache_key(data.x_train, data.y_train)}.npz"
    with np.load(entry) as f:
        assert {"W", "b", "W2", "b2", "acc", "sklearn"} <= set(f.files)
        W, b, acc, version = f["W"], f["b"], f["acc"], f["sklearn"]
    np.savez(entry, W=W, b=b, acc=acc, sklearn=version)  # the format before W2, b2
    # sha256 still hashes the first layer alone, as the protocol says
    assert net.sha256 == hashlib.sha256(np.ascontiguousarray(W, "<f4").tobytes() + np.ascontiguousarray(b, "<f4").tobytes()).hexdigest()
    clf = sklearn_fit(data)
    want = {"fd": fd.frechet_distance(relu(samples.astype(np.float64) @ clf.coefs_[0] + clf.intercepts_[0]),
                                      relu(data.x_test.astype(np.float64) @ clf.coefs_[0] + clf.intercepts_[0]))}
    assert first["fd"] == pytest.approx(want["fd"], rel=1e-5)
    again = fd.fd_metrics(samples, data, seed=0)  # refits the old entry
    assert again == first and fd.feature_net(data).sha256 == net.sha256
    with np.load(entry) as f:
        assert {"W2", "b2"} <= set(f.files)
        np.testing.assert_array_equal(f["W"], W)


def test_train_sample_eval_from_the_command_line(tmp_path, cache):
    cfg = write_config(tmp_path / "dfc.yaml", {"train.steps": 20, "train.log_every": 10, "train.eval_every": 20,
                                               "train.ckpt_every": 20, "train.batch_size": 32},
                       data=DIGITS, objective={"kind": "dfc_vae", "feature_layers": ["pixels", "hidden", "logits"]},
                       model=MODEL, sample={"kind": "ancestral", "n": 40, "init": {"kind": "gaussian", "std": 1.0}})
    runner = CliRunner()
    dsm = lambda *args: runner.invoke(app, [str(a) for a in args])  # noqa: E731
    r = dsm("train", "--config", cfg, "--runs-dir", tmp_path / "runs")
    assert r.exit_code == 0, r.output
    run_dir = Path(r.stdout.strip().splitlines()[-1])
    r = dsm("sample", run_dir, "--metrics", "fd,mmd")
    assert r.exit_code == 0, r.output
    npz = Path(r.stdout.strip().splitlines()[-1])
    record = json.loads((run_dir / "samples" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(record["fd"]) and record["fd_floor"] > 0 and np.isfinite(record["mmd"])
    x = np.load(npz)["x"]
    assert x.shape == (40, 64) and np.all((x > 0) & (x < 1))  # sigmoid of the decoder
    r = dsm("eval", run_dir, "--metrics", "codes")
    assert r.exit_code == 0, r.output
    result = json.loads((run_dir / "eval.json").read_text())
    assert {"recon_mse", "probe_acc"} <= set(result) and "elbo" not in result and "nll_iw" not in result
    r = dsm("eval", run_dir, "--metrics", "nll_iw")  # no pixel likelihood: skipped, not made up
    assert r.exit_code == 2 and "'nll_iw' does not apply to this run" in r.output
    r = dsm("train", "--config", cfg, "--runs-dir", tmp_path / "runs", "objective.feature_weights=[1.0]")
    assert r.exit_code == 2 and "objective.feature_weights" in r.output and "Traceback" not in r.output
