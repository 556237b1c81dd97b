"""``benchmarks/bench_unet_layers.py``: the layers it times are ``ncsn_conv``'s, at the resolution
each runs at, and its JAX timers compute what they claim (no torch needed)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_unet_layers as bench  # noqa: E402


def test_layers_are_the_networks_at_their_resolutions():
    layers = {layer["name"]: layer for layer in bench.layers("8x8x1")}
    convs = [v for v in layers.values() if v["kind"] == "conv"]
    norms = [v for v in layers.values() if v["kind"] == "groupnorm+silu"]
    assert len(convs) == 15 and len(norms) == 11  # stem, 4 blocks × 2 (+3 skips), out; 2 per block + norm_out
    assert sorted((v["name"], v["k"]) for v in convs if v["k"] == 1) == [("down.1.skip", 1), ("up.0.skip", 1),
                                                                           ("up.1.skip", 1)]
    assert layers["stem"]["hw"] == layers["up.1.conv1"]["hw"] == layers["out"]["hw"] == (8, 8)
    assert layers["down.1.conv1"]["hw"] == layers["mid.conv2"]["hw"] == layers["up.0.conv1"]["hw"] == (4, 4)
    assert (layers["up.1.conv1"]["cin"], layers["up.1.conv1"]["cout"]) == (96, 32)  # 64 up-sampled + 32 skipped
    assert layers["up.0.norm1"]["channels"] == 128 and layers["up.0.norm1"]["groups"] == 8
    assert [v["name"] for v in bench.layers("8x8x1")][0] == "stem"


def test_jax_timers_compute_every_output():
    """Each timer's result is the scan's carry: the layer's output and every gradient, all finite."""
    import jax
    import numpy as np

    small = [{"name": "c", "kind": "conv", "hw": (4, 4), "k": 3, "cin": 2, "cout": 3},
             {"name": "n", "kind": "groupnorm+silu", "hw": (4, 4), "channels": 8, "groups": 8}]
    timers = bench.jax_timers(small)
    assert set(timers) == {(n, m) for n in ("c", "n") for m in bench.MODES}
    y, (dp, dx) = timers[("c", "forward + backward")]()
    assert y.shape == (bench.BATCH, 4, 4, 3) and dx.shape == (bench.BATCH, 4, 4, 2)
    assert set(dp) == {"kernel", "bias"} and all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(dp))
    assert timers[("n", "forward")]().shape == (bench.BATCH, 4, 4, 8)
