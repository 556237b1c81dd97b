"""Bare-JAX reference: the same MLP (with dsm's softplus), DSM loss and Adam as ``dsm train``,
written as a plain params pytree (no Flax), one ``jax.jit`` of a ``lax.scan`` over ``SCAN``
steps, compiled with XLA's default options. Also the machine's matmul rate (``jnp.dot`` of
2048×2048 float32) and the rate of the LARGE step's parts alone (:class:`PartRunner`: its
matmuls, its Adam update, its RNG)."""

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


def activation(name: str):
    """``softplus``: dsm's own (``dsmcli.models.activations.softplus``, as ``dsm train`` uses);
    ``jax.nn.softplus``: the library's (ablation); ``relu``: no transcendental at all (ablation)."""
    import jax

    from dsmcli.models.activations import softplus

    return {"softplus": softplus, "jax.nn.softplus": jax.nn.softplus, "relu": jax.nn.relu}[name]


def mlp(params, x, act=None):
    act = act or activation("softplus")
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
                act: str = "softplus", compiler_options: dict | None = None):
    """(compiled, state, x_on_device, compile_s); ``compiled(state, x, start)`` runs ``length`` fused
    steps from step ``start`` and returns (state, per-step losses); the state is donated.
    ``with_grad_norm`` adds the trainer's per-step global gradient norm to the outputs;
    ``compiler_options`` go to XLA for this compilation (default: none)."""
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
    compiled = jitted.lower(state, x_dev, np.int32(0)).compile(compiler_options=compiler_options)
    compile_s = time.perf_counter() - t0
    return compiled, state, x_dev, compile_s


class _Timed:
    """``segment(n)``: ``n`` back-to-back dispatches of ``self._run()`` (``self.length`` steps each)."""

    length: int

    def _run(self):
        raise NotImplementedError

    def segment(self, dispatches: int) -> float:
        """Steps/s (wall clock); steps per CPU-second of this process in ``cpu_rate``."""
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(dispatches):
            self._run()
        self.cpu_rate = dispatches * self.length / max(time.process_time() - c0, 1e-9)
        return dispatches * self.length / (time.perf_counter() - t0)


class BareRunner(_Timed):
    """The compiled bare-JAX scan; :meth:`segment` times ``dispatches`` back-to-back scans of
    ``SCAN`` steps, fetching each scan's losses to the host as the trainer does."""

    def __init__(self, p: Problem, x_train, *, with_grad_norm: bool = False, act: str = "softplus",
                 length: int = SCAN, compiler_options: dict | None = None):
        self.compiled, self.state, self.x, self.compile_s = make_runner(
            p, x_train, with_grad_norm=with_grad_norm, act=act, length=length, compiler_options=compiler_options)
        self.length = length
        self.step = 0
        self._run()  # the first execution (allocations) is not timed

    def _run(self):
        import jax

        self.state, out = self.compiled(self.state, self.x, np.int32(self.step))
        self.step += self.length
        out = jax.device_get(out)
        self.last_loss = float(np.mean(out[0] if isinstance(out, tuple) else out))


class TrainerStepRunner(_Timed):
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


class PartRunner(_Timed):
    """One part of the training step alone, with the step's shapes, in a ``lax.scan`` of
    ``length`` iterations (same loop and timing as :class:`BareRunner`):

    * ``matmuls``: only the matrix products: forward X·W₁, H₁·W₂, H₂·W₃ and backward
      ∂W₃ = H₂ᵀG₃, G₂ = G₃W₃ᵀ, ∂W₂ = H₁ᵀG₂, G₁ = G₂W₂ᵀ, ∂W₁ = XᵀG₁ (no input gradient); the
      weights move by a tiny multiple of their gradient each iteration so that nothing can be
      hoisted out of the loop. No activation, loss, RNG, gather or optimizer: the time of a step
      that were nothing but its matmuls, the ceiling of ``step_flops / time`` for this model.
    * ``adam``: only ``optax.adam``'s update and ``apply_updates`` on all parameters, fed a
      gradient that costs one fused multiply-add per entry.
    * ``rng``: only the step's randomness: fold_in/split of the step key, the batch indices and
      the B × D standard-normal noise (summed, so that every draw is computed).

    The three are disjoint pieces of the DSM step; the sum of their times is a lower bound on
    the step's time on XLA:CPU, which runs the step's ops one after the other."""

    def __init__(self, p: Problem, x_train, part: str, length: int = SCAN):
        import jax
        import jax.numpy as jnp
        import optax

        params = init_params(p)
        x0 = jax.device_put(np.asarray(x_train[: p.batch]))
        if part == "matmuls":
            def body(state, t):
                ws, x = state
                hs = [x]
                for w in ws:
                    hs.append(hs[-1] @ w)
                g = hs[-1] * 1e-3
                new = []
                for i in range(len(ws) - 1, -1, -1):
                    new.append(ws[i] - 1e-9 * (hs[i].T @ g))
                    if i:
                        g = g @ ws[i].T
                return (new[::-1], x), None

            state = ([layer["w"] for layer in params], x0)
        elif part == "adam":
            tx = optax.adam(LR)

            def body(state, t):
                ps, opt_state = state
                grads = jax.tree.map(lambda v: v * 1e-3 + t.astype(v.dtype) * 1e-7, ps)
                updates, opt_state = tx.update(grads, opt_state, ps)
                return (optax.apply_updates(ps, updates), opt_state), None

            state = (params, tx.init(params))
        elif part == "rng":
            base = jax.random.key(1)
            n = x_train.shape[0]

            def body(acc, t):
                kb, kn = jax.random.split(jax.random.fold_in(base, t))
                idx = jax.random.randint(kb, (p.batch,), 0, n)
                eps = jax.random.normal(kn, (p.batch, p.dim), jnp.float32)
                # every draw must reach the output, or XLA computes only the ones that do
                return acc + jnp.sum(eps) + jnp.sum(idx).astype(jnp.float32), None

            state = jnp.float32(0.0)
        else:
            raise ValueError(part)

        def run(state, start):
            return jax.lax.scan(body, state, start + jnp.arange(length))[0]

        self.state = state
        self.compiled = jax.jit(run, donate_argnums=0).lower(self.state, np.int32(0)).compile()
        self.length = length
        self.step = 0
        self._run()

    def _run(self):
        import jax

        self.state = self.compiled(self.state, np.int32(self.step))
        self.step += self.length
        jax.block_until_ready(self.state)


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
