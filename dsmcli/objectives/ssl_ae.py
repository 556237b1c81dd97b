"""``ssl_ae``: the semi-supervised autoencoder of the survey's §4.2 (classification): a
classifier on the codes, trained jointly with the reconstruction,

    J(θ, φ) = w · E_x ‖dec(enc(x)) − x‖² + λ · E_{(x, y) labelled} CE(softmax(W enc(x) + b), y)

— the reconstruction on every training row (the batch), the cross-entropy (nats, mean) on a batch
of ``label_batch`` rows drawn with replacement from the labelled ones (``data.labels_per_class``:
e.g. 10 or 50 per class; all rows without it) by ``randint(key)`` of the step's loss key. The
classifier is a linear head on the codes (one ``nnx.Linear``, K → classes) created beside the
autoencoder. ``recon_weight: 0`` trains the encoder and head on
the labelled rows alone: the supervised baseline with the same network. ``test_acc`` is the
head's accuracy on the held-out rows (``dsmcli.metrics.classification``). Logged: ``recon`` and
``xent``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from dsmcli.errors import UserError
from dsmcli.objectives.autoencoder import AutoencoderObjective, extended, squared_error
from dsmcli.section import Section


class Config(Section):
    kind: Literal["ssl_ae"] = "ssl_ae"
    lam: PositiveFloat = 1.0  # weight of the classification loss
    recon_weight: NonNegativeFloat = 1.0  # weight of the reconstruction (0: supervised only)
    label_batch: PositiveInt = 128


class SemiSupervisedAE(AutoencoderObjective):
    NEEDS_LABELS = True
    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        if data.y_train is None:
            raise UserError(f"objective.kind: '{cfg.kind}' trains a classifier and data.kind '{data.kind}' has no labels "
                            f"(use digits, mnist, cifar10 or images with class folders)")
        import numpy as np

        rows = data.labelled_rows
        self.classes = int(np.max(data.y_train)) + 1
        self._x_lab = np.asarray(data.x_train[rows], np.float32)
        self._y_lab = np.asarray(data.y_train[rows], np.int32)

    def extend_model(self, model, rngs):
        from dsmcli.models import dense

        return extended(model, head=dense.Linear(self.model_cfg.latent, self.classes, rngs=rngs))

    def classify(self, model, x):
        """Class logits ``(B, classes)``: the linear head on the codes."""
        return model.head(model.encode(x))

    def loss(self, model, x, key, train_set):
        import jax
        import jax.numpy as jnp
        import optax

        idx = jax.random.randint(key, (self.cfg.label_batch,), 0, len(self._y_lab))
        x_lab, y_lab = jnp.asarray(self._x_lab)[idx], jnp.asarray(self._y_lab)[idx]
        xent = optax.softmax_cross_entropy_with_integer_labels(self.classify(model, x_lab), y_lab).mean()
        recon = squared_error(model(x), x).mean()
        return self.cfg.recon_weight * recon + self.cfg.lam * xent, {"recon": recon, "xent": xent}


make = SemiSupervisedAE
