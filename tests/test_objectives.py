"""Objectives checked against closed forms, finite differences and the published identities.

* the registry contract (every registered objective × every model kind it accepts): finite
  loss and gradients, bit-identical for a key, key-dependent where stochastic, one trace under
  ``jax.jit`` for batches of one shape;
* Vincent (2010): with the tied DAE, J_DSM = J_DAE/(2σ⁴) (values and gradients), and the
  closed-form energy E has −∇E = (r(x) − x)/σ²;
* wherever an objective reports an energy (energy networks, the tied DAE), its score read-out
  is −∇E;
* the (reconstruction-)contractive penalties ‖∂f/∂x‖²_F against finite-difference Jacobians
  and the tied-DAE closed form; the Hutchinson estimate is unbiased;
* DAE masking noise, Parzen ESM target, and the errors for invalid model/objective pairs.

Expected values are computed independently (NumPy, float64 finite differences); Monte-Carlo
checks assert ``|estimate − exact| < 5·SE``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from dsmcli import config, experiment, losses, models, objectives
from dsmcli.errors import UserError
from dsmcli.objectives import dae, esm
from dsmcli.objectives.base import Objective

Z = 5.0
B = 48

GMM2 = {"kind": "gmm", "means": [[-2.0, -2.0], [2.0, 2.0]], "stds": [0.5, 0.5], "weights": [0.3, 0.7],
        "n_train": 128, "n_test": 32}
RATINGS = {"kind": "ratings", "n_users": 30, "n_items": 120, "density": 0.3}  # for objectives defined on ratings
DIGITS = {"kind": "digits", "test_fraction": 0.9}  # 179 training images, for the image networks
GMM3 = {"kind": "gmm", "means": [[-1.0, 0.5, 1.0], [1.0, 0.0, -1.0]], "stds": [0.7, 0.4], "weights": [0.5, 0.5],
        "n_train": 128, "n_test": 32}


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def tiny_model(kind: str, **extra) -> dict:
    """A tiny raw model section of ``kind`` (hidden width 12, whatever the field's shape)."""
    fields = models.REGISTRY[kind].Config.model_fields
    raw = {"kind": kind}
    if "hidden" in fields:
        default = fields["hidden"].get_default(call_default_factory=True)
        raw["hidden"] = [12] if isinstance(default, list) else 12
    if "channels" in fields:
        raw["channels"] = [4, 8]
    raw.update(extra)
    return raw


def build(objective: dict, model: dict | None = None, data: dict | None = None, seed: int = 0):
    raw = {"name": "t", "seed": seed, "data": data or GMM2, "objective": objective,
           "model": model or tiny_model("mlp")}
    with jax.enable_x64(False):  # initialise as the CLI does (and reuse the float32 init kernels)
        return experiment.build(config.validate(raw, "test"))


def objective_class(module) -> type[Objective]:
    """The Objective subclass a registry module builds."""
    if isinstance(module.make, type) and issubclass(module.make, Objective):
        return module.make
    found = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, Objective) and v.__module__ == module.__name__]
    assert len(found) == 1, f"{module.__name__}: cannot tell which Objective class it builds"
    return found[0]


def jitter(params, seed: int, scale: float = 0.3, dtype=None):
    """Params plus noise (in NumPy: eager JAX ops cost a compilation each), so that
    zero-initialised biases (tied DAE b, c) take part in the test; ``dtype`` casts them."""
    rng = np.random.default_rng(seed)

    def one(a):
        a = np.asarray(a)
        return jnp.asarray((a + scale * rng.normal(size=a.shape)).astype(dtype or a.dtype))

    return jax.tree.map(one, params)


def key(seed: int):
    return jax.random.PRNGKey(seed)


