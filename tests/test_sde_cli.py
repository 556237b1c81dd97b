"""Continuous-time score models from the command line: train an ``sde`` run, sample it with
``pc`` and ``ode``, read its likelihood from ``dsm eval`` (nats; bits/dim on digits), inpaint
digits; and the errors of what cannot work (exit 2, one line naming the key)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dsmcli.cli import app
from tests.conftest import write_config

runner = CliRunner()


def dsm(*args):
    return runner.invoke(app, [str(a) for a in args])


def last_line(result) -> str:
    return result.output.strip().splitlines()[-1]


@pytest.mark.parametrize("kind", ["ve", "vp"])
def test_train_sample_pc_and_ode_and_eval_nll(tmp_path, runs_dir, kind):
    cfg = write_config(tmp_path / "sde.yaml", model={"kind": "ncsn_mlp", "hidden": [32, 32]},
                       objective={"kind": "sde", "sde": kind}, eval={"nll_n": 64},
                       sample={"kind": "pc", "n": 200, "steps": 40})
    r = dsm("train", "--config", cfg)
    assert r.exit_code == 0, r.output
    run = Path(last_line(r))
    r = dsm("sample", run)
    assert r.exit_code == 0, r.output
    r = dsm("sample", run, "sample.kind=ode", "sample.solver=heun", "sample.steps=20")
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in (run / "samples" / "metrics.jsonl").read_text().splitlines()]
    assert [r["sampler"] for r in records] == ["pc", "ode"]
    assert records[0]["nfe"] == 80 and records[1]["nfe"] == 40
    r = dsm("eval", run, "eval.nll_n=32")
    assert r.exit_code == 0, r.output
    result = json.loads((run / "eval.json").read_text())
    assert np.isfinite(result["nll"]) and result["nll_nfe"] > 0 and "nll_se" not in result  # D = 2: exact trace
    # the trainer's own evaluations hold the likelihood too (metric against steps)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("nll" in rec for rec in logged)


def test_digits_bpd_and_inpainting_figure(tmp_path, runs_dir):
    cfg = write_config(tmp_path / "digits.yaml", data={"kind": "digits"},
                       model={"kind": "ncsn_conv", "channels": [8, 16], "embedding": 16},
                       objective={"kind": "sde", "sde": "ve", "sigma_max": 8.0},
                       train={"steps": 20, "batch_size": 32, "log_every": 10, "eval_every": 20, "ckpt_every": 20},
                       eval={"nll_n": 4, "solver": "heun", "steps": 8},
                       sample={"kind": "pc", "n": 12, "steps": 10, "inpaint": {"mask": "bottom", "fraction": 0.5}})
    r = dsm("train", "--config", cfg)
    assert r.exit_code == 0, r.output
    run = Path(last_line(r))
    result = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert result["bpd"] > 0 and result["nll_se"] > 0  # D = 64 > 16: Hutchinson, with its standard error
    r = dsm("sample", run)
    assert r.exit_code == 0, r.output
    out = Path(last_line(r))
    record = json.loads((run / "samples" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["inpaint_mse"] >= 0 and record["inpaint_mse_mean"] > 0
    saved = np.load(out)
    known = saved["known"]
    assert known.shape == saved["x"].shape and not known[:, 32:].any() and known[:, :32].all()
    np.testing.assert_array_equal(saved["x"][known], saved["observed"][known])
    assert out.with_suffix(".png").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (("sample.kind=pc",), "sample.kind: 'pc' integrates a reverse-time SDE or ODE and needs a time-conditional score"),
    (("sample.kind=ode",), "sample.kind: 'ode' integrates"),
    (("sample.kind=langevin", "sample.inpaint={mask: left}"), "'inpaint' is done by sample.kind"),
])
def test_sampler_errors(tmp_path, runs_dir, args, message):
    r = dsm("train", "--config", write_config(tmp_path / "dsm.yaml"))
    assert r.exit_code == 0, r.output
    r = dsm("sample", last_line(r), *args)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output


@pytest.mark.parametrize("sections, message", [
    ({"objective": {"kind": "sde"}, "model": {"kind": "mlp"}}, "model.kind: 'mlp' cannot be used with objective.kind 'sde'"),
    ({"objective": {"kind": "sde", "sde": "vq"}}, "objective.sde: 'vq' is not allowed"),
    ({"objective": {"kind": "sde", "sigma_min": 2.0, "sigma_max": 1.0}}, "'sigma_max' (1.0) must be > 'sigma_min' (2.0)"),
    ({"objective": {"kind": "oracle", "sde": "vp"}, "data": {"kind": "rings"}, "model": {"kind": "mlp"}}, "objective.sde: the oracle is exact"),
    ({"sample": {"kind": "pc", "predictor": "none", "corrector": "none"}, "objective": {"kind": "sde"}}, "at least one of them must not be 'none'"),
    ({"sample": {"kind": "ode", "solver": "rk4"}}, "sample.solver: 'rk4' is not allowed"),
    ({"eval": {"n_probes": 1}}, "eval.n_probes"),
])
def test_config_errors(tmp_path, runs_dir, sections, message):
    sections = {"model": {"kind": "ncsn_mlp"}, **sections}
    r = dsm("train", "--config", write_config(tmp_path / "bad.yaml", **sections))
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
