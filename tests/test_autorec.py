"""AutoRec (Sedhain et al. 2015) on ``data.kind ratings``: the u.data reader and its errors, the
synthetic generator, the masked loss and the rmse metrics against hand computations, a short
end-to-end run that beats the item-mean baseline, and the command-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from dsmcli import data, experiment
from dsmcli.cli import app
from dsmcli.config import validate
from dsmcli.data import ratings
from dsmcli.data.base import Dataset
from dsmcli.errors import UserError
from dsmcli.objectives import autorec
from tests.conftest import write_config

runner = CliRunner()

# (user, item, rating), 1-based ids: 4 users × 3 items, 7 observed ratings
U_DATA = [(1, 1, 5), (1, 3, 3), (2, 1, 4), (2, 2, 1), (3, 2, 2), (4, 3, 5), (4, 1, 3)]
TINY_SYNTH = {"kind": "ratings", "n_users": 40, "n_items": 60, "rank": 2, "density": 0.3, "noise": 0.1}
TINY_MODEL = {"kind": "mlp", "hidden": [24], "activation": "sigmoid"}
E2E_SYNTH = {"kind": "ratings", "n_users": 60, "n_items": 80, "rank": 2, "density": 0.3, "noise": 0.1}


def dsm(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_u_data(path: Path, rows=U_DATA, sep="\t") -> str:
    path.write_text("".join(sep.join(str(v) for v in (*row, 874965758 + i)) + "\n" for i, row in enumerate(rows)))
    return str(path)


def build_data(spec: dict) -> Dataset:
    return data.build(validate({"name": "t", "data": spec, "objective": {"kind": "autorec"}}, "t").data)


# --------------------------------------------------------------------------- reader
@pytest.mark.parametrize("sep", ["\t", "  ", " \t "])
def test_reader_layout_and_split(tmp_path, sep):
    ds = build_data({"kind": "ratings", "path": write_u_data(tmp_path / "u.data", sep=sep), "test_fraction": 0.3})
    assert ds.has_missing and ds.x_train.dtype == np.float32
    assert ds.x_train.shape == ds.x_test.shape == (3, 4)  # rows are items, columns users
    full = np.full((3, 4), np.nan)
    for user, item, rating in U_DATA:
        full[item - 1, user - 1] = rating
    train, test = np.isfinite(ds.x_train), np.isfinite(ds.x_test)
    assert not (train & test).any()  # disjoint
    np.testing.assert_array_equal(train | test, np.isfinite(full))  # complete
    np.testing.assert_array_equal(ds.x_train[train], full[train])
    np.testing.assert_array_equal(ds.x_test[test], full[test])
    assert test.sum() == round(0.3 * len(U_DATA)) == 2
    again = build_data({"kind": "ratings", "path": str(tmp_path / "u.data"), "test_fraction": 0.3})
    np.testing.assert_array_equal(np.isfinite(again.x_test), test)  # the split is seeded
    others = [np.isfinite(build_data({"kind": "ratings", "path": str(tmp_path / "u.data"), "test_fraction": 0.3,
                                      "seed": s}).x_test) for s in (1, 2, 3)]
    assert any(not np.array_equal(o, test) for o in others)  # … by data.seed


@pytest.mark.parametrize("content, where, what", [
    ("1\t1\t5\t0\n1\t2\t4\n2\t1\n", "line 3", "expected 4 whitespace-separated columns"),
    ("1\t1\t5\t0\n1\tx\t4\t0\n", "line 2", "user and item must be integer ids"),
    ("\n1\t1\t5\t0\n2\t1\tfive\t0\n", "line 3", "rating must be a number, got 'five'"),
    ("1\t1\t5\t0\n2\t1\tnan\t0\n", "line 2", "rating must be finite"),
    ("1\t1\t5\t0\n0\t1\t4\t0\n", "line 2", "ids are 1-based"),
    ("1\t1\t5\t0\n1\t1\t4\t0\n", "line 2", "user 1 rated item 1 again (first on line 1)"),
    (b"1\t1\t5\t0\n\xff\xfe\t1\t4\t0\n", "line 2", "user and item must be integer ids"),
])
def test_bad_files_exit_2_naming_file_and_line(tmp_path, runs_dir, content, where, what):
    bad = tmp_path / "bad.data"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    cfg = write_config(tmp_path / "c.yaml", data={"kind": "ratings", "path": str(bad)},
                       objective={"kind": "autorec"}, model=TINY_MODEL)
    r = dsm("train", "--config", cfg)
    assert r.exit_code == 2, r.output
    assert f"data.path: '{bad}', {where}: {what}" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not runs_dir.exists()


def test_missing_and_unreadable_files_exit_2(tmp_path, runs_dir):
    for path, what in [(tmp_path / "absent.data", "does not exist"), (tmp_path, "is a directory, not a regular file")]:
        cfg = write_config(tmp_path / "c.yaml", data={"kind": "ratings", "path": str(path)},
                           objective={"kind": "autorec"}, model=TINY_MODEL)
        r = dsm("train", "--config", cfg)
        assert r.exit_code == 2 and f"data.path: '{path}' {what}" in r.stderr and "Traceback" not in r.output
    empty = tmp_path / "empty.data"
    empty.write_text("\n1\t1\t5\t0\n")
    with pytest.raises(UserError, match="has 1 rating line"):
        ratings.read_ratings(str(empty))
    assert not runs_dir.exists()


# --------------------------------------------------------------------------- synthetic
def test_synthetic_shape_density_range_and_determinism():
    spec = {"kind": "ratings", "n_users": 50, "n_items": 80, "rank": 3, "density": 0.2, "test_fraction": 0.25}
    ds = build_data(spec)
    assert ds.x_train.shape == ds.x_test.shape == (80, 50) and ds.has_missing
    train, test = np.isfinite(ds.x_train), np.isfinite(ds.x_test)
    assert not (train & test).any()
    assert (train | test).sum() == round(0.2 * 80 * 50) == 800 and test.sum() == 200
    values = np.concatenate([ds.x_train[train], ds.x_test[test]])
    assert set(np.unique(values)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    freq = np.bincount(values.astype(int), minlength=6)[1:] / len(values)
    np.testing.assert_allclose(freq, ratings.STAR_FREQUENCIES, atol=0.01)  # quantile mapping
    np.testing.assert_array_equal(build_data(spec).x_train, ds.x_train)
    assert not np.array_equal(np.isfinite(build_data({**spec, "seed": 1}).x_train), train)


def test_synthetic_ratings_follow_the_low_rank_signal():
    """Without noise, ratings are a monotone function of ⟨Vᵢ, Uᵤ⟩: a rank-`rank` fit of the
    observed entries explains them far better than the item means do."""
    ds = build_data({"kind": "ratings", "n_users": 60, "n_items": 60, "rank": 1, "density": 1.0, "noise": 0.0})
    full = np.where(np.isfinite(ds.x_train), ds.x_train, ds.x_test).astype(np.float64)
    centred = full - full.mean()
    s = np.linalg.svd(centred, compute_uv=False)
    assert s[0] ** 2 / np.sum(s**2) > 0.8


# --------------------------------------------------------------------------- loss
def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _is(path, layer, name) -> bool:
    return [getattr(k, "key", None) for k in path][:3] == ["layers", layer, name]


def leaf(params, layer: int, name: str) -> np.ndarray:
    """A parameter of the mlp's linear layer ``layer`` (``kernel`` or ``bias``) as float64."""
    (found,) = [v for path, v in jax.tree_util.tree_flatten_with_path(params)[0] if _is(path, layer, name)]
    return np.asarray(found, np.float64)


