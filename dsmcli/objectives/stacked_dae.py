"""``stacked_dae``: the stacked denoising autoencoder with greedy layer-wise pretraining and
supervised fine-tuning (Vincent, Larochelle, Lajoie, Bengio & Manzagol 2010, "Stacked Denoising
Autoencoders", §3.5 and Fig. 3; the survey's §4.2 "layer-by-layer" training).

The network is the ``mlp`` autoencoder D → h₁ → … → h_{L−1} → K → … → D (``model.hidden``,
``model.latent``; L = len(hidden) + 1 encoder layers), read as L one-hidden-layer DAEs: layer k
(k = 1 … L) has the encoder layer fₖ(u) = a(Wₖu + bₖ) (a the model's activation; the identity
for the code layer k = L) and its mirror decoder layer gₖ(c) = a(W′ₖc + b′ₖ) (the identity for
k = 1, which reconstructs the pixels). Training runs in phases of the training step t:

* **pretraining**, layer k for ``pretrain_steps`` steps (t ∈ [(k−1)P, kP)): a DAE on the clean
  codes u = h_{k−1}(x) of the layers below it (h₀ = x; those layers are frozen),

      Jₖ = E ‖gₖ(fₖ(ũ)) − u‖²,   ũ = the corruption of u (``noise``: gaussian u + σε, or
                                  masking: each coordinate zeroed with probability ``p``)

  (no ½; mean over the batch, sum over the layer's units), the same corruption at every layer
  (Vincent et al. used masking noise of the same ν at each layer);
* **fine-tuning**, every later step: the encoder (all L layers, uncorrupted) and a linear
  softmax head on the K-dimensional code trained on the labelled rows,

      J_ft = λ · CE(softmax(W h_L(x) + b), y)  [+ w · E ‖g₁(…g_L(h_L(x))) − x‖² with ``recon_weight`` w]

  on ``label_batch`` rows drawn with replacement from the labelled ones (``data.labels_per_class``;
  every row without it), as ``ssl_ae`` draws them. ``recon_weight: 0`` (the default) is the
  paper's purely supervised fine-tuning; the decoder then keeps its pretrained weights.

Each phase is its own optimisation, as in the paper: ``optim`` starts afresh at every phase
(``phased``: a state per phase, so warm-up and schedules restart too), a layer outside its phase
gets an exactly zero gradient (stop-gradients, unused terms) and an array with a zero gradient is
not updated: a frozen layer is frozen exactly. The phase is a function of the step alone (the
loss and the optimiser both read it from the step), so resume is exact. Logged:
``layer_recon`` (Jₖ of the layer in pretraining, 0 while fine-tuning), ``recon`` (the whole
stack's ‖dec(enc(x)) − x‖², unused by the loss outside ``recon_weight``), ``xent`` and ``phase``
(k − 1 while pretraining layer k, L while fine-tuning). ``test_acc`` is the head's held-out
accuracy; ``train.steps`` must leave fine-tuning steps after the L·P pretraining steps.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from dsmcli.errors import UserError
from dsmcli.objectives.ssl_ae import SemiSupervisedAE
from dsmcli.section import NoiseScale, Section


class Config(Section):
    kind: Literal["stacked_dae"] = "stacked_dae"
    pretrain_steps: PositiveInt = 1000  # per layer
    noise: Literal["gaussian", "masking"] = "gaussian"  # on the digits: test_acc 0.856 vs 0.833 for masking (10 labels per class)
    sigma: NoiseScale = 0.1  # gaussian corruption
    p: float = Field(0.25, gt=0.0, lt=1.0)  # masking probability
    lam: PositiveFloat = 1.0  # weight of the fine-tuning cross-entropy
    recon_weight: NonNegativeFloat = 0.0  # weight of the whole stack's reconstruction while fine-tuning
    label_batch: PositiveInt = 128


def phase_of(step, pretrain_steps: int, layers: int):
    """The phase of training step ``step``: k − 1 while pretraining layer k, ``layers`` after."""
    import jax.numpy as jnp

    return jnp.minimum(step // pretrain_steps, layers)


def phased(tx, pretrain_steps: int, layers: int):
    """``tx`` run afresh in every phase: one state of ``tx`` per phase (its own moments and step
    count, so Adam's bias correction starts again where a layer starts training — a shared state
    would hand a new layer zero moments with an old step count: first updates ~√(1/(1 − β₂)) ≈ 30
    times the learning rate), only the current phase's state updated; and the update of a
    parameter array is zero wherever its whole gradient is exactly zero (the layers outside the
    phase: frozen exactly, whatever ``tx`` does with a zero gradient, e.g. weight decay). The
    phase comes from the ``step`` extra argument (``optim.for_experiment``)."""
    import jax
    import jax.numpy as jnp
    import optax

    def init(params):
        return tuple(tx.init(params) for _ in range(layers + 1))

    def update(grads, state, params=None, *, step, **extra):
        def branch(j):
            def run():
                updates, inner = tx.update(grads, state[j], params)
                return updates, (*state[:j], inner, *state[j + 1:])

            return run

        updates, state = jax.lax.switch(phase_of(step, pretrain_steps, layers), [branch(j) for j in range(layers + 1)])
        updates = jax.tree.map(lambda u, g: jnp.where(jnp.any(g != 0), u, jnp.zeros_like(u)), updates, grads)
        return updates, state

    return optax.GradientTransformationExtraArgs(init, update)


class StackedDAE(SemiSupervisedAE):
    MODELS = ("mlp",)

    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        self.layers = len(model_cfg.hidden) + 1

    def optimizer(self, tx, optim_cfg, total_steps: int):
        pretraining = self.layers * self.cfg.pretrain_steps
        if total_steps <= pretraining:
            raise UserError(f"objective.pretrain_steps: {self.layers} layers × {self.cfg.pretrain_steps} pretraining "
                            f"steps leave no fine-tuning within train.steps {total_steps}; raise train.steps above "
                            f"{pretraining} or lower objective.pretrain_steps")
        return phased(tx, self.cfg.pretrain_steps, self.layers)

    def layer_loss(self, model, x, key, k: int):
        """Jₖ (k = 0 … L − 1 here: the layer pretrained in phase k) on the batch ``x``."""
        import jax
        import jax.numpy as jnp

        from dsmcli.objectives.dae import corrupt

        ae = model.autoencoder
        act, last = ae.act, self.layers - 1
        u = x
        for layer in ae.encoder[:k]:  # the clean codes of the frozen layers below
            u = act(layer(u))
        u = jax.lax.stop_gradient(u)
        code = ae.encoder[k](corrupt(u, key, self.cfg))
        code = code if k == last else act(code)
        out = ae.decoder[last - k](code)
        out = out if k == 0 else act(out)
        return jnp.mean(jnp.sum((out - u) ** 2, -1))

    def loss(self, model, x, key, train_set):
        """The fine-tuning loss J_ft."""
        import jax.numpy as jnp

        total, logs = super().loss(model, x, key, train_set)  # w·recon + λ·xent, as ssl_ae
        return total, {**logs, "layer_recon": jnp.zeros_like(total)}

    def step_loss(self, model, x, key, train_set, step):
        import jax

        phase = phase_of(step, self.cfg.pretrain_steps, self.layers)
        k_noise, k_ft = jax.random.split(key)

        def pretrain(k):
            def branch():
                j = self.layer_loss(model, x, k_noise, k)
                _, logs = self.loss(model, x, k_ft, train_set)  # logged only: the gradient is of j
                return j, {**logs, "layer_recon": j}

            return branch

        branches = [pretrain(k) for k in range(self.layers)] + [lambda: self.loss(model, x, k_ft, train_set)]
        total, logs = jax.lax.switch(phase, branches)
        return total, {**logs, "phase": phase.astype(total.dtype)}


make = StackedDAE
