"""``mnist``: MNIST-format images from local files — never downloaded.

``path`` is either a directory holding the four IDX files (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, optionally
``.gz``), or one ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (the Keras
layout). Pixels are scaled from 0…255 to [0, 1] and images flattened to rows; ``limit_train``
keeps the first N training images (for quick runs).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt

from dsmcli.data.base import Dataset
from dsmcli.errors import UserError
from dsmcli.section import Section

IMAGES = True  # rows are flattened images (the default networks of some objectives are convolutional)

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class Config(Section):
    kind: Literal["mnist"] = "mnist"
    path: str
    limit_train: PositiveInt | None = None
    holdout_class: int | None = Field(None, ge=0, le=9)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST container: magic 0x0000 | dtype 0x08 | ndim, big-endian dims)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UserError(f"data.path: cannot read '{path}': {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"data.path: '{path}' is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise UserError(f"data.path: '{path}' holds {data.size} values but its header says {dims}")
    return data.reshape(dims)


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise UserError(f"data.path: '{directory}' has no '{stem}' (or .gz); an MNIST directory needs "
                    f"{', '.join(IDX_FILES.values())}")


def load(path: str) -> dict[str, np.ndarray]:
    p = Path(path)
    if p.is_dir():
        return {k: read_idx(_find(p, stem)) for k, stem in IDX_FILES.items()}
    if p.is_file() and p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as f:
            missing = [k for k in IDX_FILES if k not in f]
            if missing:
                raise UserError(f"data.path: '{path}' lacks {', '.join(missing)} (needs x_train, y_train, x_test, y_test)")
            return {k: np.asarray(f[k]) for k in IDX_FILES}
    raise UserError(f"data.path: '{path}' is neither a directory of MNIST IDX files nor an .npz file")


def build(cfg: Config) -> Dataset:
    arrays = load(cfg.path)
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if x_train.ndim != 3 or x_test.shape[1:] != x_train.shape[1:]:
        raise UserError(f"data.path: images must be (N, H, W) with equal H, W; got {x_train.shape} and {x_test.shape}")
    y_train, y_test = arrays["y_train"].astype(np.int32), arrays["y_test"].astype(np.int32)
    if len(y_train) != len(x_train) or len(y_test) != len(x_test):
        raise UserError("data.path: the label files do not match the image files in length")
    if cfg.limit_train:
        x_train, y_train = x_train[: cfg.limit_train], y_train[: cfg.limit_train]
    if cfg.holdout_class is not None:
        keep = y_train != cfg.holdout_class
        x_train, y_train = x_train[keep], y_train[keep]
    shape = tuple(x_train.shape[1:])
    scale = 255.0 if x_train.dtype == np.uint8 else 1.0
    flat = lambda a: (a.reshape(len(a), -1) / scale).astype(np.float32)  # noqa: E731
    return Dataset("mnist", flat(x_train), flat(x_test), y_train, y_test, image_shape=shape,
                   holdout_class=cfg.holdout_class)