def shifted(params, layer: int, name: str, index: int, delta: float):
    """``params`` with one entry of a parameter moved by ``delta``."""
    return jax.tree_util.tree_map_with_path(
        lambda path, v: v.at[index].add(delta) if _is(path, layer, name) else v, params)


def test_loss_is_the_masked_sum_plus_kernel_penalty():
    exp = experiment.build(validate({"name": "t", "data": TINY_SYNTH, "objective": {"kind": "autorec", "lam": 0.3},
                                     "model": {"kind": "mlp", "hidden": [5], "activation": "sigmoid"}}, "t"))
    nan = np.nan
    x = np.full((3, 40), nan, np.float32)  # 3 item rows × 40 users; the last row has nothing observed
    x[0, [0, 2]] = [5, 3]
    x[1, [1, 2, 3]] = [1, 2, 4]
    rng = np.random.default_rng(0)  # biases start at 0: move them so that they take part
    params = jax.tree.map(lambda a: a + 0.1 * rng.normal(size=a.shape).astype(a.dtype), exp.params)
    loss_fn = jax.jit(lambda p, x: exp.objective.loss(exp.net(p), x, jax.random.key(0), None))
    loss, aux = loss_fn(params, jnp.asarray(x))

    kv, bv = leaf(params, 0, "kernel"), leaf(params, 0, "bias")
    kw, bw = leaf(params, 1, "kernel"), leaf(params, 1, "bias")
    r = np.nan_to_num(x.astype(np.float64))  # unobserved inputs are fed as 0
    h = sigmoid(r @ kv + bv) @ kw + bw  # AutoRec: W·g(V r + μ) + b
    mask = np.isfinite(x)
    per_row = np.where(mask, (h - r) ** 2, 0).sum(1)
    want = per_row.mean() + 0.5 * 0.3 * (np.sum(kv**2) + np.sum(kw**2))  # biases are not penalised
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(aux["masked_mse"]), per_row.sum() / mask.sum(), rtol=1e-5)

    # The mask is honoured: moving the prediction for user 7, unobserved in every row, changes
    # nothing; moving the prediction for user 0, observed in row 0, does.
    moved = lambda user, delta: float(loss_fn(shifted(params, 1, "bias", user, delta), jnp.asarray(x))[0])  # noqa: E731
    assert moved(7, 10.0) == pytest.approx(float(loss), rel=1e-6)
    assert abs(moved(0, 1.0) - float(loss)) > 1e-2
    # The NaN marking an unobserved entry never reaches the arithmetic: finite gradients, and
    # exactly zero for the output bias of users unobserved in every row.
    grads = jax.jit(jax.grad(lambda p: exp.objective.loss(exp.net(p), jnp.asarray(x), None, None)[0]))(params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    g_bias = leaf(grads, 1, "bias")
    assert np.all(g_bias[4:] == 0) and np.all(g_bias[:4] != 0)


def test_loss_is_deterministic_and_compiles_once():
    exp = experiment.build(validate({"name": "t", "data": TINY_SYNTH, "objective": {"kind": "autorec"},
                                     "model": TINY_MODEL}, "t"))
    traces = []

    @jax.jit
    def f(p, x, k):
        traces.append(1)
        return exp.objective.loss(exp.net(p), x, k, None)[0]

    x1, x2 = jnp.asarray(exp.data.x_train[:8]), jnp.asarray(exp.data.x_train[8:16])
    a, b = f(exp.params, x1, jax.random.key(0)), f(exp.params, x1, jax.random.key(1))
    c = f(exp.params, x2, jax.random.key(2))
    assert float(a) == float(b) and np.isfinite(float(c)) and float(c) != float(a) and len(traces) == 1


# --------------------------------------------------------------------------- metrics
def test_rmse_and_baseline_against_hand_computation():
    nan = np.nan
    x_train = np.array([[5, nan, 3, nan], [nan, 1, nan, nan], [nan, nan, nan, nan]], np.float32)
    x_test = np.array([[nan, 4, nan, nan], [2, nan, nan, 5], [nan, 3, nan, nan]], np.float32)
    ds = Dataset("ratings", x_train, x_test, has_missing=True)
    pred = np.array([[0, 3.5, 9, 9], [9, 9, 9, 0.2], [9, 6.0, 9, 9]], np.float32)
    seen = []
    model = lambda r: (seen.append(np.asarray(r)), jnp.asarray(pred))[1]  # noqa: E731
    obj = autorec.AutoRec(autorec.Config(), ds, SimpleNamespace(kind="mlp", latent=None))
    out = obj.metrics(model, ds)
    np.testing.assert_array_equal(seen[0], np.nan_to_num(x_train))  # the training ratings, 0 where missing
    # held out: (0,1)=4 pred 3.5; (1,0)=2 pred 9→5 (clipped to the training range [1, 5]);
    # (1,3)=5 pred 0.2→1; (2,1)=3 pred 6→5
    want = np.sqrt(np.mean([(3.5 - 4) ** 2, (5 - 2) ** 2, (1 - 5) ** 2, (5 - 3) ** 2]))
    assert out["rmse"] == pytest.approx(want, rel=1e-6)
    # item means: row 0 → 4, row 1 → 1, row 2 (no training ratings) → the global mean 3
    base = np.sqrt(np.mean([(4 - 4) ** 2, (1 - 2) ** 2, (1 - 5) ** 2, (3 - 3) ** 2]))
    assert out["rmse_baseline"] == pytest.approx(base, rel=1e-6)


# --------------------------------------------------------------------------- end to end
def test_short_training_beats_the_item_mean_baseline(tmp_path, runs_dir):
    cfg = write_config(tmp_path / "ar.yaml", data=E2E_SYNTH, objective={"kind": "autorec", "lam": 1e-3},
                       model={**TINY_MODEL, "hidden": [32]}, optim={"kind": "adam", "lr": 1e-2},
                       train={"steps": 200, "batch_size": 32, "log_every": 100, "eval_every": 200, "ckpt_every": 200})
    r = dsm("train", "--config", cfg)
    assert r.exit_code == 0, r.output
    run_dir = Path(r.stdout.strip().splitlines()[-1])
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(rec["loss"]) and "masked_mse" in rec for rec in records)
    assert dsm("eval", run_dir).exit_code == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["rmse"] < 0.9 * result["rmse_baseline"], result
    assert result["rmse"] == pytest.approx(records[-1]["rmse"], rel=1e-5)  # the trainer logged the same

    r = dsm("sample", run_dir, "--n", 4)
    assert r.exit_code == 2 and "objective.kind 'autorec' has no score read-out" in r.stderr
    assert "dsm eval" in r.stderr and "Traceback" not in r.output and not (run_dir / "samples").exists()
    r = dsm("sample", run_dir, "--sampler", "ancestral", "--n", 4)
    assert r.exit_code == 2 and "no sampler can draw from this run" in r.stderr


