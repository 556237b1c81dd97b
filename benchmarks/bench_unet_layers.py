"""Where the convolutional NCSN's image step spends its time, layer by layer: XLA:CPU against
PyTorch's oneDNN kernels on the same layers.

The layers are read off ``ncsn_conv``'s parameters (channels [32, 64], as in
``bench_ncsn_conv.py``): every convolution (its kernel's k, C, O at its resolution: the stem,
``down[0]`` and ``norm_out``/``out`` at the full H×W, every level below at half of the one above)
and every GroupNorm followed by SiLU (the blocks' ``act(norm(x))``). Each layer is timed alone at
batch 128, two ways:

* **forward**: y = layer(x);
* **forward + backward**: y and the gradients of ⟨y, g⟩ for a fixed random g with respect to the
  input and every parameter.

JAX: ``conv_blocks.canonical_conv`` (the library's convolution) and ``group_norm.group_norm`` +
``jax.nn.silu``, 4 repetitions in one ``lax.scan`` (as the trainer runs them) whose carry is y (and
every gradient): XLA computes all of them, into buffers the loop reuses, and no extra pass reads
them; compiled with the flags ``dsm train`` uses. (Summing the outputs instead adds a pass per
output; one jitted call per repetition pays for fresh output buffers.) PyTorch: ``nn.Conv2d`` and ``nn.GroupNorm`` + ``nn.SiLU`` in eager
mode, channels_last (its faster layout in ``bench_ncsn_conv.py``), 2 threads, in a worker process
of its own (no JAX loaded). Rounds interleave the two; best of ``--rounds``. The per-layer sums
show which part of the step is behind: the convolution kernels themselves, or the normalisation
and activation passes between them.

Usage: ``.venv/bin/python benchmarks/bench_unet_layers.py [--shape 28x28x1] [--rounds 2]`` (``--quick``:
8×8, one round); writes ``benchmarks/results_unet_layers[_quick].json`` and ``unet_layers[_quick].md``
(also run by ``make bench``: ``run_all.py --images``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import loadavg, machine_info  # noqa: E402

BATCH = 128
REPS = 4  # repetitions per timed call (JAX: in one lax.scan)
THREADS = 2
CHANNELS = (32, 64)
SHAPES = {"8x8x1": (8, 8, 1), "28x28x1": (28, 28, 1), "32x32x3": (32, 32, 3)}
MODES = ("forward", "forward + backward")


def layers(shape: str, channels=CHANNELS) -> list[dict]:
    """The convolutions and GroupNorms of ``ncsn_conv`` on ``shape``, read off its parameters."""
    import tempfile

    import jax

    from benchmarks import bench_ncsn_conv
    from dsmcli.models.group_norm import groups

    h, w, _ = SHAPES[shape]
    with tempfile.TemporaryDirectory(prefix="dsm-layers-") as tmp:  # the data files the experiment reads
        exp = bench_ncsn_conv.build_experiment(shape, Path(tmp), 16, 2, channels)
    n_levels = len(channels)
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(exp.params)[0]:
        keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
        keys = [k for k in keys if k not in (None, "value")]
        if keys[0] != "unet" or keys[-1] not in ("kernel", "scale"):
            continue
        part = keys[1]
        if part in ("stem", "out", "norm_out"):
            level = 0
        elif part == "mid":
            level = n_levels - 1
        elif part == "down":
            level = keys[2]
        else:  # up[j] runs at the level n_levels - 1 - j
            level = n_levels - 1 - keys[2]
        name = ".".join(str(k) for k in keys[1:-1])
        res = (h // 2**level, w // 2**level)
        if keys[-1] == "kernel" and leaf.ndim == 4:
            k, _, cin, cout = leaf.shape
            out.append({"name": name, "kind": "conv", "hw": res, "k": int(k), "cin": int(cin), "cout": int(cout)})
        elif keys[-1] == "scale":
            c = int(leaf.shape[0])
            out.append({"name": name, "kind": "groupnorm+silu", "hw": res, "channels": c, "groups": groups(c)})
    order = {"stem": 0, "down": 1, "mid": 2, "up": 3, "norm_out": 4, "out": 5}
    return sorted(out, key=lambda l: (order[l["name"].split(".")[0]], l["name"].split(".")[1:2],
                                      "conv" not in l["name"].split(".")[-1], l["name"]))


def label(layer: dict) -> str:
    h, w = layer["hw"]
    if layer["kind"] == "conv":
        return f"{layer['name']}: conv {layer['k']}×{layer['k']} {layer['cin']}→{layer['cout']} at {h}×{w}"
    return f"{layer['name']}: GroupNorm({layer['groups']}) + SiLU, {layer['channels']} ch at {h}×{w}"


# --- JAX -----------------------------------------------------------------------------------------

def jax_timers(layer_list: list[dict]) -> dict:
    """layer name + mode -> a compiled function of no arguments that runs REPS repetitions."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from dsmcli.jaxsetup import configure_xla_env

    configure_xla_env()
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from dsmcli.models import conv_blocks

    timers = {}
    for i, layer in enumerate(layer_list):
        h, w = layer["hw"]
        key = jax.random.key(i)
        if layer["kind"] == "conv":
            cin, cout, k = layer["cin"], layer["cout"], layer["k"]
            params = {"kernel": 0.1 * jax.random.normal(key, (k, k, cin, cout)), "bias": jnp.zeros((cout,))}

            def apply(p, x):
                return conv_blocks.canonical_conv(x, p["kernel"], (1, 1), "SAME") + p["bias"]
        else:
            cin = cout = layer["channels"]
            norm = conv_blocks.group_norm(cin, nnx.Rngs(i))  # the network's layer (groups(cin) groups)
            graphdef, params = nnx.split(norm)

            def apply(p, x, graphdef=graphdef):
                return jax.nn.silu(nnx.merge(graphdef, p)(x))
        x = jax.random.normal(jax.random.fold_in(key, 1), (BATCH, h, w, cin))
        g = jax.random.normal(jax.random.fold_in(key, 2), (BATCH, h, w, cout))
        for mode in MODES:
            if mode == "forward":
                fn = apply
            else:
                def fn(p, x, g, apply=apply):
                    y, vjp = jax.vjp(apply, p, x)
                    return y, vjp(g)
            args = (params, x) if mode == "forward" else (params, x, g)

            def scanned(*a, fn=fn):
                # the outputs are the loop's carry: every entry of every repetition is computed,
                # into buffers the loop reuses, and nothing else reads them
                first = jax.tree.map(jnp.zeros_like, jax.eval_shape(fn, *a))

                def body(carry, _):
                    nudge = 1e-9 * jax.tree.leaves(carry)[0].ravel()[0]  # each repetition depends on the last
                    return fn(a[0], a[1] + nudge, *a[2:]), None

                return jax.lax.scan(body, first, None, length=REPS)[0]

            compiled = jax.jit(scanned).lower(*args).compile()
            timers[(layer["name"], mode)] = (lambda c=compiled, a=args: jax.block_until_ready(c(*a)))
    return timers


