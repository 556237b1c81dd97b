"""Network kinds: every registered model builds for D = 2 and D = 5 with the documented output
shapes, its parameters are a deterministic function of the seed, and rows are processed
independently (the losses and samplers rely on it)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dsmcli import models

B = 32


def tiny_config(kind: str, **extra):
    """The kind's Config with its defaults, made tiny (hidden width 12, whatever the field's shape)."""
    cls = models.REGISTRY[kind].Config
    raw = {"kind": kind}
    if "hidden" in cls.model_fields:
        default = cls.model_fields["hidden"].get_default(call_default_factory=True)
        raw["hidden"] = [12, 12] if isinstance(default, list) else 12
    if "channels" in cls.model_fields:
        raw["channels"] = [4, 8]
    raw.update(extra)
    return cls.model_validate(raw)


# Every registered kind (a new one is picked up automatically), plus the mlp autoencoder.
CASES = [pytest.param(kind, {}, id=kind) for kind in models.REGISTRY]
CASES.append(pytest.param("mlp", {"latent": 3}, id="mlp-latent"))
CASES.append(pytest.param("conv", {"latent": 3}, id="conv-latent"))

# Image networks get square images instead of D = 2 and D = 5.
IMAGE_DIMS = {2: (4, 4), 5: (8, 8)}


def for_images(kind) -> bool:
    return getattr(models.REGISTRY[kind], "NEEDS_IMAGES", False)


def build(kind, extra, dim, seed=0):
    shape = IMAGE_DIMS[dim] if for_images(kind) else None
    return models.build(tiny_config(kind, **extra), shape[0] * shape[1] if shape else dim, nnx.Rngs(params=seed),
                        image_shape=shape)


def outputs(model, kind, extra, x):
    """Every array the model exposes: __call__ (at σ = 0.7 for noise-conditional networks), and
    encode/energy where it has them."""
    out = {"call": model(x, 0.7) if getattr(model, "noise_conditional", False) else model(x)}
    if kind == "tied_dae" or extra.get("latent"):
        out["encode"] = model.encode(x)
    if extra.get("latent"):
        out["decode"] = model.decode(out["encode"])
    if kind == "tied_dae":
        out["energy"] = model.energy(x, 0.3)
    return out


def param_leaves(model):
    return [np.asarray(a) for a in jax.tree.leaves(nnx.split(model)[1])]


def test_registry_and_default():
    assert models.DEFAULT_KIND in models.REGISTRY
    for kind, module in models.REGISTRY.items():
        assert module.Config().kind == kind


@pytest.mark.parametrize("dim", [2, 5])
@pytest.mark.parametrize("kind, extra", CASES)
def test_model_shapes_seeds_and_row_independence(kind, extra, dim):
    model = build(kind, extra, dim)
    width = IMAGE_DIMS[dim][0] * IMAGE_DIMS[dim][1] if for_images(kind) else dim
    rng = np.random.default_rng(dim)
    x = rng.normal(size=(B, width)).astype(np.float32)
    x_moved = x.copy()
    x_moved[0] += rng.normal(size=width).astype(np.float32) * 3.0

    graphdef, params = nnx.split(model)
    # Both batches in one compiled call: outputs at x and at x with row 0 moved.
    out, out_moved = jax.jit(lambda p, a, b: (outputs(nnx.merge(graphdef, p), kind, extra, a),
                                              outputs(nnx.merge(graphdef, p), kind, extra, b)))(params, x, x_moved)
    out = {k: np.asarray(v) for k, v in out.items()}
    out_moved = {k: np.asarray(v) for k, v in out_moved.items()}

    expected = {
        "mlp": {"call": (B, width), **({"encode": (B, extra["latent"]), "decode": (B, width)} if "latent" in extra else {})},
        "energy": {"call": (B,)},
        "tied_dae": {"call": (B, width), "encode": (B, 12), "energy": (B,)},
        "ncsn_mlp": {"call": (B, width)},
        "conv": {"call": (B, width), **({"encode": (B, extra["latent"]), "decode": (B, width)} if "latent" in extra else {})},
        "ncsn_conv": {"call": (B, width)},
    }.get(kind)
    if expected is not None:
        assert {k: v.shape for k, v in out.items()} == expected
    else:  # a kind added later: a score/reconstruction (B, D) or an energy (B,)
        assert out["call"].shape in ((B, width), (B,))
    if "decode" in out:  # the autoencoder is decode ∘ encode
        np.testing.assert_array_equal(out["call"], out["decode"])

    for name, value in out.items():
        assert value.dtype == np.float32 and np.all(np.isfinite(value)), name
        # Moving row 0 changes row 0 and leaves every other row bit-identical.
        np.testing.assert_array_equal(out_moved[name][1:], value[1:], err_msg=name)
        assert not np.array_equal(out_moved[name][0], value[0]), name

    # Parameters: a deterministic function of the seed, different for another seed.
    same = param_leaves(build(kind, extra, dim, seed=0))
    other = param_leaves(build(kind, extra, dim, seed=1))
    mine = param_leaves(model)
    assert len(mine) == len(same) == len(other) > 0
    assert all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(mine, same))
    assert any(not np.array_equal(a, b) for a, b in zip(mine, other))
    assert all(np.all(np.isfinite(a)) for a in mine)


def test_tied_dae_formulas():
    """r(x) = Wᵀ sigmoid(Wx + b) + c, with W ~ N(0, init_scale²/D) and b = c = 0 at init."""
    cfg = tiny_config("tied_dae", init_scale=2.0)
    dim = 5
    model = models.build(cfg, dim, nnx.Rngs(params=0))
    W, b, c = (np.asarray(a, np.float64) for a in (model.W[...], model.b[...], model.c[...]))
    assert W.shape == (cfg.hidden, dim) and not b.any() and not c.any()
    x = np.random.default_rng(1).normal(size=(B, dim))
    r = np.asarray(jax.jit(model.__call__)(jnp.asarray(x, jnp.float32)), np.float64)
    h = 1 / (1 + np.exp(-(x @ W.T + b)))
    np.testing.assert_allclose(r, h @ W + c, rtol=1e-5, atol=1e-5)
    # The init scale: the std of W's entries is init_scale/√D (2000 entries: SE of the std ≈ 1.6%).
    big = models.build(tiny_config("tied_dae", init_scale=2.0, hidden=400), dim, nnx.Rngs(params=0))
    assert abs(np.std(np.asarray(big.W[...])) - 2.0 / np.sqrt(dim)) < 0.1 * 2.0 / np.sqrt(dim)
