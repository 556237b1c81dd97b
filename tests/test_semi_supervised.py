"""Semi-supervised classification with autoencoders (the survey's §4.2): ``data.labels_per_class``
hides all but that many training labels per class from the model; ``ssl_ae`` trains a classifier
on the codes jointly with the reconstruction; ``test_acc`` is its held-out accuracy; the linear
probe sees only the labelled rows."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from typer.testing import CliRunner

from dsmcli import config, experiment
from dsmcli.cli import app
from tests.conftest import write_config

MODEL = {"kind": "mlp", "hidden": [32], "latent": 4}


def build(per_class=10, **objective):
    raw = {"name": "t", "data": {"kind": "digits", **({"labels_per_class": per_class} if per_class else {})},
           "model": MODEL, "objective": {"kind": "ssl_ae", **objective}}
    return experiment.build(config.validate(raw, "test"))


def test_labels_per_class_keeps_that_many_of_each_class_and_all_labels_for_evaluation():
    exp = build(7)
    data = exp.data
    y = data.y_train[data.labelled]
    assert np.array_equal(np.bincount(y), np.full(10, 7))
    assert build(7).data.labelled.tolist() == data.labelled.tolist()  # seeded
    assert data.y_train.shape == (len(data.x_train),)  # every label kept for the evaluation tools (fd)
    assert build(None).data.labelled is None and len(build(None).data.labelled_rows) == len(data.x_train)


def test_ssl_loss_is_reconstruction_plus_cross_entropy_on_the_labelled_batch():
    exp = build(5, lam=0.7, recon_weight=0.3, label_batch=16)
    obj, net = exp.objective, exp.net(exp.params)
    x = jnp.asarray(exp.data.x_train[:32])
    key = jax.random.key(3)
    loss, logs = obj.loss(net, x, key, None)
    idx = np.asarray(jax.random.randint(key, (16,), 0, 50))
    rows = exp.data.labelled_rows[idx]
    logits = np.asarray(obj.classify(net, jnp.asarray(exp.data.x_train[rows])), np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    xent = -np.mean(logp[np.arange(16), exp.data.y_train[rows]])
    recon = np.mean(np.sum((np.asarray(net(x), np.float64) - np.asarray(x)) ** 2, 1))
    assert float(logs["xent"]) == pytest.approx(xent, rel=1e-5)
    assert float(logs["recon"]) == pytest.approx(recon, rel=1e-5)
    assert float(loss) == pytest.approx(0.3 * recon + 0.7 * xent, rel=1e-5)


def test_supervised_baseline_trains_no_decoder():
    from flax import nnx

    exp = build(5, recon_weight=0.0)
    graphdef, params = exp.graphdef, exp.params
    grads = jax.grad(lambda p: exp.objective.loss(nnx.merge(graphdef, p), jnp.asarray(exp.data.x_train[:16]),
                                                  jax.random.key(0), None)[0])(params)
    flat = jax.tree_util.tree_flatten_with_path(grads)[0]
    decoder = [np.abs(np.asarray(g)).max() for path, g in flat if "decoder" in jax.tree_util.keystr(path)]
    encoder = [np.abs(np.asarray(g)).max() for path, g in flat if "encoder" in jax.tree_util.keystr(path)]
    assert decoder and max(decoder) == 0.0 and max(encoder) > 0.0


def test_test_acc_and_the_probe_on_labelled_rows_only():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from dsmcli import metrics

    exp = build(5)
    out = metrics.evaluate_model(metrics.ModelView(exp, exp.params), ["test_acc", "codes"])
    net = exp.net(exp.params)
    pred = np.argmax(np.asarray(exp.objective.classify(net, jnp.asarray(exp.data.x_test))), 1)
    assert out["test_acc"] == pytest.approx(np.mean(pred == exp.data.y_test))
    z_train, z_test = (np.asarray(net.encode(jnp.asarray(a))) for a in (exp.data.x_train, exp.data.x_test))
    rows = exp.data.labelled_rows
    scaler = StandardScaler().fit(z_train)
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(z_train[rows]), exp.data.y_train[rows])
    assert out["probe_acc"] == pytest.approx(probe.score(scaler.transform(z_test), exp.data.y_test))


@pytest.mark.parametrize("sections, message", [
    ({"data": {"kind": "digits", "labels_per_class": 500}}, "data.labels_per_class: 500 labels per class, but class"),
    ({"data": {"kind": "gmm", "means": [[0, 0]], "labels_per_class": 3}}, "data.labels_per_class: unknown key"),
    ({"data": {"kind": "gmm", "means": [[0, 0]]}}, "objective.kind: 'ssl_ae' trains a classifier"),
])
def test_errors(tmp_path, runs_dir, sections, message):
    r = CliRunner().invoke(app, ["train", "--config", write_config(tmp_path / "bad.yaml", model=MODEL,
                                                                    objective={"kind": "ssl_ae"}, **sections)])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


def test_trains_from_the_command_line_and_beats_chance(tmp_path, runs_dir):
    cfg = write_config(tmp_path / "ssl.yaml", data={"kind": "digits", "labels_per_class": 10}, model=MODEL,
                       objective={"kind": "ssl_ae"}, sample={"kind": "ancestral", "n": 50},
                       train={"steps": 300, "batch_size": 64, "log_every": 100, "eval_every": 300, "ckpt_every": 300})
    r = CliRunner().invoke(app, ["train", "--config", cfg])
    assert r.exit_code == 0, r.output
    import json

    summary = json.loads((Path(r.output.strip().splitlines()[-1]) / "summary.json").read_text())
    assert summary["test_acc"] > 0.5 and summary["probe_acc"] > 0.3
