"""``benchmarks/bench_ncsn_conv.py``: the PyTorch twin is dsm's ``ncsn_conv`` (same parameter
count, same forward pass, same loss and gradients once the weights are copied), and every timed
contender consumes what it claims to time. Tiny batches; skipped without torch."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_ncsn_conv as bench  # noqa: E402


@pytest.fixture(scope="module")
def digits_exp(tmp_path_factory):
    """The benchmark's 8×8×1 experiment (channels [32, 64]), batch 4, one step per dispatch."""
    return bench.build_experiment("8x8x1", tmp_path_factory.mktemp("ncsn"), batch=4, steps=1)


@pytest.fixture(scope="module")
def tiny_exp(tmp_path_factory):
    """A one-level U-Net (channels [8]) on the digits: the trainer's scan compiles in seconds."""
    return bench.build_experiment("8x8x1", tmp_path_factory.mktemp("tiny"), batch=4, steps=1, channels=(8,))


def test_twin_has_dsm_parameter_count(digits_exp):
    twin = bench.torch_twin(digits_exp)
    assert bench.jax_param_count(digits_exp.params) == 331_713
    assert sum(p.numel() for p in twin.parameters()) == 331_713


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_twin_forward_matches_dsm(digits_exp, layout):
    fmt = torch.channels_last if layout == "channels_last" else None
    out = bench.forward_agreement(digits_exp, bench.torch_twin(digits_exp, fmt), n=4, memory_format=fmt)
    assert out["max_abs_score"] > 1.0  # σ down to 0.01: a real output, not zeros
    assert out["rel"] < 1e-5, out


def test_twin_loss_and_gradients_match_dsm(tiny_exp):
    """The objective's own loss (its level and noise draws replayed on the PyTorch side) and its
    gradient, leaf by leaf in PyTorch's layout (the one-level network: every kind of layer,
    a skip convolution included, and a faster compile)."""
    import jax
    import jax.numpy as jnp

    exp = tiny_exp
    x = jnp.asarray(exp.data.x_train[:4])
    key = jax.random.key(3)
    loss_fn = lambda p: exp.objective.loss(exp.net(p), x, key, None)[0]  # noqa: E731
    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(exp.params)
    k_level, k_noise = jax.random.split(key)  # the draws of NCSN.loss (estimator dsm)
    level = np.array(jax.random.randint(k_level, (4,), 0, len(exp.objective.sigmas())))
    eps = np.array(jax.random.normal(k_noise, x.shape, x.dtype))

    twin = bench.torch_twin(exp)
    shape = bench.image_shape(exp)
    t_loss = bench.torch_loss(twin, torch.from_numpy(bench.rows_to_nchw(np.array(x), shape)),
                              torch.from_numpy(level), torch.from_numpy(bench.rows_to_nchw(eps, shape)),
                              torch.tensor(exp.objective.sigmas(), dtype=torch.float32))
    t_loss.backward()
    np.testing.assert_allclose(t_loss.item(), float(loss), rtol=1e-5)
    want = bench.weight_map(grads)
    scale = max(np.abs(w).max() for w in want.values())  # float32 sums cancel in the smallest leaves
    for name, p in twin.named_parameters():
        g, w = p.grad.numpy(), want[name]
        assert np.abs(w).max() > 0, name
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5 * scale, err_msg=name)


def _host(tree):
    import jax

    return [np.array(v) for v in jax.tree.leaves(tree)]


def test_dsm_train_dispatch_moves_every_parameter(tiny_exp):
    """The timed dsm call (one trainer dispatch) returns a state in which every parameter leaf
    has moved: no part of the backward pass can have been dropped."""
    runner = bench.DsmTrain(tiny_exp, steps=1)
    before = _host(runner.plan.state["params"])  # the state is donated: copy it first
    runner.run(0)
    after = _host(runner.plan.state["params"])
    assert len(before) > 10
    assert all(np.any(a != b) for a, b in zip(before, after))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_torch_train_step_moves_every_parameter(tiny_exp, layout):
    runner = bench.TorchTrain(bench.twin_spec(tiny_exp), steps=1, batch=4, layout=layout, threads=1)
    before = [p.detach().clone() for p in runner.net.parameters()]
    dt, dc, info = runner.run(0)
    assert info["finite"] and dt > 0
    assert all(not torch.equal(b, p) for b, p in zip(before, runner.net.parameters()))


