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
    info holds the sampler's diagnostics averaged over particles."""
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
    run = jax.jit(lambda x, k: sampler.run(target, x, k, sample_cfg))
    run = run.lower(jax.ShapeDtypeStruct((batch, exp.data.dim), jnp.float32, sharding=shard), key_run).compile()
    need = memory.compiled_bytes(run)
    if need is not None:
        memory.check(need, f"the sampler ({batch} particles per dispatch)", "lower sample.batch (or sample.n)",
                     device=mesh.devices.flat[0])
    x0 = init_particles(sample_cfg.init, key_init, n, exp.data)
    outs, infos = [], []
    from dsmcli import progress

    with progress.Bar(f"sample ({sample_cfg.kind})", n, unit="particle") as bar:
        for i, start in enumerate(range(0, n, batch)):
            xb = x0[start : start + batch]
            m = len(xb)
            if m < batch:
                xb = jnp.concatenate([xb, jnp.repeat(xb[-1:], batch - m, 0)])
            if shard is not None:  # particles split over the data axis; the score is row-wise
                xb = jax.device_put(xb, shard)
            x, info = run(xb, jax.random.fold_in(key_run, i))
            x = jax.block_until_ready(x)
            outs.append(x[:m])
            infos.append((m, info))
            bar.update(start + m)
    x = np.asarray(jnp.concatenate(outs))
    summary = {}
    for name in infos[0][1]:
        summary[name] = float(sum(m * float(info[name]) for m, info in infos) / n)
    return x, summary


def sample_metrics(x: np.ndarray, data, seed: int) -> dict:
    """Sample metrics against held-out data.

    ``escaped_fraction``: particles that are non-finite or beyond 100× the data's extent (a
    sampler that diverged off the data, e.g. where a reconstruction read-out is unreliable).
    ``mmd`` and ``sliced_w2`` are computed on the other particles; ``mode_weights`` are fractions
    of *all* particles, and ``mode_weight_error`` is the total variation to the true weights
    with the escaped mass as an extra outcome: ½(Σₖ|ŵₖ − wₖ| + escaped_fraction).
    """
    import jax

    from dsmcli import sample_metrics as sm

    bound = 100.0 * max(1.0, float(np.abs(data.x_test).max()))
    kept = np.isfinite(x).all(1) & (np.abs(np.nan_to_num(x)).max(1) <= bound)
    out = {"escaped_fraction": float(1 - kept.mean())}
    xs = x[kept]
    key = jax.random.key(seed)
    if len(xs) >= 2:
        try:
            out["mmd"] = sm.mmd(xs, data.x_test, key=key)
        except ValueError:  # the particles collapsed onto one point: bandwidths from the data alone
            half = len(data.x_test) // 2
            med = sm.median_pairwise_distance(data.x_test[:half], data.x_test[half:], key=key)
            out["mmd"] = sm.mmd_fixed(xs, data.x_test, np.asarray([0.1, 0.2, 0.5, 1, 2, 5]) * med)
        out["sliced_w2"] = sm.sliced_w2(xs, data.x_test, key=key)
    if data.image_shape is not None and data.y_train is not None and len(xs) >= 2:
        from dsmcli.fd import fd_metrics

        out.update(fd_metrics(xs, data))
    if data.report_modes:
        true = np.asarray(data.density.component_weights)
        counts = np.zeros(len(true))
        if len(xs):
            counts = np.asarray(sm.mode_weights(data.density.component_log_probs(jax.numpy.asarray(xs)))) * len(xs)
        weights = counts / len(x)
        out["mode_weights"] = [round(float(w), 4) for w in weights]
        out["mode_weight_error"] = float(0.5 * (np.abs(weights - true).sum() + out["escaped_fraction"]))
    return out


def sample_names(run_dir: Path, kind: str, n: int, seed: int):
    """``samples/<sampler>-<n>-s<seed>.npz``, then ``…-2.npz``, ``…-3.npz``, …: the candidates
    for a new sample's name (the first free one is taken atomically: never an overwrite of an
    earlier sample, which may have used other sampler settings)."""
    import itertools

    base = run_dir / "samples" / f"{kind}-{n}-s{seed}"
    yield base.with_suffix(".npz")
    for i in itertools.count(2):
        yield base.with_name(f"{base.name}-{i}.npz")
