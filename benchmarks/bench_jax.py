"""Bare-JAX reference: the same MLP, DSM loss and Adam as ``dsm train``, written as a plain
params pytree (no Flax), one ``jax.jit`` of a ``lax.scan`` over ``SCAN`` steps. Also the
machine's matmul rate (``jnp.dot`` of 2048×2048 float32)."""

from __future__ import annotations

import time

import numpy as np

from benchmarks.common import LR, SIGMA, Problem

SCAN = 100


def init_params(p: Problem, seed: int = 0):
    """LeCun-normal kernels and zero biases, as ``flax.nnx.Linear`` initialises them."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(seed), len(p.widths) - 1)
    init = jax.nn.initializers.lecun_normal()
    return [
        {"w": init(k, (a, b), jnp.float32), "b": jnp.zeros((b,), jnp.float32)}
        for k, a, b in zip(keys, p.widths[:-1], p.widths[1:])
    ]


def softplus_split(x):
    """softplus written as relu(x) + log1p(exp(-|x|)), with the exact derivative sigmoid(x):
    the same values bit for bit as ``jax.nn.softplus`` (= logaddexp(x, 0)) without logaddexp's
    selects. Used only by the ablation study (benchmarks/ablations.py), to test whether the
    formulation or the transcendental functions themselves make softplus expensive on XLA:CPU."""
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def f(x):
        return jax.nn.relu(x) + jnp.log1p(jnp.exp(-jnp.abs(x)))

    f.defjvps(lambda t, ans, x: jax.nn.sigmoid(x) * t)
    return f(x)


def activation(name: str):
    import jax

    return {"softplus": jax.nn.softplus, "softplus_split": softplus_split, "relu": jax.nn.relu}[name]


def mlp(params, x, act=None):
    import jax

    act = act or jax.nn.softplus
    for layer in params[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def dsm_loss(params, x, key, sigma=SIGMA, act=None):
    import jax
    import jax.numpy as jnp

    eps = jax.random.normal(key, x.shape, x.dtype)
    s = mlp(params, x + sigma * eps, act)
    return 0.5 * jnp.mean(jnp.sum((s + eps / sigma) ** 2, axis=-1))


def make_runner(p: Problem, x_train, *, length: int = SCAN, with_grad_norm: bool = False,
                act: str = "softplus"):
    """(compiled, state, x_on_device, compile_s); ``compiled(state, x, start)`` runs ``length`` fused
    steps from step ``start`` and returns (state, per-step losses); the state is donated.
    ``with_grad_norm`` adds the trainer's per-step global gradient norm to the outputs."""
    import jax
    import jax.numpy as jnp
    import optax

    tx = optax.adam(LR)
    base = jax.random.key(1)
    act_fn = activation(act)

    def scan_fn(state, x, start):
        def body(s, t):
            params, opt_state = s
            kb, kn = jax.random.split(jax.random.fold_in(base, t))
            idx = jax.random.randint(kb, (p.batch,), 0, x.shape[0])
            loss, grads = jax.value_and_grad(dsm_loss)(params, x[idx], kn, SIGMA, act_fn)
            updates, opt_state = tx.update(grads, opt_state, params)
            out = (loss, optax.tree.norm(grads)) if with_grad_norm else loss
            return (optax.apply_updates(params, updates), opt_state), out

        return jax.lax.scan(body, state, start + jnp.arange(length))

    params = init_params(p)
    state = (params, tx.init(params))
    jitted = jax.jit(scan_fn, donate_argnums=0)
    x_dev = jax.device_put(np.asarray(x_train))
    t0 = time.perf_counter()
    compiled = jitted.lower(state, x_dev, np.int32(0)).compile()
    compile_s = time.perf_counter() - t0
    return compiled, state, x_dev, compile_s


