"""``npz``: a local ``.npz`` file with an array ``x`` (N, D) and optionally labels ``y`` (N,).

The file is split into train and test rows by a seeded permutation (``test_fraction``). Arrays
of rank > 2 (images) are flattened to rows. No density is known, so ``score_error`` is omitted.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, NonNegativeInt

from dsmcli.data.base import Dataset, plot_bounds
from dsmcli.errors import UserError
from dsmcli.section import Section


class Config(Section):
    kind: Literal["npz"] = "npz"
    path: str
    x_key: str = "x"
    y_key: str = "y"
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: NonNegativeInt = 0


def load_array_file(path: str, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Read ``x`` (and ``y`` if present) from an npz file, with errors that name the file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"data.path: file '{path}' does not exist (data.kind npz reads a local .npz file)")
    try:
        with np.load(p, allow_pickle=False) as f:
            names = list(f.keys())
            if x_key not in names:
                raise UserError(
                    f"data.path: '{path}' has no array '{x_key}' (it has: {', '.join(names) or 'none'}); "
                    f"set data.x_key to one of those"
                )
            x = np.asarray(f[x_key])
            y = np.asarray(f[y_key]) if y_key in names else None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise UserError(f"data.path: '{path}' is not a readable .npz file ({e})") from None
    if x.ndim < 2 or x.shape[0] < 2:
        raise UserError(f"data.path: array '{x_key}' in '{path}' must have shape (N, D) with N ≥ 2, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise UserError(f"data.path: array '{x_key}' in '{path}' must be numeric, got dtype {x.dtype}")
    x = x.reshape(len(x), -1).astype(np.float32)
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x).all(1)))
        raise UserError(f"data.path: array '{x_key}' in '{path}' has {bad} rows with NaN or inf values")
    if y is not None and y.shape[:1] != x.shape[:1]:
        raise UserError(f"data.path: '{y_key}' in '{path}' has {len(y)} rows but '{x_key}' has {len(x)}")
    return x, y


def build(cfg: Config) -> Dataset:
    x, y = load_array_file(cfg.path, cfg.x_key, cfg.y_key)
    perm = np.random.default_rng(cfg.seed).permutation(len(x))
    n_test = max(1, int(round(cfg.test_fraction * len(x))))
    test, train = perm[:n_test], perm[n_test:]
    return Dataset(
        "npz",
        x[train],
        x[test],
        None if y is None else y[train],
        None if y is None else y[test],
        bounds=plot_bounds(x[train]) if x.shape[1] == 2 else None,
    )
