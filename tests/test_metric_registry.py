"""One contract test over the whole metric registry (``dsmcli.metrics.REGISTRY``): every entry
has a closed-form case here, and on it returns finite values under the keys it declares, the
same values when computed twice (deterministic per key), the same values with small streaming
blocks (where it streams), and the right value. A metric added to the registry without a case
here fails ``test_every_metric_has_a_closed_form_case``."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from dsmcli import config, experiment, metrics
from dsmcli.metrics import ModelView, SampleSet

GMM = {"kind": "gmm", "means": [[-2.0, 0.0], [2.0, 1.0]], "stds": [0.6, 0.8], "weights": [0.3, 0.7],
       "n_train": 1500, "n_test": 1500}


@functools.lru_cache(maxsize=None)
def build(objective: str, data: str = "gmm", latent: int | None = None):
    raw = {"name": "t", "objective": {"kind": objective},
           "data": GMM if data == "gmm" else {"kind": data, **({"n_users": 60, "n_items": 80, "density": 0.3} if data == "ratings" else {})}}
    if latent is not None:
        raw["model"] = {"kind": "mlp", "hidden": [16], "latent": latent}
    if objective == "autorec":
        raw["model"] = {"kind": "mlp", "hidden": [16]}
    exp = experiment.build(config.validate(raw, "test"))
    return exp


def exact_samples(n=1500, seed=3):
    exp = build("oracle")
    return exp.data.density.sample(n, np.random.default_rng(seed)).astype(np.float32)


def samples(x=None, **kw):
    exp = build("oracle")
    return SampleSet(exact_samples() if x is None else x, exp.data, seed=0, exp=exp, params=exp.params, **kw)


def iid_trace(draws=200, chains=40, projections=3, offsets=None):
    t = np.random.default_rng(1).normal(size=(draws, chains, projections))
    if offsets is not None:
        t = t + offsets[None, :, None]
    return t.astype(np.float32)


def pca_recon_mse():
    from sklearn.decomposition import PCA

    data = build("pca", "digits", latent=8).data
    pca = PCA(n_components=8).fit(data.x_train)
    return float(np.mean((pca.inverse_transform(pca.transform(data.x_test)) - data.x_test) ** 2))


def item_mean_rmse():
    data = build("autorec", "ratings").data
    mean = np.nanmean(np.where(np.isfinite(data.x_train), data.x_train, np.nan), axis=1)
    mean = np.where(np.isfinite(mean), mean, np.nanmean(data.x_train))
    seen = np.isfinite(data.x_test)
    return float(np.sqrt(np.mean((np.broadcast_to(mean[:, None], data.x_test.shape)[seen] - data.x_test[seen]) ** 2)))


def fd_of_test_against_itself():
    exp = build("pca", "digits", latent=8)
    return SampleSet(exp.data.x_test, exp.data, seed=0)


def kid_of_test_against_itself():
    """KID of the m = 360 test rows against themselves: every subset is the whole set, so
    MMD²ᵤ = 2 (mean K − mean diag K) / (m − 1) exactly (negative: the U-statistic drops the
    diagonal), and its std over subsets is 0."""
    from dsmcli.metrics import fd

    data = build("pca", "digits", latent=8).data
    f = fd.feature_net(data)(data.x_test)
    k = (f @ f.T / f.shape[1] + 1.0) ** 3
    return 2 * (k.mean() - np.diag(k).mean()) / (len(f) - 1)


def gaussian_dae(sigma=0.3, std=0.7):
    """A DAE on p = N(0, s²I): both smoothing floors are (σ²/(s² + σ²))² (tests/test_hessian.py)."""
    raw = {"name": "t", "data": {"kind": "gmm", "means": [[0.0, 0.0]], "stds": [std], "weights": [1.0], "n_train": 200, "n_test": 500},
           "model": {"kind": "mlp", "hidden": [8], "residual": True}, "objective": {"kind": "dae", "sigma": sigma}}
    exp = experiment.build(config.validate(raw, "test"))
    return ModelView(exp, exp.params)


GAUSSIAN_FLOOR = (0.3**2 / (0.7**2 + 0.3**2)) ** 2

# name -> (context, check(result), streams) ; check asserts the closed form
def oracle_sde():
    exp = experiment.build(config.validate({"name": "t", "objective": {"kind": "oracle", "sde": "vp"}, "data": GMM,
                                            "eval": {"nll_n": 100}}, "test"))
    return ModelView(exp, exp.params)


def exact_nll(view):
    return -float(np.mean(np.asarray(view.data.density.log_prob(view.data.x_test[:100]))))


def inpainted_truth():
    """Particles equal to the truth they were conditioned on: inpaint_mse = 0 exactly, and the
    training-mean baseline by hand."""
    exp = build("oracle")
    truth = exp.data.x_test[:300]
    known = np.broadcast_to(np.array([True, False]), truth.shape).copy()
    return SampleSet(truth, exp.data, seed=0, exp=exp, info={"inpaint": {"truth": truth, "known": known}})


def mean_fill_mse():
    data = build("oracle").data
    return float(np.mean((data.x_train[:, 1].astype(np.float64).mean() - data.x_test[:300, 1]) ** 2))


def linear_gaussian_vae(w=(1.2, -0.7), b=(0.3, 0.5), s=0.5):
    """A VAE that is a linear-Gaussian model with its exact posterior: an ``mlp`` with no hidden
    layers (linear encoder and decoder), latent K = 1 on the 2-D GMM, gaussian likelihood with
    decoder_std s: p(z) = N(0, 1), p(x|z) = N(wz + b, s²I), so p(x) = N(b, wwᵀ + s²I). The
    encoder set to the exact posterior N(v wᵀ(x − b)/s², v), v = 1/(1 + wᵀw/s²), makes every
    importance weight p(x), so nll_iw = −mean log p(x) over the first nll_n rows for any k."""
    import jax.numpy as jnp

    raw = {"name": "t", "data": GMM, "model": {"kind": "mlp", "hidden": [], "latent": 1},
           "objective": {"kind": "vae", "likelihood": "gaussian", "decoder_std": s}}
    exp = experiment.build(config.validate(raw, "test"))
    w, b = np.asarray(w), np.asarray(b)
    v = 1.0 / (1.0 + w @ w / s**2)
    enc, dec = exp.params["encoder"][0], exp.params["decoder"][0]
    dec["kernel"][...], dec["bias"][...] = jnp.asarray(w[None], jnp.float32), jnp.asarray(b, jnp.float32)
    a = v * w / s**2  # mean = a·x − a·b, log-variance = log v (no x)
    enc["kernel"][...] = jnp.asarray(np.stack([a, np.zeros(2)], 1), jnp.float32)
    enc["bias"][...] = jnp.asarray([-a @ b, np.log(v)], jnp.float32)
    cov = np.outer(w, w) + s**2 * np.eye(2)
    x = exp.data.x_test[: exp.cfg.eval.nll_n].astype(np.float64) - b
    log_p = -0.5 * (np.einsum("nd,de,ne->n", x, np.linalg.inv(cov), x) + np.linalg.slogdet(2 * np.pi * cov)[1])
    return ModelView(exp, exp.params), -float(log_p.mean())


def ssl_view():
    exp = build("ssl_ae", "digits", latent=8)
    return ModelView(exp, exp.params)


def direct_test_acc():
    view = ssl_view()
    logits = np.asarray(view.exp.objective.classify(view.exp.net(view.params), view.data.x_test))
    return float(np.mean(np.argmax(logits, 1) == view.data.y_test))


CASES = {
    "test_acc": (ssl_view, lambda r: r["test_acc"] == pytest.approx(direct_test_acc(), abs=1e-9), True),
    "nll": (oracle_sde, lambda r: abs(r["nll"] - exact_nll(oracle_sde())) < 0.01, True),
    "nll_iw": (lambda: linear_gaussian_vae()[0],
               lambda r: r["nll_iw"] == pytest.approx(linear_gaussian_vae()[1], rel=1e-5) and r["nll_iw_k"] == 1000, True),
    "inpaint_mse": (inpainted_truth,
                    lambda r: r["inpaint_mse"] == 0 and r["inpaint_mse_mean"] == pytest.approx(mean_fill_mse(), rel=1e-6), False),
    "score_error": (lambda: ModelView(build("oracle"), build("oracle").params),
                    lambda r: r["score_error"] == pytest.approx(0.0, abs=1e-12), True),
    "hessian_error": (lambda: ModelView(build("oracle"), build("oracle").params),
                      lambda r: r["hessian_error"] == pytest.approx(0.0, abs=1e-12), True),
    "score_error_floor": (gaussian_dae, lambda r: r["score_error_floor"] == pytest.approx(GAUSSIAN_FLOOR, rel=1e-4), True),
    "hessian_error_floor": (gaussian_dae, lambda r: r["hessian_error_floor"] == pytest.approx(GAUSSIAN_FLOOR, rel=1e-4), True),
    "kl_grid": (lambda: ModelView(build("oracle"), build("oracle").params),
                lambda r: abs(r["kl_grid"]) < 1e-5, False),
    "codes": (lambda: ModelView(build("pca", "digits", latent=8), build("pca", "digits", latent=8).params),
              lambda r: r["recon_mse"] == pytest.approx(pca_recon_mse(), rel=1e-4) and 0 <= r["probe_acc"] <= 1, False),
    # PCA at K = D: the codes are a rotation of the centred rows, every neighbourhood is kept, T = 1
    "trustworthiness": (lambda: ModelView(build("pca", latent=2), build("pca", latent=2).params),
                        lambda r: r["trustworthiness"] == pytest.approx(1.0, abs=1e-6), True),
    "objective": (lambda: ModelView(build("autorec", "ratings"), build("autorec", "ratings").params),
                  lambda r: r["rmse_baseline"] == pytest.approx(item_mean_rmse(), rel=1e-4), False),
    "escaped_fraction": (lambda: samples(np.concatenate([exact_samples(1000), np.full((10, 2), np.nan), np.full((15, 2), 1e9)])),
                         lambda r: r["escaped_fraction"] == pytest.approx(25 / 1025), False),
    "mmd": (samples, lambda r: abs(r["mmd"]) < 5e-3, True),
    "sliced_w2": (samples, lambda r: 0 <= r["sliced_w2"] < 0.2, False),
    "mode_weights": (samples, lambda r: r["mode_weight_error"] < 3 * math.sqrt(2 / 1500), False),
    "fd": (fd_of_test_against_itself, lambda r: abs(r["fd"]) < 1e-3 and r["fd_floor"] > 0, False),
    "kid": (fd_of_test_against_itself,
            lambda r: r["kid"] == pytest.approx(kid_of_test_against_itself(), rel=1e-9) and r["kid_std"] < 1e-9 * abs(r["kid"])
            and abs(r["kid_floor"]) < 0.05, False),
    "ksd": (samples, lambda r: abs(r["ksd"]) < 5e-3, True),
    "ksd_model": (samples, lambda r: abs(r["ksd_model"]) < 5e-3, True),  # the oracle's score is the exact one
    "ess": (lambda: samples(info={"trace": iid_trace(), "sample_s": 2.0}),
            lambda r: r["ess"] == pytest.approx(200, rel=0.15) and r["ess_per_s"] == pytest.approx(r["ess"] * 1500 / 2.0), False),
    "rhat": (lambda: samples(info={"trace": iid_trace()}), lambda r: r["rhat"] < 1.02, False),
}


def test_every_metric_has_a_closed_form_case():
    assert set(CASES) == set(metrics.REGISTRY), set(metrics.REGISTRY) ^ set(CASES)
    assert all(m.input in metrics.INPUTS for m in metrics.REGISTRY.values())


def _finite(value) -> bool:
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return isinstance(value, (int, float)) and math.isfinite(value)


@pytest.mark.parametrize("name", sorted(CASES))
def test_metric_contract(name):
    metric = metrics.REGISTRY[name]
    make, check, streams = CASES[name]
    ctx = make()
    assert metric.applies(ctx) is None, metric.applies(ctx)
    first, second = metric.compute(ctx), metric.compute(ctx)
    assert first == second  # deterministic per key
    assert first and all(_finite(v) for v in first.values()), first
    if metric.produces:
        assert set(first) <= set(metric.produces), (set(first), metric.produces)
    assert check(first), first
    if streams:  # the same number with small blocks (several row and column blocks)
        ctx.block = 37
        small = metric.compute(ctx)
        for key, value in first.items():
            assert small[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key


def test_rhat_sees_chains_that_never_meet_and_ksd_sees_wrong_samples():
    offsets = np.repeat([0.0, 3.0], 20)
    stuck = samples(info={"trace": iid_trace(offsets=offsets)})
    assert metrics.REGISTRY["rhat"].compute(stuck)["rhat"] > 1.5
    shifted = samples(exact_samples() + np.float32(0.7))
    assert metrics.REGISTRY["ksd"].compute(shifted)["ksd"] > 0.05
    assert metrics.REGISTRY["mmd"].compute(shifted)["mmd"] > 0.05


def test_selection_by_name_and_its_errors():
    ctx = samples(info={"trace": iid_trace(), "sample_s": 1.0})
    assert set(metrics.evaluate_samples(ctx, ["mmd", "rhat"])) == {"mmd", "rhat"}
    defaults = metrics.evaluate_samples(ctx)
    assert {"mmd", "sliced_w2", "mode_weights", "ksd", "ksd_model", "ess", "rhat", "escaped_fraction"} <= set(defaults)
    from dsmcli.errors import UserError

    with pytest.raises(UserError, match="'score_error' \\(a model metric\\) is not a metric of dsm sample"):
        metrics.evaluate_samples(ctx, ["score_error"])
    with pytest.raises(UserError, match="'fd' does not apply to this run: the data set is not labelled images"):
        metrics.evaluate_samples(ctx, ["fd"])
    with pytest.raises(UserError, match="unknown|not a metric"):
        metrics.evaluate_samples(ctx, ["nope"])


def test_costly_metrics_are_left_out_of_intermediate_evaluations_only():
    view = linear_gaussian_vae()[0]
    assert not metrics.REGISTRY["nll_iw"].periodic
    assert "nll_iw" in metrics.evaluate_model(view) and "nll_iw" not in metrics.evaluate_model(view, final=False)
    assert "nll_iw" in metrics.evaluate_model(view, ["nll_iw"], final=False)  # asked for by name: computed
