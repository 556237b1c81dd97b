"""The run store's promises (README "Reliability"), one test per fault of issue #12 and the
ones found after it: one writer per run, refusals that change nothing, self-contained runs,
atomic writes, bounded bad input, damaged files reported, no silent success, 1-D data."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dsmcli import fsio, runlock, runs
from dsmcli.cli import app
from tests.conftest import pinned_to, write_config

DSM = [sys.executable, "-m", "dsmcli"]


def dsm(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def dsm_process(*args, cwd=None, env=None, timeout=120):
    return subprocess.run([*DSM, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), **(env or {})})


def snapshot(root: Path) -> dict[str, str]:
    """Path → SHA-256 of every file under ``root`` (the lock file aside: its holder rewrites it)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != runlock.LOCK_NAME}


def strict_json(path: Path):
    def refuse(token):
        raise ValueError(f"{path}: bare {token}")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def one_error_line(result) -> str:
    """The command's one error message (progress lines may precede it on stderr)."""
    assert result.exit_code == 2, result.output
    err = result.stderr
    assert err.count("error: ") == 1 and "Traceback" not in result.output, err
    return err[err.index("error: "):]


@pytest.fixture
def trained(tiny_config, runs_dir):
    r = dsm("train", "--config", tiny_config)
    assert r.exit_code == 0, r.output
    return Path(r.stdout.strip().splitlines()[-1])


def start_long_training(config, runs_dir, name="long", steps=10_000_000):
    one_core = {min(os.sched_getaffinity(0))} if hasattr(os, "sched_setaffinity") else None
    # on one core: the readers' processes and the other test workers keep the rest of the machine
    proc = subprocess.Popen([*DSM, "train", "--config", config, "--runs-dir", runs_dir, "--name", name,
                             f"train.steps={steps}", "train.log_every=100", "train.eval_every=1000000",
                             "train.ckpt_every=100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=pinned_to(one_core))
    run_dir = Path(runs_dir) / name / "v001"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "metrics.jsonl").is_file() and (run_dir / "metrics.jsonl").stat().st_size:
            return proc, run_dir
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"training did not start: {proc.communicate()[1][-2000:]}")


# ------------------------------------------------------------------ 1. one writer per run
def test_lock_is_exclusive_released_on_exit_and_probing_never_takes_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    assert runlock.holder(run) is None
    with runlock.hold(run, "dsm train test") as info:
        held = runlock.holder(run)
        assert held["pid"] == os.getpid() and held["command"] == "dsm train test" and info["since"]
        with pytest.raises(Exception, match=f"is being trained by process {os.getpid()} since"):
            with runlock.hold(run):
                pass
    assert runlock.holder(run) is None
    with runlock.hold(run):  # released: the next writer gets it
        pass


