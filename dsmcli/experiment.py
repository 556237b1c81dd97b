"""An experiment assembled from its config: data set, objective, network (split into a graph
definition and a parameter pytree for the functional training loop).

The network is driven functionally: ``net(params)`` merges the graph with a parameter pytree
inside a traced function, so a plain ``jax.jit``/``lax.scan`` sees only arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Experiment:
    cfg: Any
    data: Any
    objective: Any
    graphdef: Any
    params: Any
    cache: dict = field(default_factory=dict, repr=False)  # values that depend on cfg and data alone

    def net(self, params):
        """The network module rebuilt from a parameter pytree (inside traced code: free)."""
        from flax import nnx

        return nnx.merge(self.graphdef, params)

    def score_fn(self, params):
        return lambda x: self.objective.score(self.net(params), x)

    def score_at_fn(self, params):
        """(x, σ) ↦ s(x, σ) for noise-conditional objectives, else None."""
        if not self.objective.noise_conditional:
            return None
        return lambda x, sigma: self.objective.score_at(self.net(params), x, sigma)

    def score_t_fn(self, params):
        """(x, t) ↦ s(x, t) for objectives with an SDE (``sde``, an oracle with ``sde``), else None."""
        if self.objective.sde is None:
            return None
        return lambda x, t: self.objective.score_t(self.net(params), x, t)

    def codes(self, params, x, block: int):
        """``objective.encode`` of the rows of ``x`` in blocks of ``block`` (one compilation: the
        last block is padded), as a NumPy array."""
        import jax
        import numpy as np

        block = max(1, min(block, len(x)))
        encode = jax.jit(lambda rows: self.objective.encode(self.net(params), rows))
        out = []
        for start in range(0, len(x), block):
            rows = np.asarray(x[start : start + block])
            m = len(rows)
            if m < block:
                rows = np.concatenate([rows, np.repeat(rows[-1:], block - m, 0)])
            out.append(np.asarray(encode(rows))[:m])
        return np.concatenate(out)

    def decoder(self, params):
        """(decode, latent size) for models with a bottleneck, else (None, None); ``decode(z,
        key)`` is ``objective.decode_sample`` (the decoder's mean, except for decoders that draw)."""
        latent = getattr(self.cfg.model, "latent", None)
        if latent is None:
            return None, None
        return (lambda z, key: self.objective.decode_sample(self.net(params), z, key)), latent

    def energy_fn(self, params):
        if not self.objective.has_energy:
            return None
        return lambda x: self.objective.energy(self.net(params), x)


def build(cfg) -> Experiment:
    """Data, objective and freshly initialised network of ``cfg`` (the network's init key is
    derived from ``cfg.seed``)."""
    from flax import nnx

    from dsmcli import data, models, objectives
    from dsmcli.jaxsetup import setup

    setup()
    dataset = data.build(cfg.data)
    objective = objectives.make(cfg.objective, dataset, cfg.model)

    def make():
        from dsmcli.models import conv_blocks

        rngs = nnx.Rngs(params=cfg.seed)
        with conv_blocks.convolutions(forward_mode=objective.forward_mode):
            model = models.build(cfg.model, dataset.dim, rngs, image_shape=dataset.image_shape, **objective.model_options())
        return objective.extend_model(model, rngs)

    check_model_size(cfg, make)
    graphdef, params = nnx.split(make())
    return Experiment(cfg, dataset, objective, graphdef, params)


# Bytes per parameter byte while training: the parameters, their gradient, Adam's two moments,
# an EMA copy and the host copy of a checkpoint.
TRAINING_COPIES = 6


def check_model_size(cfg, make) -> None:
    """Refuse a network whose parameters (with the optimiser's copies) cannot fit, from its
    shapes alone: ``nnx.eval_shape`` builds it abstractly, allocating nothing."""
    import jax
    import numpy as np
    from flax import nnx

    from dsmcli import memory

    try:
        abstract = nnx.state(nnx.eval_shape(make), nnx.Param)
    except Exception:  # a network that cannot be built abstractly is built (and checked) for real
        return
    nbytes = memory.tree_bytes(abstract)
    count = sum(int(np.prod(x.shape, dtype=np.float64)) for x in jax.tree.leaves(abstract))
    memory.check(TRAINING_COPIES * nbytes, f"model.kind {cfg.model.kind} ({count:,} parameters, with the "
                 f"optimiser's copies)", "use a smaller network (model.hidden, model.channels or model.latent)")
