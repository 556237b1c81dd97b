"""Tracking (the optional extra ``dsm[tracking]``): what a run writes to TensorBoard and MLflow,
read back with their own readers. Each test skips cleanly when its library is absent; a config
that asks for a missing one is refused before anything is created."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dsmcli import runs
from dsmcli.cli import app


def dsm(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def train(tiny_config, runs_dir, *extra):
    r = dsm("train", "--config", tiny_config, "--runs-dir", runs_dir, *extra)
    assert r.exit_code == 0, r.output
    return Path(r.stdout.strip().splitlines()[-1])


def test_tensorboard_events_hold_every_logged_metric_and_a_resume_purges_the_rest(tmp_path, tiny_config):
    pytest.importorskip("tensorboardX")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run_dir = train(tiny_config, tmp_path / "runs", "track.tensorboard=true", "train.steps=20")
    r = dsm("train", "--resume", run_dir, "train.steps=40")
    assert r.exit_code == 0, r.output
    assert dsm("eval", run_dir).exit_code == 0
    events = accumulator.EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    records = runs.MetricsLog(run_dir / "metrics.jsonl").read()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in records] == [10, 20, 30, 40]
    np.testing.assert_allclose([e.value for e in loss], [r["loss"] for r in records], rtol=1e-6)
    assert [e.step for e in events.Scalars("train/score_error")] == [20, 40]
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert events.Scalars("eval/score_error")[-1].value == pytest.approx(evaluation["score_error"], rel=1e-6)


def test_mlflow_run_holds_params_metrics_status_and_artefacts(tmp_path, tiny_config):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    runs_dir = tmp_path / "runs"
    run_dir = train(tiny_config, runs_dir, "track.mlflow=true", "train.steps=20")
    assert dsm("train", "--resume", run_dir, "train.steps=40").exit_code == 0
    assert dsm("eval", run_dir).exit_code == 0
    client = MlflowClient(tracking_uri=f"sqlite:///{runs_dir.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "tiny/v001" and found.info.status == "FINISHED"
    assert found.data.params["objective.kind"] == "dsm" and found.data.params["train.steps"] == "20"
    records = runs.MetricsLog(run_dir / "metrics.jsonl").read()
    history = client.get_metric_history(found.info.run_id, "loss")
    assert [m.step for m in history] == [r["step"] for r in records] == [10, 20, 30, 40]  # the resume logs into the same run
    np.testing.assert_allclose([m.value for m in history], [r["loss"] for r in records], rtol=1e-6)
    assert client.get_metric_history(found.info.run_id, "eval.score_error")
    names = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"config.yaml", "summary.json", "metrics.jsonl", "eval"} <= names
    assert json.loads((run_dir / "tracking.json").read_text())["mlflow_run_id"] == found.info.run_id


@pytest.mark.parametrize("key, module", [("track.tensorboard=true", "tensorboardX"), ("track.mlflow=true", "mlflow")])
def test_a_tracker_that_is_not_installed_is_refused_before_the_run_starts(tmp_path, tiny_config, monkeypatch, key, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if the extra were absent
    r = dsm("train", "--config", tiny_config, "--runs-dir", tmp_path / "runs", key)
    assert r.exit_code == 2 and "pip install 'dsm[tracking]'" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "runs").exists()


def test_tracking_does_not_change_what_is_trained_or_its_reuse(tmp_path, tiny_config):
    from dsmcli.compare import _training_identity
    from dsmcli.config import load_experiment

    plain = load_experiment(tiny_config)
    tracked = load_experiment(tiny_config, ["track.tensorboard=true", "track.mlflow=sqlite:///x.db"])
    assert _training_identity(plain.to_dict()) == _training_identity(tracked.to_dict())


@pytest.mark.slow
def test_a_ray_sweep_with_both_trackers_where_the_extras_are_present(tmp_path, tiny_config, monkeypatch):
    """Installs nothing: uses Ray, TensorBoard and MLflow when this environment has them."""
    for module in ("ray", "tensorboardX", "mlflow"):
        pytest.importorskip(module)
    import yaml

    from dsmcli import compare

    cmp = tmp_path / "c.yaml"
    cmp.write_text(yaml.safe_dump({"name": "t", "base": Path(tiny_config).name, "seeds": [0, 1],
                                   "variants": [{"name": "a", "set": {"track.tensorboard": True, "track.mlflow": True}}]}))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    out, table = compare.run(str(cmp), ["sample.n=50", "sample.steps=5"], runs_dir=str(tmp_path / "runs"),
                             launcher="ray", jobs=2)
    assert table[0]["status"] == "completed"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{(tmp_path / 'runs').resolve() / 'mlflow.db'}")
    found = client.search_runs([client.get_experiment_by_name("t-a").experiment_id])
    assert sorted(r.info.run_name for r in found) == ["t-a/v001", "t-a/v002"]
    assert all((Path(d) / "tensorboard").is_dir() for d in table[0]["runs"])
