"""Objectives, one module each (``Config`` + ``make(cfg, data, model_cfg) -> Objective``), in an
explicit registry. Adding one = one new module, one line here and its test (the registry
contract test covers it automatically); the trainer, samplers and CLI never name an objective."""

from __future__ import annotations

from dsmcli.objectives import aae, ae, autorec, beta_vae, cae, dae, dsm, esm, ism, ncsn, oracle, pca, rcae, sde, sparse_ae, ssl_ae, ssm, vae, wae
from dsmcli.objectives import isomap, lda  # fitted in closed form, like pca
from dsmcli.objectives import stacked_dae
from dsmcli.objectives import ali  # adversarially learned inference (BiGAN)
from dsmcli.objectives import dfc_vae  # VAE with a classifier's-feature reconstruction
from dsmcli.objectives import pixelcnn_vae  # VAE with an autoregressive PixelCNN decoder
from dsmcli.objectives.base import Objective

REGISTRY = {m.Config.model_fields["kind"].default: m for m in (
    oracle, esm, ism, ssm, dsm, dae, cae, rcae, ncsn, sde, ae, sparse_ae, vae, beta_vae, wae, aae, ali, ssl_ae, stacked_dae, pca, lda, isomap, autorec, dfc_vae, pixelcnn_vae
)}


def make(cfg, data, model_cfg) -> Objective:
    return REGISTRY[cfg.kind].make(cfg, data, model_cfg)