class BareRunner:
    """The compiled bare-JAX scan; :meth:`segment` times ``dispatches`` back-to-back scans of
    ``SCAN`` steps, fetching each scan's losses to the host as the trainer does."""

    def __init__(self, p: Problem, x_train, *, with_grad_norm: bool = False, act: str = "softplus",
                 length: int = SCAN):
        self.compiled, self.state, self.x, self.compile_s = make_runner(
            p, x_train, with_grad_norm=with_grad_norm, act=act, length=length)
        self.length = length
        self.step = 0
        self._run()  # the first execution (allocations) is not timed

    def _run(self):
        import jax

        self.state, out = self.compiled(self.state, self.x, np.int32(self.step))
        self.step += self.length
        out = jax.device_get(out)
        self.last_loss = float(np.mean(out[0] if isinstance(out, tuple) else out))

    def segment(self, dispatches: int) -> float:
        """Steps/s (wall clock); steps per CPU-second of this process in ``cpu_rate``."""
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(dispatches):
            self._run()
        self.cpu_rate = dispatches * self.length / max(time.process_time() - c0, 1e-9)
        return dispatches * self.length / (time.perf_counter() - t0)


class TrainerStepRunner:
    """``dsmcli.train.StepFunction`` (the trainer's own compiled scan: Flax NNX model, optax
    chain, grad norm, finiteness flags) driven by the same loop as :class:`BareRunner`, so that
    the difference between the two is the compiled step graph alone."""

    def __init__(self, p: Problem, x_train, workdir, *, length: int = SCAN):
        import jax

        from benchmarks.bench_dsm import write_config
        from dsmcli import api, experiment, optim
        from dsmcli.train import StepFunction

        cfg = api.resolve_train_config(str(write_config(p, workdir, x_train, 10 * length, length)))
        exp = experiment.build(cfg)
        tx = optim.build(cfg.optim, cfg.train.steps)
        state = {"params": exp.params, "opt_state": tx.init(exp.params)}
        x = np.asarray(exp.data.x_train)
        try:  # mirror the trainer's device placement where it has one (dsmcli.parallel)
            from dsmcli import parallel

            mesh = parallel.mesh(cfg.parallel, cfg.train.batch_size)
            self.state = jax.device_put(state, parallel.replicated(mesh))
            self.x = jax.device_put(x, parallel.replicated(mesh))
            self.fn = StepFunction(exp, tx, mesh)
        except (ImportError, AttributeError):
            self.state, self.x = jax.device_put(state), jax.device_put(x)
            self.fn = StepFunction(exp, tx)
        self.length = length
        self.step = 0
        self._run()
        self.compile_s = self.fn.compile_s

    def _run(self):
        import jax

        self.state, metrics = self.fn(self.state, self.x, self.step, self.length)
        self.step += self.length
        metrics = jax.device_get(metrics)
        self.last_loss = float(np.mean(metrics["loss"]))

    def segment(self, dispatches: int) -> float:
        """Steps/s (wall clock); steps per CPU-second of this process in ``cpu_rate``."""
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(dispatches):
            self._run()
        self.cpu_rate = dispatches * self.length / max(time.process_time() - c0, 1e-9)
        return dispatches * self.length / (time.perf_counter() - t0)


def matmul_gflops(n: int = 2048, repeats: int = 10) -> dict:
    """Best and median GFLOP/s of ``jnp.dot`` of two n×n float32 matrices (2n³ FLOPs each), and
    the median GFLOP per CPU-second of this process (``cpu_median``)."""
    import jax
    import jax.numpy as jnp

    k1, k2 = jax.random.split(jax.random.key(0))
    a = jax.random.normal(k1, (n, n), jnp.float32)
    b = jax.random.normal(k2, (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    rates, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        dot(a, b).block_until_ready()
        rates.append(2 * n**3 / (time.perf_counter() - t0) / 1e9)
        cpu.append(2 * n**3 / max(time.process_time() - c0, 1e-9) / 1e9)
    rates.sort()
    cpu.sort()
    return {"best": rates[-1], "median": rates[len(rates) // 2], "all": [round(r, 1) for r in rates],
            "cpu_median": cpu[len(cpu) // 2]}
