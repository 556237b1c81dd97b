"""Where a compiled training scan spends its time: a ``jax.profiler`` trace (Perfetto JSON) of a
few dispatches, each XLA op event mapped to its HLO instruction and, through the instruction's
``op_name`` metadata, to a category (forward/backward matmuls, softplus, RNG, optimizer, ...).
Times are *self* times (a ``while`` op's time excludes the ops of its body) per training step."""

from __future__ import annotations

import collections
import gzip
import json
import re
import tempfile
from pathlib import Path

_LHS = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = \S+ ([\w-]+)\(")
_OPNAME = re.compile(r'op_name="([^"]*)"')
_FRAME = re.compile(r"stack_frame_id=(\d+)")


def _tables(hlo_text: str) -> dict[int, tuple[str, str]]:
    """stack_frame_id -> (file, function) of the frame itself (the innermost user-level frame
    that produced the op), from the FileNames/FunctionNames/FileLocations/StackFrames tables."""
    section, files, funcs, locs, frames = None, {}, {}, {}, {}
    for line in hlo_text.splitlines():
        head = line.strip()
        if head in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            section = head
            continue
        m = re.match(r"^(\d+) (.*)$", head)
        if not m or section is None:
            if head == "":
                continue
            section = None
            continue
        i, rest = int(m.group(1)), m.group(2)
        if section == "FileNames":
            files[i] = rest.strip('"')
        elif section == "FunctionNames":
            funcs[i] = rest.strip('"')
        elif section == "FileLocations":
            f = re.search(r"file_name_id=(\d+) function_name_id=(\d+)", rest)
            if f:
                locs[i] = (int(f.group(1)), int(f.group(2)))
        elif section == "StackFrames":
            f = re.search(r"file_location_id=(\d+)", rest)
            if f:
                frames[i] = int(f.group(1))
    out = {}
    for fid, loc in frames.items():
        if loc in locs:
            fi, fn = locs[loc]
            out[fid] = (files.get(fi, ""), funcs.get(fn, ""))
    return out


def _op_names(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> "<op_name metadata> |<opcode> |<file>:<function>"."""
    frames = _tables(hlo_text)
    out = {}
    for line in hlo_text.splitlines():
        m = _LHS.match(line)
        if m:
            op = _OPNAME.search(line)
            fr = _FRAME.search(line)
            src = frames.get(int(fr.group(1)), ("", "")) if fr else ("", "")
            out[m.group(1)] = (op.group(1) if op else "") + " |" + m.group(2) + " |" + f"{src[0]}:{src[1]}"
    return out


def category(name: str, info: str) -> str:
    op_name, opcode, src = (info.split(" |") + ["", ""])[:3]
    op = op_name.lower()
    func = src.rsplit(":", 1)[-1]
    if any(k in op for k in ("_normal", "_uniform", "_randint", "random_bits", "threefry", "random_split", "random_fold_in")):
        return "rng (batch indices + noise)"
    if "softplus" in op or "/models/activations.py:" in src:
        return "softplus (fwd+bwd)"
    if "dot_general" in op or opcode == "dot" or name.startswith(("dot", "ynn_fusion")):
        if "transpose(" in op:
            return "matmul backward"
        return "matmul forward"
    if func in ("tree_norm", "tree_sum", "_square") or "tree_norm" in op:
        return "grad norm (logged by the trainer)"
    if "/optax/" in src:
        return "optimizer (Adam update)"
    if "gather" in op or "dynamic_slice" in op or "dynamic_update" in op or name.startswith(("gather", "dynamic")):
        return "batch gather / scan bookkeeping"
    if "jvp(" in op or "transpose(" in op:
        return "loss + other fwd/bwd elementwise"
    if opcode in ("while", "copy", "tuple", "get-tuple-element", "conditional", "call"):
        return "loop control, copies, idle gaps"
    return "rest (e.g. finite flags)"


def profile(run_once, hlo_text: str, steps_per_dispatch: int, dispatches: int = 3) -> dict:
    """Trace ``dispatches`` calls of ``run_once()`` (each must block until done)."""
    import jax

    names = _op_names(hlo_text)
    with tempfile.TemporaryDirectory(prefix="dsm-bench-trace-") as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(dispatches):
                run_once()
        files = sorted(Path(tmp).rglob("perfetto_trace.json.gz"))
        if not files:
            return {"error": "jax.profiler wrote no perfetto trace"}
        data = json.load(gzip.open(files[-1]))
    events = data["traceEvents"] if isinstance(data, dict) else data
    per_tid = collections.defaultdict(list)
    wall = 0.0
    for e in events:
        if e.get("ph") != "X":
            continue
        if e["name"] == "ThunkExecutor::Execute (wait for completion)":
            wall += e.get("dur", 0)
        if e["name"] in names:
            per_tid[e.get("tid")].append((float(e["ts"]), float(e.get("dur", 0)), e["name"]))
    self_us = collections.Counter()
    calls = collections.Counter()
    for evs in per_tid.values():
        evs.sort(key=lambda t: (t[0], -t[1]))
        stack: list[list] = []  # [end, name, child_time]
        for ts, dur, name in evs:
            while stack and stack[-1][0] <= ts:
                end, n, child = stack.pop()
                self_us[n] -= child
            if stack:
                stack[-1][2] += dur
            self_us[name] += dur
            calls[name] += 1
            stack.append([ts + dur, name, 0.0])
        while stack:
            end, n, child = stack.pop()
            self_us[n] -= child
    steps = steps_per_dispatch * dispatches
    by_cat = collections.Counter()
    for n, t in self_us.items():
        by_cat[category(n, names[n])] += t
    total = sum(by_cat.values())
    top_ops = [
        {"op": n, "hlo": names[n].split(" |")[1], "op_name": names[n].split(" |")[0][-90:],
         "source": names[n].split(" |")[2].rsplit("/", 1)[-1],
         "us_per_step": round(t / steps, 1), "calls_per_step": round(calls[n] / steps, 2)}
        for n, t in self_us.most_common(12)
    ]
    return {
        "steps": steps,
        "wall_us_per_step_traced": round(wall / steps, 1) if wall else None,
        "op_self_us_per_step": round(total / steps, 1),
        "by_category_us_per_step": {k: round(v / steps, 1) for k, v in by_cat.most_common()},
        "by_category_fraction": {k: round(v / total, 3) for k, v in by_cat.most_common()} if total else {},
        "top_ops": top_ops,
    }


def torch_category(name: str, ancestors: list[str]) -> str:
    if any(a.startswith(("Optimizer.step", "Optimizer.zero_grad")) for a in ancestors + [name]):
        return "optimizer (Adam update)"
    if "softplus" in name:
        return "softplus (fwd+bwd)"
    if name in ("aten::mm", "aten::addmm", "aten::matmul", "aten::linear"):
        return "matmul (fwd+bwd)"
    if name in ("aten::normal_", "aten::randn", "aten::randn_like", "aten::randint", "aten::random_", "aten::index"):
        return "rng + batch gather"
    return "loss, autograd glue, rest"


def torch_profile(step, steps: int) -> dict:
    """Self CPU time per category of a torch eager step, from ``torch.profiler`` (µs per step)."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    by_cat = collections.Counter()
    for e in prof.events():
        anc, p = [], e.cpu_parent
        while p is not None:
            anc.append(p.name)
            p = p.cpu_parent
        by_cat[torch_category(e.name, anc)] += e.self_cpu_time_total
    total = sum(by_cat.values())
    return {
        "steps": steps,
        "op_self_us_per_step": round(total / steps, 1),
        "by_category_us_per_step": {k: round(v / steps, 1) for k, v in by_cat.most_common()},
        "by_category_fraction": {k: round(v / total, 3) for k, v in by_cat.most_common()} if total else {},
    }
