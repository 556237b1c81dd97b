"""KID (``dsmcli.metrics.kid``) against a brute-force float64 formula, its unbiasedness where FD
is biased (small n), the floors at the same n, and the protocol record of ``dsm sample``."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest

from dsmcli import api, config, experiment
from dsmcli.metrics import fd, kid
from tests.conftest import write_config


def brute_mmd2(x, y):
    """The unbiased MMD² of Bińkowski et al. with k(a, b) = (a·b/d + 1)³, pair by pair."""
    d, m = x.shape[1], len(x)
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def relu_gaussian(rng, n, d=32, shift=0.0):
    return np.maximum(rng.normal(size=(n, d)) + shift, 0.0)


@functools.lru_cache(maxsize=None)
def digits(holdout=None):
    data = {"kind": "digits"} if holdout is None else {"kind": "digits", "holdout_class": holdout}
    raw = {"name": "t", "data": data, "objective": {"kind": "pca"}, "model": {"kind": "mlp", "hidden": [16], "latent": 8}}
    return experiment.build(config.validate(raw, "t")).data


def test_kid_matches_a_brute_force_formula():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(7, 5)) + 0.3
    assert kid.mmd2_unbiased(x, y) == pytest.approx(brute_mmd2(x, y), rel=1e-12)
    # Subsets as large as both sets: every subset is the whole set (order does not matter).
    mean, std = kid.kid(x, y, seed=4, n_subsets=5)
    assert mean == pytest.approx(brute_mmd2(x, y), rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)
    # Smaller subsets: the mean and population std of the brute force on the documented draws
    # (per subset: m reference rows, then m sample rows, from default_rng([seed, 2])).
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(9, 5))
    draws = np.random.default_rng([3, 2])
    values = []
    for _ in range(6):
        ys = y[draws.choice(9, 4, replace=False)]
        values.append(brute_mmd2(x[draws.choice(12, 4, replace=False)], ys))
    mean, std = kid.kid(x, y, seed=3, n_subsets=6, size=4)
    assert mean == pytest.approx(np.mean(values), rel=1e-12) and std == pytest.approx(np.std(values), rel=1e-10)
    assert kid.kid(x, y, seed=3, n_subsets=6, size=4) == (mean, std)  # deterministic per seed
    assert kid.kid(x, y, seed=5, n_subsets=6, size=4) != (mean, std)


def test_kid_is_unbiased_at_small_n_where_fd_is_not():
    """Two samples of one distribution, n = 100: KID averages to 0 (single values slightly
    negative or positive), FD to clearly > 0; shifted features give a KID clearly > 0."""
    rng = np.random.default_rng(1)
    values = np.array([kid.mmd2_unbiased(relu_gaussian(rng, 100), relu_gaussian(rng, 100)) for _ in range(200)])
    assert abs(values.mean()) < 4 * values.std(ddof=1) / math.sqrt(len(values))
    assert (values < 0).any()  # unbiased, so not clipped at 0
    fds = [fd.frechet_distance(relu_gaussian(rng, 100), relu_gaussian(rng, 100)) for _ in range(20)]
    assert min(fds) > 1.0  # same distribution, yet every FD is far from 0 at this n
    x, y = relu_gaussian(rng, 400), relu_gaussian(rng, 400)
    same, same_std = kid.kid(x, y, seed=0, size=200)
    assert abs(same) < 3 * values.std()  # within the null spread of one n = 100 estimate
    shifted, shifted_std = kid.kid(relu_gaussian(rng, 400, shift=0.5), y, seed=0, size=200)
    assert shifted > 0.05 and shifted > 10 * shifted_std and shifted > 20 * abs(same)


def test_kid_and_floors_on_digits_at_n_100():
    """100 training images against the 360 test images: KID within a few kid_std of 0 while FD is
    clearly > 0; fd_floor (100 other training rows) is of fd's size; noise is far off."""
    data = digits()
    x = data.x_train[np.random.default_rng(7).choice(len(data.x_train), 100, replace=False)]
    k, f = kid.kid_metrics(x, data, seed=0), fd.fd_metrics(x, data, seed=0)
    assert abs(k["kid"]) < 3 * k["kid_std"] and k["kid_std"] > 0
    assert abs(k["kid_floor"]) < 0.05
    assert f["fd"] > 0.5 and 0.5 < f["fd"] / f["fd_floor"] < 2
    big = fd.fd_metrics(data.x_train[:1000], data, seed=0)  # the floor falls with n: FD's bias
    assert big["fd_floor"] < 0.6 * f["fd_floor"]
    assert kid.kid_metrics(x, data, seed=0) == k and fd.fd_metrics(x, data, seed=0) == f  # per seed
    assert fd.fd_metrics(x, data, seed=1)["fd_floor"] != f["fd_floor"]  # other floor rows
    noise = np.random.default_rng(1).uniform(size=(100, 64)).astype(np.float32)
    kn = kid.kid_metrics(noise, data, seed=0)
    assert kn["kid"] > 0.5 and kn["kid"] > 10 * kn["kid_std"]