def test_lock_of_a_process_killed_with_9_is_released_by_the_os(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    code = (f"import time; from dsmcli import runlock\nwith runlock.hold({str(run)!r}, 'holder'):\n"
            f"    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.stdout.readline().strip() == "held"
    assert runlock.holder(run)["pid"] == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert runlock.holder(run) is None
    with runlock.hold(run):
        pass


def test_second_writer_is_refused_and_readers_work_while_a_run_trains(tiny_config, tmp_path):
    runs_dir = tmp_path / "runs"
    proc, run_dir = start_long_training(tiny_config, runs_dir)
    try:
        before = {k: v for k, v in snapshot(run_dir).items() if k in ("config.yaml", "meta.json")}
        r = dsm_process("train", "--resume", run_dir, "train.steps=20000000")
        assert r.returncode == 2, r.stderr
        assert f"{run_dir} is being trained by process {proc.pid} since" in r.stderr and "Traceback" not in r.stderr
        assert {k: v for k, v in snapshot(run_dir).items() if k in before} == before  # the refusals wrote nothing
        assert runs.run_row(run_dir)["status"] == "running"
        r = dsm_process("eval", run_dir)
        assert r.returncode == 0, r.stderr
        assert f"is being trained by process {proc.pid}" in r.stderr and "using its newest complete checkpoint, step" in r.stderr
        r = dsm_process("sample", run_dir, "--n", 50, "sample.steps=5")
        assert r.returncode == 0, r.stderr
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    # 8. a run killed with -9 is not "running" forever
    assert runs.run_row(run_dir)["status"] == "died"
    r = dsm_process("sample", run_dir, "--n", 50, "sample.steps=5")
    assert r.returncode == 0 and "stopped without a final status" in r.stderr, r.stderr
    records = runs.MetricsLog(run_dir / "metrics.jsonl").read()
    steps = [rec["step"] for rec in records]
    assert steps == sorted(set(steps))  # strictly increasing: one writer appended them


def test_two_resumes_at_once_one_trains_the_other_is_refused(tiny_config, tmp_path):
    runs_dir = tmp_path / "runs"
    r = dsm("train", "--config", tiny_config, "--runs-dir", runs_dir, "train.steps=100", "train.log_every=100",
            "train.eval_every=100000", "train.ckpt_every=100000")
    assert r.exit_code == 0, r.output
    run_dir = runs_dir / "tiny" / "v001"
    assert "may be set here" in one_error_line(dsm("train", "--resume", run_dir, "train.log_every=10"))
    # the lock is taken before the build, so the winner holds it for ≥ 10 s of training:
    # far longer than the two start-ups can drift apart
    cmd = [*DSM, "train", "--resume", str(run_dir), "train.steps=20000"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], [o[1][-1500:] for o in outs]
    assert "is being trained by process" in outs[codes.index(2)][1]
    steps = [rec["step"] for rec in runs.MetricsLog(run_dir / "metrics.jsonl").read()]
    assert steps == list(range(100, 20001, 100))
    assert strict_json(run_dir / "summary.json")["status"] == "completed"


# ------------------------------------------------------------------ 2, 3. refusals change nothing
def test_resume_that_cannot_load_the_checkpoint_is_refused_and_changes_nothing(trained):
    cfg = yaml.safe_load((trained / "config.yaml").read_text())
    cfg["model"]["hidden"] = [32, 32]
    (trained / "config.yaml").write_text(yaml.safe_dump(cfg))
    before = snapshot(trained)
    err = one_error_line(dsm("train", "--resume", trained, "train.steps=80"))
    assert "differs from the config the run started with (model.hidden: [16, 16] → [32, 32])" in err
    assert snapshot(trained) == before
    # A run without the recorded start config (or a library that renamed parameters): the
    # checkpoint check names the first parameter that does not fit.
    meta = json.loads((trained / "meta.json").read_text())
    meta.pop("config")
    (trained / "meta.json").write_text(json.dumps(meta))
    before = snapshot(trained)
    err = one_error_line(dsm("train", "--resume", trained, "train.steps=80"))
    assert "its checkpoints do not fit the configured model: parameter ['params']" in err
    assert "float32[16] in the checkpoint but float32[32] in the configured model" in err
    assert snapshot(trained) == before


def test_refused_resume_and_nothing_to_do_write_nothing(trained):
    before = snapshot(trained)
    err = one_error_line(dsm("train", "--resume", trained, "train.steps=20"))
    assert "already at step 40" in err
    assert snapshot(trained) == before
    r = dsm("train", "--resume", trained)
    assert r.exit_code == 0 and "already complete at step 40" in r.stderr and "nothing to do" in r.stderr
    assert snapshot(trained) == before
    r = dsm("train", "--resume", trained)  # and a plain resume keeps working after the refusals
    assert r.exit_code == 0
    r = dsm("train", "--resume", trained, "train.steps=60")
    assert r.exit_code == 0, r.output
    assert [rec["step"] for rec in runs.MetricsLog(trained / "metrics.jsonl").read()] == [10, 20, 30, 40, 50, 60]


def test_resume_of_a_run_whose_checkpoints_were_removed_does_not_restart_it(trained):
    import shutil

    shutil.rmtree(trained / "checkpoints")
    before = snapshot(trained)
    err = one_error_line(dsm("train", "--resume", trained, "train.steps=80"))
    assert "logs 40 steps but checkpoints/ holds no checkpoint" in err
    assert snapshot(trained) == before


def test_every_checkpoint_corrupt_is_refused_not_a_fresh_start(trained):
    for ckpt in (trained / "checkpoints").glob("step_*"):
        (ckpt / "state.msgpack").write_bytes(b"rot")
    before = snapshot(trained)
    err = one_error_line(dsm("train", "--resume", trained, "train.steps=80"))
    assert "every checkpoint fails its integrity check" in err and "warning" not in err
    assert snapshot(trained) == before
    assert "every checkpoint fails its integrity check" in one_error_line(dsm("eval", trained))


# ------------------------------------------------------------------ 4. self-contained runs
def test_relative_data_path_is_stored_absolute_with_its_hash_and_checked(tmp_path, monkeypatch):
    """In process (typer's CliRunner), each command in the working directory it is given."""
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    np.savez(work / "pts.npz", x=x)
    write_config(work / "c.yaml", data={"kind": "npz", "path": "pts.npz"}, objective={"kind": "dsm", "sigma": 0.3},
                 sample={"kind": "langevin", "n": 50, "steps": 5, "step_size": 0.01})
    monkeypatch.chdir(work)
    r = dsm("train", "--config", "c.yaml", "--runs-dir", tmp_path / "runs")
    assert r.exit_code == 0, r.output
    run_dir = tmp_path / "runs" / "c" / "v001"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["path"] == str(work / "pts.npz")
    entry = json.loads((run_dir / "meta.json").read_text())["data_files"][0]
    assert entry["key"] == "data.path" and entry["as_written"] == "pts.npz" and entry["path"] == str(work / "pts.npz")
    assert entry["files"][0]["sha256"] == hashlib.sha256((work / "pts.npz").read_bytes()).hexdigest()
    np.savez(elsewhere / "pts.npz", x=x + 100)  # a different file of the same name where eval runs
    monkeypatch.chdir(elsewhere)
    for args in (["eval", run_dir], ["sample", run_dir], ["train", "--resume", run_dir, "train.steps=60"]):
        r = dsm(*args)
        assert r.exit_code == 0, (args, r.output)
    evaluation = (run_dir / "eval.json").read_text()
    np.savez(work / "pts.npz", x=x * 2)
    before = snapshot(run_dir)
    r = dsm("eval", run_dir)
    assert r.exit_code == 2 and "changed since the run started" in r.stderr and str(work / "pts.npz") in r.stderr
    (work / "pts.npz").unlink()
    r = dsm("sample", run_dir)
    assert r.exit_code == 2 and "(given as 'pts.npz' when the run started) no longer exists" in r.stderr
    assert snapshot(run_dir) == before and (run_dir / "eval.json").read_text() == evaluation


# ------------------------------------------------------------------ 5. atomic writes
def test_atomic_file_keeps_the_old_content_when_a_write_fails(tmp_path):
    target = tmp_path / "plot.png"
    target.write_bytes(b"good plot")
    with pytest.raises(OSError) as e:
        with fsio.atomic_file(target) as f:
            f.write(b"half")
            raise OSError(28, "No space left on device")
    assert e.value.filename == str(target) and target.read_bytes() == b"good plot"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]  # no temporary left


def test_publish_new_never_overwrites_never_follows_symlinks_and_is_race_free(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "a.npz").symlink_to(victim)  # planted by someone who can write to samples/
    names = lambda: (samples / (f"a-{i}.npz" if i > 1 else "a.npz") for i in range(1, 10_000))  # noqa: E731
    got = fsio.publish_new(names(), lambda f: f.write(b"one"))
    assert got == samples / "a-2.npz" and victim.read_text() == "precious"
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(fsio.publish_new(names(), lambda f: f.write(b"%d" % i))))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 8 and all(p.read_bytes().isdigit() for p in results)
    assert not [p for p in samples.iterdir() if fsio.is_temporary(p.name)]


