"""The convolutional NCSN (``ncsn_conv``) against a PyTorch twin of the same network: the training
step and the annealed Langevin sampler, on 8×8×1, 28×28×1 and 32×32×3 images (issue #17).

The network: dsm's ``ncsn_conv`` (``dsmcli/models/ncsn_conv.py``, ``conv_blocks.unet``): a U-Net,
channels [32, 64], GroupNorm (8 groups, ε = 1e-6), SiLU, a two-layer MLP embedding of log σ whose
per-block projection is added per channel after each residual block's first convolution, output
f(x, σ)/σ; 331 713 parameters on 8×8×1 images. The PyTorch twin (``TorchNCSN``) is the same
architecture layer for layer (asserted: equal parameter counts), the weights copied from dsm's
(``copy_weights``: flax HWIO kernels → OIHW, Linear kernels transposed, GroupNorm scale/bias); the
two forward passes on the same input and σ agree (``forward_agreement``; checked every run, and
in ``tests/test_bench_ncsn_conv.py`` with the gradients of the loss too).

Data (only shapes matter for timing; the σ schedule is dsm's for that data on both sides):

* ``8x8x1``: ``data: {kind: digits}`` (scikit-learn's 1797 digits);
* ``28x28x1``: ``data: {kind: mnist}`` reading a temporary ``.npz`` in the Keras layout
  (``x_train``, ``y_train``, ``x_test``, ``y_test``, uint8) that holds the digits upsampled 3×
  (nearest) to 24×24 and zero-padded by 2 (MNIST's frame);
* ``32x32x3``: ``data: {kind: cifar10}`` reading temporary CIFAR-10 *binary* batches
  (``data_batch_1.bin`` … ``test_batch.bin``, records of 1 label byte + 3072 CHW pixel bytes)
  that hold the digits upsampled 4× to 32×32, the three channels the grey image scaled by
  1, 0.8 and 0.6.

Both files go to a temporary directory deleted at the end; dsm reads them with its own readers,
so ``image_shape`` is set as for real MNIST / CIFAR-10 and no reader is patched.

Workloads and contenders (float32, contenders interleaved round by round, compile excluded):

* **train** (``objective.kind: ncsn``, estimator dsm: per row a uniform random level of the 10
  geometric σ levels, x̃ = x + σz, loss mean_rows ½‖σ s(x̃, σ) + z‖², Adam lr 1e-3, batch
  ``--batch``): **dsm**: the trainer's own path, ``dsmcli.train.prepare`` of the experiment
  (``optim.for_experiment`` + ``train.initial_state`` + ``train.StepFunction``, the trainer's XLA
  options, state donated), ``--steps`` steps fused per dispatch (``train.log_every``), the
  dispatch's metrics fetched and its state blocked on, as ``dsm train`` does; **PyTorch eager**:
  the same step (batch indices, levels and noise by ``torch.randint``/``torch.randn``, the loss,
  ``backward``, ``torch.optim.Adam``) in NCHW and in ``torch.channels_last`` memory format (model
  and inputs), 2 threads and 1 thread (``torch.set_num_threads``; ``--torch-threads``). On
  shared cores PyTorch's 2-thread OpenMP regions wait at their barriers for a descheduled
  thread (BENCHMARKS.md, "Load"), so the 1-thread rows are kept by default. The PyTorch
  contenders run in a worker process of their own without JAX (``TorchWorker``; in the JAX
  process their 2-thread steps were up to 15–70× slower on the shared cores), driven one
  request at a time so the interleaving is kept; ``--torch-in-process`` for comparison.
  Rate: steps/s.
* **langevin** (``dsmcli/samplers/annealed_langevin.py``, the objective's 10 levels × ``T``
  = ``--langevin-steps`` steps, ε = ``STEP_SIZE``, ``--particles`` particles started from the
  same U[0, 1) draws): **dsm**: ``annealed_langevin.run`` on the ``Target`` that
  ``dsmcli.sampling.draw`` builds (the score closes over the parameters), jit-compiled as
  ``draw`` does, both outputs (particles, MCMC trace) returned; **PyTorch**: the same updates
  x ← x + (α/2) s(x, σ) + √α z under ``torch.no_grad()``, NCHW and channels_last. Rate:
  particle-steps/s (particles × levels × T / wall time).

Every timed call consumes what it claims to time: the dsm train dispatch returns the whole new
state (parameters and Adam moments, every gradient leaf reaches it; ``tests/test_bench_ncsn_conv.py``
checks that one dispatch moves every parameter leaf), each PyTorch step updates every parameter,
the samplers return the final particles, which depend on every step.

Per workload and shape: best and median over rounds, per CPU-second of the contender's process
(median), dsm / PyTorch's faster layout at 2 threads and dsm / PyTorch's fastest contender of any
thread count (best rounds, medians, per round; per CPU-second). A contender stops repeating once
its rounds add up to ``CAP_S``.

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_ncsn_conv.py           # 3 rounds, all shapes (~10-15 min)
    .venv/bin/python benchmarks/bench_ncsn_conv.py --quick   # smoke run: 1 round, tiny sizes

Writes ``benchmarks/results_ncsn_conv.json`` and ``benchmarks/ncsn_conv.md`` (``--quick``:
``*_quick``); ``--render JSON`` rewrites the markdown of a saved run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import loadavg  # noqa: E402

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("DSM_COMPILE_CACHE", "0")  # compile time is excluded; leave the user's cache alone
from dsmcli.jaxsetup import configure_xla_env  # noqa: E402

configure_xla_env()  # the XLA flags `dsm train` / `dsm sample` run with (before JAX creates its CPU client)

import numpy as np  # noqa: E402

CHANNELS = (32, 64)
LR = 1e-3
N_SIGMAS = 10
STEP_SIZE = 2e-5  # annealed Langevin ε (Song & Ermon 2019's); α₁ = ε σ₁²/σ_L² keeps the particles finite
TORCH_THREADS = 2
CAP_S = 60.0  # a contender stops repeating once its rounds add up to this
FORWARD_TOL = 1e-4  # max |s_jax − s_torch| / max |s|, checked every run (the test asks ~1e-5)

# name -> (H, W, C); defaults per shape: training steps per dispatch, Langevin steps per level
SHAPES = {"8x8x1": (8, 8, 1), "28x28x1": (28, 28, 1), "32x32x3": (32, 32, 3)}
DEFAULT_STEPS = {"8x8x1": 10, "28x28x1": 2, "32x32x3": 2}
DEFAULT_LANGEVIN_STEPS = {"8x8x1": 3, "28x28x1": 1, "32x32x3": 1}
DEFAULTS = {"rounds": 3, "batch": 128, "particles": 128}
QUICK = {"rounds": 1, "batch": 16, "particles": 16, "steps": 2, "langevin_steps": 1}
DATA_NOTE = {
    "8x8x1": "digits (scikit-learn, 1797 images)",
    "28x28x1": "data.kind mnist on a temporary Keras-layout .npz: the digits upsampled 3× (nearest) to 24×24, "
               "zero-padded to 28×28",
    "32x32x3": "data.kind cifar10 on temporary CIFAR-10 binary batches: the digits upsampled 4× (nearest) to "
               "32×32, channels × (1, 0.8, 0.6)",
}

WORKLOADS = ("train", "langevin")
LAYOUTS = ("nchw", "channels_last")


def torch_name(layout: str, threads: int) -> str:
    return f"torch_{layout}" if threads == TORCH_THREADS else f"torch_{layout}_{threads}t"


def contender_names(torch_threads=(TORCH_THREADS, 1)) -> list[str]:
    return ["dsm", *(torch_name(lay, t) for t in torch_threads for lay in LAYOUTS)]


def parse_contender(name: str) -> tuple[str, int]:
    """(layout, threads) of a PyTorch contender's name."""
    rest = name.removeprefix("torch_")
    head, _, tail = rest.rpartition("_")
    if head and tail.endswith("t") and tail[:-1].isdigit():
        return head, int(tail[:-1])
    return rest, TORCH_THREADS


