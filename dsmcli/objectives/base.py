"""The interface every objective implements, and how a network's output is read.

An objective is built from its config section, the data set and the model config. It decides
how the network is read:

* ``mlp`` (or ``conv``, for images) as a score s(x) (score objectives) or as a reconstruction r(x) (autoencoder
  objectives, whose score read-out is (r(x) − x)/σ², Alain & Bengio 2014);
* ``energy`` through s(x) = −∇ₓE(x) (the gradient of Σᵢ E(xᵢ): rows are independent);
* ``tied_dae`` as a reconstruction, with Vincent's closed-form energy at the objective's σ;

and rejects model kinds it cannot read (``MODELS``). The loss is a pure function of the merged
network module, a batch, a PRNG key and the training set (on the device), so the generic
trainer can differentiate it, jit it and fuse many steps with ``lax.scan``.
"""

from __future__ import annotations

from typing import Any

from dsmcli.data.base import Dataset
from dsmcli.errors import UserError

SCORE_MODELS = ("mlp", "energy", "conv")
RECONSTRUCTION_MODELS = ("mlp", "tied_dae", "conv")


def reconstruction_kinds() -> list[str]:
    """The objective kinds that read an ``mlp`` as a reconstruction r(x)."""
    from dsmcli.objectives import REGISTRY

    return [k for k, m in REGISTRY.items() if getattr(m.make, "READS_RECONSTRUCTION", False) and not getattr(m.make, "NEEDS_LATENT", False)]


class Objective:
    trains: bool = True
    MODELS: tuple[str, ...] = SCORE_MODELS
    READS_RECONSTRUCTION: bool = False  # an ``mlp`` output is r(x), not s(x)
    NEEDS_LATENT: bool = False  # an ``mlp`` must have a ``latent`` bottleneck
    HANDLES_MISSING: bool = False  # the loss masks NaN entries (data sets with unobserved values)
    DATA_KINDS: tuple[str, ...] | None = None  # the data kinds it is defined on (None: any)
    NEEDS_LABELS: bool = False  # trains on class labels (a classifier, or a network fitted to them)
    forward_mode: bool = False  # the loss differentiates the network in forward mode (jvp, linearize)

    def __init__(self, cfg, data: Dataset, model_cfg):
        self.cfg = cfg
        self.data = data
        self.model_cfg = model_cfg
        if model_cfg.kind not in self.MODELS:
            raise UserError(
                f"model.kind: '{model_cfg.kind}' cannot be used with objective.kind '{cfg.kind}' "
                f"(allowed: {', '.join(self.MODELS)})"
            )
        if self.DATA_KINDS is not None and getattr(data, "kind", None) not in self.DATA_KINDS:
            raise UserError(
                f"data.kind: objective.kind '{cfg.kind}' is defined on data.kind {', '.join(self.DATA_KINDS)}, "
                f"not '{data.kind}'"
            )
        if getattr(model_cfg, "residual", False) and not self.READS_RECONSTRUCTION:
            raise UserError(
                f"model.residual: objective.kind '{cfg.kind}' does not read the network as a reconstruction; "
                f"residual r(x) = x + f(x) is for {', '.join(reconstruction_kinds())}"
            )
        if getattr(data, "has_missing", False) and not self.HANDLES_MISSING:
            raise UserError(
                f"objective.kind: '{cfg.kind}' cannot train on data.kind '{data.kind}', whose unobserved entries "
                f"are missing (NaN); use an objective that masks them (autorec)"
            )

    @property
    def model_kind(self) -> str:
        return self.model_cfg.kind

    def model_options(self) -> dict:
        """Requests to the network builder (e.g. ``stochastic_encoder=True`` for a VAE)."""
        return {}

    has_score: bool = True  # the objective defines a score read-out (autoencoders for codes do not)

    def encode(self, model, x):
        """Codes for the downstream tasks (probe, clustering), where the model has an encoder."""
        return model.encode(x)

    def reconstruct(self, model, x):
        """The model's reconstruction r(x), for models that reconstruct."""
        return model(x)

    def decode_mean(self, model, z):
        """Decoder output for latent ``z`` (ancestral sampling), for models with a decoder."""
        return model.decode(z)

    def decode_sample(self, model, z, key):
        """A draw of x ~ p(x|z) for ancestral sampling: the decoder's mean by default (the
        family's convention: samples are dec(z)); decoders without a closed-form mean (an
        autoregressive one) draw."""
        return self.decode_mean(model, z)

    def readout_scale(self):
        """The c in the score read-out (r(x) − x)/c of reconstruction models (σ² by default)."""
        return self.cfg.sigma**2

    def extend_model(self, model, rngs):
        """The network trained: the built ``model`` by default; objectives with networks of their
        own (an adversarial discriminator) wrap it, creating their parameters from ``rngs``."""
        return model

    def optimizer(self, tx, optim_cfg, total_steps: int):
        """The optax transformation applied to the parameters: ``tx`` (built from ``optim``) by
        default; objectives with parameter groups of their own (a discriminator) wrap it."""
        return tx

    def metrics(self, model, data: Dataset) -> dict:
        """Evaluation metrics of this objective beyond the generic ones (e.g. ``rmse``)."""
        return {}

    def loss(self, model, x, key, train_set) -> tuple[Any, dict]:
        """Scalar loss on a batch ``x`` (B, D) and a dict of extra scalars to log."""
        raise NotImplementedError

    def step_loss(self, model, x, key, train_set, step):
        """The loss the trainer differentiates at training step ``step`` (a traced int): ``loss``
        for every objective but those trained in phases (greedy layer-wise pretraining)."""
        return self.loss(model, x, key, train_set)

    def score(self, model, x):
        """The model's estimate of ∇ₓ log p(x), row-wise ``(B, D)``."""
        import jax
        import jax.numpy as jnp

        if self.model_kind == "energy":
            return -jax.grad(lambda y: jnp.sum(model(y)))(x)
        if self.model_kind == "tied_dae" or self.READS_RECONSTRUCTION:
            return (model(x) - x) / self.readout_scale()
        return model(x)

    noise_conditional: bool = False  # score_at(model, x, sigma) exists

    def score_at(self, model, x, sigma):
        """s(x, σ): the score of the σ-smoothed density, for noise-conditional objectives."""
        raise NotImplementedError

    def sigmas(self):
        """The objective's own noise schedule σ₁ > … > σ_L (annealed sampling default), or None."""
        return None

    sde = None  # the forward SDE (``dsmcli.sde.SDE``) of continuous-time score models

    def score_t(self, model, x, t):
        """s(x, t): the score of the SDE's marginal p_t at time ``t`` (scalar or ``(B,)``), for
        objectives with an ``sde``."""
        raise NotImplementedError

    def prior_log_prob(self, x):
        """log p_T(x) row-wise: the SDE's reference prior (an oracle: the exact marginal at T)."""
        return self.sde.prior_log_prob(x)

    def prior_sample(self, key, n: int, dim: int):
        """``n`` draws of the distribution the reverse-time samplers start from (see ``prior_log_prob``)."""
        import jax

        return self.sde.prior_std * jax.random.normal(key, (n, dim))

    @property
    def has_energy(self) -> bool:
        return self.model_kind in ("energy", "tied_dae")

    def energy(self, model, x):
        """An unnormalised −log p(x) ``(B,)`` where the parameterisation has one, else None."""
        if self.model_kind == "energy":
            return model(x)
        if self.model_kind == "tied_dae":
            return model.energy(x, self.readout_scale() ** 0.5)  # consistent with (r − x)/readout_scale
        return None