def test_floor_rows_are_a_deterministic_subset_of_the_training_rows():
    data = digits()
    a, b = fd.floor_rows(data, 50, seed=3), fd.floor_rows(data, 50, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 50 and len({r.tobytes() for r in a} & {r.tobytes() for r in data.x_train}) == len({r.tobytes() for r in a})
    assert fd.floor_rows(data, 10**6, seed=3) is data.x_train  # capped at the training set


def test_dsm_sample_records_the_image_protocol(tmp_path, runs_dir):
    from typer.testing import CliRunner

    from dsmcli.cli import app

    cfg = write_config(tmp_path / "vae.yaml", {"train.steps": 20, "train.log_every": 10, "train.eval_every": 20,
                                               "train.ckpt_every": 20, "train.batch_size": 64},
                       data={"kind": "digits", "holdout_class": 9}, objective={"kind": "vae"},
                       model={"kind": "mlp", "hidden": [32], "latent": 4},
                       sample={"kind": "ancestral", "n": 64, "init": {"kind": "gaussian", "std": 1.0}})
    run_dir, _ = api.train(cfg, runs_dir=str(runs_dir))
    r = CliRunner().invoke(app, ["sample", str(run_dir), "--seed", "5"])
    assert r.exit_code == 0, r.output
    line = json.loads((run_dir / "samples" / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(isinstance(line[k], float) and math.isfinite(line[k]) for k in ("fd", "fd_floor", "kid", "kid_std", "kid_floor"))
    data = digits(9)
    proto = line["protocol"]
    assert set(proto) == {"fd", "kid"}
    for name in ("fd", "kid"):
        p = proto[name]
        assert p["n"] == 64 and p["seed"] == 5
        assert p["reference"] == {"split": "test", "n": len(data.x_test)}
        assert p["floor"]["n"] == 64 and p["floor"]["of"] == len(data.x_train)
        assert "MLPClassifier" in p["features"]["network"] and p["features"]["dim"] == 128
        assert p["features"]["sha256"] == fd.feature_net(data).sha256 and len(p["features"]["sha256"]) == 64
    assert proto["kid"]["subset_size"] == 64 and proto["kid"]["n_subsets"] == 100
    assert "(a·b / d + 1)^3" in proto["kid"]["kernel"]
    # Metrics chosen by name: only those describe themselves.
    _, record = api.sample(run_dir, metrics=["mmd"])
    assert "protocol" not in record
    _, record = api.sample(run_dir, metrics=["kid"])
    assert set(record["protocol"]) == {"kid"}


def test_compare_tables_show_kid_and_keep_the_protocol_out_of_the_columns():
    from dsmcli import compare

    rows = [{"variant": "a", "seed": s, "status": "completed", "run_dir": f"r{s}",
             "metrics": {"fd": 1.0 + s, "fd_floor": 0.5, "kid": 0.01 * s, "kid_std": 0.001, "kid_floor": 0.0,
                         "protocol": {"fd": {"n": 64}}}} for s in (0, 1)]
    table = compare.aggregate(rows)
    cols = compare.table_columns(table)
    assert cols[:5] == ["fd", "fd_floor", "kid", "kid_std", "kid_floor"] and "protocol" not in cols
    assert "| variant | fd | fd_floor | kid | kid_std | kid_floor |" in compare.markdown(table, "t")