def test_leftover_temporaries_of_dead_writers_are_removed_and_live_ones_kept(trained):
    samples = trained / "samples"
    samples.mkdir(exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = fsio._HOST
    stale = samples / f".x.npz.tmp-{host}-{dead.pid}-abc123"
    live = samples / f".y.npz.tmp-{host}-{os.getpid()}-abc123"
    stale.write_bytes(b"partial")
    live.write_bytes(b"in progress")
    r = dsm("sample", trained, "--n", 20, "sample.steps=3")
    assert r.exit_code == 0, r.output
    assert not stale.exists() and live.exists()


def test_full_disk_on_a_plot_names_the_plot_and_keeps_the_earlier_one(trained):
    import resource

    assert dsm("eval", trained).exit_code == 0
    plot = trained / "plots" / "loss.png"
    good = plot.read_bytes()

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(good) // 2, len(good) // 2))

    r = subprocess.run([*DSM, "eval", str(trained)], capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "cannot write '" in r.stderr and "/plots/" in r.stderr and "'?'" not in r.stderr and "Traceback" not in r.stderr
    assert plot.read_bytes() == good
    assert not [p for p in (trained / "plots").iterdir() if fsio.is_temporary(p.name)]


def test_json_files_hold_null_not_nan():
    assert fsio.dumps({"a": float("nan"), "b": [float("inf"), 1.5], "c": np.float32(2.0)}) == \
        '{"a": null, "b": [null, 1.5], "c": 2.0}'


# ------------------------------------------------------------------ 6. bounded bad input
def _no_runs(tmp_path):
    return not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))