def fd_points(x, h=1e-5):
    """The 2·D·B shifted copies x ± h·e_d of a batch, stacked, for :func:`fd_from`."""
    x = np.asarray(x, np.float64)
    d = x.shape[1]
    shifts = h * np.eye(d)
    return np.concatenate([x[None] + shifts[:, None], x[None] - shifts[:, None]]).reshape(-1, d)


def fd_from(out, n, d, h=1e-5):
    """Central differences from a row-wise map's values at ``fd_points`` (``(2DB, K)`` or
    ``(2DB,)``): the per-row Jacobian ``(B, K, D)`` or the gradient ``(B, D)``."""
    raw = np.asarray(out, np.float64)
    vals = raw.reshape(2, d, n, -1)
    jac = np.moveaxis((vals[0] - vals[1]) / (2 * h), 0, -1)
    return jac[:, 0, :] if raw.ndim == 1 else jac


def fd_grad(f, x, h=1e-5):
    """Central finite differences of a row-wise map, evaluated in one call of ``f``."""
    x = np.asarray(x, np.float64)
    return fd_from(f(fd_points(x, h)), *x.shape, h)


def gmm_score_np(means, stds, weights, x, sigma=0.0):
    """∇log Σₖ wₖ N(x; μₖ, (sₖ² + σ²)I), in float64."""
    means, weights = np.asarray(means, float), np.asarray(weights, float)
    var = np.asarray(stds, float) ** 2 + sigma**2
    diff = x[:, None, :] - means[None]
    logits = np.log(weights) - 0.5 * x.shape[1] * np.log(var) - 0.5 * np.sum(diff**2, -1) / var
    resp = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    return np.sum(resp[..., None] * (-diff / var[None, :, None]), axis=1)


def gmm_log_prob_np(means, stds, weights, x, sigma=0.0):
    means, weights = np.asarray(means, float), np.asarray(weights, float)
    var = np.asarray(stds, float) ** 2 + sigma**2
    d = x.shape[1]
    diff = x[:, None, :] - means[None]
    logits = np.log(weights) - 0.5 * d * np.log(2 * np.pi * var) - 0.5 * np.sum(diff**2, -1) / var
    return logsumexp(logits, axis=1)


def parzen_log_density_np(x, centers, sigma):
    sq = np.sum((x[:, None, :] - centers[None]) ** 2, -1)
    d = x.shape[1]
    return logsumexp(-sq / (2 * sigma**2), axis=1) - np.log(len(centers)) - 0.5 * d * np.log(2 * np.pi * sigma**2)


def parzen_score_np(x, centers, sigma):
    sq = np.sum((x[:, None, :] - centers[None]) ** 2, -1)
    logits = -sq / (2 * sigma**2)
    w = np.exp(logits - logsumexp(logits, axis=1, keepdims=True))
    return (w @ centers - x) / sigma**2


def np64(a):
    return np.asarray(a, np.float64)


# --------------------------------------------------------------------------- 1. registry contract
TRAINABLE = [k for k, m in objectives.REGISTRY.items() if objective_class(m).trains]
# Extra settings worth running through the contract besides each kind's defaults.
VARIANTS = {"esm": [{"target": "parzen"}]}  # dae masking: test_dae_loss_on_its_corruption


def _uses_key(obj_cfg) -> bool:
    """False for the settings known to ignore the key; new objectives are assumed stochastic."""
    kind = obj_cfg.kind
    if kind == "esm":
        return obj_cfg.target != "exact"
    if kind == "ism":
        return obj_cfg.estimator != "exact"
    if kind in ("rcae", "cae"):
        return obj_cfg.jacobian != "exact"
    if kind in ("ae", "sparse_ae", "autorec"):
        return False
    return True


