"""``digits``: the 1797 8×8 handwritten digits bundled inside scikit-learn (no download).

Rows are the 64 pixel intensities scaled from 0…16 to [0, 1] (``scale: unit``) or standardised
per pixel with the training set's mean and std (``scale: standard``); labels 0–9 in ``y``. Split
into train and test by a seeded, stratified permutation. No closed-form density.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt

from dsmcli.data.base import Dataset
from dsmcli.section import Section

IMAGES = True  # rows are flattened images (the default networks of some objectives are convolutional)


class Config(Section):
    kind: Literal["digits"] = "digits"
    scale: Literal["unit", "standard"] = "unit"
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: NonNegativeInt = 0
    holdout_class: int | None = Field(None, ge=0, le=9)  # removed from training (anomaly detection)
    labels_per_class: PositiveInt | None = None  # only this many training labels per class are used (semi-supervised)


def build(cfg: Config) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=cfg.test_fraction, random_state=cfg.seed, stratify=y
    )
    step = np.full(x.shape[1], 1 / 16.0)  # one intensity level (of 0…16) in the model's space
    if cfg.scale == "standard":
        mean, std = x_train.mean(0), x_train.std(0) + 1e-3
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        step = step / std
    if cfg.holdout_class is not None:
        keep = y_train != cfg.holdout_class
        x_train, y_train = x_train[keep], y_train[keep]
    return Dataset("digits", x_train, x_test, y_train, y_test, image_shape=(8, 8), holdout_class=cfg.holdout_class,
                   quantization=step.astype(np.float32))