def test_npz_whose_header_claims_a_huge_array_is_refused_unread(tmp_path):
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 2), np.float32))
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as z:
        z.writestr("x.npy", buf.getvalue().replace(b"(2, 2)", b"(1000000000000, 2)"))
    assert (tmp_path / "bomb.npz").stat().st_size < 400
    cfg = write_config(tmp_path / "c.yaml", data={"kind": "npz", "path": str(tmp_path / "bomb.npz")})
    err = one_error_line(dsm("train", "--config", cfg, "--runs-dir", tmp_path / "runs"))
    assert "claims shape (1000000000000, 2)" in err and "the file is damaged" in err
    assert _no_runs(tmp_path)


def test_mnist_npz_that_is_not_a_zip_and_a_plain_npy(tmp_path):
    (tmp_path / "m.npz").write_text("not a zip")
    cfg = write_config(tmp_path / "c.yaml", data={"kind": "mnist", "path": str(tmp_path / "m.npz")})
    assert "is not an .npz archive" in one_error_line(dsm("train", "--config", cfg, "--runs-dir", tmp_path / "runs"))
    np.save(tmp_path / "x.npy", np.zeros((10, 2)))
    os.replace(tmp_path / "x.npy", tmp_path / "x.npz")  # an .npy under an .npz name
    cfg = write_config(tmp_path / "c.yaml", data={"kind": "npz", "path": str(tmp_path / "x.npz")})
    assert "is not an .npz archive" in one_error_line(dsm("train", "--config", cfg, "--runs-dir", tmp_path / "runs"))
    assert _no_runs(tmp_path)


def test_seeds_and_steps_must_fit_jax_keys(tmp_path, trained):
    fresh = tmp_path / "fresh"
    cfg = write_config(tmp_path / "c.yaml", {"seed": 2**64})
    err = one_error_line(dsm("train", "--config", cfg, "--runs-dir", fresh))
    assert "seed: must be an integer from 0 to 4294967295" in err
    err = one_error_line(dsm("train", "--config", cfg, "--runs-dir", fresh, "seed=4294967296"))
    assert "larger seeds would repeat smaller ones" in err
    err = one_error_line(dsm("train", "--config", cfg, "--runs-dir", fresh, "seed=1", "train.steps=1e13"))
    assert "train.steps: Input should be less than or equal to 2147483647" in err
    before = snapshot(trained)
    assert "--seed: must be an integer from 0 to 4294967295" in one_error_line(dsm("sample", trained, "--seed", 2**64))
    assert not fresh.exists() and snapshot(trained) == before


def test_compare_base_that_is_a_yaml_list(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "c.yaml").write_text("name: c\nbase: list.yaml\nvariants: [{name: a}]\n")
    err = one_error_line(dsm("compare", "--config", tmp_path / "c.yaml", "--runs-dir", tmp_path / "runs"))
    assert "holds a YAML list, not an experiment config" in err
    assert _no_runs(tmp_path)