def _contract_cases():
    for kind in TRAINABLE:
        cls = objective_class(objectives.REGISTRY[kind])
        for settings in [{}, *VARIANTS.get(kind, [])]:
            for model_kind in cls.MODELS:
                images = getattr(models.REGISTRY[model_kind], "NEEDS_IMAGES", False)
                if images and kind == "esm":
                    continue  # ESM needs a closed-form score, which no image data set has
                case = settings
                if images:  # exact traces/Jacobians over 64 pixels: slow to compile, tested on vectors
                    case = {**settings, **{"ism": {"estimator": "hutchinson"}, "rcae": {"jacobian": "hutchinson"},
                                               "cae": {"jacobian": "hutchinson"}}.get(kind, {})}
                extra = {"latent": 2} if (cls.NEEDS_LATENT and model_kind in ("mlp", "conv")) else {}
                tag = "-".join(f"{k}={v}" for k, v in case.items())
                slow = images and kind in ("ism", "rcae")  # second order through a U-Net: ~30 s to compile
                data = (RATINGS if cls.DATA_KINDS == ("ratings",) else DIGITS if images or cls.NEEDS_LABELS
                        or getattr(cls, "NEEDS_IMAGES", False) else None)  # image-only objectives (pixelcnn_vae)
                yield pytest.param({"kind": kind, **case}, tiny_model(model_kind, **extra), data,
                                   id=f"{kind}{'[' + tag + ']' if tag else ''}-{model_kind}",
                                   marks=[pytest.mark.slow] if slow else [])


def test_registry_is_covered():
    assert "oracle" in objectives.REGISTRY and not objective_class(objectives.REGISTRY["oracle"]).trains
    ids = {p.id.split("-")[0].split("[")[0] for p in _contract_cases()}
    assert ids == set(TRAINABLE)
    for kind, module in objectives.REGISTRY.items():
        assert module.Config().kind == kind  # the registry key is the Config's default kind


@pytest.mark.parametrize("obj_raw, model_raw, data_raw", list(_contract_cases()))
def test_registry_contract(obj_raw, model_raw, data_raw):
    exp = build(obj_raw, model_raw, data_raw)
    obj = exp.objective
    assert obj.trains
    train_set = jnp.asarray(exp.data.x_train)
    x1, x2 = jnp.asarray(exp.data.x_train[:B]), jnp.asarray(exp.data.x_train[B:2 * B])
    params = jitter(exp.params, 1, 0.1)
    traces = []

    def step(params, x, key, train_set):
        traces.append(1)  # Python side effect: runs once per trace
        return jax.value_and_grad(lambda p: obj.loss(exp.net(p), x, key, train_set), has_aux=True)(params)

    f = jax.jit(step)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(7), 3)
    (loss, aux), grads = f(params, x1, k1, train_set)
    assert loss.shape == () and np.isfinite(float(loss))
    assert isinstance(aux, dict) and all(np.shape(v) == () and np.isfinite(float(v)) for v in aux.values())
    leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]
    assert leaves and all(np.all(np.isfinite(g)) for g in leaves)
    assert any(np.any(g != 0) for g in leaves), "the loss does not depend on the parameters"
    assert jax.tree.structure(grads) == jax.tree.structure(params)

    (loss_again, _), grads_again = f(params, x1, k1, train_set)
    assert np.array_equal(np.asarray(loss), np.asarray(loss_again))
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(leaves, jax.tree.leaves(grads_again)))

    (loss_k2, _), _ = f(params, x1, k2, train_set)
    if _uses_key(obj.cfg):
        assert float(loss_k2) != float(loss), "a stochastic objective ignores its key"
    else:
        assert np.array_equal(np.asarray(loss_k2), np.asarray(loss))

    (loss_x2, _), grads_x2 = f(params, x2, k3, train_set)
    assert np.isfinite(float(loss_x2)) and all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads_x2))
    assert len(traces) == 1, f"traced {len(traces)} times for 3 calls of one shape"

    sigmas = obj.sigmas()
    if sigmas is not None:  # an annealing schedule σ₁ > … > σ_L > 0
        sigmas = np.asarray(sigmas, np.float64)
        assert sigmas.ndim == 1 and np.all(sigmas > 0) and np.all(np.diff(sigmas) < 0)
    if obj.noise_conditional:
        sigma = float(sigmas[-1]) if sigmas is not None else 0.1
        s_at = np.asarray(jax.jit(lambda p, x: obj.score_at(exp.net(p), x, sigma))(params, x1))
        assert s_at.shape == x1.shape and np.all(np.isfinite(s_at))