def label(name: str) -> str:
    if name == "dsm":
        return "dsm"
    layout, t = parse_contender(name)
    return f"PyTorch eager {'NCHW' if layout == 'nchw' else layout} ({t} thread{'s' if t > 1 else ''})"

UNITS = {"train": "steps/s", "langevin": "particle-steps/s"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {loadavg()}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- data


def upsampled_digits(factor: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as uint8 0…255, each pixel repeated ``factor``² times, ``pad`` zeros around:
    (N, 8·factor + 2·pad, 8·factor + 2·pad), and the labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    img = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    img = np.repeat(np.repeat(img, factor, 1), factor, 2)
    img = np.pad(img, ((0, 0), (pad, pad), (pad, pad)))
    return img, bunch.target.astype(np.uint8)


def write_mnist_npz(folder: Path) -> Path:
    """A Keras-layout MNIST ``.npz`` (28×28 uint8) of the upsampled digits."""
    img, y = upsampled_digits(3, 2)
    path = folder / "mnist_like.npz"
    np.savez(path, x_train=img[:1600], y_train=y[:1600], x_test=img[1600:], y_test=y[1600:])
    return path


def write_cifar_bin(folder: Path) -> Path:
    """CIFAR-10 binary batches (1 label byte + R, G, B 32×32 planes per record) of the upsampled
    digits: five training batches and a test batch."""
    img, y = upsampled_digits(4, 0)
    planes = np.stack([np.round(img * s).astype(np.uint8) for s in (1.0, 0.8, 0.6)], 1)  # (N, 3, 32, 32)
    records = np.concatenate([y[:, None], planes.reshape(len(img), -1)], 1).astype(np.uint8)
    out = folder / "cifar-10-batches-bin"
    out.mkdir(parents=True, exist_ok=True)
    train, test = records[:1600], records[1600:]
    for i, part in enumerate(np.array_split(train, 5), 1):
        part.tofile(out / f"data_batch_{i}.bin")
    test.tofile(out / "test_batch.bin")
    return folder


def data_section(shape: str, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    if shape == "8x8x1":
        return {"kind": "digits"}
    if shape == "28x28x1":
        return {"kind": "mnist", "path": str(write_mnist_npz(folder))}
    if shape == "32x32x3":
        return {"kind": "cifar10", "path": str(write_cifar_bin(folder))}
    raise ValueError(f"unknown shape {shape!r}; one of {', '.join(SHAPES)}")


def experiment_config(shape: str, folder: Path, batch: int, steps: int, channels=CHANNELS):
    """The validated dsm config: ncsn (dsm estimator, 10 levels), ncsn_conv, Adam lr 1e-3, ``steps``
    fused per dispatch."""
    from dsmcli import config

    raw = {
        "name": f"bench_ncsn_conv_{shape}",
        "seed": 0,
        "data": data_section(shape, folder),
        "objective": {"kind": "ncsn", "n_sigmas": N_SIGMAS},
        "model": {"kind": "ncsn_conv", "channels": list(channels)},
        "optim": {"kind": "adam", "lr": LR},
        "train": {"steps": steps * 1000, "batch_size": batch, "log_every": steps,
                  "eval_every": steps * 1000, "ckpt_every": steps * 1000},
    }
    return config.validate(raw, f"bench_ncsn_conv {shape}")


def build_experiment(shape: str, folder: Path, batch: int, steps: int, channels=CHANNELS):
    from dsmcli import experiment

    return experiment.build(experiment_config(shape, folder, batch, steps, channels))


def image_shape(exp) -> tuple[int, int, int]:
    s = tuple(exp.data.image_shape)
    return (s[0], s[1], 1) if len(s) == 2 else s


def jax_param_count(params) -> int:
    import jax

    return int(sum(np.prod(v.shape) for v in jax.tree.leaves(params)))


# ---------------------------------------------------------------------------------- PyTorch twin


@functools.cache
def _torch_classes():
    """The twin's module classes (defined on first use, so this file imports without torch)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    from dsmcli.models.group_norm import groups

    def norm(c):
        return nn.GroupNorm(groups(c), c, eps=1e-6)  # flax's GroupNorm: ε = 1e-6

    class ResBlock(nn.Module):
        def __init__(self, cin, cout, emb):
            super().__init__()
            self.norm1 = norm(cin)
            self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
            self.cond = nn.Linear(emb, cout)
            self.norm2 = norm(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

        def forward(self, x, emb):
            h = self.conv1(F.silu(self.norm1(x)))
            h = h + self.cond(emb)[:, :, None, None]
            h = self.conv2(F.silu(self.norm2(h)))
            return h + (x if self.skip is None else self.skip(x))

    class TorchNCSN(nn.Module):
        """``ncsn_conv`` in PyTorch: the same U-Net (``conv_blocks.unet``) on NCHW images."""

        def __init__(self, channels, emb, pixel_channels):
            super().__init__()
            c0 = channels[0]
            self.embed = nn.ModuleList([nn.Linear(1, emb), nn.Linear(emb, emb)])
            self.stem = nn.Conv2d(pixel_channels, c0, 3, padding=1)
            widths = [c0, *channels]
            self.down = nn.ModuleList([ResBlock(a, b, emb) for a, b in zip(widths[:-1], widths[1:])])
            self.mid = ResBlock(channels[-1], channels[-1], emb)
            ups, cin = [], channels[-1]
            for c in reversed(channels):
                ups.append(ResBlock(cin + c, c, emb))
                cin = c
            self.up = nn.ModuleList(ups)
            self.norm_out = norm(c0)
            self.out = nn.Conv2d(c0, pixel_channels, 3, padding=1)

        def forward(self, img, sigma):
            """s(img, σ) = f(img, σ)/σ, ``img`` (B, C, H, W), ``sigma`` (B,)."""
            sigma = sigma.reshape(-1, 1)
            emb = F.silu(self.embed[1](F.silu(self.embed[0](torch.log(sigma)))))
            h, skips = self.stem(img), []
            for i, block in enumerate(self.down):
                if i:
                    h = F.avg_pool2d(h, 2)
                h = block(h, emb)
                skips.append(h)
            h = self.mid(h, emb)
            for i, block in enumerate(self.up):
                if i:
                    h = F.interpolate(h, scale_factor=2, mode="nearest")
                h = block(torch.cat([h, skips.pop()], 1), emb)
            return self.out(F.silu(self.norm_out(h))) / sigma[:, :, None, None]

    return TorchNCSN


def twin_spec(exp) -> dict:
    """Everything the PyTorch side needs from a dsm experiment, as host arrays (no JAX in it, so
    it can go to a PyTorch worker process): the architecture, the weights in PyTorch's layout,
    the training images (NCHW), the σ schedule."""
    cfg = exp.cfg.model
    return {"channels": [int(c) for c in cfg.channels], "embedding": int(cfg.embedding),
            "image_shape": [int(v) for v in image_shape(exp)], "weights": weight_map(exp.params),
            "x_train": rows_to_nchw(np.asarray(exp.data.x_train, np.float32), image_shape(exp)),
            "sigmas": [float(v) for v in exp.objective.sigmas()], "params_dsm": jax_param_count(exp.params)}


def save_spec(spec: dict, path: Path) -> Path:
    meta = {k: v for k, v in spec.items() if k not in ("weights", "x_train")}
    np.savez(path, meta=np.asarray(json.dumps(meta)), x_train=spec["x_train"],
             **{f"w:{k}": v for k, v in spec["weights"].items()})
    return path


def load_spec(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        spec = json.loads(str(f["meta"]))
        spec["x_train"] = f["x_train"]
        spec["weights"] = {k[2:]: f[k] for k in f.files if k.startswith("w:")}
    return spec


def save_inputs(inputs: dict, path: Path) -> Path:
    """``agreement_inputs`` as an .npz, for the PyTorch worker."""
    np.savez(path, **{k: np.asarray(v) for k, v in inputs.items()})
    return path


def load_inputs(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        inputs = {k: f[k] for k in f.files}
    inputs["image_shape"] = [int(v) for v in inputs["image_shape"]]
    return inputs


def twin_from_spec(spec: dict, memory_format=None):
    """A ``TorchNCSN`` with the spec's weights (``memory_format``: ``torch.channels_last`` or None
    for NCHW). Asserts that its parameter count is dsm's."""
    net = _torch_classes()(spec["channels"], spec["embedding"], spec["image_shape"][2])
    n_torch = sum(p.numel() for p in net.parameters())
    assert n_torch == spec["params_dsm"], f"PyTorch twin has {n_torch} parameters, dsm's network {spec['params_dsm']}"
    copy_weights(spec["weights"], net)
    if memory_format is not None:
        net = net.to(memory_format=memory_format)
    return net


def torch_twin(exp, memory_format=None):
    """The twin of ``exp``'s network with its weights copied in (see ``twin_from_spec``)."""
    return twin_from_spec(twin_spec(exp), memory_format)


def _leaf(tree, *path):
    for p in path:
        tree = tree[p]
    return np.array(tree[...], np.float32)  # a writable copy (torch.from_numpy warns on read-only arrays)


def weight_map(params) -> dict:
    """``{torch parameter name: numpy array in PyTorch's layout}`` from dsm's parameter pytree:
    conv kernels HWIO → OIHW, Linear kernels (in, out) → (out, in), GroupNorm scale → weight."""

    def conv(*p):
        return {"weight": _leaf(params, *p, "kernel").transpose(3, 2, 0, 1), "bias": _leaf(params, *p, "bias")}

    def linear(*p):
        return {"weight": _leaf(params, *p, "kernel").T, "bias": _leaf(params, *p, "bias")}

    def norm(*p):
        return {"weight": _leaf(params, *p, "scale"), "bias": _leaf(params, *p, "bias")}

    def block(*p):
        out = {"norm1": norm(*p, "norm1"), "conv1": conv(*p, "conv1"), "cond": linear(*p, "cond"),
               "norm2": norm(*p, "norm2"), "conv2": conv(*p, "conv2")}
        if "skip" in _get(params, *p):
            out["skip"] = conv(*p, "skip")
        return out

    u = params["unet"]
    tree = {
        "embed": {str(i): linear("embed", i) for i in range(2)},
        "stem": conv("unet", "stem"),
        "down": {str(i): block("unet", "down", i) for i in range(len(u["down"]))},
        "mid": block("unet", "mid"),
        "up": {str(i): block("unet", "up", i) for i in range(len(u["up"]))},
        "norm_out": norm("unet", "norm_out"),
        "out": conv("unet", "out"),
    }
    flat = {}

    def walk(prefix, node):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(f"{prefix}{k}.", v)
            else:
                flat[prefix + k] = v

    walk("", tree)
    return flat


def _get(tree, *path):
    for p in path:
        tree = tree[p]
    return tree


def copy_weights(flat: dict, net) -> None:
    """Copy ``weight_map``'s arrays into the twin, every PyTorch parameter exactly once."""
    import torch

    named = dict(net.named_parameters())
    assert set(flat) == set(named), f"unmatched parameters: {sorted(set(flat) ^ set(named))}"
    with torch.no_grad():
        for name, p in named.items():
            src = torch.from_numpy(np.ascontiguousarray(flat[name]))
            assert tuple(src.shape) == tuple(p.shape), f"{name}: dsm {tuple(src.shape)} vs torch {tuple(p.shape)}"
            p.copy_(src)


def rows_to_nchw(x: np.ndarray, shape) -> np.ndarray:
    """(B, H·W·C) rows in H, W, C order → (B, C, H, W)."""
    h, w, c = shape
    return np.ascontiguousarray(x.reshape(len(x), h, w, c).transpose(0, 3, 1, 2))


def nchw_to_rows(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).reshape(len(x), -1)


def agreement_inputs(exp, n: int = 4, seed: int = 7) -> dict:
    """``n`` rows (training images plus σ-scaled noise, the rows' σ spread over the schedule) and
    dsm's s(x, σ) on them, as host arrays (so the comparison can run where PyTorch lives)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    sigmas = np.asarray(exp.objective.sigmas(), np.float32)
    sig = sigmas[np.linspace(0, len(sigmas) - 1, n).round().astype(int)]
    x = exp.data.x_train[rng.integers(0, len(exp.data.x_train), n)]
    x = (x + sig[:, None] * rng.standard_normal(x.shape)).astype(np.float32)
    a = np.asarray(jax.jit(lambda p, x, s: exp.net(p)(x, s))(exp.params, jnp.asarray(x), jnp.asarray(sig)))
    return {"x": x, "sigma": sig, "dsm": a, "image_shape": list(image_shape(exp))}


def twin_agreement(inputs: dict, net, memory_format=None) -> dict:
    """The twin's s(x, σ) on ``agreement_inputs``' rows against dsm's: max |Δ|, max |s| and their ratio."""
    import torch

    img = torch.from_numpy(rows_to_nchw(inputs["x"], inputs["image_shape"]))
    if memory_format is not None:
        img = img.contiguous(memory_format=memory_format)
    with torch.no_grad():
        b = nchw_to_rows(net(img, torch.from_numpy(inputs["sigma"])).numpy())
    a = inputs["dsm"]
    d = float(np.max(np.abs(a - b)))
    return {"max_abs_diff": d, "max_abs_score": float(np.max(np.abs(a))),
            "rel": d / float(np.max(np.abs(a))), "sigmas": inputs["sigma"].tolist()}


def forward_agreement(exp, net, n: int = 4, seed: int = 7, memory_format=None) -> dict:
    """dsm's s(x, σ) and the twin's on the same ``n`` rows (``agreement_inputs``, ``twin_agreement``)."""
    return twin_agreement(agreement_inputs(exp, n, seed), net, memory_format)


def twin_checks(spec: dict, inputs: dict) -> dict:
    """The twin's parameter count and its forward agreement in both layouts (run where PyTorch is)."""
    import torch

    twin = twin_from_spec(spec)
    return {"params_torch": sum(p.numel() for p in twin.parameters()),
            "forward_agreement": {"nchw": twin_agreement(inputs, twin),
                                  "channels_last": twin_agreement(inputs, twin_from_spec(spec, torch.channels_last),
                                                                  torch.channels_last)}}


def torch_loss(net, x, level, z, sigmas_t):
    """The ncsn (dsm estimator) loss of ``dsmcli/objectives/ncsn.py``: mean_rows ½‖σ s(x̃, σ) + z‖²,
    x̃ = x + σz, σ = σ_level per row."""
    sigma = sigmas_t[level]
    s4 = sigma[:, None, None, None]
    out = net(x + s4 * z, sigma)
    return 0.5 * (s4 * out + z).square().flatten(1).sum(1).mean()


# ---------------------------------------------------------------------------------- contenders


class Timed:
    compile_s = 0.0

    def run(self, seed: int) -> tuple[float, float, dict]:
        """One timed call: (wall s, process CPU s, info)."""
        t0, c0 = time.perf_counter(), time.process_time()
        info = self._call(seed)
        return time.perf_counter() - t0, time.process_time() - c0, info


class DsmTrain(Timed):
    """The trainer's path: ``train.prepare`` (``optim.for_experiment``, ``initial_state``, devices,
    ``StepFunction`` compiled with the trainer's options), then dispatches of ``steps`` fused steps."""

    def __init__(self, exp, steps: int):
        import dataclasses

        import jax
        import jax.numpy as jnp

        from dsmcli import train

        # the trainer donates its state: give it its own copy of the parameters (the other
        # contenders, built from the same experiment, still read them)
        self.plan = train.prepare(dataclasses.replace(exp, params=jax.tree.map(jnp.copy, exp.params)))
        self.steps = steps
        self.step = 0
        self.compile_s = self.plan.step_fn.compile_s
        self._call(0)  # first execution (allocation, thread pools): not timed

    def _call(self, seed: int) -> dict:
        import jax

        p = self.plan
        p.state, metrics = p.step_fn(p.state, p.x_train, self.step, self.steps)
        self.step += self.steps
        metrics = jax.device_get(metrics)  # as the trainer does after every dispatch
        jax.block_until_ready(p.state)
        loss = float(np.mean(metrics["loss"]))
        return {"loss": loss, "finite": bool(np.all(metrics["finite"]) and metrics["params_finite"])}


class TorchTrain(Timed):
    """The same step in PyTorch eager: indices, levels, noise, loss, backward, Adam."""

    def __init__(self, spec: dict, steps: int, batch: int, layout: str, threads: int):
        import torch

        self.torch = torch
        self.fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        self.net = twin_from_spec(spec, self.fmt)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=LR)
        self.data = torch.from_numpy(np.ascontiguousarray(spec["x_train"]))
        self.sigmas = torch.tensor(spec["sigmas"], dtype=torch.float32)
        self.steps, self.batch, self.threads = steps, batch, threads
        self.g = torch.Generator().manual_seed(0)
        self._loop(2)  # warm-up: thread pool, allocator, Adam state

    def step(self):
        torch = self.torch
        idx = torch.randint(0, len(self.data), (self.batch,), generator=self.g)
        x = self.data[idx].contiguous(memory_format=self.fmt)
        level = torch.randint(0, len(self.sigmas), (self.batch,), generator=self.g)
        z = torch.empty_like(x).normal_(generator=self.g)  # in x's layout
        loss = torch_loss(self.net, x, level, z, self.sigmas)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss

    def _loop(self, steps: int) -> dict:
        self.torch.set_num_threads(self.threads)
        losses = [self.step() for _ in range(steps)]
        loss = float(self.torch.stack([v.detach() for v in losses]).mean())
        return {"loss": loss, "finite": math.isfinite(loss)}

    def _call(self, seed: int) -> dict:
        return self._loop(self.steps)


def init_particles(n: int, dim: int, seed: int) -> np.ndarray:
    """U[0, 1) draws (the images' range), the same for every contender of a round."""
    return np.random.default_rng(1000 + seed).random((n, dim), dtype=np.float32)


def langevin_config(n: int, steps: int):
    from dsmcli.config import SampleConfig

    return SampleConfig(kind="annealed_langevin", n=n, steps=steps, step_size=STEP_SIZE)


class DsmLangevin(Timed):
    """``annealed_langevin.run`` on the ``Target`` of ``dsmcli.sampling.draw``, jitted as ``draw``
    jits it (the score closes over the parameters), both outputs (particles, trace) returned."""

    def __init__(self, exp, n: int, steps: int):
        import jax
        import jax.numpy as jnp

        from dsmcli.samplers import REGISTRY, Target

        params = exp.params
        sigmas = exp.objective.sigmas()
        target = Target(score=exp.score_fn(params), score_at=exp.score_at_fn(params),
                        sigmas=tuple(float(s) for s in sigmas), seed=exp.cfg.seed,
                        description=f"objective.kind '{exp.cfg.objective.kind}' with model.kind '{exp.cfg.model.kind}'")
        self.cfg = langevin_config(n, steps)
        sampler = REGISTRY["annealed_langevin"]
        sampler.check(target, self.cfg)
        self.n, self.dim = n, exp.data.dim
        rows = jax.ShapeDtypeStruct((n, self.dim), jnp.float32)
        t0 = time.perf_counter()
        self.compiled = jax.jit(lambda x, k: sampler.run(target, x, k, self.cfg)).lower(rows, jax.random.key(0)).compile()
        self.compile_s = time.perf_counter() - t0
        self.last = None
        self.run(0)  # first execution: not timed

    def run(self, seed: int):
        import jax
        import jax.numpy as jnp

        x0 = jax.block_until_ready(jnp.asarray(init_particles(self.n, self.dim, seed)))
        key = jax.random.fold_in(jax.random.key(0), seed)
        t0, c0 = time.perf_counter(), time.process_time()
        x, info = jax.block_until_ready(self.compiled(x0, key))
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        self.last = np.asarray(x)
        return dt, dc, {"finite": bool(np.isfinite(self.last).all()), "trace_shape": list(info["trace"].shape)}


class TorchLangevin(Timed):
    """The same annealed Langevin loop in PyTorch eager under ``torch.no_grad()``."""

    def __init__(self, spec: dict, n: int, steps: int, layout: str, threads: int):
        import torch

        self.torch = torch
        self.fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        self.net = twin_from_spec(spec, self.fmt)
        self.shape = tuple(spec["image_shape"])
        self.sigmas = list(spec["sigmas"])  # annealed_langevin.schedule: the objective's own
        self.alphas = [STEP_SIZE * s**2 / self.sigmas[-1] ** 2 for s in self.sigmas]
        self.n, self.dim, self.steps, self.threads = n, int(np.prod(self.shape)), steps, threads
        self.last = None
        self._loop(init_particles(n, self.dim, 0), 0, steps=1, levels=1)  # warm-up

    def _loop(self, x0: np.ndarray, seed: int, steps: int, levels: int | None = None):
        torch = self.torch
        torch.set_num_threads(self.threads)
        g = torch.Generator().manual_seed(seed)
        x = torch.from_numpy(rows_to_nchw(x0, self.shape)).contiguous(memory_format=self.fmt)
        z = torch.empty_like(x)
        with torch.no_grad():
            for sigma, alpha in list(zip(self.sigmas, self.alphas))[:levels]:
                sig = torch.full((self.n,), sigma)
                half, root = 0.5 * alpha, math.sqrt(alpha)
                for _ in range(steps):
                    x.add_(self.net(x, sig), alpha=half)
                    z.normal_(generator=g)
                    x.add_(z, alpha=root)
        return x

    def run(self, seed: int):
        x0 = init_particles(self.n, self.dim, seed)
        t0, c0 = time.perf_counter(), time.process_time()
        x = self._loop(x0, seed, self.steps)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        self.last = nchw_to_rows(x.numpy())
        return dt, dc, {"finite": bool(np.isfinite(self.last).all())}


# ------------------------------------------------------------------------------ PyTorch worker


class TorchWorker:
    """The PyTorch contenders in a process of their own, without JAX: in the JAX process, on
    shared cores, PyTorch's 2-thread steps ran up to 15-70× slower than in a plain process
    (1 thread was unaffected), so the default keeps the two runtimes apart. The worker is driven
    one JSON line at a time (build a contender, run it), so contenders stay interleaved round by
    round; each run is timed inside the worker (wall and the worker's CPU time), the pipe
    excluded. ``--torch-in-process`` runs them in this process instead."""

    def __init__(self):
        import subprocess

        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--torch-worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)

    def call(self, **msg) -> dict:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch worker exited (code {self.proc.wait()}); its stderr is above")
        out = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"PyTorch worker: {out['error']}")
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call(op="quit")
            except (RuntimeError, OSError, ValueError):
                pass
            self.proc.wait(timeout=30)