@pytest.mark.parametrize("override, words", [
    ("data.n_train=1e12", ["data.kind gmm needs ≈", "lower data.n_train"]),
    ("train.batch_size=1000000000", ["the training step (train.batch_size 1000000000", "lower train.batch_size"]),
    ("model.hidden=[1e9]", ["(5,000,000,002 parameters", "use a smaller network"]),
    ("train.steps=2000000000", ["the training step", "2000000000 steps per dispatch", "train.log_every"]),
])
def test_sizes_beyond_the_machine_are_refused_before_anything_is_allocated(tmp_path, tiny_config, override, words):
    extra = ["train.log_every=2e9", "train.eval_every=2e9", "train.ckpt_every=2e9"] if "steps" in override else []
    t0 = time.perf_counter()
    err = one_error_line(dsm("train", "--config", tiny_config, "--runs-dir", tmp_path / "runs", override, *extra))
    assert all(w in err for w in words), err
    assert "available on this machine" in err and time.perf_counter() - t0 < 60
    assert _no_runs(tmp_path)


def test_sample_size_beyond_the_machine_is_refused(trained):
    before = snapshot(trained)
    err = one_error_line(dsm("sample", trained, "--n", 10**12))
    assert "sample.n 1000000000000 particles" in err and "lower sample.n" in err
    assert snapshot(trained) == before


def test_memory_limit_from_the_environment(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setenv("DSM_MEMORY_LIMIT", "1M")
    err = one_error_line(dsm("train", "--config", tiny_config, "--runs-dir", tmp_path / "runs", "data.n_train=100000"))
    assert "(DSM_MEMORY_LIMIT)" in err and "1.0 MiB are available" in err


def test_yaml_alias_bombs_are_refused_fast_with_a_short_message(tmp_path):
    lines = ['a0: &a0 ["xxxxxxxx", "xxxxxxxx", "xxxxxxxx", "xxxxxxxx", "xxxxxxxx", "xxxxxxxx", "xxxxxxxx", "xxxxxxxx"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 8) + "]")
    body = "\n".join(lines)
    for n_levels in (7, 9):  # the 455-byte message bomb and the 555-byte hang of the issue, and more
        text = "\n".join(body.splitlines()[: n_levels + 1]) + f"\nseed: *a{n_levels}\n"
        (tmp_path / "bomb.yaml").write_text("x_" + text.replace("\na", "\nx_a"))
        t0 = time.perf_counter()
        err = one_error_line(dsm("train", "--config", tmp_path / "bomb.yaml", "--runs-dir", tmp_path / "runs"))
        assert time.perf_counter() - t0 < 10 and len(err) < 400, (len(err), err[:500])
        assert "expands to more than 100000 values" in err
    assert _no_runs(tmp_path)


def test_yaml_duplicate_keys_are_errors_with_their_lines_and_merges_still_work(tmp_path, tiny_config):
    text = Path(tiny_config).read_text() + "train:\n  steps: 5\n"
    (tmp_path / "dup.yaml").write_text(text)
    first = text.splitlines().index("train:") + 1
    err = one_error_line(dsm("train", "--config", tmp_path / "dup.yaml", "--runs-dir", tmp_path / "runs"))
    assert f"duplicate key 'train' (first given at line {first})" in err and f"line {len(text.splitlines()) - 1}" in err
    from dsmcli.config import parse_yaml

    assert parse_yaml("base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  b: 3\n", "t")["x"] == {"a": 1, "b": 3}
    with pytest.raises(Exception, match="duplicate key 'a'"):
        parse_yaml("x: {a: 1, a: 2}", "t")
    assert _no_runs(tmp_path)


def test_devices_fifos_and_directories_as_data_path_say_what_they_are(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    cases = {"/dev/zero": "is a character device, not a regular file", str(fifo): "is a FIFO, not a regular file",
             str(tmp_path): "is a directory, not a regular file"}
    for path, text in cases.items():
        for kind in ("npz", "ratings"):
            cfg = write_config(tmp_path / "c.yaml", data={"kind": kind, "path": path})
            err = one_error_line(dsm("train", "--config", cfg, "--runs-dir", tmp_path / "runs"))
            assert f"'{path}' {text}" in err, err
    cfg = write_config(tmp_path / "c.yaml", data={"kind": "mnist", "path": "/dev/zero"})
    assert "is a character device" in one_error_line(dsm("train", "--config", cfg, "--runs-dir", tmp_path / "runs"))
    assert "file '/dev/zero' is a character device" in one_error_line(dsm("train", "--config", "/dev/zero"))
    assert _no_runs(tmp_path)


def test_long_names_are_refused_before_anything_is_created(tmp_path, tiny_config):
    err = one_error_line(dsm("train", "--config", tiny_config, "--runs-dir", tmp_path / "runs", "--name", "n" * 300))
    assert "name: String should have at most 100 characters" in err and "--runs-dir" not in err
    assert not (tmp_path / "runs").exists()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"name": "c" * 250, "base": Path(tiny_config).name,
                                                     "variants": [{"name": "a"}]}))
    err = one_error_line(dsm("compare", "--config", tmp_path / "c.yaml", "--runs-dir", tmp_path / "runs"))
    assert "name: String should have at most 92 characters" in err
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"name": "c" * 60, "base": Path(tiny_config).name,
                                                     "variants": [{"name": "v" * 50}]}))
    err = one_error_line(dsm("compare", "--config", tmp_path / "c.yaml", "--runs-dir", tmp_path / "runs"))
    assert "its runs are named" in err and "at most 100" in err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ 7. damaged files
