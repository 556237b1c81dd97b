"""Survey extras (Bank, Koenigstein & Giryes): ``lda`` and ``isomap`` against scikit-learn on
the same rows, their affine decoders against least squares by hand, ``trustworthiness`` against
its formula written out, U-AutoRec (``based: user``) as I-AutoRec on the transposed matrix, the
``gmm`` prior of ``ancestral`` sampling against the moments of a mixture fitted independently,
and the command-line errors of the new keys."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from dsmcli import api, config, experiment, metrics
from dsmcli.cli import app
from dsmcli.data.base import Dataset
from dsmcli.errors import UserError
from dsmcli.metrics import ModelView
from dsmcli.metrics import trustworthiness as trust
from dsmcli.objectives import autorec
from dsmcli.samplers import Target, ancestral
from tests.conftest import write_config

runner = CliRunner()
DIGITS = {"kind": "digits", "holdout_class": 9}
MODEL = {"kind": "mlp", "hidden": [16], "latent": 4}
GMM = {"kind": "gmm", "means": [[-2.0, 0.0], [2.0, 1.0]], "stds": [0.6, 0.8], "weights": [0.3, 0.7],
       "n_train": 400, "n_test": 1200}


def dsm(*args):
    return runner.invoke(app, [str(a) for a in args])


def build(objective, model=MODEL, data=DIGITS, sample=None):
    raw = {"name": "t", "data": data, "objective": objective, "model": model}
    if sample is not None:
        raw["sample"] = sample
    return experiment.build(config.validate(raw, "t"))


def lstsq_decoder(z, x):
    z1 = np.hstack([z, np.ones((len(z), 1))])
    sol = np.linalg.lstsq(z1, x, rcond=None)[0]
    return lambda codes: codes @ sol[:-1] + sol[-1]


# --------------------------------------------------------------------------- lda, isomap
def test_lda_codes_and_decoder_match_scikit_learn_and_least_squares():
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    exp = build({"kind": "lda"})
    assert not exp.objective.trains and exp.cfg.model.latent == 4
    x_train, x_test = exp.data.x_train.astype(np.float64), exp.data.x_test.astype(np.float64)
    ref = LinearDiscriminantAnalysis(n_components=4).fit(x_train, exp.data.y_train)
    net = exp.net(exp.params)
    codes = jax.jit(lambda x: exp.objective.encode(net, x))(exp.data.x_test)
    np.testing.assert_allclose(np.asarray(codes), ref.transform(x_test), atol=1e-4)
    decoder = lstsq_decoder(ref.transform(x_train), x_train)
    recon = np.asarray(exp.objective.reconstruct(net, exp.data.x_test))
    np.testing.assert_allclose(recon, decoder(ref.transform(x_test)), atol=1e-4)
    # PCA is the optimal affine code of the same size: LDA's codes keep no more of x
    pca = PCA(n_components=4).fit(x_train)
    lda_mse = np.mean((np.asarray(exp.objective.reconstruct(net, exp.data.x_train)) - x_train) ** 2)
    assert lda_mse >= np.mean((pca.inverse_transform(pca.transform(x_train)) - x_train) ** 2) - 1e-6


def test_lda_latent_is_at_most_classes_minus_one_and_needs_labels():
    build({"kind": "lda"}, {**MODEL, "latent": 8})  # 9 classes (9 is held out): 8 directions
    with pytest.raises(UserError, match=r"model\.latent: .* at most min\(classes − 1, D\) = 8 .* got 9"):
        build({"kind": "lda"}, {**MODEL, "latent": 9})
    with pytest.raises(UserError, match="data.kind: objective.kind 'lda' is fitted on labelled training rows"):
        build({"kind": "lda"}, data=GMM)


def test_isomap_codes_match_scikit_learn_on_new_rows_and_downstream_tasks_run():
    from sklearn.manifold import Isomap

    exp = build({"kind": "isomap", "n_neighbors": 8})
    x_train, x_test = exp.data.x_train.astype(np.float64), exp.data.x_test.astype(np.float64)
    ref = Isomap(n_components=4, n_neighbors=8).fit(x_train)
    net = exp.net(exp.params)
    codes = np.asarray(jax.jit(lambda x: exp.objective.encode(net, x))(exp.data.x_test))  # in JAX, under jit
    # Digits' pixels are multiples of 1/16: many rows have tied k-th and (k+1)-th neighbours, where
    # scikit-learn's tree and top_k may keep different (equally near) rows. Compare where the k
    # nearest are unambiguous; there the transform must agree.
    d = np.sort(np.sqrt(((x_test[:, None] - x_train[None]) ** 2).sum(-1)), 1)
    clear = d[:, 8] - d[:, 7] > 1e-6
    assert clear.mean() > 0.9
    scale = np.abs(ref.embedding_).max()
    np.testing.assert_allclose(codes[clear], ref.transform(x_test)[clear], atol=1e-4 * scale)
    recon = np.asarray(exp.objective.reconstruct(net, exp.data.x_test))  # decoder fitted on transform(x_train)
    np.testing.assert_allclose(recon[clear], lstsq_decoder(ref.transform(x_train), x_train)(ref.transform(x_test))[clear],
                               atol=1e-4)
    out = metrics.evaluate_model(ModelView(exp, exp.params), ["codes", "trustworthiness"])
    assert 0.5 < out["probe_acc"] <= 1 and 0 < out["kmeans_nmi"] <= 1 and 0.5 < out["anomaly_auroc"] <= 1
    assert 0.5 < out["trustworthiness"] <= 1 and np.isfinite(out["recon_mse"])


def test_isomap_needs_fewer_neighbours_than_training_rows():
    with pytest.raises(UserError, match="objective.n_neighbors: 400 neighbours need more training rows than the 400"):
        build({"kind": "isomap", "n_neighbors": 400}, data=GMM, model={**MODEL, "latent": 1})


# --------------------------------------------------------------------------- trustworthiness
def hand_trustworthiness(x, z, k):
    """T(k) = 1 − 2/(n k (2n − 3k − 1)) Σᵢ Σ_{j ∈ Uₖ(i)} (r(i, j) − k), written out."""
    n = len(x)
    dx = ((x[:, None] - x[None]) ** 2).sum(-1)
    dz = ((z[:, None] - z[None]) ** 2).sum(-1)
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dz, np.inf)
    rank = np.empty((n, n), int)
    rank[np.arange(n)[:, None], np.argsort(dx, 1)] = np.arange(1, n + 1)
    penalty = sum(max(rank[i, j] - k, 0) for i in range(n) for j in np.argsort(dz[i])[:k])
    return 1 - 2 / (n * k * (2 * n - 3 * k - 1)) * penalty


def test_trustworthiness_is_the_formula_on_the_first_1000_held_out_rows():
    exp = build({"kind": "pca"}, {**MODEL, "latent": 1}, data=GMM)  # a 2-D mixture onto one direction
    value = metrics.REGISTRY["trustworthiness"].compute(ModelView(exp, exp.params, block=300))["trustworthiness"]
    x = exp.data.x_test[: trust.MAX_ROWS].astype(np.float64)
    z = (x - exp.objective.mean) @ exp.objective.components.T.astype(np.float64)
    want = hand_trustworthiness(x, z, 5)
    assert value == pytest.approx(want, abs=1e-6) and 0.5 < want < 0.99
    # a known case: on a line, swapping two far ends makes each the other's intruder
    line = np.arange(12, dtype=np.float64)[:, None]
    swapped = line.copy()
    swapped[[0, 11]] = swapped[[11, 0]]
    from sklearn.manifold import trustworthiness

    assert trustworthiness(line, swapped, n_neighbors=2) == pytest.approx(hand_trustworthiness(line, swapped, 2))
    assert trustworthiness(line, line, n_neighbors=2) == hand_trustworthiness(line, line, 2) == 1.0


def test_trustworthiness_is_a_default_of_bottleneck_models_only():
    view = ModelView(build({"kind": "pca"}, data=GMM, model={**MODEL, "latent": 1}), None)
    assert metrics.REGISTRY["trustworthiness"].applies(view) is None
    raw = {"name": "t", "data": GMM, "objective": {"kind": "dsm", "sigma": 0.3}}
    plain = experiment.build(config.validate(raw, "t"))
    assert "no bottleneck" in metrics.REGISTRY["trustworthiness"].applies(ModelView(plain, plain.params))


# --------------------------------------------------------------------------- autorec based: user
def test_user_based_autorec_is_item_based_on_the_transposed_matrix():
    synth = {"kind": "ratings", "n_users": 30, "n_items": 45, "rank": 2, "density": 0.3, "noise": 0.1}
    model = {"kind": "mlp", "hidden": [12], "activation": "sigmoid"}
    user = experiment.build(config.validate({"name": "t", "data": synth, "model": model,
                                             "objective": {"kind": "autorec", "based": "user", "lam": 0.2}}, "t"))
    data = user.data
    assert data.x_train.shape == (45, 30)  # rows are items …
    kernel = jax.tree.leaves(user.params)
    assert {a.shape for a in kernel} >= {(45, 12), (12, 45)}  # … the network reads a user's 45 item ratings
    transposed = Dataset("ratings", data.x_train.T.copy(), data.x_test.T.copy(), has_missing=True)
    item = autorec.AutoRec(autorec.Config(lam=0.2), transposed, SimpleNamespace(kind="mlp", latent=None))
    params = jax.tree.map(lambda a: a + 0.1 * np.random.default_rng(0).normal(size=a.shape).astype(a.dtype), user.params)
    net = user.net(params)
    key = jax.random.key(3)
    train = jnp.asarray(data.x_train)
    loss_u, aux_u = user.objective.loss(net, train[:16], key, train)  # the 16 item rows are not used
    rows = jnp.asarray(data.x_train.T)[jax.random.randint(key, (16,), 0, 30)]  # 16 users, drawn by the key
    loss_i, aux_i = item.loss(net, rows, key, jnp.asarray(transposed.x_train))
    assert float(loss_u) == pytest.approx(float(loss_i), rel=1e-6)
    assert float(aux_u["masked_mse"]) == pytest.approx(float(aux_i["masked_mse"]), rel=1e-6)
    got, want = user.objective.metrics(net, data), item.metrics(net, transposed)
    assert got["rmse"] == pytest.approx(want["rmse"], rel=1e-6)
    # the baseline stays the item means of the configured matrix, whatever `based` is
    ref = autorec.AutoRec(autorec.Config(), data, SimpleNamespace(kind="mlp", latent=None))
    assert got["rmse_baseline"] == ref.metrics(lambda r: jnp.zeros(r.shape), data)["rmse_baseline"]


# --------------------------------------------------------------------------- gmm prior
def test_gmm_prior_draws_have_the_fitted_mixtures_moments():
    from sklearn.mixture import GaussianMixture

    sample = {"kind": "ancestral", "n": 8, "prior": "gmm", "n_components": 3, "init": {"kind": "gaussian", "std": 1.0}}
    exp = build({"kind": "ae"}, {**MODEL, "latent": 3}, sample=sample)
    rng = np.random.default_rng(0)  # untrained weights, moved so the codes spread
    params = jax.tree.map(lambda a: a + 0.3 * rng.normal(size=a.shape).astype(a.dtype), exp.params)
    decode, latent = exp.decoder(params)
    target = Target(score=exp.score_fn(params), decode=decode, latent_dim=latent, description="t", seed=exp.cfg.seed,
                    training_codes=lambda: exp.codes(params, exp.data.x_train, exp.cfg.train.eval_batch))
    n = 200_000
    z = np.asarray(jax.jit(lambda k: ancestral.prior_draws(target, k, n, exp.cfg.sample))(jax.random.key(1)), np.float64)
    codes = np.asarray(exp.net(params).encode(jnp.asarray(exp.data.x_train)), np.float64)
    ref = GaussianMixture(n_components=3, covariance_type="full", random_state=exp.cfg.seed).fit(codes)
    mean = ref.weights_ @ ref.means_
    cov = np.einsum("m,mij->ij", ref.weights_, ref.covariances_ + np.einsum("mi,mj->mij", ref.means_, ref.means_))
    cov -= np.outer(mean, mean)
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(z.mean(0), mean, atol=5 * sd.max() / np.sqrt(n))
    np.testing.assert_allclose(np.cov(z.T), cov, atol=0.02 * sd.max() ** 2)
    fitted = ancestral.fit_mixture(codes, 3, exp.cfg.seed)
    np.testing.assert_allclose(fitted.moments()[0], mean, rtol=1e-4, atol=1e-5)
    # samples decode the draws; prior: normal is N(0, I) from the key, as before
    x, _ = ancestral.run(target, jnp.zeros((8, exp.data.dim)), jax.random.key(1), exp.cfg.sample)
    assert x.shape == (8, 64) and np.isfinite(np.asarray(x)).all()
    normal = exp.cfg.sample.model_copy(update={"prior": "normal"})
    np.testing.assert_array_equal(np.asarray(ancestral.prior_draws(target, jax.random.key(1), 8, normal)),
                                  np.asarray(jax.random.normal(jax.random.key(1), (8, 3))))


# --------------------------------------------------------------------------- command-line errors
@pytest.mark.parametrize("sections, text", [
    ({"objective": {"kind": "lda"}, "model": {**MODEL, "latent": 9}}, "model.latent: objective.kind 'lda' has at most"),
    ({"objective": {"kind": "lda"}, "data": GMM}, "data.kind: objective.kind 'lda' is fitted on labelled training rows"),
    ({"objective": {"kind": "isomap", "n_neighbors": 0}}, "objective.n_neighbors"),
    ({"objective": {"kind": "isomap", "n_neighbors": 5000}}, "objective.n_neighbors: 5000 neighbours need more"),
    ({"objective": {"kind": "autorec", "based": "users"}}, "objective.based: 'users' is not allowed"),
    ({"objective": {"kind": "ae"}, "sample": {"kind": "ancestral", "prior": "gauss"}}, "sample.prior: 'gauss' is not allowed"),
    ({"objective": {"kind": "ae"}, "sample": {"kind": "ancestral", "n_components": 0}}, "sample.n_components"),
    ({"objective": {"kind": "ae"}, "sample": {"kind": "langevin", "prior": "gmm"}},
     "'prior' is the latent prior of sample.kind ancestral, not of 'langevin'"),
])
def test_bad_keys_exit_2_naming_the_key(tmp_path, runs_dir, sections, text):
    sections = {"data": DIGITS, "model": MODEL, **sections}
    r = dsm("train", "--config", write_config(tmp_path / "c.yaml", **sections))
    assert r.exit_code == 2, r.output
    assert text in r.stderr and "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 or (lines[0].startswith("error: invalid config") and len(lines) == 2), lines
    assert not runs_dir.exists()


def test_too_many_mixture_components_exit_2_at_sampling(tmp_path, runs_dir):
    cfg = write_config(tmp_path / "pca.yaml", data=DIGITS, objective={"kind": "pca"}, model=MODEL,
                       sample={"kind": "ancestral", "n": 50, "prior": "gmm", "n_components": 5,
                               "init": {"kind": "gaussian", "std": 1.0}})
    run_dir, summary = api.train(cfg, runs_dir=str(runs_dir))
    assert summary["steps"] == 0
    r = dsm("sample", run_dir, "sample.n_components=100000")
    assert r.exit_code == 2, r.output
    assert "sample.n_components: 100000 mixture components need at least as many training codes" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    r = dsm("sample", run_dir)  # 5 components: fine
    assert r.exit_code == 0, r.output
    assert np.load(Path(r.stdout.strip().splitlines()[-1]))["x"].shape == (50, 64)
