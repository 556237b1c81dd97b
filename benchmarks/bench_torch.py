"""PyTorch reference: the same MLP (``torch.nn.Linear`` + softplus), DSM loss and Adam, eager and
``torch.compile``d. Batches are drawn with ``torch.randint`` from a tensor in memory, noise with
``torch.randn``; the loss is fetched with ``.item()`` once every ``FETCH_EVERY`` steps."""

from __future__ import annotations

import time

from benchmarks.common import LR, SIGMA, Problem

FETCH_EVERY = 100
THREADS = 2


def _setup(threads: int | None = None):
    import torch

    n = threads or THREADS
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch


def build(p: Problem, seed: int = 0):
    import torch

    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(p.widths[:-1], p.widths[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(p.widths) - 2:
            layers.append(torch.nn.Softplus())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    return model, opt


def make_step(p: Problem, x_train, model, opt, *, compiled: bool = False):
    import torch

    n = x_train.shape[0]
    sigma = SIGMA

    def loss_fn(x, eps):
        s = model(x + sigma * eps)
        return 0.5 * ((s + eps / sigma) ** 2).sum(dim=-1).mean()

    def opt_step():
        opt.step()

    if compiled:
        loss_fn = torch.compile(loss_fn)
        opt_step = torch.compile(opt_step)

    def step():
        idx = torch.randint(0, n, (p.batch,))
        x = x_train[idx]
        eps = torch.randn_like(x)
        loss = loss_fn(x, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt_step()
        return loss

    return step


class Runner:
    """A built model/optimiser/step; :meth:`warm` compiles (``torch.compile``) or warms up,
    :meth:`segment` times back-to-back steps. Any failure is kept in ``error`` (reported n/a)."""

    def __init__(self, p: Problem, x_np, *, compiled: bool = False, threads: int = THREADS):
        self.p, self.compiled, self.threads = p, compiled, threads
        self.error: str | None = None
        self.warm_s: float | None = None
        self.last_loss: float | None = None
        try:
            torch = _setup(threads)
            self.x_train = torch.from_numpy(x_np)
            self.model, self.opt = build(p)
            self.step = make_step(p, self.x_train, self.model, self.opt, compiled=compiled)
        except Exception as e:  # noqa: BLE001
            self._fail(e)

    def _fail(self, e: BaseException) -> None:
        msg = str(e).strip().splitlines()
        self.error = f"{type(e).__name__}: {msg[0][:200] if msg else ''}"

    def warm(self, steps: int | None = None) -> None:
        if self.error:
            return
        steps = steps if steps is not None else (10 if self.compiled else 5)
        try:
            _setup(self.threads)
            t0 = time.perf_counter()
            for _ in range(steps):
                loss = self.step()
            self.last_loss = loss.item()
            self.warm_s = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - e.g. torch.compile without a working toolchain
            self._fail(e)

    def segment(self, steps: int, time_limit: float) -> float | None:
        """Steps/s of up to ``steps`` steps, stopping early once ``time_limit`` seconds have
        passed (a loaded machine must not stall the suite). The loss is fetched with ``.item()``
        every ``FETCH_EVERY`` steps and after the last step (eager CPU ops are synchronous)."""
        if self.error:
            return None
        try:
            _setup(self.threads)
            t0, c0 = time.perf_counter(), time.process_time()
            done = 0
            while done < steps:
                loss = self.step()
                done += 1
                if done % FETCH_EVERY == 0:
                    self.last_loss = loss.item()
                if time.perf_counter() - t0 > time_limit:
                    break
            self.last_loss = loss.item()
            self.cpu_rate = done / max(time.process_time() - c0, 1e-9)
            return done / (time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001
            self._fail(e)
            return None


_CHILD = """
import json, sys
from benchmarks import bench_torch
from benchmarks.common import LARGE, SMALL, data_for
out = {}
for p, steps, limit in json.loads(sys.argv[1]):
    p = {"SMALL": SMALL, "LARGE": LARGE}[p]
    r = bench_torch.Runner(p, data_for(p))
    r.warm()
    v = r.segment(steps, limit)
    out[p.name] = {"steps_per_sec": v, "cpu_rate": r.cpu_rate} if v is not None else {"error": r.error}
print(json.dumps(out))
"""


def in_subprocess(plan: list[tuple[str, int, float]], env_extra: dict, timeout: float = 300) -> dict:
    """Eager steps/s measured in a fresh interpreter with extra environment variables (e.g.
    ``OMP_WAIT_POLICY=PASSIVE``, which must be set before the OpenMP runtime starts)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, **env_extra, "PYTHONPATH": str(repo)}
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(plan)], capture_output=True,
                              env=env, cwd=repo, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.decode(errors="replace")[-300:]}
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])
