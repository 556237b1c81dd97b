"""The command line through Typer's runner: exit codes, what is printed, what must not be."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from dsmcli.cli import app

runner = CliRunner()


def dsm(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_train_sample_eval_runs_end_to_end(tiny_config, runs_dir):
    r = dsm("train", "--config", tiny_config, "objective.sigma=0.2", "--name", "cli")
    assert r.exit_code == 0, r.output
    run_dir = Path(r.stdout.strip().splitlines()[-1])
    assert run_dir == runs_dir / "cli" / "v001"
    assert "completed" in r.stdout

    r = dsm("sample", run_dir, "--n", 100, "--seed", 2, "sample.steps=10")
    assert r.exit_code == 0, r.output
    npz = Path(r.stdout.strip().splitlines()[-1])
    assert npz == run_dir / "samples" / "langevin-100-s2.npz"
    assert np.load(npz)["x"].shape == (100, 2)
    assert npz.with_suffix(".png").is_file()
    record = json.loads((run_dir / "samples" / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"mmd", "sliced_w2", "mode_weights", "mode_weight_error", "step"} <= set(record)
    r = dsm("sample", run_dir, "--n", 100, "--seed", 2, "sample.steps=10")
    assert r.stdout.strip().splitlines()[-1].endswith("langevin-100-s2-2.npz")  # never overwrites

    r = dsm("eval", run_dir)
    assert r.exit_code == 0, r.output
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["step"] == 40 and 0 <= result["score_error"] < 2
    assert (run_dir / "plots" / "score_field.png").is_file() and (run_dir / "plots" / "loss.png").is_file()

    r = dsm("runs")
    assert r.exit_code == 0 and "cli" in r.stdout and "completed" in r.stdout and "dsm" in r.stdout
    assert dsm("runs", "--latest", "cli").stdout.strip() == str(run_dir)


def test_resume_through_cli(tiny_config, runs_dir):
    r = dsm("train", "--config", tiny_config, "train.steps=20")
    run_dir = r.stdout.strip().splitlines()[-1]
    r = dsm("train", "--resume", run_dir, "train.steps=40")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1] == run_dir
    steps = [json.loads(x)["step"] for x in Path(run_dir, "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30, 40]


def test_print_config_shows_resolved_config_and_writes_nothing(tiny_config, runs_dir):
    r = dsm("train", "--config", tiny_config, "--print-config", "optim.lr=1e-2")
    assert r.exit_code == 0
    assert "lr: 0.01" in r.stdout and "name: tiny" in r.stdout and "keep_checkpoints: 3" in r.stdout
    assert not runs_dir.exists()


def test_user_errors_exit_2_with_one_message_and_no_traceback(tiny_config, runs_dir, tmp_path):
    cases = [
        (["train", "--config", "missing.yaml"], "--config: file 'missing.yaml' does not exist"),
        (["train", "--config", tiny_config, "objective.sigmaa=1"], "did you mean 'objective.sigma'?"),
        (["train", "--config", tiny_config, "objective.kind=dsn"], "unknown kind 'dsn'; did you mean 'dsm'?"),
        (["train", "--config", tiny_config, "data.weights=[0.5,0.6]"], "must be positive and sum to 1"),
        (["train"], "give exactly one of --config PATH (a new run) or --resume RUN_DIR"),
        (["train", "--resume", str(tmp_path)], "is not a dsm run directory"),
        (["sample", str(tmp_path / "nope")], "RUN_DIR: "),
        (["eval", str(tmp_path)], "is not a dsm run directory"),
        (["runs", "--latest", "nothing"], "no runs named 'nothing'"),
    ]
    for args, text in cases:
        r = dsm(*args)
        assert r.exit_code == 2, (args, r.output)
        assert text in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.output and "Traceback" not in r.stderr
    assert not runs_dir.exists()  # nothing was created by any of them


def test_sample_rejects_non_sample_overrides(tiny_config, runs_dir):
    run_dir = dsm("train", "--config", tiny_config, "train.steps=10").stdout.strip().splitlines()[-1]
    r = dsm("sample", run_dir, "optim.lr=1")
    assert r.exit_code == 2 and "only sample… may be set here" in r.stderr
    r = dsm("sample", run_dir, "--sampler", "nuts")
    assert r.exit_code == 2 and "sample.kind: 'nuts' is not allowed" in r.stderr


def test_help_and_runs_are_fast_because_jax_is_not_imported(tmp_path):
    code = "import sys; from dsmcli.cli import app; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dsmcli", "--help"], capture_output=True, text=True, check=True)
    assert time.perf_counter() - t0 < 3.0
    for command in ("train", "sample", "eval", "compare", "runs"):
        assert command in out.stdout
    out = subprocess.run([sys.executable, "-m", "dsmcli", "runs", "--runs-dir", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0 and "no runs under" in out.stdout


def test_run_versions_are_allocated_atomically_by_concurrent_processes(tmp_path):
    """4 processes, each allocating 5 versions of the same name at the same instant."""
    start = time.time() + 2.0
    code = (
        "import sys, time; from pathlib import Path; from dsmcli.runs import allocate\n"
        f"time.sleep(max(0, {start} - time.time()))\n"
        f"print(' '.join(allocate(Path({str(tmp_path)!r}), 'race').name for _ in range(5)))"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    names = [n for p in procs for n in p.communicate(timeout=60)[0].split()]
    assert sorted(names) == [f"v{i:03d}" for i in range(1, 21)]


def test_runs_shows_each_kind_of_runs_headline_metric(tmp_path):
    """score_error always; recon_mse (autoencoders) and rmse (AutoRec) once some run has them."""
    for name, objective, metrics in [("s", "dsm", {"score_error": 0.0767}), ("r", "autorec", {"rmse": 0.9489})]:
        run = tmp_path / name / "v001"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(f"objective: {{kind: {objective}}}\n")
        (run / "meta.json").write_text("{}")
        (run / "summary.json").write_text(json.dumps({"status": "completed", "steps": 10, "objective": objective,
                                                      "loss": 1.5, **metrics}))
    out = subprocess.run([sys.executable, "-m", "dsmcli", "runs", "--runs-dir", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if "objective" in line)
    assert "score_error" in header and "rmse" in header and "recon_mse" not in header
    assert "0.0767" in out.stdout and "0.9489" in out.stdout