def test_dsm_and_torch_langevin_run_finite(tiny_exp):
    dsm = bench.DsmLangevin(tiny_exp, n=4, steps=1)
    dt, _, info = dsm.run(1)
    assert info["finite"] and dsm.last.shape == (4, 64)
    spec = bench.twin_spec(tiny_exp)
    for layout in bench.LAYOUTS:
        t = bench.TorchLangevin(spec, n=4, steps=1, layout=layout, threads=1)
        assert t.run(1)[2]["finite"] and t.last.shape == (4, 64)


def test_torch_worker_builds_and_runs(tiny_exp, tmp_path):
    """The PyTorch contenders in their own process (the benchmark's default), over the pipe."""
    spec = bench.save_spec(bench.twin_spec(tiny_exp), tmp_path / "twin.npz")
    assert bench.load_spec(spec)["params_dsm"] == bench.jax_param_count(tiny_exp.params)
    worker = bench.TorchWorker()
    try:
        plan = {"steps": 1, "batch": 4, "particles": 4, "langevin_steps": 1}
        r = bench.RemoteRunner(worker, "t", spec=str(spec), workload="langevin", name="torch_channels_last_1t", plan=plan)
        dt, dc, info = r.run(0)
        assert dt > 0 and info["finite"]
        with pytest.raises(RuntimeError, match="KeyError"):
            worker.call(op="run", key="nope", seed=0)
    finally:
        worker.close()
    assert worker.proc.returncode == 0


def test_worker_checks_the_twin_so_torch_stays_out_of_the_jax_process(digits_exp, tmp_path):
    """With a worker, the parameter count and forward agreement come from the worker's PyTorch and
    equal the in-process check (the JAX process then never needs torch; ``build_runners``)."""
    spec = bench.twin_spec(digits_exp)
    inputs = bench.agreement_inputs(digits_exp)
    worker = bench.TorchWorker()
    try:
        remote = worker.call(op="checks", spec=str(bench.save_spec(spec, tmp_path / "twin.npz")),
                             inputs=str(bench.save_inputs(inputs, tmp_path / "agreement.npz")))["checks"]
    finally:
        worker.close()
    local = bench.twin_checks(spec, inputs)
    assert remote["params_torch"] == local["params_torch"] == spec["params_dsm"]
    for layout in ("nchw", "channels_last"):
        assert remote["forward_agreement"][layout]["rel"] == pytest.approx(local["forward_agreement"][layout]["rel"], abs=1e-7)
        assert remote["forward_agreement"][layout]["rel"] < bench.FORWARD_TOL


def test_ratios_compare_dsm_with_the_fastest_pytorch_contender():
    names = bench.contender_names((2, 1))
    assert names == ["dsm", "torch_nchw", "torch_channels_last", "torch_nchw_1t", "torch_channels_last_1t"]
    secs = {"dsm": 1.0, "torch_nchw": 4.0, "torch_channels_last": 2.0, "torch_nchw_1t": 3.0, "torch_channels_last_1t": 0.5}
    times = {n: [v] for n, v in secs.items()}
    infos = {n: [{"finite": True}] for n in names}
    row = bench.summarize(times, times, [{n: (v, v) for n, v in secs.items()}], infos, 10.0, names)
    assert row["torch_best_layout"] == "torch_channels_last"
    assert row["dsm_over_torch_best_layout"] == pytest.approx(2.0)
    assert row["torch_best_variant"] == "torch_channels_last_1t"
    assert row["dsm_over_torch_best_variant"] == pytest.approx(0.5)
    assert row["dsm_over_torch_best_variant_per_round"] == [0.5]
    assert row["dsm_over_torch_per_cpu_second"] == pytest.approx(0.5)
