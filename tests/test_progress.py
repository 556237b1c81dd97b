"""Progress within one sampling dispatch: ``progress.scan`` is ``lax.scan`` to the bit, reports
growing fractions of the dispatch to the listener ``progress.within_dispatch`` installs, and
``dsm sample`` off a terminal prints lines before its one dispatch ends."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dsmcli import progress


def _step(carry, t):
    """A Langevin-like step whose numbers depend on the step index (as the samplers' keys do)."""
    x, total = carry
    z = jax.random.normal(jax.random.fold_in(jax.random.key(0), t), x.shape)
    x = x - 0.01 * jnp.sin(x) @ jnp.array([[1.0, 0.3], [0.3, 2.0]]) + 0.1 * z
    return (x, total + jnp.sum(x)), jnp.mean(x, 0)


@pytest.mark.parametrize("n", [1, 7, 100, 101, 360])
def test_scan_is_lax_scan_bit_for_bit(n):
    x0 = jax.random.normal(jax.random.key(1), (64, 2))
    init, ts = (x0, jnp.float32(0)), jnp.arange(n)
    want = jax.jit(lambda c, t: jax.lax.scan(_step, c, t))(init, ts)
    got = jax.jit(lambda c, t: progress.scan(_step, c, t))(init, ts)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
        assert a.shape == b.shape and np.array_equal(np.asarray(a), np.asarray(b))


class _Recorder:
    mode = "plain"

    def __init__(self):
        self.seen = []

    def update(self, done, **_):
        self.seen.append(done)


@pytest.mark.parametrize("n, pieces, expected_updates", [(100, 25, 25), (360, 25, 24), (101, 25, 1), (10, 25, 10)])
def test_listener_sees_the_dispatch_advance(n, pieces, expected_updates, monkeypatch):
    """A report after each of at most ``pieces`` equal pieces of the loop (a prime length is one
    piece) but the last (the caller reports the end), growing; a dispatch of 1000 units after
    500 done ones."""
    monkeypatch.setattr(progress.within_dispatch, "PLAIN_EVERY_S", 0.0)
    bar = _Recorder()
    run = jax.jit(lambda c, t: progress.scan(_step, c, t, pieces))
    init = (jnp.ones((8, 2)), jnp.float32(0))
    with progress.within_dispatch(bar, 500, 1000):
        jax.block_until_ready(run(init, jnp.arange(n)))
    if expected_updates == 1:  # one piece: no callback; the caller's own update ends the dispatch
        assert bar.seen == []
        return
    assert len(bar.seen) == expected_updates - 1
    assert bar.seen == sorted(bar.seen) and bar.seen[0] > 500 and bar.seen[-1] == 500 + int(1000 * (expected_updates - 1) / expected_updates)
    run(init, jnp.arange(n))  # no listener outside ``within_dispatch``: nothing is reported
    jax.effects_barrier()
    assert len(bar.seen) == expected_updates - 1


def test_two_loops_share_one_dispatch(monkeypatch):
    """``before`` / ``total``: a warm-up loop and the sampling loop report one 0 → 1 progression."""
    monkeypatch.setattr(progress.within_dispatch, "PLAIN_EVERY_S", 0.0)
    bar = _Recorder()

    def both(c):
        c, _ = progress.scan(_step, c, jnp.arange(40), 4, total=100)
        return progress.scan(_step, c, jnp.arange(60), 4, before=40)

    with progress.within_dispatch(bar, 0, 100):
        jax.block_until_ready(jax.jit(both)((jnp.ones((8, 2)), jnp.float32(0))))
    assert bar.seen == [10, 20, 30, 40, 55, 70, 85]


def test_plain_mode_throttles_to_one_line_per_interval(monkeypatch):
    bar = _Recorder()
    monkeypatch.setattr(progress.within_dispatch, "PLAIN_EVERY_S", 3600.0)
    with progress.within_dispatch(bar, 0, 100):
        for f in (0.1, 0.2, 0.3):
            progress._loop_listener(f)
    assert bar.seen == []  # within the interval; the caller's update at the dispatch's end remains
    monkeypatch.setattr(progress.within_dispatch, "PLAIN_EVERY_S", 0.0)
    with progress.within_dispatch(bar, 0, 100):
        for f in (0.1, 0.2, 0.3):
            progress._loop_listener(f)
    assert bar.seen == [10, 20, 30]


def test_dsm_sample_reports_within_its_one_dispatch(tiny_config, runs_dir, monkeypatch):
    """Off a terminal, a single-dispatch sample prints particle counts below n before the end."""
    from typer.testing import CliRunner

    from dsmcli.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "--config", str(tiny_config), "--runs-dir", str(runs_dir)])
    assert res.exit_code == 0, res.output
    run_dir = res.stdout.strip().splitlines()[-1]
    monkeypatch.setattr(progress.within_dispatch, "PLAIN_EVERY_S", 0.0)
    res = runner.invoke(app, ["sample", run_dir, "--n", "300", "sample.steps=200", "--metrics", "mmd"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("sample (langevin) particle")]
    counts = [int(ln.split()[3].split("/")[0]) for ln in lines]
    assert len(counts) >= 10 and counts == sorted(counts) and counts[0] < 300 and counts[-1] == 300
    assert all("ETA" in ln for ln in lines)
