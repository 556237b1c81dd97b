"""``dsm sample``: draw particles from a trained run with a registered sampler, save them,
plot them over the data density and score them against held-out data."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def init_particles(init, key, n: int, data):
    """Initial particles ``(n, D)``: ``uniform`` on [low, high]^D, ``gaussian`` N(0, std²I),
    or ``data`` (training rows drawn with replacement)."""
    import jax

    dim = data.dim
    if init.kind == "uniform":
        return jax.random.uniform(key, (n, dim), minval=init.low, maxval=init.high)
    if init.kind == "gaussian":
        return init.std * jax.random.normal(key, (n, dim))
    idx = jax.random.randint(key, (n,), 0, len(data.x_train))
    return jax.numpy.asarray(data.x_train)[idx]


def draw(exp, params, sample_cfg, seed: int) -> tuple[np.ndarray, dict]:
    """Run the configured sampler on ``sample_cfg.n`` particles in dispatches of
    ``sample_cfg.batch`` (one compilation; the last batch is padded). Returns (x, info) where
    info holds the sampler's diagnostics averaged over particles, ``sample_s`` (the wall time of
    the dispatches, compilation excluded) and, for MCMC samplers, ``trace`` (draws, chains,
    projections) of the first dispatch's chains, for ``dsmcli.metrics.mcmc``; with
    ``sample.inpaint``, ``inpaint`` (the observed rows and the known-coordinate mask)."""
    import jax
    import jax.numpy as jnp

    from dsmcli import parallel
    from dsmcli.samplers import REGISTRY, Target

    sampler = REGISTRY[sample_cfg.kind]
    sigmas = exp.objective.sigmas()
    decode, latent = exp.decoder(params)
    if not exp.objective.has_score and decode is None:  # e.g. autorec: a rating matrix has no density
        from dsmcli.errors import NothingToSample

        raise NothingToSample(
            f"dsm sample: objective.kind '{exp.cfg.objective.kind}' has no score read-out and model.kind "
            f"'{exp.cfg.model.kind}' no decoder, so no sampler can draw from this run; evaluate it with "
            f"dsm eval RUN_DIR"
        )
    target = Target(
        decode=decode,
        latent_dim=latent,
        score=exp.score_fn(params),
        score_at=exp.score_at_fn(params),
        energy=exp.energy_fn(params),
        sigmas=None if sigmas is None else tuple(float(s) for s in sigmas),
        score_t=exp.score_t_fn(params),
        sde=exp.objective.sde,
        prior_sample=None if exp.objective.sde is None else (
            lambda key, n: exp.objective.prior_sample(key, n, exp.data.dim)),
        training_codes=None if latent is None else (
            lambda: exp.codes(params, exp.data.x_train, exp.cfg.train.eval_batch)),
        seed=exp.cfg.seed,
        description=f"objective.kind '{exp.cfg.objective.kind}' with model.kind '{exp.cfg.model.kind}'",
    )
    sampler.check(target, sample_cfg)
    from dsmcli import memory

    key_init, key_run = jax.random.split(jax.random.key(seed))
    n = sample_cfg.n
    # The initial particles, the samples and their concatenation (float32), on the host.
    memory.check(3 * 4 * n * exp.data.dim, f"sample.n {n} particles of {exp.data.dim} dimensions",
                 "lower sample.n (or --n)")
    batch = min(sample_cfg.batch or n, n)
    mesh = parallel.mesh(exp.cfg.parallel)
    shard = parallel.batch_sharded(mesh) if mesh.size > 1 and batch % mesh.size == 0 else None
    cond = None
    if sample_cfg.inpaint is not None:  # particle i is conditioned on the observed part of test row i mod n_test
        from dsmcli import inpaint

        cond = inpaint.condition(sample_cfg.inpaint, exp.data, n, seed)
    run = jax.jit(lambda x, k, *c: sampler.run(target, x, k, sample_cfg, *([tuple(c)] if c else [])))
    rows = jax.ShapeDtypeStruct((batch, exp.data.dim), jnp.float32, sharding=shard)
    cond_shapes = () if cond is None else (rows, jax.ShapeDtypeStruct((batch, exp.data.dim), jnp.bool_, sharding=shard))
    run = run.lower(rows, key_run, *cond_shapes).compile()
    need = memory.compiled_bytes(run)
    if need is not None:
        memory.check(need, f"the sampler ({batch} particles per dispatch)", "lower sample.batch (or sample.n)",
                     device=mesh.devices.flat[0])
    if hasattr(sampler, "initial"):  # e.g. the reverse-time samplers start from the SDE's prior
        x0 = jnp.asarray(sampler.initial(target, key_init, n), jnp.float32)
    else:
        x0 = init_particles(sample_cfg.init, key_init, n, exp.data)
    import time

    from dsmcli import progress

    outs, infos = [], []
    t0 = time.perf_counter()
    with progress.Bar(f"sample ({sample_cfg.kind})", n, unit="particle") as bar:
        for i, start in enumerate(range(0, n, batch)):
            parts = [x0[start : start + batch]] + ([] if cond is None else [jnp.asarray(c[start : start + batch]) for c in cond])
            m = len(parts[0])
            if m < batch:
                parts = [jnp.concatenate([p, jnp.repeat(p[-1:], batch - m, 0)]) for p in parts]
            if shard is not None:  # particles split over the data axis; the score is row-wise
                parts = [jax.device_put(p, shard) for p in parts]
            with progress.within_dispatch(bar, start, m):
                x, info = run(parts[0], jax.random.fold_in(key_run, i), *parts[1:])
                x = jax.block_until_ready(x)
            outs.append(x[:m])
            infos.append((m, info))
            bar.update(start + m)
    x = np.asarray(jnp.concatenate(outs))
    summary = {"sample_s": round(time.perf_counter() - t0, 3)}
    if cond is not None:
        summary["inpaint"] = {"truth": cond[0], "known": cond[1]}
    for name in infos[0][1]:
        if name == "trace":  # the first dispatch's chains (Trace bounds their number): kept whole
            summary["trace"] = np.asarray(infos[0][1]["trace"])[:, : min(infos[0][0], sample_cfg.trace_chains)]
        else:
            summary[name] = float(sum(m * float(info[name]) for m, info in infos) / n)
    return x, summary


def sample_metrics(x: np.ndarray, data, seed: int, *, exp=None, params=None, info=None,
                   names: list[str] | None = None) -> dict:
    """The sample (and chain) metrics of the registry (``dsmcli.metrics``) for particles ``x``:
    every default one that applies, or those named; plus, under ``protocol``, what the metrics
    that describe themselves (fd, kid) were computed from (n, seed, features, reference set)."""
    from dsmcli import metrics
    from dsmcli.metrics.base import protocol

    ctx = metrics.SampleSet(x, data, seed, exp=exp, params=params, info=info or {})
    chosen = metrics.select(names, metrics.COMMAND_INPUTS["sample"], ctx, "sample")
    out = metrics.compute(chosen, ctx)
    described = protocol(chosen, ctx)
    return {**out, "protocol": described} if described else out


def sample_names(run_dir: Path, kind: str, n: int, seed: int):
    """``samples/<sampler>-<n>-s<seed>.npz``, then ``…-2.npz``, ``…-3.npz``, …: the candidates
    for a new sample's name (the first free one is taken atomically: never an overwrite of an
    earlier sample, which may have used other sampler settings)."""
    import itertools

    base = run_dir / "samples" / f"{kind}-{n}-s{seed}"
    yield base.with_suffix(".npz")
    for i in itertools.count(2):
        yield base.with_name(f"{base.name}-{i}.npz")
