"""dsm compare: variants × seeds, reuse of identical runs, aggregation, failures reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dsmcli import compare
from dsmcli.cli import app


def write_compare(tmp_path, tiny_config, variants, seeds=(0, 1)):
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "base": Path(tiny_config).name, "seeds": list(seeds),
                                    "variants": variants}))
    return str(path)


def test_compare_trains_samples_evaluates_and_aggregates(tmp_path, tiny_config, runs_dir):
    cfg = write_compare(tmp_path, tiny_config, [
        {"name": "dsm", "set": {"objective.sigma": 0.3}},
        {"name": "oracle", "set": {"objective": {"kind": "oracle"}}},
        {"name": "broken", "set": {"optim": {"kind": "sgd", "lr": 1e30, "momentum": 0.0}}},
    ])
    out, table = compare.run(cfg, ["sample.n=100", "sample.steps=10"], runs_dir=str(runs_dir))
    assert out == runs_dir / "compare-t" / "v001"
    result = json.loads((out / "comparison.json").read_text())
    rows = {r["variant"]: r for r in result["variants"]}
    assert rows["dsm"]["status"] == "completed" and rows["broken"]["status"] == "failed"
    assert "non-finite" in rows["broken"]["errors"][0]
    runs = rows["dsm"]["runs"]
    assert len(runs) == 2 and all(Path(r).is_dir() for r in runs)
    errors = [json.loads((Path(r) / "eval.json").read_text())["score_error"] for r in runs]
    m = rows["dsm"]["metrics"]["score_error"]
    assert m["mean"] == np.mean(errors) and np.isclose(m["std"], np.std(errors, ddof=1)) and m["n"] == 2
    assert rows["oracle"]["metrics"]["score_error"]["mean"] == 0.0
    assert {"mmd", "sliced_w2", "mode_weight_error", "mode_weights"} <= set(rows["dsm"]["metrics"])
    md = (out / "comparison.md").read_text()
    assert "| dsm |" in md and "| broken | failed" in md and "Failures:" in md
    for fig in ("samples.png", "score_fields.png", "loss.png"):
        assert (out / fig).is_file()

    # A second compare reuses every completed run whose training config is identical
    # (sampling settings aside); the failed ones are trained again.
    again = write_compare(tmp_path, tiny_config, [{"name": "dsm", "set": {"objective.sigma": 0.3}}])
    out2, table2 = compare.run(again, ["sample.n=100", "sample.steps=10", "sample.step_size=0.02"],
                               runs_dir=str(runs_dir))
    assert out2.name == "v002" and table2[0]["runs"] == runs
    assert sorted(p.name for p in (runs_dir / "t-dsm").iterdir()) == ["v001", "v002"]


def test_cli_compare_exit_codes_and_existing_runs(tmp_path, tiny_config, runs_dir):
    runner = CliRunner()
    bad = write_compare(tmp_path, tiny_config, [{"name": "x", "set": {"objective.kind": "nope"}}], seeds=[0])
    r = runner.invoke(app, ["compare", "--config", bad])
    assert r.exit_code == 2 and "unknown kind 'nope'" in r.stderr and not list(runs_dir.glob("*"))
    ok = write_compare(tmp_path, tiny_config, [{"name": "a", "set": {}}], seeds=[0])
    r = runner.invoke(app, ["compare", "--config", ok, "sample.n=50", "sample.steps=5"])
    assert r.exit_code == 0, r.output
    run_dir = runs_dir / "t-a" / "v001"
    r = runner.invoke(app, ["compare", str(run_dir), str(run_dir)])
    assert r.exit_code == 0, r.output
    assert Path(r.stdout.strip().splitlines()[-1]) == runs_dir / "compare-runs" / "v001"


def test_metrics_against_a_config_key(tmp_path, tiny_config, runs_dir):
    """``against: objective.sigma``: variants grouped by what else differs (sampling aside),
    one point per trained model, the bias floors alongside; both figures drawn."""
    path = tmp_path / "against.yaml"
    path.write_text(yaml.safe_dump({"name": "ag", "base": Path(tiny_config).name, "seeds": [0], "against": "objective.sigma",
                                    "variants": [
                                        {"name": "dsm-0.2", "set": {"objective.sigma": 0.2}},
                                        {"name": "dsm-0.5", "set": {"objective.sigma": 0.5}},
                                        {"name": "dsm-0.5-ula", "set": {"objective.sigma": 0.5, "sample.step_size": 0.02}},
                                        {"name": "dae-res-0.5", "set": {"objective": {"kind": "dae", "sigma": 0.5},
                                                                        "model.residual": True}}]}))
    out, _ = compare.run(str(path), ["sample.n=100", "sample.steps=10"], runs_dir=str(runs_dir))
    result = json.loads((out / "comparison.json").read_text())
    rows = [dict(r, status="completed") for r in result["runs"]]
    series = compare.against_series(rows, "objective.sigma")
    assert set(series["points"]) == {"kind=dsm, residual=false", "kind=dae, residual=true"}
    dsm = series["points"]["kind=dsm, residual=false"]
    assert [x for x, _ in dsm] == [0.2, 0.5]  # the ula variant samples the σ = 0.5 model: no extra point
    assert dsm[1][1]["score_error_floor"][0] > dsm[0][1]["score_error_floor"][0] > 0  # more smoothing, more bias
    assert (out / "against.png").is_file() and (out / "curves.png").is_file()
    with pytest.raises(Exception):
        compare.CompareConfig.model_validate({"name": "x", "base": "b.yaml", "variants": [{"name": "v"}], "against": "sigma"})