@pytest.mark.parametrize("sigma", [0.0, 0.4])
def test_oracle(sigma):
    exp = build({"kind": "oracle", "sigma": sigma})
    obj = exp.objective
    assert not obj.trains and obj.has_energy
    x = np.asarray(exp.data.x_test[:16], np.float64) + np.linspace(-1, 1, 16)[:, None]
    xj = jnp.asarray(x, jnp.float32)
    with pytest.raises(RuntimeError):
        obj.loss(exp.net(exp.params), xj, key(0), exp.data.x_train)
    score, energy = jax.jit(lambda p, y: (obj.score(exp.net(p), y), obj.energy(exp.net(p), y)))(exp.params, xj)
    want = gmm_score_np(GMM2["means"], GMM2["stds"], GMM2["weights"], x, sigma)
    np.testing.assert_allclose(np64(score), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np64(energy), -gmm_log_prob_np(GMM2["means"], GMM2["stds"], GMM2["weights"], x, sigma),
                               rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------- 2–4. Vincent 2010, energies
@pytest.mark.parametrize("sigma", [0.1, 0.5])
def test_tied_dae_dsm_equals_dae_over_two_sigma4(sigma):
    """(r(x̃) − x̃)/σ² + (x̃ − x)/σ² = (r(x̃) − x)/σ², so ½‖·‖² = ‖r(x̃) − x‖²/(2σ⁴) sample by sample."""
    model = tiny_model("tied_dae")
    e_dsm = build({"kind": "dsm", "sigma": sigma}, model)
    e_dae = build({"kind": "dae", "sigma": sigma, "noise": "gaussian"}, model)
    params = jitter(e_dsm.params, 3, 0.2)
    x = jnp.asarray(e_dsm.data.x_train[:64])
    k = key(11)
    ts = jnp.asarray(e_dsm.data.x_train)

    @jax.jit
    def both(params):
        return [jax.value_and_grad(lambda p, e=e: e.objective.loss(e.net(p), x, k, ts)[0])(params) for e in (e_dsm, e_dae)]

    (j_dsm, g_dsm), (j_dae, g_dae) = both(params)
    scale = 1.0 / (2 * sigma**4)
    np.testing.assert_allclose(float(j_dsm), float(j_dae) * scale, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g_dsm), jax.tree.leaves(g_dae), strict=True):
        a, b = np64(a), np64(b) * scale
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.max(np.abs(b)))


