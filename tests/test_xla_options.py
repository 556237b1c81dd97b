"""The per-experiment XLA options of the training step: which models get YNNPACK elementwise
fusion on CPU, and that the step computes the same numbers with it (to float32 rounding)."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import pytest

from dsmcli import api, experiment, xla_options
from dsmcli.config import load_experiment
from tests.conftest import write_config


def mlp_params(widths):
    return {f"l{i}": {"kernel": jnp.zeros((a, b)), "bias": jnp.zeros((b,))} for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))}


def test_largest_dense_activation_is_batch_times_widest_layer():
    assert xla_options.largest_dense_activation(mlp_params([2, 128, 128, 2]), 512) == 512 * 128
    assert xla_options.largest_dense_activation(mlp_params([784, 1024, 1024, 784]), 256) == 256 * 1024
    conv = {"kernel": jnp.zeros((3, 3, 1, 32)), "bias": jnp.zeros((32,))}
    assert xla_options.largest_dense_activation(conv, 128) is None


@pytest.mark.parametrize("widths, batch, on", [([2, 128, 128, 2], 512, True),        # SMALL benchmark: 65 536
                                               ([784, 1024, 1024, 784], 256, False),  # LARGE benchmark: 262 144
                                               ([2, 256, 2], 512, True),              # 2¹⁷ exactly
                                               ([2, 256, 2], 513, False)])
def test_eltwise_fusion_only_for_small_dense_networks_on_cpu(widths, batch, on, monkeypatch):
    monkeypatch.delenv("DSM_YNN_ELTWISE", raising=False)
    assert xla_options.ynn_eltwise(mlp_params(widths), batch, "cpu") is on
    assert xla_options.ynn_eltwise(mlp_params(widths), batch, "gpu") is False


def test_environment_forces_it_on_or_off_on_cpu_only(monkeypatch):
    small, large = mlp_params([2, 128, 2]), mlp_params([784, 1024, 784])
    monkeypatch.setenv("DSM_YNN_ELTWISE", "0")
    assert not xla_options.ynn_eltwise(small, 64, "cpu")
    monkeypatch.setenv("DSM_YNN_ELTWISE", "1")
    assert xla_options.ynn_eltwise(large, 256, "cpu") and not xla_options.ynn_eltwise(large, 256, "gpu")


def test_the_tiny_experiment_compiles_its_step_with_the_option(tiny_config, monkeypatch):
    monkeypatch.delenv("DSM_YNN_ELTWISE", raising=False)
    exp = experiment.build(load_experiment(tiny_config))
    opts = xla_options.for_training_step(exp.params, exp.cfg.train.batch_size)
    if jax.default_backend() == "cpu":
        assert opts == {"xla_cpu_experimental_ynn_fusion_type": xla_options.YNN_FUSIONS_WITH_ELTWISE}
    else:
        assert opts is None


def test_training_with_and_without_it_agrees_to_float32_rounding(tmp_path, runs_dir, monkeypatch):
    curves = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("DSM_YNN_ELTWISE", flag)
        cfg = write_config(tmp_path / f"f{flag}.yaml", {"train.steps": 100, "train.eval_every": 100})
        run_dir, summary = api.train(cfg, runs_dir=str(runs_dir))
        curves[flag] = [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        curves[flag].append(summary["score_error"])
    assert curves["0"] == pytest.approx(curves["1"], rel=1e-4)


REDUCTION = """
import hashlib, jax, jax.numpy as jnp, numpy as np
a = jax.random.normal(jax.random.key(0), (512, 128))
print(hashlib.sha256(np.asarray(jax.jit(lambda a: jnp.sum(a, 0))(a)).tobytes()).hexdigest())
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs at least two CPUs")
def test_reductions_do_not_depend_on_the_thread_count():
    """With jaxsetup's XLA flags a column sum is the same on one core and on all of them (with
    XLA's default YNNPACK reductions it is not: the control below)."""
    import subprocess
    import sys

    from dsmcli.jaxsetup import YNN_FLAG

    one = sorted(os.sched_getaffinity(0))[:1]
    base = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_DISABLE_MOST_OPTIMIZATIONS")}

    def digest(pin, flags):
        code = "from dsmcli.jaxsetup import configure_xla_env; configure_xla_env()\n" + REDUCTION
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             env={**base, "XLA_FLAGS": flags}, preexec_fn=pin)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    pin = lambda: os.sched_setaffinity(0, one)  # noqa: E731
    assert digest(None, "") == digest(pin, "")
    default = f"{YNN_FLAG}=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
    assert digest(None, default) != digest(pin, default)  # the control: the fault the flag removes