class RemoteRunner:
    """A contender living in the ``TorchWorker``: ``run(seed)`` as the in-process runners."""

    compile_s = 0.0

    def __init__(self, worker: TorchWorker, key: str, **build):
        self.worker, self.key = worker, key
        worker.call(op="build", key=key, **build)

    def run(self, seed: int):
        out = self.worker.call(op="run", key=self.key, seed=seed)
        return out["dt"], out["dc"], out["info"]


def torch_runner(spec: dict, workload: str, name: str, plan: dict):
    layout, threads = parse_contender(name)
    if workload == "train":
        return TorchTrain(spec, plan["steps"], plan["batch"], layout, threads)
    return TorchLangevin(spec, plan["particles"], plan["langevin_steps"], layout, threads)


def worker_main() -> int:
    """``--torch-worker``: build and run PyTorch contenders on request (one JSON line each way)."""
    runners, specs = {}, {}

    def reply(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["op"] == "quit":
                reply({"ok": True})
                break
            if "spec" in msg and msg["spec"] not in specs:
                specs[msg["spec"]] = load_spec(Path(msg["spec"]))
            if msg["op"] == "build":
                runners[msg["key"]] = torch_runner(specs[msg["spec"]], msg["workload"], msg["name"], msg["plan"])
                reply({"ok": True})
            elif msg["op"] == "checks":
                reply({"checks": twin_checks(specs[msg["spec"]], load_inputs(Path(msg["inputs"])))})
            elif msg["op"] == "run":
                dt, dc, info = runners[msg["key"]].run(msg["seed"])
                reply({"dt": dt, "dc": dc, "info": info})
            else:
                reply({"error": f"unknown op {msg['op']!r}"})
        except Exception as e:  # noqa: BLE001 - reported to the driver, which raises
            reply({"error": f"{type(e).__name__}: {e}"})
    return 0


# ------------------------------------------------------------------------------------- driver


def work_units(workload: str, plan: dict) -> float:
    """Steps per timed call (train) or particle-steps per run (langevin)."""
    if workload == "train":
        return plan["steps"]
    return plan["particles"] * N_SIGMAS * plan["langevin_steps"]


def build_runners(shape: str, folder: Path, plan: dict, names: list[str], workloads,
                  worker: TorchWorker | None = None) -> tuple[dict, dict]:
    """(workload -> name -> runner, setup info) for one shape; the PyTorch contenders in
    ``worker`` where one is given, else in this process."""
    exp = build_experiment(shape, folder, plan["batch"], plan["steps"])
    spec = twin_spec(exp)
    info = {"image_shape": spec["image_shape"], "params_dsm": spec["params_dsm"], "data": DATA_NOTE[shape],
            "n_train": len(exp.data.x_train), "sigmas": spec["sigmas"]}
    inputs = agreement_inputs(exp)
    spec_path = save_spec(spec, folder / "twin.npz") if worker is not None else None
    if worker is None:
        info.update(twin_checks(spec, inputs))
    else:  # PyTorch never loads in the JAX process (its threads slowed dsm's steps by 5-15 %)
        inputs_path = save_inputs(inputs, folder / "agreement.npz")
        info.update(worker.call(op="checks", spec=str(spec_path), inputs=str(inputs_path))["checks"])
    runners = {}
    for w in workloads:
        runners[w] = {}
        for name in names:
            t = time.perf_counter()
            if name == "dsm":
                r = DsmTrain(exp, plan["steps"]) if w == "train" else DsmLangevin(exp, plan["particles"], plan["langevin_steps"])
            elif worker is not None:
                r = RemoteRunner(worker, f"{shape}/{w}/{name}", spec=str(spec_path), workload=w, name=name,
                                 plan={k: plan[k] for k in ("steps", "batch", "particles", "langevin_steps")})
            else:
                r = torch_runner(spec, w, name, plan)
            runners[w][name] = r
            log(f"  {shape} {w}: built {name} ({time.perf_counter() - t:.1f} s, compile {r.compile_s:.1f} s)")
    return runners, info


def summarize(times, cpus, by_round, infos, units: float, names) -> dict:
    out = {"contenders": {}}
    for name in names:
        t, c = times[name], cpus[name]
        if not t:
            continue
        best, med = min(t), statistics.median(t)
        out["contenders"][name] = {
            "label": label(name), "rate_best": units / best, "rate_median": units / med,
            "ms_per_unit_best": 1e3 * best / units,
            "seconds_all": [round(v, 4) for v in t], "cpu_seconds_all": [round(v, 4) for v in c],
            "rate_per_cpu_second_median": units / statistics.median(c),
            "cpu_per_wall_best_round": c[t.index(best)] / best, "rounds_run": len(t),
            "all_finite": all(i.get("finite", True) for i in infos[name]),
            **({"last_loss": infos[name][-1]["loss"]} if "loss" in infos[name][-1] else {}),
        }
    cc = out["contenders"]
    if "dsm" not in cc:
        return out
    torch_all = [n for n in cc if n != "dsm"]
    torch2 = [n for n in torch_all if parse_contender(n)[1] == TORCH_THREADS]
    for key, group in (("layout", torch2), ("variant", torch_all)):
        # "layout": PyTorch's faster memory format at TORCH_THREADS threads; "variant": its fastest
        # contender of any thread count (on shared cores 1 thread can beat 2)
        if not group:
            continue
        best = max(group, key=lambda n: cc[n]["rate_best"])
        out[f"torch_best_{key}"] = best
        out[f"dsm_over_torch_best_{key}"] = cc["dsm"]["rate_best"] / cc[best]["rate_best"]
        out[f"dsm_over_torch_best_{key}_median"] = cc["dsm"]["rate_median"] / max(cc[n]["rate_median"] for n in group)
        out[f"dsm_over_torch_best_{key}_per_round"] = [  # dsm against the fastest of the group in the same round
            round(min(rr[n][0] for n in group if n in rr) / rr["dsm"][0], 3)
            for rr in by_round if "dsm" in rr and any(n in rr for n in group)]
    if torch_all:
        cpu_best = max(cc[n]["rate_per_cpu_second_median"] for n in torch_all)
        out["dsm_over_torch_per_cpu_second"] = cc["dsm"]["rate_per_cpu_second_median"] / cpu_best
        out["dsm_over_each"] = {n: cc["dsm"]["rate_best"] / cc[n]["rate_best"] for n in torch_all}
    return out


def bench(plan: dict) -> dict:
    """Build every contender of every shape, then run ``plan["rounds"]`` interleaved rounds."""
    names = contender_names(plan["torch_threads"])
    load_before = loadavg()
    worker = None if plan["torch_in_process"] else TorchWorker()
    try:
        with tempfile.TemporaryDirectory(prefix="dsm-bench-ncsn-conv-") as tmp:
            return _bench(plan, names, Path(tmp), worker, load_before)
    finally:
        if worker is not None:
            worker.close()


def _bench(plan, names, tmp: Path, worker, load_before) -> dict:
    rows, setup = {}, {}
    runners = {}
    for shape in plan["shapes"]:
        log(f"{shape}: building (dsm compiles)")
        sp = {**plan, "steps": plan["steps_by_shape"][shape], "langevin_steps": plan["langevin_steps_by_shape"][shape]}
        runners[shape], setup[shape] = build_runners(shape, tmp / shape, sp, names, plan["workloads"], worker)
        setup[shape].update({"steps_per_dispatch": sp["steps"], "langevin_steps_per_level": sp["langevin_steps"],
                             "compile_s": {w: round(r["dsm"].compile_s, 2) for w, r in runners[shape].items()}})
        fa = setup[shape]["forward_agreement"]
        log(f"  {shape}: {setup[shape]['params_dsm']:,} parameters (PyTorch {setup[shape]['params_torch']:,}); "
            f"forward max |Δ|/max|s| NCHW {fa['nchw']['rel']:.1e}, channels_last {fa['channels_last']['rel']:.1e}")
    keys = [(s, w) for s in plan["shapes"] for w in plan["workloads"]]
    times = {k: {n: [] for n in names} for k in keys}
    cpus = {k: {n: [] for n in names} for k in keys}
    infos = {k: {n: [] for n in names} for k in keys}
    by_round = {k: [{} for _ in range(plan["rounds"])] for k in keys}
    for rnd in range(plan["rounds"]):
        for shape, w in keys:
            units = work_units(w, {**plan, "steps": plan["steps_by_shape"][shape],
                                   "langevin_steps": plan["langevin_steps_by_shape"][shape]})
            for name, r in runners[shape][w].items():
                if rnd and sum(times[shape, w][name]) > CAP_S:
                    continue
                dt, dc, info = r.run(rnd)
                times[shape, w][name].append(dt)
                cpus[shape, w][name].append(dc)
                infos[shape, w][name].append(info)
                by_round[shape, w][rnd][name] = (dt, dc)
                log(f"round {rnd + 1}/{plan['rounds']} {shape} {w} {name}: {dt:.2f} s (CPU {dc:.2f} s), "
                    f"{units / dt:.1f} {UNITS[w]}")
    for shape, w in keys:
        units = work_units(w, {**plan, "steps": plan["steps_by_shape"][shape],
                               "langevin_steps": plan["langevin_steps_by_shape"][shape]})
        rows.setdefault(shape, {})[w] = {"units_per_call": units,
                                         **summarize(times[shape, w], cpus[shape, w], by_round[shape, w],
                                                     infos[shape, w], units, names)}
    checks = {
        "params_equal": all(s["params_dsm"] == s["params_torch"] for s in setup.values()),
        "forward_max_rel": max(v["rel"] for s in setup.values() for v in s["forward_agreement"].values()),
        "forward_tol": FORWARD_TOL,
        "all_finite": all(c["all_finite"] for r in rows.values() for w in r.values() for c in w["contenders"].values()),
    }
    checks["forward_agrees"] = checks["forward_max_rel"] <= FORWARD_TOL
    return {"rows": rows, "setup": setup, "checks": checks, "load_before": load_before, "load_after": loadavg(),
            "torch_in_jax_process": "torch" in sys.modules}


CHECKS = ("params_equal", "forward_agrees", "all_finite")


def fmt(v: float) -> str:
    return f"{v / 1e3:.2f} k" if v >= 1e4 else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def _short(name: str) -> str:
    layout, t = parse_contender(name)
    return f"{layout} {t}t"


def _ratio_cell(row: dict, key: str) -> str:
    if f"torch_best_{key}" not in row:
        return "–"
    rounds = ", ".join(f"{v:.2f}" for v in row[f"dsm_over_torch_best_{key}_per_round"])
    return (f"{row[f'dsm_over_torch_best_{key}']:.2f}× vs {_short(row[f'torch_best_{key}'])}; median "
            f"{row[f'dsm_over_torch_best_{key}_median']:.2f}×; rounds {rounds}")


def table(result: dict) -> str:
    names = result["contenders"]
    lines = [
        "| shape | workload | " + " | ".join(f"{label(n)}: best / median" for n in names)
        + f" | dsm / PyTorch's best layout at {TORCH_THREADS} threads | dsm / PyTorch's best variant "
          "| … per CPU-second (medians) | dsm compile |",
        "|---|---|" + "---:|" * (len(names) + 4),
    ]
    for shape, r in result["bench"]["rows"].items():
        for w, row in r.items():
            cc = row["contenders"]
            cells = [f"{fmt(cc[n]['rate_best'])} / {fmt(cc[n]['rate_median'])}" if n in cc else "–" for n in names]
            cpu = f"{row['dsm_over_torch_per_cpu_second']:.2f}×" if "dsm_over_torch_per_cpu_second" in row else "–"
            comp = result["bench"]["setup"][shape]["compile_s"].get(w)
            lines.append(f"| {shape} | {w} ({UNITS[w]}) | " + " | ".join(cells)
                         + f" | {_ratio_cell(row, 'layout')} | {_ratio_cell(row, 'variant')} | {cpu} | {comp:.1f} s |")
    return "\n".join(lines)


def reading(result: dict) -> str:
    """Conclusions computed from the numbers (so the text stays true on a re-run)."""
    parts, behind = [], []
    for shape, r in result["bench"]["rows"].items():
        for w, row in r.items():
            if "dsm_over_torch_best_variant" not in row:
                continue
            v, lay = row["dsm_over_torch_best_variant"], row.get("dsm_over_torch_best_layout")
            if v < 1.0:
                behind.append(f"{shape} {w}")
            parts.append(f"{shape} {w}: dsm {v:.2f}× PyTorch's fastest contender ({_short(row['torch_best_variant'])})"
                         + (f", {lay:.2f}× its faster layout at {TORCH_THREADS} threads" if lay is not None else "")
                         + f", {row['dsm_over_torch_per_cpu_second']:.2f}× per CPU-second.")
    rows = [row for r in result["bench"]["rows"].values() for row in r.values()]
    slow2 = [row for row in rows if row.get("torch_best_variant") and
             parse_contender(row["torch_best_variant"])[1] != TORCH_THREADS]
    if slow2:
        parts.append(f"In {len(slow2)} of {len(rows)} rows PyTorch was fastest with fewer than {TORCH_THREADS} threads: "
                     f"on shared cores its OpenMP regions wait for descheduled threads, so the best-variant and "
                     f"per-CPU-second columns are the fairer comparison there.")
    parts.append("dsm at least as fast as PyTorch's fastest contender in every row (issue #17)." if not behind else
                 f"dsm behind PyTorch's fastest contender in: {', '.join(behind)}.")
    ch, setup = result["bench"]["checks"], result["bench"]["setup"]
    counts = ", ".join(f"{s} {v['params_dsm']:,}" for s, v in setup.items())
    parts.append(f"Equal work: parameter counts {'equal' if ch['params_equal'] else 'NOT equal'} ({counts}); forward passes "
                 f"agree to {ch['forward_max_rel']:.1e} of max |s| ({'within' if ch['forward_agrees'] else 'NOT within'} "
                 f"{FORWARD_TOL:g}); {'all' if ch['all_finite'] else 'NOT all'} outputs finite.")
    return " ".join(parts)


def write_md(result: dict, out_json: Path) -> Path:
    info, b = result["machine"], result["bench"]
    started = _dt.datetime.fromisoformat(result["date"])
    loads = [v[0] for v in (b["load_before"], b["load_after"], result.get("load_end")) if v]
    ncpu = info.get("affinity_cpus", info["cpu_count"])
    rel = out_json.relative_to(REPO) if out_json.is_relative_to(REPO) else out_json
    p = result["plan"]
    shapes = "; ".join(f"{s}: {DATA_NOTE[s]}, {v['steps_per_dispatch']} steps per dispatch, T = "
                       f"{v['langevin_steps_per_level']}" for s, v in b["setup"].items())
    md = [
        "# Convolutional NCSN (`ncsn_conv`): dsm vs a PyTorch twin",
        "",
        f"`ncsn_conv` (U-Net channels {list(CHANNELS)}, GroupNorm, SiLU, log σ embedding; output f/σ) against the same "
        f"network in PyTorch eager with dsm's weights copied in. **train**: the ncsn objective (dsm estimator, "
        f"{N_SIGMAS} σ levels, Adam lr {LR:g}, batch {p['batch']}), dsm through `train.prepare` + `StepFunction` "
        f"(steps fused per dispatch), steps/s. **langevin**: annealed Langevin, {N_SIGMAS} levels × T steps on "
        f"{p['particles']} particles, ε = {STEP_SIZE:g}, dsm `annealed_langevin.run` jitted as `sampling.draw` does, "
        f"particle-steps/s. Shapes: {shapes}. PyTorch ran "
        f"{'in the JAX process' if p.get('torch_in_process') else 'in a worker process of its own (no JAX loaded)'}. "
        f"Best / median over {p['rounds']} interleaved round(s), compile excluded. "
        f"Produced by `benchmarks/bench_ncsn_conv.py`{' --quick' if result['quick'] else ''}.",
        "",
        table(result),
        "",
        reading(result),
        "",
        f"Machine: {info.get('cpu_model', 'unknown CPU')}, {ncpu} CPU cores available, {info.get('mem_gib', '?')} GiB "
        f"RAM, JAX {info['versions']['jax']}, PyTorch {info['versions']['torch']}, {info['platform']}. Date: "
        f"{started.strftime('%Y-%m-%d %H:%M %Z')}. 1-minute load average {min(loads):.1f}–{max(loads):.1f} during the run "
        f"(on {ncpu} cores). Wall time {result['wall_s']:.0f} s. Raw numbers (every round, CPU seconds, forward "
        f"agreement, σ schedules): `{rel}`.",
        "",
    ]
    out_md = out_json.with_name(out_json.stem.removeprefix("results_") + ".md")
    out_md.write_text("\n".join(md))
    return out_md


def parse_threads(text: str) -> list[int]:
    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        threads = []
    if not threads or any(t < 1 for t in threads):
        raise SystemExit(f"--torch-threads: a comma-separated list of positive integers, got {text!r}")
    return threads


def parse_shapes(text: str) -> list[str]:
    shapes = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in shapes if s not in SHAPES]
    if bad or not shapes:
        raise SystemExit(f"--shapes: unknown {', '.join(bad) or '(none)'}; choose from {', '.join(SHAPES)}")
    return shapes


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:] == ["--torch-worker"]:
        return worker_main()
    ap = argparse.ArgumentParser(description="The conv NCSN (ncsn_conv): training step and annealed Langevin, dsm vs a "
                                 "PyTorch twin, on 8x8x1, 28x28x1 and 32x32x3 images (issue #17)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round, batch/particles 16, 2 steps, T = 1")
    ap.add_argument("--rounds", type=int, help=f"interleaved rounds (default {DEFAULTS['rounds']})")
    ap.add_argument("--steps", type=int, help="training steps per dispatch / timed call, every shape (default "
                    + ", ".join(f"{k} {v}" for k, v in DEFAULT_STEPS.items()) + ")")
    ap.add_argument("--batch", type=int, help=f"training batch (default {DEFAULTS['batch']})")
    ap.add_argument("--particles", type=int, help=f"Langevin particles (default {DEFAULTS['particles']})")
    ap.add_argument("--langevin-steps", type=int, help="Langevin steps per level, every shape (default "
                    + ", ".join(f"{k} {v}" for k, v in DEFAULT_LANGEVIN_STEPS.items()) + ")")
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated subset of {', '.join(SHAPES)}")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="train, langevin or both")
    ap.add_argument("--torch-threads", default=f"{TORCH_THREADS},1",
                    help=f"PyTorch intra-op thread counts, each run in both layouts (default {TORCH_THREADS},1)")
    ap.add_argument("--torch-in-process", action="store_true", help="run the PyTorch contenders in this (JAX) "
                    "process rather than in a worker process of their own")
    ap.add_argument("--out", type=Path, help="JSON path (default benchmarks/results_ncsn_conv[_quick].json); the "
                    "markdown goes next to it, named without 'results_'")
    ap.add_argument("--render", type=Path, metavar="JSON", help="only rewrite the markdown of a saved result")
    args = ap.parse_args(argv)
    if args.render:
        result = json.loads(args.render.read_text())
        log(f"wrote {write_md(result, args.render.resolve())}")
        return 0
    base = QUICK if args.quick else {**DEFAULTS, "steps": None, "langevin_steps": None}
    shapes = parse_shapes(args.shapes)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if not workloads or any(w not in WORKLOADS for w in workloads):
        raise SystemExit(f"--workloads: choose from {', '.join(WORKLOADS)}")
    steps = args.steps or base["steps"]
    lsteps = args.langevin_steps or base["langevin_steps"]
    plan = {
        "rounds": args.rounds or base["rounds"], "batch": args.batch or base["batch"],
        "particles": args.particles or base["particles"], "shapes": shapes, "workloads": workloads,
        "torch_threads": parse_threads(args.torch_threads), "torch_in_process": args.torch_in_process,
        "steps_by_shape": {s: steps or DEFAULT_STEPS[s] for s in shapes},
        "langevin_steps_by_shape": {s: lsteps or DEFAULT_LANGEVIN_STEPS[s] for s in shapes},
    }
    suffix = "_quick" if args.quick else ""
    out_json = (args.out or REPO / "benchmarks" / f"results_ncsn_conv{suffix}.json").resolve()
    started = _dt.datetime.now().astimezone()
    t0 = time.perf_counter()
    log(f"bench_ncsn_conv: {plan}")
    from dsmcli import console

    console.set_quiet(True)
    b = bench(plan)
    import jax

    from benchmarks.common import machine_info

    result = {
        "benchmark": "ncsn_conv training step and annealed Langevin, dsm vs PyTorch eager",
        "date": started.isoformat(timespec="seconds"), "wall_s": round(time.perf_counter() - t0, 1),
        "quick": args.quick, "plan": plan, "contenders": contender_names(plan["torch_threads"]),
        "setup": {"channels": list(CHANNELS), "n_sigmas": N_SIGMAS, "lr": LR, "langevin_step_size": STEP_SIZE,
                  "torch_threads": TORCH_THREADS, "cap_s": CAP_S, "dtype": "float32",
                  "timing": "wall and process CPU time of one timed call (dsm: a compiled dispatch, compile excluded), "
                            "best and median of the rounds; contenders interleaved round by round"},
        "machine": {**machine_info(), "jax_backend": jax.default_backend(), "xla_flags": os.environ.get("XLA_FLAGS", "")},
        "load_end": loadavg(),
        "bench": b,
    }
    result["reading"] = reading(result)
    print(table(result))
    print()
    print(result["reading"])
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {out_json} and {write_md(result, out_json)} ({result['wall_s']:.0f} s)")
    failed = [k for k in CHECKS if b["checks"].get(k) is False]
    if failed:
        log(f"CHECK FAILED: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