@pytest.mark.parametrize("sigma", [0.2, 1.3])
def test_tied_dae_energy_gradient_is_reconstruction_score(x64, sigma):
    exp = build({"kind": "dsm", "sigma": sigma}, tiny_model("tied_dae"), GMM3)
    obj = exp.objective
    params = jitter(exp.params, 5, 0.5, np.float64)
    x = np64(exp.data.x_test[:10])
    pts = np.concatenate([x, fd_points(x)])

    @jax.jit
    def evaluate(p, y):
        m = exp.net(p)
        return m.energy(y, sigma), m(y), obj.score(m, y), obj.energy(m, y)

    energy, r, score, obj_energy = (np64(a) for a in evaluate(params, pts))
    n = len(x)
    neg_grad = -fd_from(energy[n:], *x.shape)
    want = (r[:n] - x) / sigma**2
    np.testing.assert_allclose(neg_grad, want, rtol=1e-6, atol=1e-6)
    # The objective reads the same model consistently: score and energy at its σ.
    np.testing.assert_allclose(score[:n], want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(obj_energy, energy)
    assert obj.has_energy


VECTOR_CASES = [c for c in _contract_cases() if c.values[2] is None]  # GMM3 data below


@pytest.mark.parametrize("obj_raw, model_raw", [c.values[:2] for c in VECTOR_CASES], ids=[c.id for c in VECTOR_CASES])
def test_energy_is_consistent_with_score(x64, obj_raw, model_raw):
    """Wherever an objective reports an energy, its score read-out is −∇E (checked by finite
    differences): energy networks (s = −∇E) and the tied DAE (Vincent's energy at the σ, or
    λ, of the read-out). Elsewhere ``energy`` is None."""
    exp = build(obj_raw, model_raw, GMM3)
    obj = exp.objective
    if not obj.has_energy:
        assert model_raw["kind"] not in ("energy", "tied_dae")
        assert obj.energy(exp.net(exp.params), jnp.zeros((3, 3))) is None and exp.energy_fn(exp.params) is None
        return
    params = jitter(exp.params, 6, 0.3, np.float64)
    x = np64(exp.data.x_test[:10])
    pts = np.concatenate([x, fd_points(x)])
    energy, score = (np64(a) for a in jax.jit(lambda p, y: (obj.energy(exp.net(p), y), obj.score(exp.net(p), y)))(params, pts))
    assert energy.shape == (len(pts),)
    n = len(x)
    neg_grad = -fd_from(energy[n:], *x.shape)
    np.testing.assert_allclose(score[:n], neg_grad, rtol=1e-6, atol=1e-6 * np.max(np.abs(neg_grad)))


@pytest.mark.parametrize(
    "obj_raw, model_raw, scale",
    [({"kind": "dae", "sigma": 0.3}, tiny_model("mlp"), 0.09), ({"kind": "rcae", "sigma": 0.2}, tiny_model("mlp"), 0.04),
     ({"kind": "cae", "lam": 0.05}, tiny_model("mlp", latent=2), 0.05), ({"kind": "dsm", "sigma": 0.3}, tiny_model("mlp"), None)],
    ids=["dae", "rcae", "cae", "dsm"],
)
def test_mlp_readout(obj_raw, model_raw, scale):
    """Autoencoder objectives read an mlp as r(x): s = (r(x) − x)/σ² (λ for the CAE); score
    objectives read it as s(x)."""
    exp = build(obj_raw, model_raw)
    x = jnp.asarray(exp.data.x_test[:8])
    r, score = jax.jit(lambda p: (exp.net(p)(x), exp.objective.score(exp.net(p), x)))(exp.params)
    want = np64(r) if scale is None else (np64(r) - np64(x)) / scale
    np.testing.assert_allclose(np64(score), want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- 5–6. contractive penalties
def _frobenius_fd(values_at_pts, x):
    return np.sum(fd_from(values_at_pts, *x.shape) ** 2, axis=(1, 2))


@pytest.mark.parametrize(
    "model_raw, part",
    [(tiny_model("mlp"), "call"), (tiny_model("mlp", latent=2), "encode"), (tiny_model("tied_dae"), "encode")],
    ids=["mlp-r", "mlp-latent-encode", "tied_dae-encode"],
)
def test_jacobian_frobenius_matches_fd(x64, model_raw, part):
    """‖∂r/∂x‖²_F (RCAE, mlp D=3) and ‖∂h/∂x‖²_F (CAE: mlp encoder, tied DAE) per row."""
    exp = build({"kind": "rcae" if part == "call" else "cae"}, model_raw, GMM3)
    params = jitter(exp.params, 7, 0.3, np.float64)
    x = np64(exp.data.x_test[:12])

    @jax.jit
    def evaluate(p, x, pts):
        m = exp.net(p)
        f = m if part == "call" else m.encode
        return losses.jacobian_frobenius_sq(f, x), f(pts)

    got, at_pts = evaluate(params, x, fd_points(x))
    got = np64(got)
    assert got.shape == (12,)
    np.testing.assert_allclose(got, _frobenius_fd(at_pts, x), rtol=1e-6)
    if model_raw["kind"] == "tied_dae":
        W, b = np64(params["W"][...]), np64(params["b"][...])
        h = 1 / (1 + np.exp(-(x @ W.T + b)))
        closed = np.sum((h * (1 - h)) ** 2 * np.sum(W**2, axis=1), axis=1)  # Σⱼ (hⱼ(1−hⱼ))² ‖Wⱼ‖²
        np.testing.assert_allclose(got, closed, rtol=1e-10)


@pytest.mark.parametrize(
    "obj_raw, model_raw",
    [({"kind": "rcae", "sigma": 0.4}, tiny_model("mlp")), ({"kind": "rcae", "sigma": 0.4}, tiny_model("tied_dae")),
     ({"kind": "cae", "lam": 0.7}, tiny_model("mlp", latent=2)), ({"kind": "cae", "lam": 0.7}, tiny_model("tied_dae"))],
    ids=["rcae-mlp", "rcae-tied_dae", "cae-mlp", "cae-tied_dae"],
)
def test_contractive_loss_is_recon_plus_weighted_penalty(x64, obj_raw, model_raw):
    exp = build(obj_raw, model_raw, GMM3)
    params = jitter(exp.params, 9, 0.3, np.float64)
    x = np64(exp.data.x_test[:16])
    rcae = obj_raw["kind"] == "rcae"
    weight = obj_raw["sigma"] ** 2 if rcae else obj_raw["lam"]

    @jax.jit
    def evaluate(p, x, pts):
        m = exp.net(p)
        f = m if rcae else m.encode
        return exp.objective.loss(m, x, key(0), jnp.asarray(exp.data.x_train)), m(x), f(pts)

    (value, aux), r, at_pts = evaluate(params, x, fd_points(x))
    recon = np.mean(np.sum((np64(r) - x) ** 2, axis=1))
    penalty = np.mean(_frobenius_fd(at_pts, x))
    np.testing.assert_allclose(float(value), recon + weight * penalty, rtol=1e-7)
    np.testing.assert_allclose(float(aux["recon"]), recon, rtol=1e-9)
    np.testing.assert_allclose(float(aux["contraction"]), penalty, rtol=1e-6)


def test_jacobian_frobenius_hutchinson_unbiased():
    exp = build({"kind": "rcae"}, tiny_model("mlp"), GMM3)
    params = jitter(exp.params, 10, 0.3)
    x = jnp.asarray(exp.data.x_test[:8])
    n, n4 = 2000, 500
    keys = jax.random.split(key(12), n)

    @jax.jit
    def evaluate(p, keys):
        m = exp.net(p)
        hutch = lambda k, probes: losses.jacobian_frobenius_sq(m, x, key=k, estimator="hutchinson", n_probes=probes)  # noqa: E731
        return (losses.jacobian_frobenius_sq(m, x), jax.vmap(lambda k: hutch(k, 1))(keys),
                jax.vmap(lambda k: hutch(k, 4))(keys[:n4]))

    exact, est, est4 = (np64(a) for a in evaluate(params, keys))
    assert est.shape == (n, 8) and est4.shape == (n4, 8)
    se = est.std(axis=0, ddof=1) / np.sqrt(n)
    assert np.all(se > 0)
    assert np.all(np.abs(est.mean(axis=0) - exact) < Z * se), (est.mean(0), exact, se)
    batch = est.mean(axis=1)
    assert abs(batch.mean() - exact.mean()) < Z * batch.std(ddof=1) / np.sqrt(n)
    # More probes average independent single-probe estimates: same mean, smaller spread.
    se4 = est4.std(axis=0, ddof=1) / np.sqrt(n4)
    assert np.all(np.abs(est4.mean(axis=0) - exact) < Z * se4)
    assert np.all(est4.std(axis=0) < est.std(axis=0))


# --------------------------------------------------------------------------- 7. DAE corruption
def test_masking_corruption_statistics():
    cfg = dae.Config(noise="masking", p=0.3)
    x = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, size=(64, 50)), jnp.float32)
    corrupt = jax.jit(lambda x, k: dae.corrupt(x, k, cfg))
    masks = []
    for seed in range(3):
        xt = np.asarray(corrupt(x, key(seed)))
        zero = xt == 0
        np.testing.assert_array_equal(xt[~zero], np.asarray(x)[~zero])  # survivors are untouched
        assert abs(zero.mean() - cfg.p) < Z * np.sqrt(cfg.p * (1 - cfg.p) / x.size), zero.mean()
        masks.append(zero)
    assert not np.array_equal(masks[0], masks[1])  # a new key, a new mask
    np.testing.assert_array_equal(np.asarray(corrupt(x, key(0))) == 0, masks[0])  # same key, same mask


