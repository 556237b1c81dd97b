"""The probability-flow ODE of a forward SDE (Song et al. 2021, §4.3, eq. 13),

    dx/dt = f̃(x, t) = a(t) x − ½ g(t)² s(x, t),

whose solution has the same marginals p_t as the SDE, solved with diffrax (Kidger 2021): one
particle per solve, vmapped, so adaptive steps are each particle's own and a result does not
depend on the particles solved beside it. ``solver: dopri5`` is adaptive (``rtol``/``atol``,
diffrax's PID controller, initial step chosen by diffrax); ``heun`` and ``euler`` take ``steps``
fixed steps.

Network evaluations per particle, from diffrax's step count (rejected steps included; checked
against a counting vector field in the tests): dopri5 6·steps + 1 (seven stages, first-same-as-
last), heun 2·steps, euler steps.

``log_likelihood`` integrates the augmented ODE from t_eps to 1 (instantaneous change of
variables, Chen et al. 2018; Grathwohl et al. 2019):

    d/dt [x, ℓ] = [f̃(x, t), ∇·f̃(x, t)],   log p_{t_eps}(x) = log p₁(x(1)) + ℓ(1),

with ∇·f̃ = a(t)D − ½g(t)² tr ∇ₓs(x, t), the trace exact (a Jacobian by forward mode) or
Hutchinson's estimate vᵀ(∇ₓf̃)v with Rademacher v held fixed along the solve, ``n_probes`` of them
integrated beside the same trajectory.
"""

from __future__ import annotations

SOLVERS = ("dopri5", "heun", "euler")
MAX_STEPS = 16384


def _solver(name: str):
    import diffrax

    return {"dopri5": diffrax.Dopri5, "heun": diffrax.Heun, "euler": diffrax.Euler}[name]()


def evaluations(name: str, num_steps):
    """Vector-field evaluations of a solve of ``num_steps`` steps (accepted and rejected)."""
    return {"dopri5": 6 * num_steps + 1, "heun": 2 * num_steps, "euler": num_steps}[name]


def solve(field, y0, t0: float, t1: float, *, solver: str, rtol: float, atol: float, steps: int):
    """One solve of dy/dt = field(t, y) from t0 to t1 (``y0`` a pytree of one particle's
    state): (y(t1), network evaluations, whether the solver succeeded)."""
    import diffrax

    if solver == "dopri5":
        controller, dt0 = diffrax.PIDController(rtol=rtol, atol=atol), None
    else:
        controller, dt0 = diffrax.ConstantStepSize(), (t1 - t0) / steps
    sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, args: field(t, y)), _solver(solver), t0=t0, t1=t1,
                              dt0=dt0, y0=y0, stepsize_controller=controller, max_steps=MAX_STEPS,
                              saveat=diffrax.SaveAt(t1=True), throw=False)
    import jax

    y1 = jax.tree.map(lambda leaf: leaf[-1], sol.ys)
    return y1, evaluations(solver, sol.stats["num_steps"]), sol.result == diffrax.RESULTS.successful


def drift(sde, score_t):
    """f̃(x, t) for one particle ``x`` (D,)."""

    def f(t, x):
        return sde.drift_coef(t) * x - 0.5 * sde.diffusion(t) ** 2 * score_t(x[None], t)[0]

    return f


def sample(sde, score_t, x1, cfg):
    """Particles ``x1`` (B, D) at t = 1 carried by the ODE to t_eps: (x, nfe (B,), ok (B,))."""
    import jax

    f = drift(sde, score_t)
    one = lambda x: solve(f, x, 1.0, sde.t_eps, solver=cfg.solver, rtol=cfg.rtol, atol=cfg.atol, steps=cfg.steps)  # noqa: E731
    return jax.vmap(one)(x1)


def log_likelihood(sde, score_t, prior_log_prob, x, key, *, exact: bool, n_probes: int, solver: str,
                   rtol: float, atol: float, steps: int):
    """log p(x) of rows ``x`` (B, D) by the ODE: (log p (B, P), nfe (B,), ok (B,)) with P = 1
    for the exact trace and ``n_probes`` Hutchinson estimates otherwise (one per probe, all on the
    same trajectory)."""
    import jax
    import jax.numpy as jnp

    f = drift(sde, score_t)
    dim = x.shape[1]

    def one(x0, k):
        probes = jax.random.rademacher(k, (n_probes, dim), x0.dtype)

        def field(t, state):
            y, _ = state
            if exact:
                jac = jax.jacfwd(lambda z: f(t, z))(y)
                return f(t, y), jnp.trace(jac)[None]
            fy, vjp = jax.vjp(lambda z: f(t, z), y)
            return fy, jax.vmap(lambda v: jnp.dot(vjp(v)[0], v))(probes)

        width = 1 if exact else n_probes
        (y1, ell), nfe, ok = solve(field, (x0, jnp.zeros(width, x0.dtype)), sde.t_eps, 1.0, solver=solver,
                                   rtol=rtol, atol=atol, steps=steps)
        return prior_log_prob(y1[None])[0] + ell, nfe, ok

    return jax.vmap(one)(x, jax.random.split(key, x.shape[0]))
