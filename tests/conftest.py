"""Shared fixtures. Tests run on CPU with XLA's optimisations mostly off (tiny models compile
much faster that way), and with a per-session compilation cache."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
os.environ.setdefault("DSM_COMPILE_CACHE", os.path.join(tempfile.gettempdir(), "dsm-test-jax-cache"))

from dsmcli.jaxsetup import configure_xla_env  # noqa: E402

configure_xla_env()  # as the CLI does, before JAX starts

import pytest  # noqa: E402
import yaml  # noqa: E402

TINY = {
    "seed": 0,
    "data": {"kind": "gmm", "means": [[-2.0, -2.0], [2.0, 2.0]], "stds": [0.5, 0.5], "weights": [0.3, 0.7],
             "n_train": 512, "n_test": 256},
    "model": {"kind": "mlp", "hidden": [16, 16], "activation": "softplus"},
    "objective": {"kind": "dsm", "sigma": 0.3},
    "optim": {"kind": "adam", "lr": 3e-3},
    "train": {"steps": 40, "batch_size": 64, "log_every": 10, "eval_every": 20, "ckpt_every": 20},
    "sample": {"kind": "langevin", "n": 200, "steps": 50, "step_size": 0.01, "init": {"kind": "uniform", "low": -4, "high": 4}},
}


def pinned_to(cpus):
    """A ``preexec_fn`` that runs a subprocess on ``cpus`` only (None: every core)."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def write_config(path, overrides: dict | None = None, **sections) -> str:
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    cfg.update(sections)
    for key, value in (overrides or {}).items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


@pytest.fixture
def tiny_config(tmp_path):
    """Path of a tiny, fast experiment config (DSM on a 2-component 2-D mixture)."""
    return write_config(tmp_path / "tiny.yaml")


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    monkeypatch.setenv("DSM_RUNS", str(d))
    return d
