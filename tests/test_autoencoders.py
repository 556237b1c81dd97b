"""The autoencoder family: each loss against an independent computation, PCA against
scikit-learn, and the downstream tasks of ``dsm eval`` end to end on digits."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmcli import api, experiment
from dsmcli.config import validate
from dsmcli.errors import UserError
from dsmcli.objectives import sparse_ae, vae, wae
from tests.conftest import write_config

DIGITS = {"kind": "digits", "holdout_class": 9}
MODEL = {"kind": "mlp", "hidden": [32], "latent": 4}


def build(objective, model=MODEL, data=DIGITS):
    return experiment.build(validate({"name": "t", "data": data, "objective": objective, "model": model}, "t"))


def fake_vae(mean, logvar, out):
    return SimpleNamespace(encode_stats=lambda x: (mean, logvar), decode=lambda z: out)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_loss_terms_match_their_closed_forms(likelihood):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(5, 6)).astype(np.float32)
    mean, logvar = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    out = rng.normal(size=(5, 6)).astype(np.float32)
    obj = vae.VAE(vae.Config(likelihood=likelihood, beta=2.0, decoder_std=0.5), SimpleNamespace(), SimpleNamespace(kind="mlp", latent=3))
    loss, aux = obj.loss(fake_vae(mean, logvar, out), jnp.asarray(x), jax.random.key(0), None)
    var = np.exp(logvar)
    kl = 0.5 * np.sum(var + mean**2 - 1 - logvar, 1)  # KL(N(μ, σ²) ‖ N(0, 1)) summed over latents
    if likelihood == "bernoulli":
        p = 1 / (1 + np.exp(-out))
        nll = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), 1)
    else:
        nll = np.sum((x - out) ** 2, 1) / (2 * 0.25) + 3 * np.log(2 * np.pi * 0.25)
    np.testing.assert_allclose(float(aux["kl"]), kl.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(aux["nll"]), nll.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), (nll + 2.0 * kl).mean(), rtol=1e-5)


def test_beta_vae_is_the_vae_with_beta_4():
    exp = build({"kind": "beta_vae"})
    assert exp.cfg.objective.beta == 4.0 and isinstance(exp.objective, vae.VAE)


def test_sparsity_penalties():
    h = jnp.asarray(np.random.default_rng(1).normal(size=(64, 5)), jnp.float32)
    rate = (1 / (1 + np.exp(-np.asarray(h)))).mean(0)
    rho = 0.1
    want = np.sum(rho * np.log(rho / rate) + (1 - rho) * np.log((1 - rho) / (1 - rate)))
    np.testing.assert_allclose(float(sparse_ae.kl_sparsity(h, rho)), want, rtol=1e-5)
    exp = build({"kind": "sparse_ae", "penalty": "l1", "lam": 0.5})
    model, x = exp.net(exp.params), jnp.asarray(exp.data.x_train[:16])
    loss, aux = exp.objective.loss(model, x, jax.random.key(0), None)
    codes = np.asarray(model.encode(x))
    np.testing.assert_allclose(float(aux["sparsity"]), np.abs(codes).sum(1).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(loss), float(aux["recon"]) + 0.5 * float(aux["sparsity"]), rtol=1e-6)


def test_wae_imq_mmd_is_the_unbiased_u_statistic():
    rng = np.random.default_rng(2)
    z, p = rng.normal(size=(12, 3)), rng.normal(loc=0.5, size=(12, 3))
    c = 6.0
    k = lambda a, b: c / (c + ((a[:, None] - b[None]) ** 2).sum(-1))  # noqa: E731
    n = len(z)
    want = ((k(z, z).sum() - np.trace(k(z, z))) + (k(p, p).sum() - np.trace(k(p, p)))) / (n * (n - 1)) - 2 * k(z, p).mean()
    np.testing.assert_allclose(float(wae.imq_mmd(jnp.asarray(z, jnp.float32), jnp.asarray(p, jnp.float32), c)), want, rtol=1e-5)


def test_pca_matches_scikit_learn_and_trains_nothing(tmp_path, runs_dir):
    from sklearn.decomposition import PCA

    exp = build({"kind": "pca"})
    ref = PCA(n_components=4).fit(exp.data.x_train)
    x = exp.data.x_test[:20]
    np.testing.assert_allclose(exp.objective.reconstruct(None, x), ref.inverse_transform(ref.transform(x)), atol=1e-5)
    cfg = write_config(tmp_path / "pca.yaml", data=DIGITS, objective={"kind": "pca"}, model=MODEL)
    run_dir, summary = api.train(cfg, runs_dir=str(runs_dir))
    assert summary["steps"] == 0
    _, result = api.evaluate(run_dir)
    assert result["recon_mse"] == pytest.approx(np.mean((ref.inverse_transform(ref.transform(exp.data.x_test)) - exp.data.x_test) ** 2), rel=1e-4)


@pytest.mark.parametrize("objective", [{"kind": "ae"}, {"kind": "vae"}, {"kind": "wae"}, {"kind": "dae", "sigma": 0.2}])
def test_code_tasks_in_eval_and_ancestral_samples(tmp_path, runs_dir, objective):
    cfg = write_config(tmp_path / "ae.yaml", {"train.steps": 100, "train.log_every": 50, "train.eval_every": 100,
                                              "train.ckpt_every": 100, "train.batch_size": 64},
                       data=DIGITS, objective=objective, model=MODEL,
                       sample={"kind": "ancestral", "n": 64, "init": {"kind": "gaussian", "std": 1.0}})
    run_dir, _ = api.train(cfg, runs_dir=str(runs_dir))
    _, result = api.evaluate(run_dir)
    assert {"recon_mse", "probe_acc", "kmeans_nmi", "anomaly_auroc"} <= set(result)
    assert 0.1 < result["probe_acc"] <= 1 and 0 <= result["kmeans_nmi"] <= 1 and 0 <= result["anomaly_auroc"] <= 1
    assert ("elbo" in result) == (objective["kind"] == "vae")
    npz, record = api.sample(run_dir)
    assert np.load(npz)["x"].shape == (64, 64) and npz.with_suffix(".png").is_file() and "mmd" in record


def test_autoencoders_need_a_bottleneck_and_have_no_score():
    with pytest.raises(UserError, match="model.latent: objective.kind 'ae' needs a bottleneck"):
        build({"kind": "ae"}, {"kind": "mlp", "hidden": [8]})
    exp = build({"kind": "vae"})
    cfg = exp.cfg.sample.model_copy(update={"kind": "langevin", "n": 4, "steps": 2})
    from dsmcli import sampling

    with pytest.raises(UserError, match="has no score read-out; sample it with sample.kind ancestral"):
        sampling.draw(exp, exp.params, cfg, seed=0)


def test_frechet_distance_closed_form_and_floor():
    """FD between N(μ₁, Σ₁) and N(μ₂, Σ₂) samples → ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½); with
    Σ₁ = I, Σ₂ = 4I in D dims that is ‖δ‖² + D(1 + 4 − 4) = ‖δ‖² + D."""
    from dsmcli.metrics.fd import fd_metrics, frechet_distance

    rng = np.random.default_rng(0)
    d, delta = 4, np.array([1.0, 0.0, 2.0, 0.0])
    f1, f2 = rng.normal(size=(200_000, d)), delta + 2 * rng.normal(size=(200_000, d))
    assert frechet_distance(f1, f2) == pytest.approx(delta @ delta + d, rel=0.01)
    assert abs(frechet_distance(f1, rng.normal(size=(200_000, d)))) < 0.01
    exp = build({"kind": "ae"})
    m = fd_metrics(exp.data.x_test, exp.data)
    assert m["fd"] == pytest.approx(0.0, abs=1e-6) and m["fd_floor"] > 0
    noise = fd_metrics(np.random.default_rng(1).uniform(size=exp.data.x_test.shape).astype(np.float32), exp.data)
    assert noise["fd"] > 10 * m["fd_floor"]


def test_interpolation_grid_runs_from_one_digit_to_the_next():
    """Each grid row: image a (class c), dec(enc(a)), …, dec(enc(b)), image b (class c + 1)."""
    from dsmcli.evaluation import interpolations

    exp = build({"kind": "ae"})
    rows = interpolations(exp, exp.params, pairs=3, steps=4).reshape(3, 6, -1)
    net = exp.net(exp.params)
    y, x = exp.data.y_test, exp.data.x_test
    for c in range(3):
        a, b = x[np.flatnonzero(y == c)[0]], x[np.flatnonzero(y == c + 1)[0]]
        np.testing.assert_array_equal(rows[c, 0], a)
        np.testing.assert_array_equal(rows[c, -1], b)
        recon = np.asarray(exp.objective.reconstruct(net, jnp.asarray(np.stack([a, b]))))
        np.testing.assert_allclose(rows[c, 1], recon[0], atol=1e-5)
        np.testing.assert_allclose(rows[c, -2], recon[1], atol=1e-5)
        assert not np.allclose(rows[c, 2], rows[c, 1])


def test_image_panels_draw_one_mosaic_per_variant(tmp_path):
    """The comparison figure for image data (compare.figures → plots.image_panels)."""
    import matplotlib.image as mpimg

    from dsmcli import plots

    rng = np.random.default_rng(0)
    samples = {"a": rng.uniform(size=(40, 64)), "b": rng.uniform(size=(5, 64)), "c": np.zeros((36, 64))}
    plots.image_panels(tmp_path / "s.png", samples, (8, 8), side=6, ncols=2)
    img = mpimg.imread(tmp_path / "s.png")
    assert img.shape[0] > 100 and img.shape[1] > 100  # 2 rows × 2 columns of panels
    assert img.shape[0] > img.shape[1] * 0.8
