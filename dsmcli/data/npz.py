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
from dsmcli.section import FilePath, Section


class Config(Section):
    kind: Literal["npz"] = "npz"
    path: FilePath
    x_key: str = "x"
    y_key: str = "y"
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: NonNegativeInt = 0


NBYTES_FIX = "use a smaller file"


def array_headers(path: str | Path, what: str = "data.path") -> dict[str, tuple[tuple[int, ...], np.dtype, int]]:
    """``{name: (shape, dtype, bytes)}`` of the arrays in an ``.npz`` archive, read from the
    headers only (nothing is loaded). An archive that is not a zip of ``.npy`` members, or a
    member whose header claims more data than the member holds, is a ``UserError``."""
    from dsmcli.fsio import regular_file_problem

    problem = regular_file_problem(path)
    if problem:
        raise UserError(f"{what}: '{path}' {problem} (a local .npz file is expected)")
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    header = member.tell()
                nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if dtype.hasobject:
                    raise UserError(f"{what}: array '{info.filename[:-4]}' in '{path}' holds Python objects "
                                    f"(dtype {dtype}); save numeric arrays")
                if nbytes > info.file_size - header:
                    raise UserError(f"{what}: array '{info.filename[:-4]}' in '{path}' claims shape {shape} "
                                    f"({nbytes:,} bytes) but holds {max(0, info.file_size - header):,}: the file is damaged")
                out[info.filename[:-4]] = (tuple(shape), dtype, nbytes)
    except zipfile.BadZipFile:
        raise UserError(f"{what}: '{path}' is not an .npz archive (write one with numpy.savez(path, x=...))") from None
    except (ValueError, OSError, EOFError, NotImplementedError, RuntimeError) as e:
        raise UserError(f"{what}: '{path}' is not a readable .npz file ({str(e)[:100]})") from None
    return out


def read_arrays(path: str | Path, names: list[str], what: str = "data.path") -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` archive (each must exist), after checking their headers
    and their total size against the available memory."""
    from dsmcli import memory

    headers = array_headers(path, what)
    missing = [n for n in names if n not in headers]
    if missing:
        raise UserError(f"{what}: '{path}' has no array {', '.join(repr(m) for m in missing)} "
                        f"(it has: {', '.join(headers) or 'none'})")
    memory.check(2 * sum(headers[n][2] for n in names), f"{what}: '{path}'", NBYTES_FIX)
    try:
        with np.load(path, allow_pickle=False) as f:
            return {n: np.asarray(f[n]) for n in names}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, RuntimeError) as e:
        raise UserError(f"{what}: '{path}' is not a readable .npz file ({str(e)[:100]})") from None


def nbytes(cfg: Config) -> int | None:
    """What reading the file takes: the float32 rows and the arrays as stored."""
    try:
        headers = array_headers(cfg.path)
    except UserError:
        return None  # build reports the problem with the file
    x = headers.get(cfg.x_key)
    if x is None:
        return None
    return 2 * x[2] + int(np.prod(x[0], dtype=np.float64)) * 4 + (headers[cfg.y_key][2] if cfg.y_key in headers else 0)


def load_array_file(path: str, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Read ``x`` (and ``y`` if present) from an npz file, with errors that name the file."""
    headers = array_headers(path)
    if x_key not in headers:
        raise UserError(
            f"data.path: '{path}' has no array '{x_key}' (it has: {', '.join(headers) or 'none'}); "
            f"set data.x_key to one of those"
        )
    arrays = read_arrays(path, [x_key, y_key] if y_key in headers else [x_key])
    x, y = arrays[x_key], arrays.get(y_key)
    if x.ndim < 2 or x.shape[0] < 2:
        raise UserError(f"data.path: array '{x_key}' in '{path}' must have shape (N, D) with N ≥ 2, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise UserError(f"data.path: array '{x_key}' in '{path}' must be real numbers, got dtype {x.dtype}")
    x = x.reshape(len(x), -1).astype(np.float32)
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x).all(1)))
        raise UserError(f"data.path: array '{x_key}' in '{path}' has {bad} rows with NaN or inf values "
                        f"(after conversion to float32)")
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
