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
from dsmcli.section import FilePath, Section

IMAGES = True  # rows are flattened images (the default networks of some objectives are convolutional)

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


class Config(Section):
    kind: Literal["mnist"] = "mnist"
    path: FilePath
    limit_train: PositiveInt | None = None
    holdout_class: int | None = Field(None, ge=0, le=9)
    labels_per_class: PositiveInt | None = None  # only this many training labels per class are used (semi-supervised)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST container: magic 0x0000 | dtype 0x08 | ndim, big-endian dims).
    The header is checked against the file (and the available memory) before the data is read,
    and a ``.gz`` file is decompressed no further than its header says."""
    from dsmcli import memory
    from dsmcli.fsio import regular_file_problem

    problem = regular_file_problem(path)
    if problem:
        raise UserError(f"data.path: '{path}' {problem}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08 or not 1 <= head[3] <= 4:
                raise UserError(f"data.path: '{path}' is not an unsigned-byte IDX file (bad magic number)")
            ndim = head[3]
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise UserError(f"data.path: '{path}' ends inside its IDX header")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            count = int(np.prod(dims, dtype=np.float64))
            if path.suffix != ".gz" and count > path.stat().st_size - 4 - 4 * ndim:
                raise UserError(f"data.path: '{path}' has a header claiming {dims} ({count:,} bytes) but holds "
                                f"{path.stat().st_size - 4 - 4 * ndim:,}: the file is damaged")
            memory.check(4 * count, f"data.path: '{path}' ({'×'.join(map(str, dims))} pixels)", "use fewer images")
            raw = f.read(count + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"data.path: cannot read '{path}': {getattr(e, 'strerror', None) or e}") from None
    if len(raw) != count:
        raise UserError(f"data.path: '{path}' holds {len(raw)}{'+' if len(raw) > count else ''} values "
                        f"but its header says {dims}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise UserError(f"data.path: '{directory}' has no '{stem}' (or .gz); an MNIST directory needs "
                    f"{', '.join(IDX_FILES.values())}")


NBYTES_FIX = "use fewer images (data.limit_train keeps the first N) or a smaller file"


def nbytes(cfg: Config) -> int | None:
    """Bytes as stored (uncompressed files) times 9: the bytes, their float32 copy and its scaling."""
    p = Path(cfg.path)
    try:
        if p.is_dir():
            raw = sum(f.stat().st_size for f in source_files(cfg) if f.suffix != ".gz")
        elif p.suffix == ".npz":
            from dsmcli.data.npz import array_headers

            raw = sum(h[2] for h in array_headers(p).values())
        else:
            return None
    except (UserError, OSError):
        return None  # build reports what is wrong with the files
    return 9 * raw


def source_files(cfg: Config) -> list[Path]:
    """The files ``build`` reads (recorded in the run's meta.json)."""
    p = Path(cfg.path)
    return [_find(p, stem) for stem in IDX_FILES.values()] if p.is_dir() else [p]


def load(path: str) -> dict[str, np.ndarray]:
    p = Path(path)
    if p.is_dir():
        return {k: read_idx(_find(p, stem)) for k, stem in IDX_FILES.items()}
    if p.suffix == ".npz":
        from dsmcli.data.npz import read_arrays

        return read_arrays(p, list(IDX_FILES))
    from dsmcli.fsio import regular_file_problem

    problem = regular_file_problem(p)
    raise UserError(f"data.path: '{path}' {problem or 'is a file'}; data.kind mnist reads a directory of "
                    f"MNIST IDX files or an .npz with x_train, y_train, x_test, y_test")


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
    dim = int(np.prod(shape))
    step = np.full(dim, 1 / 255.0, np.float32) if x_train.dtype == np.uint8 else None  # 256 levels (IDX files)
    return Dataset("mnist", flat(x_train), flat(x_test), y_train, y_test, image_shape=shape,
                   holdout_class=cfg.holdout_class, quantization=step)