def test_gaussian_corruption_is_dsm_noise():
    cfg = dae.Config(noise="gaussian", sigma=0.3)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(32, 3)), jnp.float32)
    a, b = jax.jit(lambda x, k: (dae.corrupt(x, k, cfg), losses.noisy(x, k, 0.3)[0]))(x, key(2))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("noise, model_kind", [("masking", "mlp"), ("masking", "tied_dae"), ("gaussian", "mlp")])
def test_dae_loss_on_its_corruption(noise, model_kind):
    """‖r(x̃) − x‖² (mean over rows, sum over dimensions) on the corruption of the same key
    (Gaussian with the tied DAE: see the Vincent identity test)."""
    exp = build({"kind": "dae", "noise": noise, "p": 0.4, "sigma": 0.3}, tiny_model(model_kind))
    params = jitter(exp.params, 13, 0.2)
    x = jnp.asarray(exp.data.x_train[:B])
    k = key(14)

    @jax.jit
    def evaluate(p):
        m = exp.net(p)
        xt = dae.corrupt(x, k, exp.objective.cfg)
        return exp.objective.loss(m, x, k, jnp.asarray(exp.data.x_train))[0], m(xt), xt

    value, r, xt = evaluate(params)
    if noise == "masking":
        frac = np.mean(np.asarray(xt) == 0)
        assert abs(frac - 0.4) < Z * np.sqrt(0.24 / xt.size)
    want = np.mean(np.sum((np64(r) - np64(x)) ** 2, axis=1))
    np.testing.assert_allclose(float(value), want, rtol=1e-5)