def test_damaged_summary_is_listed_as_damaged_and_refused_by_resume(trained, tiny_config, runs_dir):
    r = dsm("train", "--config", tiny_config, "--name", "healthy")
    assert r.exit_code == 0
    (trained / "summary.json").write_text('"done"')
    rows = {r["name"]: r for r in runs.list_runs(runs_dir)}
    assert rows["tiny"]["status"] == "damaged (summary.json: holds a JSON str, not an object)"
    assert rows["healthy"]["status"] == "completed"
    r = dsm("runs")
    assert r.exit_code == 0 and "damaged" in r.stdout and "healthy" in r.stdout
    before = snapshot(trained)
    err = one_error_line(dsm("train", "--resume", trained, "train.steps=80"))
    assert "is damaged (summary.json: holds a JSON str, not an object)" in err
    assert snapshot(trained) == before


def test_damaged_metrics_line_is_refused_by_resume_but_a_torn_last_line_is_not(trained):
    log = trained / "metrics.jsonl"
    good = log.read_text()
    log.write_text(good + "[1, 2]\n")
    before = snapshot(trained)
    err = one_error_line(dsm("train", "--resume", trained, "train.steps=80"))
    assert "metrics.jsonl: line 5 is not an object with an integer 'step'" in err
    assert snapshot(trained) == before
    assert runs.list_runs(trained.parents[1])[0]["status"] == "completed"  # the listing goes on
    log.write_text(good + '{"step": 50, "lo')  # a write cut short by a crash
    r = dsm("train", "--resume", trained, "train.steps=60")
    assert r.exit_code == 0, r.output
    assert [rec["step"] for rec in runs.MetricsLog(log).read()] == [10, 20, 30, 40, 50, 60]


def test_damaged_checkpoint_manifest_and_fd_cache_are_not_fatal(trained, tmp_path, monkeypatch):
    newest = sorted((trained / "checkpoints").glob("step_*"))[-1]
    (newest / "manifest.json").write_text("[]")
    r = dsm("eval", trained)
    assert r.exit_code == 0 and "is corrupt (manifest.json is not a JSON object); using step_00000020" in r.stderr
    assert json.loads((trained / "eval.json").read_text())["step"] == 20
    from dsmcli.metrics import fd

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    x = np.random.default_rng(0).random((60, 4)).astype(np.float32)
    y = np.arange(60) % 3
    first = fd.feature_weights(x, y)
    for cached in (tmp_path / "cache" / "dsm" / "fd").iterdir():
        cached.write_bytes(b"damaged")
    again = fd.feature_weights(x, y)
    np.testing.assert_array_equal(first[0], again[0])


# ------------------------------------------------------------------ 8. no silent success
def test_skipping_every_step_fails_the_run(tmp_path, tiny_config):
    r = dsm("train", "--config", tiny_config, "--runs-dir", tmp_path / "runs", "train.on_nonfinite=skip_step",
            "optim.lr=1e30", "train.steps=200", "train.max_consecutive_skips=30")
    assert r.exit_code == 1, r.output
    assert "30 consecutive skipped steps" in r.stderr and "the last at step 3" in r.stderr
    run_dir = tmp_path / "runs" / "tiny" / "v001"
    summary = strict_json(run_dir / "summary.json")
    assert summary["status"] == "failed" and "consecutive skipped" in summary["error"]
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda t: pytest.fail(f"bare {t} in metrics.jsonl"))
    r = dsm("sample", run_dir, "--n", 20, "sample.steps=3")
    assert r.exit_code == 0 and "failed (training diverged: 30 consecutive skipped" in r.stderr
    assert "using its last good checkpoint, step" in r.stderr


