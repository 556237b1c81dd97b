"""``ancestral``: decode draws from the latent prior, x = dec(z), z ~ N(0, I_K).

For models with a decoder (``mlp`` with ``latent: K``; the VAE family). No Markov chain:
``sample.steps`` and ``sample.step_size`` are ignored, ``init`` only fixes the particle count.
"""

from __future__ import annotations

from dsmcli.samplers.base import require


def check(target, cfg) -> None:
    require(target.decode is not None,
            f"sample.kind: 'ancestral' decodes prior samples, and {target.description} has no decoder "
            "(use model.kind mlp or conv with model.latent set)")


def run(target, x0, key, cfg):
    import jax

    z = jax.random.normal(key, (x0.shape[0], target.latent_dim), x0.dtype)
    return target.decode(z), {}