# --------------------------------------------------------------------------- 8. ESM
@pytest.mark.parametrize("sigma", [0.2, 0.7])
def test_parzen_score_matches_fd_of_log_density(x64, sigma):
    rng = np.random.default_rng(int(sigma * 10))
    centers = rng.normal(size=(20, 2)) * 1.5
    x = centers[:10] + sigma * rng.normal(size=(10, 2))
    got = np64(jax.jit(esm.parzen_score)(jnp.asarray(x), jnp.asarray(centers), sigma))
    want = fd_grad(lambda y: parzen_log_density_np(y, centers, sigma), x, h=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got, parzen_score_np(x, centers, sigma), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("model_kind, target", [("mlp", "exact"), ("energy", "exact"), ("mlp", "parzen")])
def test_esm_loss_against_its_target(model_kind, target):
    """½ E‖s − target‖²: the GMM's exact score at x, or the Parzen score at x̃ = x + σε."""
    exp = build({"kind": "esm", "target": target, "sigma": 0.3}, tiny_model(model_kind))
    ts = jnp.asarray(exp.data.x_train)
    params = jitter(exp.params, 15, 0.2)
    x = jnp.asarray(exp.data.x_train[:B])
    k = key(16)

    @jax.jit
    def evaluate(p):
        m = exp.net(p)
        at = x if target == "exact" else losses.noisy(x, k, 0.3)[0]
        return exp.objective.loss(m, x, k, ts)[0], exp.objective.score(m, at), at

    value, s, at = (np64(a) for a in evaluate(params))
    if target == "exact":
        g = gmm_score_np(GMM2["means"], GMM2["stds"], GMM2["weights"], at)
    else:
        g = parzen_score_np(at, np64(ts), 0.3)
    np.testing.assert_allclose(float(value), 0.5 * np.mean(np.sum((s - g) ** 2, axis=1)), rtol=1e-4)


# --------------------------------------------------------------------------- 9. invalid pairs
def _invalid_pairs():
    for kind, module in objectives.REGISTRY.items():
        allowed = objective_class(module).MODELS
        for model_kind in models.REGISTRY:
            if model_kind not in allowed:
                yield pytest.param(kind, model_kind, allowed, id=f"{kind}-{model_kind}")


def test_documented_invalid_pairs_are_enumerated():
    ids = {p.id for p in _invalid_pairs()}
    assert {"dae-energy", "ism-tied_dae", "cae-energy", "rcae-energy", "ssm-tied_dae", "esm-tied_dae"} <= ids


@pytest.mark.parametrize("kind, model_kind, allowed", list(_invalid_pairs()))
def test_invalid_model_objective_pair(kind, model_kind, allowed):
    with pytest.raises(UserError) as err:
        build({"kind": kind}, tiny_model(model_kind))
    msg = str(err.value)
    assert "model.kind" in msg and model_kind in msg
    assert all(a in msg for a in allowed), msg


def test_cae_mlp_needs_latent():
    with pytest.raises(UserError, match=r"model\.latent"):
        build({"kind": "cae"}, tiny_model("mlp"))


def test_esm_exact_needs_a_score(tmp_path):
    path = tmp_path / "pts.npz"
    np.savez(path, x=np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32))
    with pytest.raises(UserError, match=r"objective\.target"):
        build({"kind": "esm", "target": "exact"}, data={"kind": "npz", "path": str(path)})
    # Parzen ESM needs only the training points.
    exp = build({"kind": "esm", "target": "parzen"}, data={"kind": "npz", "path": str(path)})
    assert exp.objective.cfg.target == "parzen"


