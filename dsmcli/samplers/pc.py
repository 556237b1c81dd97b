"""``pc``: the predictor–corrector sampler of the reverse-time SDE (Song et al. 2021, §4.2,
Algorithms 2–3; the authors' ``sampling.py``).

Time grid: N = ``sample.steps`` steps of Δt = (1 − t_eps)/N from t₀ = 1, step i at tᵢ = 1 − iΔt
moving the state to tᵢ − Δt (the last ends at t_eps). At each tᵢ, as in the authors' code, first
the corrector, then the predictor (z ~ N(0, I) fresh at every use; s = s_θ(x, tᵢ)):

* ``corrector: langevin``, ``corrector_steps`` times: x ← x + εs + √(2ε) z with the step
  from the signal-to-noise ratio r = ``snr``:

      ε = 2 αᵢ (r ‖z‖ / ‖s‖)²        (αᵢ = 1 for VE, 1 − β(tᵢ)Δt for VP and sub-VP)

  with ‖·‖ the mean over the dispatch's particles of each one's Euclidean norm, as in the
  authors' code, so that ε is one number per step and ‖εs‖ / ‖√(2ε) z‖ = r √αᵢ on average: the
  drift is r times the injected noise. (Per-particle norms would make ε depend on the state —
  huge near a mode, where s → 0 — and the chain would no longer leave p_t invariant: on a 2-D
  mixture with the exact score they moved the mode weights from 0.30/0.70 to 0.40/0.60.) In
  the ULA form x + (ε′/2)s + √ε′ z, ε′ = 2ε.
* ``predictor: reverse_diffusion``: x ← x − f + G² s + G z with (f, G) the SDE's discretisation
  (``dsmcli.sde.SDE.reverse_step``); ``euler_maruyama``: x ← x − (a(tᵢ)x − g(tᵢ)² s)Δt +
  g(tᵢ)√Δt z; ``none``: corrector only (C-only sampling).

``denoise: true`` returns the last update's mean (its noise not added), as the authors'
``noise_removal``. Starts from the SDE's prior (the oracle: its exact p₁; ``sample.init`` is
not used). ``nfe`` = N · (corrector_steps·[corrector] + [predictor]) score evaluations per
particle.

Inpainting (``sample.inpaint``; the authors' ``get_pc_inpainter``): after every update the known
coordinates are replaced by the observed values y perturbed to the state's time,
m(t)y + s(t)z (their mean m(t)y in the mean), so the unknown ones are drawn given them.
"""

from __future__ import annotations

from dsmcli.samplers.base import require_sde

INPAINTS = True


def check(target, cfg) -> None:
    require_sde(target, "pc")


def initial(target, key, n):
    return target.prior_sample(key, n)


def nfe(cfg) -> int:
    return cfg.steps * ((cfg.corrector != "none") * cfg.corrector_steps + (cfg.predictor != "none"))


def run(target, x0, key, cfg, condition=None):
    import jax
    import jax.numpy as jnp

    from dsmcli import progress

    sde = target.sde
    n_steps = cfg.steps
    dt = (1.0 - sde.t_eps) / n_steps

    def rownorm(v):
        return jnp.sqrt(jnp.sum(v**2, -1, keepdims=True))

    def hold(x, x_mean, t, k):
        """The known coordinates, perturbed to time ``t`` (inpainting); the rest untouched."""
        if condition is None:
            return x, x_mean
        y, known = condition
        m, s = sde.marginal(t)
        noisy = m * y + s * jax.random.normal(k, y.shape, y.dtype)
        return jnp.where(known, noisy, x), jnp.where(known, m * y, x_mean)

    def corrector(x, x_mean, t, k):
        alpha = sde.corrector_alpha(t, dt)

        def one(carry, kk):
            x, _ = carry
            k_z, k_hold = jax.random.split(kk)
            s = target.score_t(x, t)
            z = jax.random.normal(k_z, x.shape, x.dtype)
            eps = 2 * alpha * (cfg.snr * jnp.mean(rownorm(z)) / jnp.maximum(jnp.mean(rownorm(s)), 1e-30)) ** 2
            x_mean = x + eps * s
            return hold(x_mean + jnp.sqrt(2 * eps) * z, x_mean, t, k_hold), None

        (x, x_mean), _ = jax.lax.scan(one, (x, x_mean), jax.random.split(k, cfg.corrector_steps))
        return x, x_mean

    def predictor(x, t, k):
        k_z, k_hold = jax.random.split(k)
        s = target.score_t(x, t)
        z = jax.random.normal(k_z, x.shape, x.dtype)
        if cfg.predictor == "reverse_diffusion":
            f, g_step = sde.reverse_step(t, dt)
            x_mean = x - f * x + g_step**2 * s
            x = x_mean + g_step * z
        else:  # euler_maruyama
            g = sde.diffusion(t)
            x_mean = x - (sde.drift_coef(t) * x - g**2 * s) * dt
            x = x_mean + g * jnp.sqrt(dt) * z
        return hold(x, x_mean, t - dt, k_hold)

    def step(carry, i):
        x, x_mean = carry
        t = jnp.asarray(1.0 - i * dt, x.dtype)
        k_c, k_p = jax.random.split(jax.random.fold_in(key, i))
        if cfg.corrector == "langevin":
            x, x_mean = corrector(x, x_mean, t, k_c)
        if cfg.predictor != "none":
            x, x_mean = predictor(x, t, k_p)
        return (x, x_mean), None

    x_start = x0 if condition is None else hold(x0, x0, jnp.asarray(1.0, x0.dtype), jax.random.fold_in(key, n_steps))[0]
    (x, x_mean), _ = progress.scan(step, (x_start, x_start), jnp.arange(n_steps))
    out = x_mean if cfg.denoise else x
    if condition is not None:
        out = jnp.where(condition[1], condition[0], out)
    return out, {"nfe": jnp.asarray(float(nfe(cfg)))}
