"""The benchmarks' timed training functions consume every gradient leaf.

XLA removes whatever does not reach a jitted function's outputs, so a timed loop that returns
only part of the gradient (``benchmarks/bench_conv.py`` once summed the first leaf alone) times a
backward pass with most of its work deleted. Here each timed function is run for one step from
known parameters and every parameter leaf of its output must have moved: for ``bench_conv``'s
SGD step by exactly ``-LR·g`` (``g`` the gradient computed separately), the same in all four
contenders; at all for the Adam steps of ``bench_jax`` and ``bench_objectives`` (the same loop for
every objective). Small batches, one step: seconds, no torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_conv  # noqa: E402


def _host(tree):
    return [np.asarray(v) for v in jax.tree.leaves(tree)]


def _moved(before, after):
    """Indices of the leaves of ``after`` that differ from ``before`` somewhere."""
    return {i for i, (b, a) in enumerate(zip(before, after)) if np.any(a != b)}


@pytest.fixture(scope="module")
def conv_runs():
    """name -> (parameters before, after the timed call's one step), and the gradient of that
    step (library network), on a one-level U-Net: the benchmark's code, compiled faster."""
    lr, bench_conv.LR = bench_conv.LR, 1.0  # updates far above float32 rounding of the parameters
    try:
        runs = bench_conv.contenders(steps=1, batch=4, channels=(8,))
    finally:
        bench_conv.LR = lr
    out = {name: (_host(c["params"]), _host(c["call"](c["params"]))) for name, c in runs.items()}
    ref = runs["canonical_conv in scan"]
    return out, _host(jax.jit(ref["grad"])(ref["params"], 0))


@pytest.mark.parametrize("name", list(bench_conv.CONTENDERS))
def test_bench_conv_timed_call_moves_every_parameter(conv_runs, name):
    before, after = conv_runs[0][name]
    assert len(after) == len(before) > 10
    assert _moved(before, after) == set(range(len(before)))


def test_bench_conv_timed_call_is_a_step_by_the_whole_gradient(conv_runs):
    """The library network's scan returns p − g leaf by leaf (g computed on its own); the XLA
    convolution contenders return the same parameters (same network, same steps)."""
    runs, grads = conv_runs
    before, ref = runs["canonical_conv in scan"]
    assert all(np.any(g != 0) for g in grads), "a gradient leaf is identically zero: the check would miss it"
    for b, a, g in zip(before, ref, grads):
        np.testing.assert_allclose(a, b - g, rtol=1e-4, atol=1e-5)
    for name, (_, after) in runs.items():
        for r, v in zip(ref, after):
            np.testing.assert_allclose(v, r, rtol=1e-3, atol=1e-4, err_msg=name)


def test_bench_jax_bare_scan_updates_every_parameter():
    from benchmarks import bench_jax
    from benchmarks.common import SMALL, small_data

    compiled, state, x, _ = bench_jax.make_runner(SMALL, small_data(2048), length=1)
    before = _host(state[0])  # the state is donated: copy it first
    new_state, _ = compiled(state, x, np.int32(0))
    assert _moved(before, _host(new_state[0])) == set(range(len(before)))


def test_bench_objectives_loop_updates_every_parameter():
    from benchmarks import bench_objectives

    r = bench_objectives.Runner("dsm", 8, jax.device_put(bench_objectives.data(8)))
    before = _host(r.state[0])
    r._dispatch(1)
    assert _moved(before, _host(r.state[0])) == set(range(len(before)))