# --------------------------------------------------------------------------- config errors
def test_non_masking_objective_on_ratings_exits_2(tmp_path, runs_dir):
    cfg = write_config(tmp_path / "d.yaml", data=TINY_SYNTH, objective={"kind": "dsm", "sigma": 0.1})
    r = dsm("train", "--config", cfg)
    assert r.exit_code == 2, r.output
    assert "objective.kind: 'dsm' cannot train on data.kind 'ratings'" in r.stderr and "autorec" in r.stderr
    assert "Traceback" not in r.output and not runs_dir.exists()


def test_autorec_on_dense_data_exits_2(tmp_path, runs_dir):
    cfg = write_config(tmp_path / "g.yaml", objective={"kind": "autorec"})  # the 2-D mixture of TINY
    r = dsm("train", "--config", cfg)
    assert r.exit_code == 2, r.output
    assert "data.kind: objective.kind 'autorec' is defined on data.kind ratings, not 'gmm'" in r.stderr
    assert "Traceback" not in r.output and not runs_dir.exists()


def test_autorec_needs_an_mlp_without_bottleneck():
    raw = {"name": "t", "data": TINY_SYNTH, "objective": {"kind": "autorec"}}
    with pytest.raises(UserError, match="model.latent: objective.kind 'autorec' reads an mlp without a bottleneck"):
        experiment.build(validate({**raw, "model": {**TINY_MODEL, "latent": 4}}, "t"))
    with pytest.raises(UserError, match="model.kind: 'energy' cannot be used with objective.kind 'autorec'"):
        experiment.build(validate({**raw, "model": {"kind": "energy", "hidden": [8]}}, "t"))