def test_dsm_loss_excess_is_zero_at_the_exact_score_and_esm_on_q_sigma_in_expectation():
    """loss_excess = J(s) − J(∇log q_σ) on the same batch and noise: exactly 0 for s = ∇log q_σ,
    and in expectation ½E_{q_σ}‖s − ∇log q_σ‖², closed form for data N(0, I) and s(x) = −a x:
    ½ (a − 1/(1+σ²))² · D (1 + σ²)."""
    sigma, a, dim = 0.5, 0.3, 2
    exp = build({"kind": "dsm", "sigma": sigma},
                data={"kind": "gmm", "means": [[0.0, 0.0]], "stds": [1.0], "n_train": 100, "n_test": 100})
    obj = exp.objective
    x = jax.random.normal(jax.random.key(1), (400_000, dim))
    exact = lambda y: exp.data.density.score(y, sigma)  # noqa: E731  (a "model" read as its score)
    _, aux = obj.loss(exact, x, jax.random.key(2), x)
    assert float(aux["loss_excess"]) == 0.0
    chunks = [float(obj.loss(lambda y: -a * y, x, jax.random.key(100 + k), x)[1]["loss_excess"]) for k in range(10)]
    want = 0.5 * (a - 1 / (1 + sigma**2)) ** 2 * dim * (1 + sigma**2)
    standard_error = np.std(chunks, ddof=1) / np.sqrt(len(chunks))
    assert abs(np.mean(chunks) - want) < 4 * standard_error + 1e-6, (np.mean(chunks), want, standard_error)
    assert standard_error < 0.01 * want  # the test can tell a 4 % error apart
