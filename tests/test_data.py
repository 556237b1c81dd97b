"""Every data kind: shapes, determinism, and exact scores against finite differences of the
exact log-density (the oracle's score), also for the smoothed densities."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from dsmcli import data
from dsmcli.config import validate

KINDS = {
    "gmm": {"kind": "gmm", "means": [[-2, 0, 1], [2, 1, 0]], "stds": [0.7, 1.2], "weights": [0.4, 0.6]},
    "gmm_full": {"kind": "gmm", "means": [[-2, 0], [2, 1]], "covs": [[[1.0, 0.5], [0.5, 2.0]], [[0.5, -0.2], [-0.2, 0.3]]]},
    "rings": {"kind": "rings"},
    "moons": {"kind": "moons"},
    "spiral": {"kind": "spiral"},
    "checkerboard": {"kind": "checkerboard"},
}


def build(spec, n_train=400, n_test=100):
    spec = {**spec, "n_train": n_train, "n_test": n_test}
    return data.build(validate({"name": "t", "data": spec, "objective": {"kind": "dsm"}}, "t").data)


def test_registry_is_covered():
    assert set(data.REGISTRY) == {k["kind"] for k in KINDS.values()} | {"npz", "digits", "mnist", "ratings", "cifar10", "images"}


@pytest.mark.parametrize("name", list(KINDS))
def test_shapes_and_determinism(name):
    a, b = build(KINDS[name]), build(KINDS[name])
    assert a.x_train.shape == (400, a.dim) and a.x_test.shape == (100, a.dim)
    assert a.x_train.dtype == np.float32 and np.isfinite(a.x_train).all()
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train[:100], a.x_test)


def finite_difference_score(dens, x, sigma, h=1e-4):
    log_prob = jax.jit(dens.log_prob, static_argnums=1)
    x = np.asarray(x, np.float64)
    grads = np.zeros_like(x)
    for d in range(x.shape[1]):
        e = np.zeros(x.shape[1])
        e[d] = h
        grads[:, d] = (np.asarray(log_prob(x + e, sigma)) - np.asarray(log_prob(x - e, sigma))) / (2 * h)
    return grads


@pytest.mark.parametrize("name,sigma", [("gmm", 0.0), ("gmm", 0.5), ("gmm_full", 0.0), ("gmm_full", 0.3),
                                        ("rings", 0.0), ("moons", 0.0), ("moons", 0.2), ("spiral", 0.0),
                                        ("checkerboard", 0.3)])
def test_exact_score_matches_finite_differences_of_log_density(name, sigma):
    ds = build(KINDS[name])
    with jax.enable_x64(True):
        x = np.asarray(ds.x_test[:20], np.float64) + 0.05
        exact = np.asarray(jax.jit(ds.density.score, static_argnums=1)(x, sigma))
        fd = finite_difference_score(ds.density, x, sigma)
    np.testing.assert_allclose(exact, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["gmm", "gmm_full", "moons"])
def test_smoothed_mixture_is_convolution(name):
    """q_σ(x) = E_ε p(x − σε): Monte Carlo of the unsmoothed density agrees with the closed form."""
    ds = build(KINDS[name])
    sigma, x = 0.4, ds.x_test[:5]
    eps = np.random.default_rng(0).standard_normal((10000, ds.dim)).astype(np.float32)
    log_prob = jax.jit(ds.density.log_prob)
    mc = [np.mean(np.exp(np.asarray(log_prob(xi - sigma * eps)))) for xi in x]
    closed = np.exp(np.asarray(ds.density.log_prob(x, sigma)))
    np.testing.assert_allclose(mc, closed, rtol=0.06)


@pytest.mark.parametrize("name", ["gmm", "rings", "checkerboard"])
def test_log_density_integrates_to_one_in_2d(name):
    spec = KINDS[name] if name != "gmm" else {"kind": "gmm", "means": [[-2, 0], [2, 1]], "stds": [0.7, 1.2]}
    ds = build(spec)
    g = np.linspace(-8, 8, 400)  # even count: the origin (where rings is singular) is not a node
    gx, gy = np.meshgrid(g, g)
    pts = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    sigma = 0.2 if name == "checkerboard" else 0.0
    mass = np.exp(np.asarray(jax.jit(ds.density.log_prob, static_argnums=1)(pts, sigma))).sum() * (g[1] - g[0]) ** 2
    assert abs(mass - 1) < 0.01


def test_checkerboard_has_no_score_at_zero_noise():
    ds = build(KINDS["checkerboard"])
    assert not ds.has_score and ds.density.smoothable
    far = np.array([[30.0, -40.0]], np.float32)
    assert np.isfinite(np.asarray(jax.jit(ds.density.score, static_argnums=1)(far, 0.3))).all()  # stable far in the tails


def test_npz_reads_local_file_and_rejects_bad_ones(tmp_path):
    from dsmcli.errors import UserError

    good = tmp_path / "d.npz"
    np.savez(good, x=np.random.default_rng(0).normal(size=(50, 3)), y=np.arange(50))
    cfg = validate({"name": "t", "data": {"kind": "npz", "path": str(good)}, "objective": {"kind": "dsm"}}, "t").data
    ds = data.build(cfg)
    assert ds.x_train.shape == (40, 3) and ds.x_test.shape == (10, 3) and ds.y_train.shape == (40,)
    cases = {
        "missing.npz": "does not exist",
        "wrong_key": "has no array 'x' (it has: z)",
        "rank1": "must have shape (N, D)",
        "nan": "has 1 rows with NaN or inf values",
        "garbage": "is not an .npz archive",
    }
    np.savez(tmp_path / "wrong_key.npz", z=np.zeros((4, 2)))
    np.savez(tmp_path / "rank1.npz", x=np.zeros(4))
    np.savez(tmp_path / "nan.npz", x=np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]))
    (tmp_path / "garbage.npz").write_text("not a zip")
    for name, text in cases.items():
        path = tmp_path / (name if name.endswith(".npz") else name + ".npz")
        bad = cfg.model_copy(update={"path": str(path)})
        with pytest.raises(UserError, match="data.path") as e:
            data.build(bad)
        assert text in str(e.value)


def test_digits_ship_with_scikit_learn_and_split_stratified():
    ds = data.build(validate({"name": "t", "data": {"kind": "digits"}, "objective": {"kind": "dsm"}}, "t").data)
    assert ds.x_train.shape[1] == 64 and len(ds.x_train) + len(ds.x_test) == 1797
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0 and ds.image_shape == (8, 8)
    assert set(np.unique(ds.y_test)) == set(range(10)) and ds.density is None
    std = data.build(validate({"name": "t", "data": {"kind": "digits", "scale": "standard"}, "objective": {"kind": "dsm"}}, "t").data)
    np.testing.assert_allclose(std.x_train.mean(0), 0, atol=1e-4)


def write_idx(path, array):
    import gzip
    import struct

    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_local_idx_files_and_npz(tmp_path):
    from dsmcli.errors import UserError

    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (30, 28, 28)), "y_train": rng.integers(0, 10, 30),
              "x_test": rng.integers(0, 256, (10, 28, 28)), "y_test": rng.integers(0, 10, 10)}
    stems = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte.gz",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    for k, stem in stems.items():
        write_idx(tmp_path / stem, arrays[k])
    cfg = validate({"name": "t", "data": {"kind": "mnist", "path": str(tmp_path), "limit_train": 20},
                    "objective": {"kind": "dsm"}}, "t").data
    ds = data.build(cfg)
    assert ds.x_train.shape == (20, 784) and ds.x_test.shape == (10, 784) and ds.image_shape == (28, 28)
    np.testing.assert_allclose(ds.x_train[0], arrays["x_train"][0].ravel() / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    np.savez(tmp_path / "m.npz", **{k: v.astype(np.uint8) for k, v in arrays.items()})
    assert data.build(cfg.model_copy(update={"path": str(tmp_path / "m.npz")})).x_test.shape == (10, 784)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03garbage")
    with pytest.raises(UserError, match="bad magic number"):
        data.build(cfg)
    with pytest.raises(UserError, match="does not exist; data.kind mnist reads a directory of MNIST IDX files or an .npz"):
        data.build(cfg.model_copy(update={"path": str(tmp_path / "nothing")}))