def time_jax(timers: dict) -> dict:
    out = {}
    for key, fn in timers.items():
        t0 = time.perf_counter()
        fn()
        out["|".join(key)] = (time.perf_counter() - t0) / REPS * 1e3
    return out


# --- PyTorch (worker process) ----------------------------------------------------------------------

def torch_worker(layer_list: list[dict]) -> None:
    """Reads "round" lines on stdin, answers each with one JSON line of ms per layer and mode."""
    import torch

    torch.set_num_threads(THREADS)
    cl = torch.channels_last
    runners = {}
    for i, layer in enumerate(layer_list):
        h, w = layer["hw"]
        gen = torch.Generator().manual_seed(i)
        if layer["kind"] == "conv":
            cin, cout = layer["cin"], layer["cout"]
            mod = torch.nn.Conv2d(cin, cout, layer["k"], padding=layer["k"] // 2).to(memory_format=cl)
        else:
            cin = cout = layer["channels"]
            mod = torch.nn.Sequential(torch.nn.GroupNorm(layer["groups"], cin, eps=1e-6), torch.nn.SiLU()).to(memory_format=cl)
        x = torch.randn(BATCH, cin, h, w, generator=gen).contiguous(memory_format=cl)
        g = torch.randn(BATCH, cout, h, w, generator=gen).contiguous(memory_format=cl)

        def fwd(mod=mod, x=x):
            with torch.no_grad():
                return mod(x)

        def fwd_bwd(mod=mod, x=x, g=g):
            mod.zero_grad(set_to_none=True)
            xx = x.detach().requires_grad_()
            y = mod(xx)
            y.backward(g)  # eager: every gradient is computed here
            return y, xx.grad

        runners[(layer["name"], "forward")] = fwd
        runners[(layer["name"], "forward + backward")] = fwd_bwd
    for fn in runners.values():  # warm-up: allocator, oneDNN primitives
        fn()
        fn()
    print(json.dumps({"ready": True, "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        out = {}
        for key, fn in runners.items():
            t0 = time.perf_counter()
            for _ in range(REPS):
                fn()
            out["|".join(key)] = (time.perf_counter() - t0) / REPS * 1e3
        print(json.dumps(out), flush=True)


def render(res: dict) -> str:
    rows = res["layers"]
    lines = [
        f"# `ncsn_conv` layer by layer at {res['shape']}: XLA:CPU vs PyTorch (oneDNN)", "",
        f"Batch {BATCH}, each layer alone, best of {res['rounds']} interleaved rounds, ms per call "
        f"(forward; forward + backward = input and parameter gradients), every output returned. JAX: "
        f"`conv_blocks.canonical_conv`, `group_norm.group_norm` + `jax.nn.silu`, {REPS} calls in one `lax.scan` whose carry "
        f"is every output; PyTorch "
        f"{res['torch']} eager, channels_last, {THREADS} threads, own process. Produced by "
        f"`benchmarks/bench_unet_layers.py --shape {res['shape']}`.", "",
        "| layer | JAX fwd | PyTorch fwd | JAX fwd+bwd | PyTorch fwd+bwd | PyTorch / JAX (fwd+bwd) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    best = res["best"]
    sums = {}
    for layer in rows:
        n = layer["name"]
        v = [best[side][f"{n}|{m}"] for m in MODES for side in ("jax", "torch")]
        for side in ("jax", "torch"):
            for m in MODES:
                sums[(layer["kind"], side, m)] = sums.get((layer["kind"], side, m), 0.0) + best[side][f"{n}|{m}"]
        lines.append(f"| {label(layer)} | {v[0]:.1f} | {v[1]:.1f} | {v[2]:.1f} | {v[3]:.1f} | {v[3] / v[2]:.2f}× |")
    for kind in ("conv", "groupnorm+silu"):
        s = [sums[(kind, side, m)] for m in MODES for side in ("jax", "torch")]
        lines.append(f"| **all {kind} layers** | **{s[0]:.1f}** | **{s[1]:.1f}** | **{s[2]:.1f}** | **{s[3]:.1f}** | "
                     f"**{s[3] / s[2]:.2f}×** |")
    m = res["machine"]
    lines += ["", f"Machine: {m.get('cpu', m.get('platform'))}, {m.get('affinity_cpus', m.get('cpu_count'))} CPU cores, "
              f"JAX {res['jax']}. Date: {res['date']}. Load average before / after: {res['load_before']} / "
              f"{res['load_after']}. Wall time {res['wall_s']} s."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="28x28x1")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results_unet_layers.json")
    ap.add_argument("--md", type=Path, default=REPO / "benchmarks" / "unet_layers.md")
    ap.add_argument("--quick", action="store_true", help="smoke run: 8x8x1, 1 round, *_quick files")
    ap.add_argument("--torch-worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.shape, args.rounds = "8x8x1", 1
        args.out = args.out.with_name(args.out.stem + "_quick.json")
        args.md = args.md.with_name(args.md.stem + "_quick.md")
    if args.torch_worker:
        torch_worker(json.loads(args.torch_worker.read_text()))
        return 0
    t_start, load_before = time.perf_counter(), loadavg()
    layer_list = layers(args.shape)
    import tempfile

    spec = Path(tempfile.mkstemp(prefix="dsm-layers-", suffix=".json")[1])  # the worker's layer list
    spec.write_text(json.dumps(layer_list))
    worker = subprocess.Popen([sys.executable, __file__, "--torch-worker", str(spec)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    try:
        hello = json.loads(worker.stdout.readline())
        timers = jax_timers(layer_list)
        for fn in timers.values():
            fn()  # first execution: not timed
        rounds = {"jax": [], "torch": []}
        for r in range(args.rounds):
            rounds["jax"].append(time_jax(timers))
            worker.stdin.write("round\n")
            worker.stdin.flush()
            rounds["torch"].append(json.loads(worker.stdout.readline()))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        if worker.stdin:
            worker.stdin.close()
        worker.wait(timeout=60)
        spec.unlink(missing_ok=True)
    import jax

    best = {side: {k: min(rd[k] for rd in rs) for k in rs[0]} for side, rs in rounds.items()}
    res = {"shape": args.shape, "rounds": args.rounds, "batch": BATCH, "layers": layer_list, "rounds_ms": rounds,
           "best": best, "torch": hello["torch"], "jax": jax.__version__, "machine": machine_info(),
           "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "load_before": load_before, "load_after": loadavg(), "wall_s": round(time.perf_counter() - t_start, 1)}
    args.out.write_text(json.dumps(res, indent=1))
    md = render(res)
    args.md.write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
