"""``dfc_vae``: the deep-feature-consistent VAE (Hou, Shen, Sun & Qiu 2017, "Deep Feature
Consistent Variational Autoencoder"; Bank, Koenigstein & Giryes, *Autoencoders*, §5.4): a VAE
whose reconstruction term compares hidden features of a fixed, pretrained network instead of
pixels. Per row, with one reparameterised z = μ(x) + σ(x)·ε, ε ~ N(0, I), and x̂ = sigmoid(dec(z)),

    J(x) = Σ_l w_l · ½ Σ_u (φ_l(x)_u − φ_l(x̂)_u)²  +  β · KL(N(μ, diag σ²) ‖ N(0, I)),
    KL = ½ Σ_k (σ_k² + μ_k² − 1 − log σ_k²),

and the loss is the batch mean of J. Conventions: factor ½ and a **sum** over the units u of each
layer (not a mean: a wider layer weighs more), so w_l = 1/s_l² makes the l-th term the Gaussian
−log N(φ_l(x); φ_l(x̂), s_l² I) up to its constant — with ``feature_layers: [pixels]`` and
w = 1/s² the loss is the ``vae`` with the ``gaussian`` likelihood (decoder_std s) on a sigmoid
decoder, minus (D/2) log 2πs². The paper uses ½ and a per-unit mean over VGG-19's relu1_1,
relu2_1, relu3_1 with weight 0.5 against KL weight 1. x̂ is the sigmoid of the decoder's output:
the classifier was fitted to pixels in [0, 1] and its features are only meaningful there, so data
must lie in [0, 1] (digits ``scale: unit``, mnist, cifar10, images). ``reconstruct`` and ancestral
samples are sigmoid(dec(·)) too.

The fixed network φ is the data set's own classifier, the one ``fd`` uses
(``dsmcli.metrics.fd``: scikit-learn ``MLPClassifier``, one hidden layer of 128 ReLU units, fitted
to every training row's label, cached under ``~/.cache/dsm/fd``) — the only pretrained network dsm
has (the paper's ImageNet VGG-19 does not apply to 8×8 digits). Its layers (``feature_layers``):

* ``pixels``: φ(x) = x, the input itself (D units);
* ``hidden``: φ(x) = relu(x W + b), the 128 features ``fd`` and ``kid`` compare;
* ``logits``: φ(x) = relu(x W + b) W₂ + b₂, the class logits (one per training class, whose
  softmax is the classifier's ``predict_proba``; one logit for two classes).

``feature_weights``: one w_l > 0 per named layer, in the same order; left out, each layer gets its
default (``DEFAULT_WEIGHTS``: pixels 20, hidden 1, logits 0.1). The defaults (layers pixels and
hidden, weights 20 and 1) were chosen on the digits base config (configs/digits/autoencoder.yaml,
seed 0, 4000 steps) by recon_mse / fd (floor 0.62) / mmd of 1000 ancestral samples:

    pixels 20, hidden 1               0.0135 / 1.71 / 0.057   (the default)
    pixels 20, hidden 1, logits 0.1   0.0139 / 1.74 / 0.060
    pixels 20, hidden 4               0.0136 / 1.90 / 0.061
    pixels 20                         0.0136 / 1.89 / 0.062
    hidden 1                          0.0526 / 2.86 / 0.375
    hidden 10                         0.0377 / 2.07 / 0.293
    vae (bernoulli, β = 1)            0.0260 / 2.78 / 0.127

Features alone (the paper's recipe) leave the pixels underdetermined (ReLU units at 0 carry no
gradient) and reconstruct worse; the pixel term carries the reconstruction and the hidden term
adds a little in fd (one seed: differences of ~0.1 in fd are within seed noise).
The classifier's weights are constants of the loss (NumPy arrays closed over, not parameters):
no gradient reaches them and the optimiser never sees them.

Caveat: ``fd`` (and ``kid``) are measured in the same ``hidden`` features the model was trained
to match, so a low fd partly reflects the training target; read recon_mse, mmd and sliced_w2
(pixel space) beside it.

No ``elbo`` and no ``nll_iw``: J is not a negative ELBO (the feature-space "likelihood" is no
density of x), so ``dsm eval`` reports neither (``nll_iw`` applies only to objectives with
``elbo`` and ``decoder_log_prob``, which this one does not define). Logged: ``kl`` and
``feat_<layer>`` (the batch mean of ½ Σ_u (φ_l(x) − φ_l(x̂))², before the weight).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, ValidationInfo, field_validator

from dsmcli.errors import UserError
from dsmcli.objectives.autoencoder import AutoencoderObjective
from dsmcli.section import Section

LAYERS = ("pixels", "hidden", "logits")
DEFAULT_WEIGHTS = {"pixels": 20.0, "hidden": 1.0, "logits": 0.1}


class Config(Section):
    kind: Literal["dfc_vae"] = "dfc_vae"
    feature_layers: list[Literal[LAYERS]] = Field(default_factory=lambda: ["pixels", "hidden"], min_length=1)
    feature_weights: list[PositiveFloat] | None = Field(None, validate_default=True)  # None: DEFAULT_WEIGHTS
    beta: PositiveFloat = 1.0

    @field_validator("feature_layers")
    @classmethod
    def _distinct(cls, layers):
        repeated = sorted({name for name in layers if layers.count(name) > 1})
        if repeated:
            raise ValueError(f"names each layer once; repeated: {', '.join(repeated)}")
        return layers

    @field_validator("feature_weights")
    @classmethod
    def _one_per_layer(cls, weights, info: ValidationInfo):
        layers = info.data.get("feature_layers")
        if layers is None:  # feature_layers is invalid and reported on its own
            return weights
        if weights is None:
            return [DEFAULT_WEIGHTS[name] for name in layers]
        if len(weights) != len(layers):
            raise ValueError(f"needs one weight per entry of feature_layers ({len(layers)}: {', '.join(layers)}), "
                             f"got {len(weights)}")
        return weights


def features(x, layers, W, b, W2, b2) -> dict:
    """{layer: φ_layer(x)} for the named ``layers`` of the classifier (W, b, W₂, b₂), in JAX."""
    import jax.numpy as jnp

    out = {}
    if "pixels" in layers:
        out["pixels"] = x
    if "hidden" in layers or "logits" in layers:
        hidden = jnp.maximum(x @ W + b, 0.0)
        if "hidden" in layers:
            out["hidden"] = hidden
        if "logits" in layers:
            out["logits"] = hidden @ W2 + b2
    return out


class DFCVAE(AutoencoderObjective):
    NEEDS_LABELS = True  # the feature network is fitted to the training labels

    def __init__(self, cfg, data, model_cfg):
        super().__init__(cfg, data, model_cfg)
        if getattr(data, "image_shape", None) is None or getattr(data, "y_train", None) is None:
            raise UserError(f"data.kind: objective.kind 'dfc_vae' compares the features of a classifier fitted to the "
                            f"data set's labels, and data.kind '{data.kind}' is not labelled images "
                            f"(use digits, mnist, cifar10 or images with class folders)")
        import numpy as np

        from dsmcli.metrics import fd

        low, high = float(np.min(data.x_train)), float(np.max(data.x_train))
        if low < 0.0 or high > 1.0:
            raise UserError(f"data.kind: objective.kind 'dfc_vae' decodes through a sigmoid and needs pixels in [0, 1]; "
                            f"data.kind '{data.kind}' has values in [{low:.3g}, {high:.3g}] (digits: scale: unit)")
        self.classifier = tuple(np.asarray(a, np.float32) for a in fd.classifier_layers(data.x_train, data.y_train))

    def model_options(self) -> dict:
        return {"stochastic_encoder": True}

    def _features(self, x):
        return features(x, self.cfg.feature_layers, *self.classifier)

    def loss(self, model, x, key, train_set):
        import jax
        import jax.numpy as jnp

        mean, logvar = model.encode_stats(x)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
        kl = 0.5 * jnp.sum(jnp.exp(logvar) + mean**2 - 1.0 - logvar, -1)
        phi_x, phi_r = self._features(x), self._features(jax.nn.sigmoid(model.decode(z)))
        terms = {name: 0.5 * jnp.sum((phi_x[name] - phi_r[name]) ** 2, -1) for name in self.cfg.feature_layers}
        recon = sum(w * terms[name] for name, w in zip(self.cfg.feature_layers, self.cfg.feature_weights))
        aux = {"kl": kl.mean(), **{f"feat_{name}": t.mean() for name, t in terms.items()}}
        return (recon + self.cfg.beta * kl).mean(), aux

    def reconstruct(self, model, x):
        import jax

        return jax.nn.sigmoid(model.decode(model.encode(x)))

    def decode_mean(self, model, z):
        """sigmoid(dec(z)), for ancestral samples."""
        import jax

        return jax.nn.sigmoid(model.decode(z))


make = DFCVAE