def test_runs_shows_the_freshest_metric_with_its_step(trained, runs_dir):
    assert dsm("eval", trained).exit_code == 0
    assert dsm("train", "--resume", trained, "train.steps=60").exit_code == 0
    row = runs.list_runs(runs_dir)[0]
    summary = strict_json(trained / "summary.json")
    assert row["score_error"] == summary["score_error"] and row["score_error_step"] == 60
    (trained / "eval.json").write_text(json.dumps({"step": 60, "score_error": 0.5}))
    assert runs.list_runs(runs_dir)[0]["score_error"] == 0.5  # same step: the evaluation wins the tie
    (trained / "eval.json").write_text(json.dumps({"step": 40, "score_error": 0.5}))
    summary["metric_steps"]["score_error"] = 20
    (trained / "summary.json").write_text(json.dumps(summary))
    row = runs.list_runs(runs_dir)[0]
    assert (row["score_error"], row["score_error_step"]) == (0.5, 40)
    assert "0.5 @40" in dsm("runs").stdout


# ------------------------------------------------------------------ 9. 1-D and high-D data
@pytest.mark.parametrize("means", [[[-2.0], [2.0]], [[-2.0] * 5, [2.0] * 5]], ids=["1-D", "5-D"])
def test_one_and_five_dimensional_data_train_sample_and_plot(tmp_path, means):
    cfg = write_config(tmp_path / "c.yaml", data={"kind": "gmm", "means": means, "stds": [0.5, 0.5], "weights": [0.3, 0.7],
                                                  "n_train": 512, "n_test": 256})
    r = dsm("train", "--config", cfg, "--runs-dir", tmp_path / "runs")
    assert r.exit_code == 0, r.output
    run_dir = Path(r.stdout.strip().splitlines()[-1])
    r = dsm("sample", run_dir, "--n", 100, "sample.steps=5")
    assert r.exit_code == 0, r.output
    npz = Path(r.stdout.strip().splitlines()[-1])
    assert np.load(npz)["x"].shape == (100, len(means[0])) and npz.with_suffix(".png").stat().st_size > 1000
    assert dsm("eval", run_dir).exit_code == 0


# ------------------------------------------------------------------ found after the list
def test_a_reader_racing_the_checkpoint_rotation_lists_again(trained, monkeypatch):
    from dsmcli import checkpoint

    real, calls = checkpoint.load, []

    def vanishing_once(path, target):
        calls.append(path.name)
        if len(calls) == 1:
            raise checkpoint.VanishedCheckpoint(str(path))  # deleted by the writer between list and read
        return real(path, target)

    monkeypatch.setattr(checkpoint, "load", vanishing_once)
    r = dsm("eval", trained)
    assert r.exit_code == 0, r.output
    assert calls == ["step_00000040", "step_00000040"] and json.loads((trained / "eval.json").read_text())["step"] == 40


def test_yaml_nested_too_deeply_or_too_large_and_binary_configs(tmp_path):
    cases = {"deep.yaml": ("x: " + "[" * 50_000, "nested too deeply"),
             "huge.yaml": ("x: " + "a" * (1 << 21), "a config is at most"),
             "binary.yaml": (b"\xff\xfe\x00garbage", "is not a UTF-8 text file")}
    for name, (content, words) in cases.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
        err = one_error_line(dsm("train", "--config", tmp_path / name, "--runs-dir", tmp_path / "runs"))
        assert words in err and len(err) < 300, err
    assert _no_runs(tmp_path)


def test_a_file_where_a_directory_belongs_is_a_clear_error(trained):
    import shutil

    shutil.rmtree(trained / "plots", ignore_errors=True)
    (trained / "plots").write_text("not a directory")
    err = one_error_line(dsm("eval", trained))
    assert "cannot write" in err and "plots" in err


def test_a_run_whose_config_was_deleted_is_listed_as_damaged(trained, runs_dir):
    (trained / "config.yaml").unlink()
    row = runs.list_runs(runs_dir)[0]
    assert row["status"] == "damaged (config.yaml: missing)"
    assert dsm("runs").exit_code == 0
